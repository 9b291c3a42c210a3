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


def _twice(x):
    if x < 0:
        raise FileNotFoundError(f"no input {x}")
    return 2 * x


def test_submitted_calls_end_on_every_executor(cluster):
    """One task per call: each job gives its call's value, or its error as it is (an OSError is no lost cluster)."""
    for executor in (parallel.Executor(), parallel.Executor(n_jobs=2),
                     parallel.Executor(scheduler=cluster.scheduler_address)):
        jobs = [executor.submit(_twice, x) for x in (1, -1, 3)]
        pending = jobs
        while pending:
            ended = parallel.wait_first(pending, timeout=60)
            assert ended, executor.kind
            pending = [job for job in pending if job not in ended]
        assert [jobs[0].result(), jobs[2].result()] == [2, 6]
        with pytest.raises(FileNotFoundError, match="no input -1"):
            jobs[1].result()


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


# ---- every data-parallel step: the same results serial, on local processes and on the cluster -------------------


@pytest.fixture
def sent(monkeypatch):
    """The sizes of the chunks and calls this process sends to a Dask cluster (so a test knows they went)."""
    sizes = []
    chunks, submit = parallel.Executor._dask_chunks, parallel.Executor.submit

    def spy_chunks(self, task, parts, ahead):
        parts = list(parts)  # a generator: read once, here
        sizes.extend(len(part) for part in parts)
        return chunks(self, task, parts, ahead)

    def spy_submit(self, func, item):
        job = submit(self, func, item)
        if job.address is not None:
            sizes.append(1)
        return job

    monkeypatch.setattr(parallel.Executor, "_dask_chunks", spy_chunks)
    monkeypatch.setattr(parallel.Executor, "submit", spy_submit)
    return sizes


def _with_duplicates():
    """24 NOMAD cells and, planted among them, a rotated copy, a supercell and a slightly moved copy."""
    records = [a.copy() for a in load("nomad2018", "test").records[:24]]
    rotated = records[3].copy()
    rotated.rotate(30, "z", rotate_cell=True)
    moved = records[7].copy()
    moved.positions += 1e-4
    return records + [rotated, records[5].repeat((2, 1, 1)), moved]


def test_duplicates_same_pairs_on_every_executor(cluster, tmp_path, capsys, monkeypatch, sent):
    import json

    import ase.io

    from ml4ms import duplicates
    from ml4ms.duplicates import find_duplicates

    monkeypatch.setattr(duplicates, "_SERIAL_BELOW", 2)  # the parallel path for a few structures
    records = _with_duplicates()
    serial = find_duplicates(records, cutoff=4.0, progress=False, return_deviation=True)
    assert {(3, 24), (5, 25), (7, 26)} <= set(serial[0])
    assert find_duplicates(records, cutoff=4.0, progress=False, return_deviation=True, n_jobs=2) == serial
    assert not sent
    with parallel.use_scheduler(cluster.scheduler_address):
        assert find_duplicates(records, cutoff=4.0, progress=False, return_deviation=True) == serial
    assert sum(sent) == len(records) + 6 + 3  # fingerprints, the environments of the 3 pairs, their matching
    path = tmp_path / "cells.extxyz"
    ase.io.write(path, records, format="extxyz")
    args = ["duplicates", str(path), "--cutoff", "4.0", "--quiet"]
    assert main(args + ["--json", str(tmp_path / "serial.json")]) == 0
    assert main(args + ["--json", str(tmp_path / "dask.json"), "--scheduler", cluster.scheduler_address]) == 0
    capsys.readouterr()
    on_dask = json.loads((tmp_path / "dask.json").read_text())
    assert on_dask == json.loads((tmp_path / "serial.json").read_text())
    assert [(p["i"], p["j"]) for p in on_dask["pairs"]] == serial[0]


def _small_labelled(tmp_path, n=60):
    import ase.io

    path = tmp_path / "small.extxyz"
    ase.io.write(path, load("nomad2018", "train").records[:n], format="extxyz")
    return str(path)


def test_cv_and_learning_curve_same_scores_in_the_same_order_on_dask(cluster, tmp_path, capsys, sent):
    """Every CV fold and learning-curve point is a task; the descriptor is computed once, in this process."""
    import json

    from ml4ms import model_selection

    data = _small_labelled(tmp_path)
    recipe = ["--config", "nomad2018_demo", "--descriptor", "composition", "--model", "krr", "--quiet"]
    cv = ["cv", data, *recipe, "--n-splits", "3", "--seeds", "0", "1", "--no-learning-curve"]
    curve = ["learning-curve", data, *recipe, "--sizes", "0.5", "1.0", "--seeds", "0", "1", "--compare-fps"]
    for name, args, tasks in (("cv", cv, 6), ("curve", curve, 8)):
        assert main(args + ["--json", str(tmp_path / f"{name}_serial.json")]) == 0
        assert not sent
        assert main(args + ["--json", str(tmp_path / f"{name}_dask.json"), "--scheduler",
                            cluster.scheduler_address]) == 0
        assert sum(sent) == tasks, name  # the folds (points) only: 60 structures are featurized here
        sent.clear()
    capsys.readouterr()
    for name, keys in (("cv", ("folds", "summary")), ("curve", ("curves",))):
        serial = json.loads((tmp_path / f"{name}_serial.json").read_text())
        on_dask = json.loads((tmp_path / f"{name}_dask.json").read_text())
        assert all(on_dask[k] == serial[k] for k in keys), name
    result = json.loads((tmp_path / "cv_dask.json").read_text())
    assert [(f["seed"], f["fold"], f["target"]) for f in result["folds"]] == \
        [(s, k, t) for s in (0, 1) for k in range(3) for t in result["targets"]]
    # local processes too, through the library
    from sklearn.linear_model import Ridge

    X = np.random.default_rng(0).normal(size=(30, 3))
    y = X @ [1.0, -2.0, 0.5]
    one = model_selection.cross_validate(Ridge(), X, y, np.arange(30), n_splits=3, seeds=(0,), progress=False)
    two = model_selection.cross_validate(Ridge(), X, y, np.arange(30), n_splits=3, seeds=(0,), progress=False,
                                         n_jobs=2)
    assert two["folds"] == one["folds"]


def test_committee_regressor_fits_its_members_on_the_cluster(cluster, sent):
    from ml4ms.models.committee import CommitteeRegressor
    from ml4ms.models.kernel import KernelRidge

    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(80, 2))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=80)

    def committee():
        return CommitteeRegressor(regressor=KernelRidge(kernel="gaussian", alpha=1e-2, gamma=1.0), n_models=4,
                                  random_state=0)

    serial = committee().fit(X, y)
    with parallel.use_scheduler(cluster.scheduler_address):
        on_dask = committee().fit(X, y)
    assert sum(sent) == 4  # one task per member
    for a, b in zip(on_dask.predict(X, return_std=True), serial.predict(X, return_std=True)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(on_dask.alpha_squared_, serial.alpha_squared_)


#: a tiny potential: a few weights, a short descriptor, batches of 4 (the test gives --epochs 1)
POTENTIAL = """
[model]
hidden = [3]
[descriptor]
radial_order = 2
angular_order = 0
[training]
batch_size = 4
novelty_references = 10
"""


def test_potential_committee_members_train_on_the_cluster(cluster, tmp_path, capsys, sent):
    """``potential fit --members 2 --scheduler``: one task per member, the weights of the local run."""
    import ase.io

    from ml4ms.potentials.io import load_potential

    frames = [a for a in load("tio2", "train").records if len(a) <= 12][:8]
    ase.io.write(tmp_path / "few.extxyz", frames, format="extxyz")
    (tmp_path / "pot.toml").write_text(POTENTIAL)
    fit = ["potential", "fit", str(tmp_path / "few.extxyz"), "--config", str(tmp_path / "pot.toml"), "--members",
           "2", "--epochs", "1", "--threads", "1", "--quiet"]
    assert main(fit + ["-o", str(tmp_path / "local"), "--jobs", "1"]) == 0
    assert main(fit + ["-o", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address]) == 0
    assert sum(sent) == 2
    assert "committee of 2" in capsys.readouterr().out
    assert main(fit + ["-o", str(tmp_path / "one"), "--members", "1", "--scheduler", cluster.scheduler_address]) == 2
    assert "--scheduler runs committee members at once, and this is one potential" in capsys.readouterr().err
    local, on_dask = load_potential(tmp_path / "local"), load_potential(tmp_path / "dask")
    assert [m.seed for m in on_dask] == [m.seed for m in local]
    for a, b in zip(on_dask, local):
        np.testing.assert_array_equal(a.predict(frames[:3], forces=False), b.predict(frames[:3], forces=False))
    assert os.path.exists(tmp_path / "dask.checkpoint" / "member1" / "state.json")  # the workers share this disk


class TroubleOracle:
    """EMT, except for structures with info["trouble"]: "raise" (an OSError, as a calculator's missing file
    raises: a failed call, not a lost scheduler), "give-nan", "sleep", or "flaky" (fails once)."""

    in_process = False
    name = "trouble"

    def __init__(self, marks):
        self.marks = marks

    def compute(self, atoms, key=None):
        from ase.calculators.emt import EMT

        trouble = atoms.info.get("trouble")
        if trouble == "raise":
            raise FileNotFoundError("SCF did not converge: no pseudopotential")
        if trouble == "sleep":
            time.sleep(60)
        mark = os.path.join(self.marks, str(key))
        if trouble == "flaky" and not os.path.exists(mark):
            open(mark, "w").close()
            raise RuntimeError("flaky: the first try fails")
        atoms = atoms.copy()
        atoms.calc = EMT()
        energy = atoms.get_potential_energy()
        return {"energy": energy, "forces": atoms.get_forces()}, float("nan") if trouble == "give-nan" else energy


def test_oracle_calls_on_the_cluster_fail_as_they_do_locally(cluster, tmp_path, sent):
    """Every call is a task: a good call gives this process's label; one that raises or gives NaN fails with its
    reason and is tried again; a flaky one passes on its second try; one past its time limit fails and its worker
    is restarted."""
    from ml4ms.active.oracles import OracleRunner
    from ml4ms.active.pool import random_alloys

    pool = random_alloys(["Cu", "Au"], 5, repeat=(1, 1, 1), seed=2)
    oracle = TroubleOracle(str(tmp_path))
    with parallel.use_scheduler(cluster.scheduler_address), OracleRunner(oracle, timeout=60) as runner:
        good = sorted(runner.run([(i, a, 1, 1) for i, a in enumerate(pool)]))
    assert sum(sent) == 5
    assert [(o.key, o.ok, o.value) for o in good] == [(i, True, oracle.compute(a)[1]) for i, a in enumerate(pool)]
    for atoms, trouble in zip(pool, ["raise", "give-nan", "sleep", "flaky", None]):
        if trouble:
            atoms.info["trouble"] = trouble
    from distributed import Client

    with Client(cluster.scheduler_address, set_as_default=False) as client:
        pids = set(client.run(os.getpid).values())
    start = time.perf_counter()
    with parallel.use_scheduler(cluster.scheduler_address), OracleRunner(oracle, timeout=3.0) as runner:
        outcomes = list(runner.run([(i, a, 1, 1 if i == 2 else 2) for i, a in enumerate(pool)]))
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        assert len(pids - set(client.run(os.getpid).values())) == 1  # the sleeper's worker was restarted
        stacks = client.call_stack()
        assert not any(stacks.values()), stacks  # and nothing sleeps on: the cluster is free
    by_key = {}
    for outcome in outcomes:
        by_key.setdefault(outcome.key, []).append(outcome)
    assert [o.ok for o in by_key[0]] == [False, False] and "SCF did not converge" in by_key[0][0].reason
    assert [o.ok for o in by_key[1]] == [False, False] and "nan" in by_key[1][0].reason
    assert [(o.ok, o.reason) for o in by_key[2]] == [(False, "timed out after 3 s")]
    assert [(o.ok, o.attempt) for o in by_key[3]] == [(False, 1), (True, 2)]
    assert [o.ok for o in by_key[4]] == [True]
    assert time.perf_counter() - start < 30  # the sleeping call was ended, not waited for


def test_active_run_labels_on_the_cluster(cluster, tmp_path, capsys, sent):
    """``active run --scheduler``: the loop's oracle calls are tasks, and every stored label is the oracle's."""
    from ase.calculators.emt import EMT

    from ml4ms.active.config import read_config
    from ml4ms.active.loop import load_pool
    from ml4ms.active.store import LabelStore

    (tmp_path / "run.toml").write_text(
        '[oracle]\ncalculator = "ase.calculators.emt:EMT"\ntarget = "energy_per_atom"\n'
        '[pool]\ngenerate = {elements = ["Cu", "Au"], n = 30, repeat = [1, 1, 1], seed = 1}\n[start]\nn = 3\n'
        '[recipe]\ndescriptor = {name = "composition"}\nmodel = {name = "gp"}\n'
        '[strategy]\nname = "uncertainty"\nbatch = 3\n[loop]\nbudget = 6\n')
    db = tmp_path / "labels.db"
    assert main(["active", "run", str(tmp_path / "run.toml"), "--db", str(db), "--quiet", "--scheduler",
                 cluster.scheduler_address]) == 0
    capsys.readouterr()
    labels = LabelStore(db).labels()
    assert len(labels) >= 6 and sum(sent) == len(labels)  # the start, the test set and the rounds' batches
    pool = load_pool(read_config(str(tmp_path / "run.toml")))[0]
    for row in labels:
        atoms = pool[row.candidate].copy()
        atoms.calc = EMT()
        assert row.label == atoms.get_potential_energy() / len(atoms)
