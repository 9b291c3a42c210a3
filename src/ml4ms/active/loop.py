"""The active-learning loop on a pool: train -> score -> choose -> label -> record, round after round.

Round 0 labels the starting structures (and the held-out test set). Every
later round ``k``:

1. trains the recipe's model on the labels of the active-learning set of the
   rounds before (the query ``record=label,active<k`` on the store), and the
   random-sampling baseline's model on its own set when the config asks for
   one; both are scored on the test set;
2. scores the candidates with the strategy (:mod:`ml4ms.active.strategies`)
   and chooses a batch; the plan is written to the store as an open round;
3. labels the batch with the oracle in worker processes, each label written
   the moment its call ends (:mod:`ml4ms.active.oracles`);
4. closes the round.

A round whose plan would be empty (the budget reached, the pool used up) is the
last one: it records the final model's test metrics only.

**Nothing lost.** Whatever kills the loop, running it again continues: an open
round is finished from its stored plan (labels already in the store are not
computed again, failed attempts already recorded count), a closed round is
never redone, and the store's metadata make sure it is the same run (same
config but for :data:`ml4ms.active.config.RUNTIME_KEYS`, same pool). Only a
call that was running when the loop died is computed again: its label had not
been written.

On-the-fly MD (``[strategy] name = "md"``) is one more strategy of the same
loop: :class:`~ml4ms.active.otf.OnTheFlyMD` plans its rounds (train a
committee of potentials, run MD with it, choose the frames it is unsure of),
and the loop labels, stores and resumes them as it does a pool's.

The oracle's workers are started with the "spawn" method, so a script that
calls :func:`run_loop` needs the usual ``if __name__ == "__main__":`` guard.

Examples
--------
>>> import os, tempfile
>>> from ml4ms.active.config import parse_config
>>> cfg = parse_config({
...     "oracle": {"calculator": "ase.calculators.emt:EMT", "target": "energy_per_atom"},
...     "pool": {"generate": {"elements": ["Cu", "Au"], "n": 30, "repeat": [1, 1, 1]}},
...     "start": {"n": 4}, "recipe": {"descriptor": {"name": "composition"}, "model": {"name": "gp"}},
...     "strategy": {"name": "uncertainty", "batch": 2}, "loop": {"budget": 8}})
>>> db = os.path.join(tempfile.mkdtemp(), "labels.db")
>>> summary = run_loop(cfg, db, progress=False, echo=None)
>>> summary["finished"], summary["labels"]["active"], summary["rounds"]
(True, 8, 4)
"""

import time

import numpy as np

from ..errors import InputError, from_source
from .config import MD
from .pool import fingerprint, random_alloys, unlabelled
from .store import LabelStore, settings_digest
from .strategies import acquisition_scores, choose_batch, farthest_from

#: the unit of each target a calculator gives
UNITS = {"energy": "eV", "energy_per_atom": "eV/atom"}


def run_loop(config, db, rounds=None, progress=True, echo=print, featurized=None):
    """Run (or continue) the loop of ``config`` with the store ``db`` until the budget is spent.

    Parameters
    ----------
    config : ActiveConfig
        From :func:`ml4ms.active.config.read_config`.
    db : str
        The store: a ``.db`` file (SQLite) or a database URL.
    rounds : int, optional
        Run at most this many rounds in this call (finishing an open one counts).
    progress : bool
        Progress bars (tqdm) of the descriptor and the oracle calls.
    echo : callable or None
        Where the one-line report of each round goes (``print``; None: nowhere).
    featurized : tuple, optional
        ``(descriptor, features)`` of this pool with this config's descriptor,
        from :meth:`ActiveLoop.featurized` of another run on the same pool
        (benchmarks that run several strategies): not computed again.

    Returns
    -------
    dict
        The store's :func:`ml4ms.active.report.summarize` plus ``ran``, the rounds run by this call.
    """
    return ActiveLoop(config, db, progress=progress, echo=echo, featurized=featurized).run(rounds)


def load_pool(config):
    """``(candidates, labelled, source)``: the pool without labels, as read or generated, and where it came from.

    ``labelled`` is the pool as read (the replay oracle's labels); the
    candidates are checked structures (:func:`ml4ms.structures.check_structures`)
    without labels (:func:`ml4ms.active.pool.unlabelled`), keeping the ``info``
    keys of ``[pool] keep_info``.
    """
    from ..structures import check_structures, get_property, read_structures
    from .config import _check_sizes

    if "file" in config.pool:
        source = config.pool["file"]
        raw = read_structures(source)
    else:
        source = "generated pool"
        gen = dict(config.pool["generate"])
        raw = random_alloys(gen.pop("elements"), gen.pop("n"), repeat=tuple(gen.pop("repeat")), **gen)
    check_structures(raw, source=source)
    if config.strategy["name"] == MD:
        config.start.setdefault("n", len(raw))
        if config.start["n"] > len(raw):
            raise InputError(f"[start] n ({config.start['n']}) is more than the {len(raw)} starting structures",
                             source=config.source, hint="lower it, or leave it out to label them all")
    else:
        _check_sizes(len(raw), config.start["n"], config.evaluation["test"], config.source, pool_source=source)
    if config.oracle["replay"]:
        target = config.oracle["target"]
        if all(get_property(a, target) is None for a in raw):
            raise InputError(f"no structure of the pool has the target '{target}'", source=source,
                             hint="check [oracle] target: replay reads it from the pool")
    keep = config.pool.get("keep_info", [])
    missing = next((key for key in keep if any(key not in a.info for a in raw)), None)
    if missing:
        n = sum(missing not in a.info for a in raw)
        raise InputError(f"[pool] keep_info: '{missing}' is missing from {n} structures of the pool", source=source,
                         hint="keep only info keys that every structure has")
    return [unlabelled(a, keep) for a in raw], raw, source


def make_oracle(config, labelled, source):
    """The oracle a config names: :class:`~ml4ms.active.oracles.CalculatorOracle` or a replay of ``labelled``."""
    from .oracles import CalculatorOracle, ReplayOracle

    if config.oracle["replay"]:
        return ReplayOracle(labelled, config.oracle["target"], source=source)
    return CalculatorOracle(config.oracle["calculator"], config.oracle["parameters"], config.oracle["target"])


def plan_start(n_pool, n_start, n_test, seed=0, features=None):
    """The candidates of round 0: ``(start, test)``, disjoint.

    The test set is a seeded random draw; the start set is a random draw from
    the rest, or, given ``features``, farthest-point sampling over them from a
    random first structure.

    Examples
    --------
    >>> start, test = plan_start(10, 3, 2, seed=0)
    >>> len(start), len(test), set(start) & set(test)
    (3, 2, set())
    """
    from ..selection import farthest_point_sampling

    rng = np.random.default_rng([seed, 0])
    order = rng.permutation(n_pool)
    test, rest = np.sort(order[:n_test]), order[n_test:]
    if features is None:
        start = rest[:n_start]
    else:
        picked = farthest_point_sampling(np.asarray(features)[rest].T, n_start, start=int(rng.integers(len(rest))))
        start = rest[picked]
    return [int(i) for i in start], [int(i) for i in test]


def first_difference(old, new, where=()):
    """The first place where two settings differ: ``(path, old value, new value)``, or None.

    Examples
    --------
    >>> first_difference({"strategy": {"batch": 4}}, {"strategy": {"batch": 8}})
    (('strategy', 'batch'), 4, 8)
    """
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = first_difference(old.get(key), new.get(key), where + (key,))
            if found:
                return found
        return None
    return None if old == new else (where, old, new)


class ActiveLoop:
    """The state of one run: its config, store, pool, oracle and (once needed) the pool's features.

    Everything is checked when it is made, before anything is written or computed.
    """

    def __init__(self, config, db, progress=True, echo=print, featurized=None):
        self.cfg = config
        self.progress = progress
        self.echo = echo or (lambda *a, **k: None)
        self.store = LabelStore(db)
        self.pool, labelled, self.pool_source = load_pool(config)
        self.oracle = make_oracle(config, labelled, self.pool_source)
        self.target = config.oracle["target"]
        self.otf = None
        if config.strategy["name"] == MD:
            from .otf import OnTheFlyMD

            self.otf = OnTheFlyMD(self)
        self.settings = {"config": config.identity, "target": self.target, "unit": UNITS.get(self.target),
                         "oracle": self.oracle.settings,
                         "pool": {"fingerprint": fingerprint(self.pool), "size": len(self.pool),
                                  "source": self.pool_source},
                         "strategy": config.strategy["name"], "baseline": config.evaluation["baseline"],
                         "config_file": config.source}
        self._check_store()
        self._features = None
        if featurized is not None:
            from ..recipe import build_model

            descriptor, features = featurized
            features = np.asarray(features, dtype=float)
            if len(features) != len(self.pool):
                raise InputError(f"featurized: {len(features)} rows of features for a pool of {len(self.pool)}",
                                 hint="give the features of this pool")
            self._features = build_model(config.recipe, self.pool), descriptor, features

    # ------------------------------------------------------------------------------------------- set-up
    def _check_store(self):
        if not self.store.exists():
            return
        old = self.store.settings
        for key, what in (("pool", "the pool"), ("config", "the config")):
            diff = first_difference(old.get(key), self.settings[key])
            if diff:
                path, was, now = diff
                name = ("[" + ".".join(path[:-1]) + "] " if len(path) > 1 else "") + str(path[-1]) if path else key
                raise InputError(f"this database holds a run with another {what.split()[-1]}: {name} is {was!r} "
                                 f"there and {now!r} here", source=self.store.url,
                                 hint="continue with the config that started it (only [loop] budget and [oracle] "
                                      "workers, timeout and retries may change), or give a new --db")

    @property
    def runtime(self):
        return {"budget": self.cfg.loop["budget"], "workers": self.cfg.oracle["workers"],
                "timeout": self.cfg.oracle["timeout"], "retries": self.cfg.oracle["retries"]}

    def featurized(self):
        """``(descriptor, features)`` of the pool: the descriptor fitted on it (label-free) and its rows."""
        return self._featurize()[1:]

    def _featurize(self):
        """The model template, the descriptor fitted on the pool and the pool's features (computed once)."""
        if self._features is None:
            from ..recipe import build_model
            from ..workflow import featurize

            template = build_model(self.cfg.recipe, self.pool)
            descriptor, features = featurize(template, self.pool, self.pool_source, progress=self.progress)
            self._features = template, descriptor, np.asarray(features, dtype=float)
        return self._features

    # ------------------------------------------------------------------------------------------- the loop
    def run(self, max_rounds=None):
        from .oracles import OracleRunner
        from .report import summarize

        self.store.begin({**self.settings, "runtime": self.runtime})
        ran = 0
        with OracleRunner(self.oracle, workers=self.cfg.oracle["workers"],
                          timeout=self.cfg.oracle["timeout"]) as self.runner:
            while max_rounds is None or ran < max_rounds:
                rounds = self.store.rounds()
                last = rounds[-1] if rounds else None
                if last is None or last["status"] == "done":
                    k = 0 if last is None else last["round"] + 1
                    if last is not None and last.get("final") and self._used_up(k):
                        break
                    last = self._open(k)
                self._label(last)
                ran += 1
        summary = summarize(self.store)
        summary["ran"] = ran
        return summary

    def _used_up(self, k):
        """True when round ``k`` could choose nothing: the budget is spent or no candidate is left."""
        if self.otf:
            return self.otf.used_up(k)
        ids, _ = self.store.training_set("active", k)
        return len(ids) >= self.cfg.loop["budget"] or not len(self._eligible("active"))

    def _records(self):
        """``(label rows, failed calls per candidate)``, keys only, as the store holds them now."""
        failed = {}
        for row in self.store.failures(light=True):
            failed[row.candidate] = failed.get(row.candidate, 0) + 1
        return self.store.labels(light=True), failed

    def _eligible(self, name, records=None):
        """Candidates the set ``name`` may still choose: not in it, not held out, not given up."""
        labels, failed = records or self._records()
        rounds = self.store.rounds()
        held_out = set(rounds[0]["data"]["plan"]["test"]) if rounds else set()
        taken = {row.candidate for row in labels if row.get(name) is not None}
        labelled = {row.candidate for row in labels}
        given_up = {c for c, n in failed.items() if n >= self.cfg.oracle["retries"] + 1 and c not in labelled}
        excluded = held_out | taken | given_up
        return np.array([i for i in range(len(self.pool)) if i not in excluded], dtype=int)

    def _fit(self, ids, y):
        from sklearn.base import clone

        template, descriptor, features = self._featurize()
        model = clone(template)
        model.descriptor_ = descriptor
        with from_source(self.cfg.source):
            model.fit_features(features[ids], np.asarray(y, dtype=float), [self.pool[i] for i in ids])
        return model

    def _predict(self, model, ids):
        _, _, features = self._featurize()
        ids = np.asarray(ids, dtype=int)
        mean, std = model.predict_features(features[ids], [self.pool[i] for i in ids], return_std=True)
        return np.asarray(mean, dtype=float).ravel(), np.asarray(std, dtype=float).ravel()

    def _evaluate(self, model, n_train):
        """Test metrics of ``model`` (MAE, RMSE, max error; calibration where it has a std), or None."""
        from ..metrics import regression_metrics
        from ..uncertainty import calibration_metrics

        ids, y = self.store.training_set("test", None)
        if model is None or not ids:
            return None
        mean, std = self._predict(model, ids)
        out = {"n_train": n_train, "n_test": len(ids),
               **{k: float(v) for k, v in regression_metrics(y, mean, ("mae", "rmse", "max_error")).items()}}
        if np.all(np.isfinite(std)) and np.all(std > 0):
            out["calibration"] = calibration_metrics(y, mean, std)
        return out

    def _open(self, k):
        """Plan round ``k`` (train, evaluate, score, choose) and write it as an open round."""
        cfg, strategy = self.cfg, self.cfg.strategy
        baseline = cfg.evaluation["baseline"] == "random"
        seed = cfg.loop["seed"]
        started, wall = time.perf_counter(), time.time()
        if k == 0:
            features = self._featurize()[2] if cfg.start["method"] == "fps" else None
            start, test = plan_start(len(self.pool), cfg.start["n"], cfg.evaluation["test"], seed, features)
            plan = {"active": start, "random": start if baseline else [], "test": test}
            return self._write_open(k, plan, {"n_train": 0, "strategy": "start", "started": wall}, {}, started)
        if self.otf:
            plan, keys, data = self.otf.plan(k)
            return self._write_open(k, plan, {**keys, "started": wall}, data, started)
        records = self._records()
        ids, y = self.store.training_set("active", k)
        model = self._fit(ids, y) if len(ids) >= 2 else None
        metrics = {"active": self._evaluate(model, len(ids))}
        chosen_random = []
        if baseline:
            ids_r, y_r = self.store.training_set("random", k)
            metrics["random"] = self._evaluate(self._fit(ids_r, y_r) if len(ids_r) >= 2 else None, len(ids_r))
            eligible_r = self._eligible("random", records)
            n_r = min(strategy["batch"], cfg.loop["budget"] - len(ids_r), len(eligible_r))
            if n_r > 0:
                scores = acquisition_scores("random", len(eligible_r), seed=[seed, k, 1])
                chosen_random = [int(c) for c in eligible_r[choose_batch(scores, n_r, seed=[seed, k, 2])]]
        trained = time.perf_counter()
        eligible = self._eligible("active", records)
        n = min(strategy["batch"], cfg.loop["budget"] - len(ids), len(eligible))
        model_id = settings_digest({"recipe": cfg.recipe.to_dict(), "train": sorted(int(i) for i in ids)})
        name = strategy["name"] if model is not None else "random"
        choice, chosen = {}, []
        if n > 0:
            if name in ("random", "fps"):
                mean = std = np.full(len(eligible), np.nan)
                scores = acquisition_scores("random", len(eligible), seed=[seed, k, 3])
            else:
                mean, std = self._predict(model, eligible)
                best = float(np.min(y) if strategy["goal"] == "minimize" else np.max(y))
                with from_source(cfg.source):
                    scores = acquisition_scores(name, mean, std, best=best, goal=strategy["goal"],
                                                xi=strategy["xi"], kappa=strategy["kappa"])
            if name == "fps":  # the greedy sequence on from the active-learning set (not the held-out tests)
                features = self._featurize()[2]
                picked = farthest_from(features[eligible], features[ids], n)
                scores = np.zeros(len(eligible))
            else:
                features = self._featurize()[2][eligible] if strategy["diversity"] else None
                picked = choose_batch(scores, n, features, diversity=strategy["diversity"],
                                      shortlist=strategy["shortlist"], seed=[seed, k, 4])
            chosen = [int(c) for c in eligible[picked]]
            choice = {str(c): {"strategy": name, "score": float(scores[p]), "model": model_id,
                               "pred": float(mean[p]), "pred_std": float(std[p])}
                      for c, p in zip(chosen, picked)}
        plan = {"active": chosen, "random": chosen_random, "test": []}
        keys = {"n_train": len(ids), "model": model_id, "strategy": name, "final": not chosen, "started": wall}
        data = {"choice": choice, "metrics": metrics, "timing": {"train_s": trained - started}}
        return self._write_open(k, plan, keys, data, started)

    def _write_open(self, k, plan, keys, data, started):
        data.setdefault("timing", {})["plan_s"] = time.perf_counter() - started
        self.store.open_round(k, plan, keys, data)
        return self.store.rounds()[-1]

    def _label(self, entry):
        """Label what the open round ``entry`` planned and is not labelled yet; then close the round."""
        from tqdm.auto import tqdm

        k, plan = entry["round"], entry["data"]["plan"]
        choice = entry["data"].get("choice", {})
        started = time.perf_counter()
        labels, failed = self._records()
        labelled = {row.candidate: row for row in labels}
        attempts = self.cfg.oracle["retries"] + 1
        places, tasks, structures = {}, [], {}
        for c in dict.fromkeys(plan["active"] + plan["random"] + plan["test"]):
            sets = {name: k for name in ("active", "random") if c in plan[name]}
            place = (sets, c in plan["test"], choice.get(str(c)) if "active" in sets else None)
            if c in labelled:  # labelled before (another set, or before a kill): no oracle call
                row = labelled[c]
                new = {name: r for name, r in sets.items() if row.get(name) is None}
                self.store.join(row.id, new, test=place[1] and not row.get("test"),
                                choice=place[2] if "active" in new else None)
            elif failed.get(c, 0) < attempts:
                places[c] = place
                structures[c] = self.otf.structure(c, entry) if self.otf else self.pool[c]
                tasks.append((c, structures[c], failed.get(c, 0) + 1, attempts))
        settings = self.oracle.settings
        with tqdm(total=len(tasks), desc=f"round {k}: oracle", unit="call", disable=not self.progress or not tasks,
                  leave=False) as bar:
            for outcome in self.runner.run(tasks):
                atoms = structures[outcome.key]
                if outcome.ok:
                    sets, test, chosen = places[outcome.key]
                    self.store.add_label(atoms, outcome.key, outcome.value, outcome.results, k, settings, sets=sets,
                                         test=test, choice=chosen, attempt=outcome.attempt, seconds=outcome.seconds,
                                         target=self.target)
                else:
                    self.store.add_failure(atoms, outcome.key, k, settings, outcome.reason, attempt=outcome.attempt,
                                           seconds=outcome.seconds)
                if outcome.ok or outcome.attempt >= attempts:
                    bar.update(1)
        n_labels = self.store.db.count(record="label", round=k)
        n_failed = self.store.db.count(record="failure", round=k)
        self.store.close_round(k, n_labels=n_labels, n_failed=n_failed, oracle_s=time.perf_counter() - started)
        self.echo(self._line(entry, n_labels, n_failed))

    def _line(self, entry, n_labels, n_failed):
        """One line about a round, for the terminal."""
        k, data = entry["round"], entry["data"]
        unit = UNITS.get(self.target, "")
        parts = [f"round {k}:"]
        if k == 0:
            parts.append(f"{len(data['plan']['active'])} starting structures, {len(data['plan']['test'])} test")
        else:
            metrics = data.get("metrics", {})
            text = f"trained on {entry.get('n_train', 0)} labels"
            if metrics.get("active"):
                text += f", test MAE {metrics['active']['mae']:.4g} {unit}".rstrip()
                if metrics.get("random"):
                    text += f" (random sampling: {metrics['random']['mae']:.4g} on {metrics['random']['n_train']})"
            parts.append(text + ";")
            if self.otf:
                parts.append(self.otf.line(entry))
            else:
                parts.append("the last round (budget spent or pool used up)" if entry.get("final") else
                             f"chose {len(data['plan']['active'])} by {entry.get('strategy')}")
        parts.append(f"-> {n_labels} labelled, {n_failed} failed calls")
        return " ".join(parts)
