"""Active learning (ml4ms.active): the store, the oracles and their failures, the strategies, the loop after a
SIGKILL, and the command line."""

import json
import os
import signal
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest

import ml4ms
from ml4ms.active.config import parse_config
from ml4ms.active.loop import load_pool, run_loop
from ml4ms.active.oracles import CalculatorOracle, OracleRunner, ReplayOracle
from ml4ms.active.pool import random_alloys
from ml4ms.active.report import summarize
from ml4ms.active.store import LabelStore
from ml4ms.active.strategies import acquisition_scores, choose_batch
from ml4ms.cli import main
from ml4ms.errors import InputError

SRC = os.path.dirname(os.path.dirname(ml4ms.__file__))

#: calculators for the failure tests, imported by path in the oracle's worker processes; a structure's
#: info["trouble"] says how its call goes wrong
CALCULATORS = '''
import os
import time

import numpy as np
from ase.calculators.emt import EMT


class Trouble(EMT):
    """EMT, except for structures with info["trouble"]: "raise", "give-nan", "sleep", or "flaky" (fails once)."""

    def __init__(self, marks=None, **kwargs):
        super().__init__(**kwargs)
        self.marks = marks

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        trouble = atoms.info.get("trouble") if atoms is not None else None
        if trouble == "raise":
            raise RuntimeError("SCF did not converge")
        if trouble == "sleep":
            time.sleep(60)
        if trouble == "flaky":
            mark = os.path.join(self.marks, str(abs(hash(atoms.positions.tobytes()))))
            if not os.path.exists(mark):
                open(mark, "w").close()
                raise RuntimeError("flaky: the first try fails")
        super().calculate(atoms, properties, system_changes)
        if trouble == "give-nan":
            self.results["energy"] = float("nan")


class Strict(EMT):
    """EMT with one keyword argument and no others."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale


class CountingEMT(EMT):
    """EMT that appends one line per call to the file ``log`` (to count the oracle's calls)."""

    def __init__(self, log=None, **kwargs):
        super().__init__(**kwargs)
        self.log = log

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        with open(self.log, "a") as handle:
            handle.write(f"{self.results['energy']!r}\\n")
'''


@pytest.fixture
def calculators(tmp_path, monkeypatch):
    """A module of test calculators on sys.path (spawned workers get the parent's sys.path)."""
    folder = tmp_path / "calcs"
    folder.mkdir()
    (folder / "al_test_calculators.py").write_text(CALCULATORS)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _config(**tables):
    """A small, fast config (composition GP, EMT, a generated pool of 4-atom cells), tables updated by ``tables``."""
    doc = {"oracle": {"calculator": "ase.calculators.emt:EMT", "target": "energy_per_atom", "workers": 1,
                      "timeout": 60.0, "retries": 1},
           "pool": {"generate": {"elements": ["Cu", "Au"], "n": 40, "repeat": [1, 1, 1], "seed": 1}},
           "start": {"n": 3},
           "recipe": {"descriptor": {"name": "composition"}, "model": {"name": "gp"}},
           "strategy": {"name": "uncertainty", "batch": 3},
           "loop": {"budget": 9}}
    for table, values in tables.items():
        merge = isinstance(values, dict) and table != "pool"  # a pool is a file or a generator, not both
        doc[table] = {**doc.get(table, {}), **values} if merge else values
    return doc


def _write_toml(path, doc):
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    lines = []
    for table, body in doc.items():
        if not isinstance(body, dict):
            lines.append(f"{table} = {value(body)}")
    for table, body in doc.items():
        if isinstance(body, dict):
            lines.append(f"[{table}]")
            lines += [f"{k} = {value(v)}" for k, v in body.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# ------------------------------------------------------------------------------------------------- the store
def test_store_round_trips_labels_failures_and_rounds(tmp_path):
    atoms = random_alloys(["Cu", "Au"], 2, repeat=(1, 1, 1), seed=3)
    store = LabelStore(tmp_path / "labels.db")
    assert not store.exists()
    store.begin({"target": "energy_per_atom", "runtime": {"budget": 5, "retries": 1}})
    oracle = {"calculator": "ase.calculators.emt:EMT", "parameters": {}, "target": "energy_per_atom"}
    forces = np.arange(12.0).reshape(4, 3)
    store.open_round(0, {"active": [4], "random": [], "test": [9]}, {"n_train": 0}, {"note": "x"})
    store.add_label(atoms[0], candidate=4, value=-0.25, results={"energy": -1.0, "forces": forces}, round=0,
                    oracle=oracle, sets={"active": 0}, choice={"strategy": "ei", "score": 0.5, "model": "abc",
                                                               "pred": -0.2, "pred_std": float("nan")},
                    attempt=2, seconds=0.1, target="energy_per_atom")
    store.add_failure(atoms[1], candidate=9, round=0, oracle=oracle, reason="RuntimeError: SCF\n did not converge",
                      attempt=1, seconds=2.0)
    store.close_round(0, n_labels=1, n_failed=1)

    again = LabelStore(tmp_path / "labels.db", must_exist=True)  # a new connection reads what was written
    assert again.settings["target"] == "energy_per_atom"
    (row,) = again.labels()
    assert (row.candidate, row.label, row.active, row.round, row.attempt, row.strategy, row.score, row.model) == \
           (4, -0.25, 0, 0, 2, "ei", 0.5, "abc")
    assert row.get("pred_std") is None and row.get("random") is None  # NaN is left out, not stored
    back = row.toatoms()
    np.testing.assert_allclose(back.positions, atoms[0].positions)
    assert back.get_potential_energy() == -1.0
    np.testing.assert_allclose(back.get_forces(), forces)
    assert row.data["oracle"] == oracle
    (failure,) = again.failures()
    assert (failure.candidate, failure.attempt, failure.reason) == (9, 1, "RuntimeError: SCF did not converge")
    assert again.training_set("active", 1) == ([4], [-0.25]) and again.training_set("active", 0) == ([], [])
    (entry,) = again.rounds()
    assert entry["status"] == "done" and entry["data"]["plan"]["test"] == [9] and entry["data"]["note"] == "x"
    assert summarize(again)["failures"]["calls"] == 1


def test_store_refuses_what_is_not_its_database(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 10)
    with pytest.raises(InputError, match="not an SQLite database"):
        LabelStore(garbage)
    with pytest.raises(InputError, match="must be a .db file"):
        LabelStore(tmp_path / "labels.extxyz")
    with pytest.raises(InputError, match="database not found"):
        LabelStore(tmp_path / "missing.db", must_exist=True)
    import ase.db

    with ase.db.connect(str(tmp_path / "other.db"), use_lock_file=False) as db:
        db.write(random_alloys(["Cu"], 1, repeat=(1, 1, 1))[0])
    with pytest.raises(InputError, match="not a database of an ml4ms active-learning run"):
        LabelStore(tmp_path / "other.db").settings  # noqa: B018


# ------------------------------------------------------------------------------------------------- oracles
def test_oracle_import_paths_are_checked_before_any_work(calculators):
    with pytest.raises(InputError, match="no module named 'ase.calculators.nope'"):
        CalculatorOracle("ase.calculators.nope:EMT")
    with pytest.raises(InputError, match="has no 'Emt'.*calculators there: .*EMT"):
        CalculatorOracle("ase.calculators.emt:Emt")
    with pytest.raises(InputError, match="is not an ASE calculator class"):
        CalculatorOracle("ase.build:bulk")
    with pytest.raises(InputError, match="unexpected keyword argument 'scaling'.*keyword arguments of Strict: scale"):
        CalculatorOracle("al_test_calculators:Strict", {"scaling": 2.0})
    CalculatorOracle("al_test_calculators:Strict", {"scale": 2.0})


def test_failed_calls_are_outcomes_retried_and_never_stop_the_others(calculators):
    """A call that raises, returns NaN or runs past its time limit fails with its reason and is tried again;
    the calls beside it (a flaky one that passes on its second try, a good one) are labelled."""
    pool = random_alloys(["Cu", "Au"], 5, repeat=(1, 1, 1), seed=2)
    for atoms, trouble in zip(pool, ["raise", "give-nan", "sleep", "flaky", None]):
        if trouble:
            atoms.info["trouble"] = trouble
    oracle = CalculatorOracle("al_test_calculators:Trouble", {"marks": str(calculators)}, target="energy")
    start = time.perf_counter()
    with OracleRunner(oracle, workers=2, timeout=5.0) as runner:  # a restarted worker imports within it, even loaded
        outcomes = list(runner.run([(i, a, 1, 2) for i, a in enumerate(pool)]))
    elapsed = time.perf_counter() - start
    by_key = {}
    for outcome in outcomes:
        by_key.setdefault(outcome.key, []).append(outcome)
    assert [o.ok for o in by_key[0]] == [False, False] and "SCF did not converge" in by_key[0][0].reason
    assert [o.ok for o in by_key[1]] == [False, False] and "nan" in by_key[1][0].reason
    assert [o.ok for o in by_key[2]] == [False, False] and by_key[2][0].reason == "timed out after 5 s"
    assert [(o.ok, o.attempt) for o in by_key[3]] == [(False, 1), (True, 2)]
    assert [o.ok for o in by_key[4]] == [True] and np.isfinite(by_key[4][0].value)
    assert elapsed < 30  # the sleeping calls were ended, not waited for (60 s each)


def test_replay_oracle_reads_labels_and_a_missing_one_is_a_failure(tmp_path):
    pool = random_alloys(["Cu", "Au"], 8, repeat=(1, 1, 1), seed=4)
    for k, atoms in enumerate(pool):
        if k != 5:
            atoms.info["gap"] = 0.1 * k
    path = tmp_path / "labelled.extxyz"
    ase.io.write(path, pool, format="extxyz")
    doc = _config(oracle={"replay": True, "target": "gap", "retries": 0}, pool={"file": str(path)},
                  start={"n": 2}, loop={"budget": 8}, strategy={"name": "random", "batch": 2})
    del doc["oracle"]["calculator"]
    summary = run_loop(parse_config(doc), str(tmp_path / "l.db"), progress=False, echo=None)
    store = LabelStore(tmp_path / "l.db")
    assert sorted(row.label for row in store.labels()) == pytest.approx([0.1 * k for k in range(8) if k != 5])
    (failure,) = store.failures()
    assert failure.candidate == 5 and "no 'gap'" in failure.reason
    assert summary["failures"]["given_up"] == [5] and summary["finished"]
    assert isinstance(ReplayOracle(pool, "gap").compute(None, 0)[1], float)


def test_replay_keeps_the_info_it_is_told_and_the_discovery_curve_counts_the_best(tmp_path):
    """A replayed pool whose model needs a number from ``info`` ([pool] keep_info); EI then finds the lowest labels,
    and discovery_curve counts them against the pool's labels."""
    from ml4ms.active.report import discovery_curve

    pool = random_alloys(["Cu", "Au"], 30, repeat=(1, 1, 1), seed=2)
    for k, atoms in enumerate(pool):
        atoms.info["x"] = float(k)
        atoms.info["y"] = (k - 20.0) ** 2 / 100.0
    path = tmp_path / "labelled.extxyz"
    ase.io.write(path, pool, format="extxyz")
    doc = _config(oracle={"replay": True, "target": "y"}, pool={"file": str(path), "keep_info": ["x"]},
                  recipe={"descriptor": {"name": "columns", "columns": ["x"]}, "model": {"name": "gp"}},
                  start={"n": 4}, loop={"budget": 12}, strategy={"name": "ei", "batch": 2})
    del doc["oracle"]["calculator"]
    cfg = parse_config(doc)
    candidates = load_pool(cfg)[0]
    assert [a.info.get("x") for a in candidates[:2]] == [0.0, 1.0] and "y" not in candidates[0].info
    run_loop(cfg, str(tmp_path / "l.db"), progress=False, echo=None)
    store = LabelStore(tmp_path / "l.db")
    reference = [a.info["y"] for a in pool]
    curve = discovery_curve(store, reference, k=3)["active"]
    assert curve["n_labels"] == [4, 6, 8, 10, 12]
    chosen = {row.candidate for row in store.labels()}
    assert curve["found"][-1] == len(chosen & {19, 20, 21}) / 3 == 1.0
    assert curve["best"][-1] == 0.0 and curve["best"] == sorted(curve["best"], reverse=True)
    assert discovery_curve(store, [-v for v in reference], k=3, goal="maximize")["active"]["found"] == curve["found"]
    for pool_table, needle in (({"file": str(path), "keep_info": ["y"]}, "keep_info names the target 'y'"),
                               ({"file": str(path), "keep_info": ["z"]}, "'z' is missing from 30 structures"),
                               ({"generate": {"elements": ["Cu"], "n": 9}, "keep_info": ["x"]},
                                "applies to a pool file")):
        with pytest.raises(InputError, match=needle):
            cfg = parse_config({**doc, "pool": pool_table})
            run_loop(cfg, str(tmp_path / "other.db"), progress=False, echo=None)


def test_the_loop_records_failures_and_goes_on(calculators, tmp_path):
    """Structures whose calls raise, give NaN or hang are given up after their retries; the loop labels the rest,
    never a structure twice, and ends when the pool is used up."""
    pool = random_alloys(["Cu", "Au"], 14, repeat=(1, 1, 1), seed=5)
    for atoms, trouble in zip(pool, ["raise", "give-nan", "sleep", "flaky"]):
        atoms.info["trouble"] = trouble
    path = tmp_path / "pool.extxyz"
    ase.io.write(path, pool, format="extxyz")
    doc = _config(oracle={"calculator": "al_test_calculators:Trouble", "parameters": {"marks": str(calculators)},
                          "timeout": 5.0, "workers": 2, "retries": 1},
                  pool={"file": str(path)}, start={"n": 6}, loop={"budget": 14}, strategy={"batch": 4})
    summary = run_loop(parse_config(doc), str(tmp_path / "l.db"), progress=False, echo=None)
    store = LabelStore(tmp_path / "l.db")
    candidates = [row.candidate for row in store.labels()]
    assert len(candidates) == len(set(candidates)) == 11  # 14 less the three that always fail
    assert summary["finished"] and summary["labels"]["active"] == 11
    assert summary["failures"]["given_up"] == [0, 1, 2]
    reasons = {}
    for row in store.failures():
        reasons.setdefault(row.candidate, []).append(row.reason)
    assert len(reasons[0]) == len(reasons[1]) == len(reasons[2]) == 2 and len(reasons[3]) == 1
    assert "SCF" in reasons[0][0] and "nan" in reasons[1][0] and "timed out" in reasons[2][0]
    assert store.labels("candidate=3")[0].attempt == 2  # flaky: labelled on its second try
    assert all(r["status"] == "done" for r in store.rounds()) and store.rounds()[-1]["final"]


# ------------------------------------------------------------------------------------------------- strategies
def test_uncertainty_picks_the_highest_std():
    rng = np.random.default_rng(0)
    std = rng.random(50)
    scores = acquisition_scores("uncertainty", rng.normal(size=50), std)
    assert set(choose_batch(scores, 5)) == set(np.argsort(-std)[:5])


def test_confidence_bound_follows_the_goal():
    mean, std = np.array([0.0, 1.0, -1.0]), np.array([0.1, 0.1, 0.1])
    assert int(np.argmax(acquisition_scores("ucb", mean, std, goal="maximize"))) == 1
    assert int(np.argmax(acquisition_scores("ucb", mean, std, goal="minimize"))) == 2


def test_expected_improvement_finds_a_planted_minimum_faster_than_random():
    """A 1-D pool with a narrow, deep minimum away from the start: EI with a GP finds it in a few labels,
    random sampling needs about half the pool."""
    from ml4ms.models.gp import GaussianProcessRegressor

    x = np.linspace(0.0, 1.0, 200)
    f = np.sin(6 * x) + 0.5 * x - 2.0 * np.exp(-((x - 0.83) / 0.03) ** 2)
    target = int(np.argmin(f))

    def labels_to_find(choose, seed):
        rng = np.random.default_rng(seed)
        labelled = list(rng.choice(200, 4, replace=False))
        while target not in labelled:
            labelled.append(choose(labelled, rng))
        return len(labelled)

    def ei(labelled, rng):
        rest = np.setdiff1d(np.arange(200), labelled)
        gp = GaussianProcessRegressor().fit(x[labelled, None], f[labelled])
        mean, std = gp.predict(x[rest, None], return_std=True)
        scores = acquisition_scores("ei", mean, std, best=f[labelled].min())
        return int(rest[choose_batch(scores, 1)[0]])

    def random(labelled, rng):
        rest = np.setdiff1d(np.arange(200), labelled)
        return int(rest[choose_batch(acquisition_scores("random", len(rest), seed=rng.integers(1 << 30)), 1)[0]])

    with_ei = [labels_to_find(ei, s) for s in range(3)]
    at_random = [labels_to_find(random, s) for s in range(3)]
    assert max(with_ei) <= 30 and np.mean(with_ei) < np.mean(at_random) / 2, (with_ei, at_random)


def test_fps_strategy_goes_on_from_the_labelled_set_and_features_can_be_shared(tmp_path):
    """farthest_from continues plain FPS; the loop's "fps" strategy picks that sequence from its active set, and
    a run given another run's features (featurized=) chooses the same."""
    from ml4ms.active.loop import ActiveLoop
    from ml4ms.active.strategies import farthest_from
    from ml4ms.selection import farthest_point_sampling

    X = np.random.default_rng(3).normal(size=(60, 4))
    plain = farthest_point_sampling(X.T, 10, start=7)
    rest = np.setdiff1d(np.arange(60), [7])
    assert rest[farthest_from(X[rest], X[[7]], 9, chunk=16)].tolist() == plain[1:].tolist()

    doc = _config(strategy={"name": "fps", "batch": 3}, evaluation={"test": 5})
    cfg = parse_config(doc)
    loop = ActiveLoop(cfg, str(tmp_path / "a.db"), progress=False, echo=None)
    loop.run()
    _, features = loop.featurized()
    store = LabelStore(tmp_path / "a.db")
    by_round = {}
    for row in store.labels("active>=0", light=True):
        by_round.setdefault(row.active, []).append(row.candidate)
    test = set(store.rounds()[0]["data"]["plan"]["test"])
    chosen = list(by_round[0])
    for k in (1, 2):
        eligible = np.array([i for i in range(len(features)) if i not in test and i not in chosen])
        assert by_round[k] == eligible[farthest_from(features[eligible], features[chosen], 3)].tolist()
        chosen += by_round[k]
    run_loop(cfg, str(tmp_path / "b.db"), progress=False, echo=None, featurized=loop.featurized())
    again = sorted((row.active, row.candidate) for row in LabelStore(tmp_path / "b.db").labels("active>=0"))
    assert again == sorted((k, c) for k, cs in by_round.items() for c in cs)
    with pytest.raises(InputError, match="3 rows of features for a pool of 40"):
        run_loop(cfg, str(tmp_path / "c.db"), progress=False, echo=None, featurized=(None, features[:3]))


def test_fps_diversity_never_picks_duplicates():
    distinct = np.random.default_rng(1).normal(size=(6, 3))
    features = np.repeat(distinct, 5, axis=0)  # 30 candidates, 6 distinct
    scores = np.where(np.arange(30) < 5, 10.0, 1.0) + 0.01 * np.arange(30)  # the copies of one point score best
    for n in (2, 5, 6, 8):
        picked = choose_batch(scores, n, features, diversity=True, shortlist=1.0)
        assert len(set(map(tuple, features[picked]))) == len(picked) == min(n, 6)
    assert choose_batch(scores, 3, features, diversity=True)[0] == 4  # the best score first


def test_start_and_test_sets_are_disjoint_and_fps_spreads_the_start():
    from ml4ms.active.loop import plan_start

    start, test = plan_start(30, 5, 10, seed=3)
    assert len(set(start)) == 5 and len(set(test)) == 10 and not set(start) & set(test)
    features = np.r_[np.zeros((20, 2)), [[10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]]  # 20 copies and 3 corners
    for seed in range(3):
        start, _ = plan_start(23, 4, 0, seed=seed, features=features)
        assert {tuple(features[i]) for i in start} == {(0.0, 0.0), (10.0, 0.0), (0.0, 10.0), (10.0, 10.0)}


# ------------------------------------------------------------------------------------------------- resuming
def _labels_in(db):
    """Label rows in the database now (0 while it is being created); read without writing to it."""
    import sqlite3

    if not os.path.exists(db):
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            query = "SELECT COUNT(*) FROM text_key_values WHERE key='record' AND value='label'"
            return con.execute(query).fetchone()[0]
    except sqlite3.Error:
        return 0


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def test_sigkill_then_rerun_resumes_without_losing_or_repeating_a_label(calculators, tmp_path):
    """Kill the CLI with SIGKILL after the first label is written, and again later; the same command then
    finishes the run: every label kept, no structure labelled twice, no round done twice, its workers gone."""
    log = tmp_path / "calls.txt"
    doc = _config(oracle={"calculator": "al_test_calculators:CountingEMT", "parameters": {"log": str(log)},
                          "workers": 2},
                  pool={"generate": {"elements": ["Cu", "Au"], "n": 60, "repeat": [1, 1, 1], "seed": 2}},
                  loop={"budget": 24}, evaluation={"test": 6, "baseline": "random"})
    config = _write_toml(tmp_path / "run.toml", doc)
    db = str(tmp_path / "labels.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(calculators)])}
    command = [sys.executable, "-m", "ml4ms", "active", "run", config, "--db", db, "--quiet", "--threads", "1"]
    workers = []
    for wanted in (1, 20):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _labels_in(db) < wanted and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        workers += _children(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if wanted == 1:  # killed in the middle of round 0, its plan written and some of its labels
            assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
            assert _labels_in(db) >= 1 and not summarize(LabelStore(db))["finished"]
    killed_at = _labels_in(db)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    store = LabelStore(db)
    rows = store.labels()
    candidates = [row.candidate for row in rows]
    assert len(candidates) == len(set(candidates)), "a structure was labelled twice"
    summary = summarize(store)
    assert summary["finished"] and summary["labels"]["active"] == 24 and summary["labels"]["test"] == 6
    assert summary["labels"]["random"] == 24 and len(rows) >= killed_at
    rounds = store.rounds()
    assert [r["round"] for r in rounds] == list(range(len(rounds))) and all(r["status"] == "done" for r in rounds)
    calls = len(log.read_text().splitlines())
    assert len(rows) <= calls <= len(rows) + 2 * 2, "labels computed again beyond the calls a kill interrupted"
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{p}") for p in workers), "worker processes outlived the killed loop"


def test_a_rerun_must_be_the_same_run_and_may_raise_the_budget(tmp_path, capsys):
    doc = _config(strategy={"name": "ei", "goal": "minimize"})  # discovery: expected improvement
    config = _write_toml(tmp_path / "run.toml", doc)
    db = str(tmp_path / "labels.db")
    assert main(["active", "run", config, "--db", db, "--quiet", "--rounds", "2"]) == 0
    assert {row.strategy for row in LabelStore(db).labels("round=1")} == {"ei"}
    assert not summarize(LabelStore(db))["finished"]
    assert main(["active", "run", config, "--db", db, "--quiet"]) == 0
    assert summarize(LabelStore(db))["labels"]["active"] == 9
    capsys.readouterr()
    other = _write_toml(tmp_path / "other.toml", _config(strategy={"name": "ei", "goal": "minimize", "batch": 2}))
    assert main(["active", "run", other, "--db", db, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[strategy] batch is 3 there and 2 here" in err
    more = _write_toml(tmp_path / "more.toml", _config(strategy={"name": "ei", "goal": "minimize"},
                                                       loop={"budget": 12}, oracle={"workers": 2}))
    assert main(["active", "run", more, "--db", db, "--quiet"]) == 0
    summary = summarize(LabelStore(db))
    assert summary["finished"] and summary["labels"]["active"] == 12


# ------------------------------------------------------------------------------------------------- CLI
def test_status_and_report(tmp_path, capsys):
    config = _write_toml(tmp_path / "run.toml", _config(evaluation={"test": 5, "baseline": "random"}))
    db = str(tmp_path / "labels.db")
    assert main(["active", "run", config, "--db", db, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["active", "status", db, "--json", str(tmp_path / "status.json")]) == 0
    out = capsys.readouterr().out
    assert "random MAE" in out and "finished: the budget is spent" in out
    assert json.loads((tmp_path / "status.json").read_text())["labels"]["active"] == 9
    assert main(["active", "report", db, "-o", str(tmp_path / "report"), "--quiet"]) == 0
    files = sorted(os.listdir(tmp_path / "report"))
    assert files == ["calibration.png", "error_vs_labels.png", "summary.json"]
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["curves"]["on"] == "test" and set(summary["curves"]["curves"]) == {"active", "random"}
    assert [c["n_train"] for c in summary["calibration"]] == [3, 6, 9]


@pytest.mark.parametrize("change, needle", [
    ({"oracle": {"calculator": "ase.calculators.emtt:EMT"}}, "[oracle] calculator 'ase.calculators.emtt:EMT': no "
                                                             "module named 'ase.calculators.emtt'"),
    ({"strategy": {"batchsize": 3}}, "[strategy] unknown key 'batchsize'"),
    ({"pool": {"file": "no-such-pool.extxyz"}}, "[pool] file 'no-such-pool.extxyz': file not found"),
    ({"loop": {"budget": 0}}, "[loop] budget must be a positive integer, got 0"),
    ({"loop": {"budget": -5}}, "[loop] budget must be a positive integer, got -5"),
    ({"recipe": {"descriptor": {"name": "composition"}, "model": {"name": "krr"}}},
     "[strategy] name = 'uncertainty' needs a model with an uncertainty"),
    ({"strategy": {"kappa": 1.0}}, "[strategy] kappa applies to ucb only"),
    ({"evaluation": {"baseline": "random"}}, "[evaluation] baseline = 'random' needs a test set"),
])
def test_bad_configs_end_with_one_line(tmp_path, capsys, change, needle):
    doc = _config(**change)
    config = _write_toml(tmp_path / "bad.toml", doc)
    db = tmp_path / "labels.db"
    assert main(["active", "run", config, "--db", str(db), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ml4ms: error:") and needle in err, err
    assert not db.exists()  # checked before anything was written


# ------------------------------------------------------------------------------------------------- on-the-fly MD
def _md_config(**tables):
    """A tiny on-the-fly MD config (three 4-atom Cu-Au cells, a committee of two tiny networks), updated by
    ``tables``."""
    doc = {"oracle": {"calculator": "ase.calculators.emt:EMT", "target": "energy", "workers": 1, "timeout": 60.0,
                      "retries": 1},
           "pool": {"generate": {"elements": ["Cu", "Au"], "n": 3, "repeat": [1, 1, 1], "seed": 1}},
           "recipe": {"model": {"hidden": [4]},
                      "descriptor": {"radial_cutoff": 4.0, "radial_order": 2, "angular_cutoff": 3.0,
                                     "angular_order": 1},
                      "training": {"members": 2, "epochs": 5}},
           "strategy": {"name": "md", "threshold": 0.02, "labels_per_round": 2, "steps": 30, "temperature": 300.0,
                        "timestep": 2.0, "warm_epochs": 3},
           "loop": {"budget": 9}}
    for table, values in tables.items():
        doc[table] = {**doc.get(table, {}), **values} if isinstance(values, dict) else values
    return doc


def test_on_the_fly_md_labels_the_frames_the_committee_is_unsure_of(tmp_path, capsys):
    """Each MD run stops at its first frame above the threshold; the frame is labelled with its round, score
    (the committee's force std), the model that chose it (kept in the store) and the oracle's settings; the
    committee continues from the last round's; the report draws the uncertainty along the runs."""
    from ml4ms.active.otf import force_uncertainty, frame_atoms
    from ml4ms.potentials.committee import Committee

    db = str(tmp_path / "md.db")
    summary = run_loop(parse_config(_md_config()), db, progress=False, echo=None)
    assert summary["finished"] and summary["labels"]["active"] == 9 and summary["stop"] == "budget"
    store = LabelStore(db)
    rounds = {r["round"]: r for r in store.rounds()}
    rows = store.labels()
    assert sorted(row.candidate for row in rows) == list(range(9))  # the 3 starting structures, then the frames
    rows = [row for row in rows if row.round > 0]
    for row in rows:
        entry = rounds[row.round]
        assert row.strategy == "md" and row.model == entry["model"] and row.score > 0.02
        assert row.data["oracle"] == {"calculator": "ase.calculators.emt:EMT", "parameters": {}, "target": "energy"}
        np.testing.assert_allclose(row.positions, frame_atoms(entry["data"]["frames"][str(row.candidate)]).positions)
        assert row.forces.shape == (4, 3) and row.energy == row.label
        committee = store.load_model(row.model)
        assert isinstance(committee, Committee) and len(committee) == 2
        atoms = row.toatoms()
        atoms.calc = None
        from ml4ms.potentials import NeuralPotentialCalculator

        atoms.calc = NeuralPotentialCalculator(committee)
        atoms.get_forces()
        assert force_uncertainty(atoms.calc.results["forces_std"]) == pytest.approx(row.score, rel=1e-6)
    first, second = (store.load_model(rounds[k]["model"]) for k in (1, 2))
    np.testing.assert_array_equal(first[0].feature_mean_, second[0].feature_mean_)  # warm start: round 1's scaling
    runs = [run for r in rounds.values() for run in r["data"].get("md", [])]
    assert {run["stopped"] for run in runs} <= {"candidate", "completed"}
    assert all(run["trace"]["step"][0] == 0 and len(run["trace"]["force_std"]) == len(run["trace"]["step"])
               for run in runs)
    assert main(["active", "report", db, "-o", str(tmp_path / "report"), "--quiet"]) == 0
    assert "md_uncertainty.png" in os.listdir(tmp_path / "report")
    capsys.readouterr()
    assert main(["active", "status", db]) == 0
    assert "strategy md" in capsys.readouterr().out


def test_on_the_fly_md_converges_when_every_run_stays_under_the_threshold(tmp_path):
    doc = _md_config(strategy={"threshold": 5.0}, loop={"budget": 20})
    summary = run_loop(parse_config(doc), str(tmp_path / "md.db"), progress=False, echo=None)
    assert summary["finished"] and summary["stop"] == "converged" and summary["labels"]["all"] == 3
    (last,) = [r for r in summary["round_list"] if r["round"] == 1]
    assert last["md"] == {"runs": 3, "completed": 3, "steps": [30, 30, 30]}


def test_on_the_fly_md_resumes_after_sigkill(calculators, tmp_path):
    """SIGKILL in the middle of an MD round (its plan written, one of its two frames labelled, or a little later);
    the same command finishes: no label lost, none computed twice, a frame labelled is the one its round planned
    (by the model that round trained), and no finished round is redone."""
    log = tmp_path / "calls.txt"
    doc = _md_config(oracle={"calculator": "al_test_calculators:CountingEMT", "parameters": {"log": str(log)}},
                     loop={"budget": 11})
    config = _write_toml(tmp_path / "md.toml", doc)
    db = str(tmp_path / "md.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(calculators)])}
    command = [sys.executable, "-m", "ml4ms", "active", "run", config, "--db", db, "--quiet", "--threads", "1"]
    for wanted in (6,):  # rounds 0 and 1 give 3 + 2 labels, round 2 its first of two
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _labels_in(db) < wanted and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    before = LabelStore(db)
    kept = {row.candidate: row.positions.copy() for row in before.labels()}
    done_rounds = {r["round"]: (r["started"], r["model"] if "model" in r else None) for r in before.rounds()
                   if r["status"] == "done"}
    assert len(kept) >= 6 and not summarize(before)["finished"]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    store = LabelStore(db)
    rows = store.labels()
    candidates = [row.candidate for row in rows]
    assert len(candidates) == len(set(candidates)) == 11, "a frame was labelled twice, or one is missing"
    for row in rows:
        if row.candidate in kept:
            np.testing.assert_array_equal(row.positions, kept[row.candidate])
    rounds = store.rounds()
    assert [r["round"] for r in rounds] == list(range(len(rounds))) and all(r["status"] == "done" for r in rounds)
    assert {r["round"]: (r["started"], r.get("model")) for r in rounds if r["round"] in done_rounds} == done_rounds
    for r in rounds[1:]:
        for c in r["data"]["plan"]["active"]:
            (row,) = [row for row in rows if row.candidate == c]
            assert row.round == r["round"] and row.model == r["model"]
    calls = len(log.read_text().splitlines())
    assert len(rows) <= calls <= len(rows) + 2, "labels computed again beyond the calls a kill interrupted"
    assert summarize(store)["finished"]


@pytest.mark.parametrize("change, needle", [
    ({"strategy": {"treshold": 0.1}}, "[strategy] unknown key 'treshold'; did you mean 'threshold'?"),
    ({"strategy": {"steps": "many"}}, "[strategy] steps must be a positive integer, got 'many' (a string)"),
    ({"strategy": {"temperature": 1e6}}, "[strategy] temperature must be at most 50000 K"),
    ({"strategy": {"labels_per_round": 4}}, "[strategy] labels_per_round (4) is more than trajectories (3)"),
    ({"recipe": {"model": {"hidden": [4]}, "training": {"epochs": 0}}},
     "[recipe.training] epochs must be a positive integer, got 0"),
    ({"recipe": {"model": {"hidden": [4]}, "training": {"members": 1}}}, "members must be at least 2"),
    ({"recipe": {"model": {"hiden": [4]}}}, "[recipe.model] unknown key 'hiden'"),
    ({"evaluation": {"test": 5}}, "[evaluation] applies to the pool strategies"),
    ({"oracle": {"calculator": "ase.calculators.emt:EMT", "replay": True}}, "needs either calculator"),
])
def test_bad_md_configs_end_with_one_line(tmp_path, capsys, change, needle):
    config = _write_toml(tmp_path / "bad.toml", _md_config(**change))
    db = tmp_path / "labels.db"
    assert main(["active", "run", config, "--db", str(db), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ml4ms: error:") and needle in err, err
    assert not db.exists()
