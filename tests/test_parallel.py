"""ml4ms.parallel: serial, local processes and a Dask cluster give the same results in the same order.

One local Dask cluster of 2 worker processes (1 thread each) on 127.0.0.1
serves the module; it is started and closed here. The fault tests kill a
worker in the middle of a job (the job still ends with the serial output)
and stop a scheduler in the middle of one (the job stops with one line and
a rerun resumes from its finished chunks).
"""

import os
import signal
import sys
import threading
import time

import ase.io
import numpy as np
import pytest

from ml4ms import parallel
from ml4ms.cli import main
from ml4ms.datasets import load
from ml4ms.descriptors import base, make_descriptor, soap
from ml4ms.errors import InputError

pytest.importorskip("distributed")
import cloudpickle  # noqa: E402 (comes with distributed)

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module


def _cluster(processes=True):
    from distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, host="127.0.0.1", protocol="tcp",
                        dashboard_address=":0", silence_logs=50)


@pytest.fixture(scope="module")
def cluster():
    with _cluster() as c:
        yield c
    parallel.close_clients()


def test_map_orders_results_on_every_executor(cluster):
    items = list(range(-20, 20))
    expected = [abs(x) for x in items]
    assert parallel.map_ordered(abs, items) == expected
    assert parallel.map_ordered(abs, items, n_jobs=2, chunk=3) == expected
    assert parallel.map_ordered(abs, items, scheduler=cluster.scheduler_address, chunk=3) == expected
    assert parallel.Executor(scheduler=cluster.scheduler_address).kind == "dask"


def _threads(_):
    from threadpoolctl import threadpool_info

    return max([p["num_threads"] for p in threadpool_info()] or [1]), os.environ.get("OMP_NUM_THREADS")


def test_every_task_limits_its_threads(cluster):
    """A Dask task runs with one BLAS thread per worker slot; a local process with cores // workers."""
    on_dask = parallel.map_ordered(_threads, [0, 1, 2, 3], scheduler=cluster.scheduler_address, chunk=1)
    assert {t for t, _ in on_dask} == {1} and {e for _, e in on_dask} == {"1"}
    local = parallel.map_ordered(_threads, [0, 1, 2, 3], n_jobs=2, chunk=1)
    assert {int(e) for _, e in local} == {parallel.threads_per_task(2)}


@pytest.mark.parametrize("name", ["soap", "ngrams"])
def test_descriptor_same_on_serial_processes_and_dask(name, cluster, monkeypatch):
    monkeypatch.setattr(base, "PROGRESS_MIN", 5)  # the parallel path for a few records
    monkeypatch.setattr(soap, "BATCH_ELEMENTS", 2000)  # several SOAP batches
    records = load("nomad2018", "test").records[:40]
    params = {"r_cut": 4.0, "n_max": 3, "l_max": 2, "species": ["O", "Al", "Ga", "In"]} if name == "soap" else {}
    serial = make_descriptor(name, **params).fit(records).transform(records)
    local = make_descriptor(name, n_jobs=2, **params).fit(records).transform(records)
    with parallel.use_scheduler(cluster.scheduler_address):
        on_dask = make_descriptor(name, **params).fit(records).transform(records)
    np.testing.assert_array_equal(local, serial)
    np.testing.assert_array_equal(on_dask, serial)


def test_environment_variable_chooses_the_cluster(cluster, monkeypatch):
    monkeypatch.setenv(parallel.SCHEDULER_VARIABLE, cluster.scheduler_address)
    assert parallel.Executor().kind == "dask"
    monkeypatch.setenv(parallel.SCHEDULER_VARIABLE, "nonsense")
    with pytest.raises(InputError, match="not a Dask scheduler address"):
        parallel.Executor()


def test_unreachable_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT", 1)
    code = main(["featurize", "nomad2018:test", "--descriptor", "composition", "-o", str(tmp_path / "f.npz"),
                 "--scheduler", "tcp://127.0.0.1:9", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err and "dask scheduler" in err
    for bad in ("localhost", "tcp://", "http://x:1"):
        code = main(["predict", "m", "nomad2018:test", "-o", str(tmp_path / "p.csv"), "--scheduler", bad])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "--scheduler" in err, err


def test_featurize_command_on_the_cluster(cluster, tmp_path, capsys):
    args = ["featurize", "nomad2018:test", "--descriptor", "soap", "--set", "r_cut=3.0", "--set", "n_max=2",
            "--set", "l_max=2", "--quiet"]
    assert main(args + ["-o", str(tmp_path / "serial.npz")]) == 0
    assert main(args + ["-o", str(tmp_path / "dask.npz"), "--scheduler", cluster.scheduler_address]) == 0
    capsys.readouterr()
    a, b = np.load(tmp_path / "serial.npz"), np.load(tmp_path / "dask.npz")
    np.testing.assert_array_equal(a["features"], b["features"])


def test_feature_shards_on_the_cluster(cluster, tmp_path, capsys):
    from ml4ms.shards import read_features

    args = ["featurize", "nomad2018:test", "--descriptor", "composition", "--set", "species=['O','Al','Ga','In']",
            "--chunk", "150", "--quiet"]
    assert main(args + ["-o", str(tmp_path / "serial")]) == 0
    assert main(args + ["-o", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address]) == 0
    np.testing.assert_array_equal(read_features(tmp_path / "serial")["features"],
                                  read_features(tmp_path / "dask")["features"])


def test_streamed_sparse_gp_same_serially_and_on_dask(cluster):
    """The sufficient statistics of each chunk are computed on the workers; the fit is the serial one."""
    from ml4ms.descriptors.local_kernel import LocalKernelFeatures
    from ml4ms.models.linear import BayesianRidge
    from ml4ms.models.structure import StructureRegressor

    records = load("qm7", "all").records[:150]
    y = np.array([r.info["atomization_energy_pbe0_eV"] for r in records])
    model = StructureRegressor(descriptor=LocalKernelFeatures(
        descriptor={"name": "soap", "r_cut": 4.0, "n_max": 4, "l_max": 3}, n_active=60, progress=False),
        regressor=BayesianRidge())
    serial = model.fit_streamed(records, y, chunk=40).estimators_[0]
    features = model.descriptor_.transform(records)
    with parallel.use_scheduler(cluster.scheduler_address):
        on_dask = model.fit_streamed(records, y, chunk=40).estimators_[0]
    assert np.linalg.norm(on_dask.coef_ - serial.coef_) < 1e-8 * np.linalg.norm(serial.coef_)
    np.testing.assert_allclose(on_dask.predict(features, return_std=True), serial.predict(features, return_std=True),
                               rtol=1e-8)


# ---- faults --------------------------------------------------------------------------------------------


class SlowModel:
    """A fitted model that takes ``delay`` seconds per chunk (so a job lasts long enough to break it)."""

    def __init__(self, model, delay):
        self.model, self.delay = model, delay

    def predict(self, records, return_std=False):
        time.sleep(self.delay)
        return self.model.predict(records, return_std=return_std)


@pytest.fixture(scope="module")
def model(uncertain_model):
    from ml4ms.serialize import load_model

    return load_model(uncertain_model)


def _when(condition, then, timeout=60):
    """Run ``then`` in a thread as soon as ``condition()`` holds."""
    def wait():
        end = time.time() + timeout
        while time.time() < end and not condition():
            time.sleep(0.02)
        then()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


WHERE = ["bandgap_energy_ev > 1.5", "formation_energy_ev_natom < 0.25"]


def _candidates(n=240):
    from ml4ms.datasets import Dataset

    return Dataset("nomad2018", "test", load("nomad2018", "test").records[:n], source="nomad2018:test")


def test_workers_read_an_extxyz_themselves_and_screen_as_serially(model, cluster, tmp_path, monkeypatch):
    """On 2 local processes and on the cluster the workers read the chunks (this process parses none): same bytes."""
    from ml4ms.datasets import sources
    from ml4ms.screening import stream

    fitted, meta = model
    path = tmp_path / "candidates.extxyz"
    ase.io.write(path, _candidates(120).records, format="extxyz")
    parsed_here = []
    read = sources.XYZPiece.read
    monkeypatch.setattr(sources.XYZPiece, "read", lambda self: parsed_here.append(self.start) or read(self))
    runs = {"serial": {}, "processes": {"n_jobs": 2}, "dask": {"scheduler": cluster.scheduler_address}}
    for name, where in runs.items():
        parsed_here.clear()
        summary = stream(fitted, meta, sources.open_parts([str(path)]), tmp_path / f"{name}.csv", filters=WHERE,
                         chunk=30, rank_by="bandgap_energy_ev", progress=False, **where)
        assert summary["complete"] and summary["n_records"] == 120
        assert sorted(parsed_here) == ([0, 30, 60, 90] if name == "serial" else []), name
    serial = (tmp_path / "serial.csv").read_bytes()
    assert serial.count(b"\n") > 2
    assert (tmp_path / "processes.csv").read_bytes() == serial
    assert (tmp_path / "dask.csv").read_bytes() == serial


def test_a_worker_that_cannot_open_the_file_stops_the_command_in_one_line(uncertain_model, cluster, tmp_path,
                                                                          capsys, monkeypatch):
    """As on a cluster without a shared filesystem: the worker's path names nothing there."""
    from ml4ms.datasets import sources

    path = tmp_path / "candidates.extxyz"
    ase.io.write(path, _candidates(40).records, format="extxyz")
    elsewhere = tmp_path / "not-shared" / "candidates.extxyz"
    piece = sources.XYZPart.piece

    def unshared(self, start, stop):
        described = piece(self, start, stop)
        described.path = str(elsewhere)
        return described

    monkeypatch.setattr(sources.XYZPart, "piece", unshared)
    out = tmp_path / "hits.csv"
    code = main(["screen", uncertain_model, str(path), "--where", WHERE[0], "--chunk", "20", "-o", str(out),
                 "--scheduler", cluster.scheduler_address, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{elsewhere}: cannot read the file where the chunk runs (FileNotFoundError)" in err[0]
    assert "filesystem every worker sees, or drop --scheduler" in err[0]
    assert not out.exists()


def test_killed_worker_still_gives_the_serial_output(model, cluster, tmp_path):
    from distributed import Client

    from ml4ms.screening import partial_folder, stream

    fitted, meta = model
    data = _candidates()
    stream(fitted, meta, [data], tmp_path / "serial.csv", filters=WHERE, chunk=20, rank_by="bandgap_energy_ev",
           progress=False)
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        pids = list(client.run(os.getpid).values())
    state = os.path.join(partial_folder(tmp_path / "dask.csv"), "state.json")
    killer = _when(lambda: os.path.exists(state), lambda: os.kill(pids[0], signal.SIGKILL))
    summary = stream(SlowModel(fitted, 0.2), meta, [data], tmp_path / "dask.csv", filters=WHERE, chunk=20,
                     rank_by="bandgap_energy_ev", scheduler=cluster.scheduler_address, progress=False)
    killer.join()
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        assert pids[0] not in client.run(os.getpid).values()  # the worker was really killed (and replaced)
    assert summary["complete"] and summary["resumed"] == 0
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "serial.csv").read_bytes()


def test_lost_scheduler_stops_in_one_line_and_resumes(model, tmp_path, capsys):
    from ml4ms.parallel import ClusterError
    from ml4ms.screening import partial_folder, stream

    fitted, meta = model
    data = _candidates()
    out = tmp_path / "s.csv"
    stream(fitted, meta, [data], tmp_path / "serial.csv", filters=WHERE, chunk=20, progress=False)
    state = os.path.join(partial_folder(out), "state.json")
    with _cluster(processes=False) as lost:  # a scheduler in this process, quick to start and to stop
        stopper = _when(lambda: os.path.exists(state), lost.close)
        with pytest.raises(ClusterError) as exc:
            stream(SlowModel(fitted, 0.3), meta, [data], out, filters=WHERE, chunk=20,
                   scheduler=lost.scheduler_address, progress=False)
        stopper.join()
    parallel.close_clients()
    message = str(exc.value)
    assert len(message.splitlines()) == 1 and "lost the Dask scheduler" in message
    assert not out.exists() and os.path.exists(state)
    summary = stream(fitted, meta, [data], out, filters=WHERE, chunk=20, progress=False)
    assert summary["complete"] and 0 < summary["resumed"] < summary["chunks"]
    assert out.read_bytes() == (tmp_path / "serial.csv").read_bytes()
