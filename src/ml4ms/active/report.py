"""What a store says about its run: the summary (``ml4ms active status``) and the report (``ml4ms active report``).

Everything here reads the store only (:class:`~ml4ms.active.store.LabelStore`):
no pool, no config, no oracle.

* :func:`summarize`: the rounds, the labels of each set, the failures (calls
  and the structures given up), whether the run is finished.
* :func:`learning_curves`: the error against the number of labels, per set:
  the test error of the model of each round (the random-sampling baseline
  beside it, when the run has one); without a test set, the error of each
  round's model on the batch it then chose, before those were labelled.
* :func:`calibration_by_round`: how well each round's standard deviations
  describe its errors (the share of errors within ±1σ and ±2σ, the mean
  squared z-score), on the test set or else on the chosen batch.
* :func:`md_runs`: on-the-fly MD, the uncertainty along every MD run of every round.
* :func:`discovery_curve`: the best label found against the number of labels,
  per set, and, given the labels of the whole pool (a replayed pool), the
  fraction of its ``k`` best candidates found so far.
* :func:`write_report`: the PNGs and a JSON summary in a folder.
"""

import os

import numpy as np

from ..metrics import mae, rmse
from ..uncertainty import EXPECTED_1SIGMA, EXPECTED_2SIGMA

#: file names of :func:`write_report`
FILES = {"curve": "error_vs_labels.png", "calibration": "calibration.png", "md": "md_uncertainty.png",
         "summary": "summary.json"}


def summarize(store):
    """The state of a run as a JSON-able dict: settings, rounds, label counts, failures, finished.

    Examples
    --------
    >>> import os, tempfile
    >>> from ml4ms.active.store import LabelStore
    >>> store = LabelStore(os.path.join(tempfile.mkdtemp(), "l.db"))
    >>> store.begin({"target": "energy", "runtime": {"budget": 4}})
    >>> summarize(store)["labels"]
    {'all': 0, 'active': 0, 'random': 0, 'test': 0}
    """
    settings = store.settings
    labels, failures = store.labels(light=True), store.failures(light=True)
    labelled = {row.candidate for row in labels}
    failed = {}
    for row in failures:
        failed.setdefault(row.candidate, []).append(row)
    retries = settings.get("runtime", {}).get("retries")
    given_up = sorted(c for c, rows in failed.items() if c not in labelled and retries is not None
                      and len(rows) >= retries + 1)
    rounds = []
    for entry in store.rounds():
        data = entry["data"]
        rounds.append({
            "round": entry["round"], "status": entry["status"], "strategy": entry.get("strategy"),
            "n_train": entry.get("n_train", 0), "n_labels": entry.get("n_labels"), "n_failed": entry.get("n_failed"),
            "final": bool(entry.get("final", False)), "model": entry.get("model"),
            "started": entry.get("started"), "ended": entry.get("ended"),
            "planned": {name: len(ids) for name, ids in data.get("plan", {}).items()},
            "metrics": data.get("metrics", {}),
        })
        if "md" in data:
            runs = data["md"]
            rounds[-1].update(stop=entry.get("stop"), converged=bool(entry.get("converged", False)),
                              md={"runs": len(runs), "completed": sum(r["stopped"] == "completed" for r in runs),
                                  "steps": [r["steps"] for r in runs]})
    budget = settings.get("runtime", {}).get("budget")
    n_active = sum(row.get("active") is not None for row in labels)
    last = rounds[-1] if rounds else None
    return {
        "db": store.url,
        "target": settings.get("target"),
        "unit": settings.get("unit"),
        "oracle": settings.get("oracle"),
        "strategy": settings.get("strategy"),
        "baseline": settings.get("baseline"),
        "budget": budget,
        "rounds": len(rounds),
        "labels": {"all": len(labels), "active": n_active,
                   "random": sum(row.get("random") is not None for row in labels),
                   "test": sum(bool(row.get("test")) for row in labels)},
        "failures": {"calls": len(failures), "structures": len(failed), "given_up": given_up,
                     "reasons": sorted({row.reason for row in failures})[:10]},
        "oracle_seconds": float(sum(row.seconds for row in labels)),
        "finished": bool(last and last["status"] == "done" and last["final"]),
        "stop": last.get("stop") if last else None,
        "round_list": rounds,
    }


def status_lines(summary):
    """The lines ``ml4ms active status`` prints: a header, one line per round, the totals."""
    unit = summary["unit"] or ""
    oracle = summary["oracle"] or {}
    name = oracle.get("calculator") or f"replay of {oracle.get('replay')}"
    lines = [f"{summary['db']}: target {summary['target']}, oracle {name}, strategy {summary['strategy']}"
             + (f", baseline {summary['baseline']}" if summary["baseline"] not in (None, "none") else "")]
    has_random = any((r["metrics"] or {}).get("random") for r in summary["round_list"])
    head = f"{'round':>5} {'status':>6} {'chosen by':>11} {'trained on':>10} {'labelled':>8} {'failed':>6} " \
           f"{'test MAE':>10}" + (f" {'random MAE':>10}" if has_random else "") + "  minutes"
    lines.append(head)
    for r in summary["round_list"]:
        metrics = r["metrics"] or {}
        shown_mae = lambda m: f"{m['mae']:.4g}" if m else "-"  # noqa: E731
        minutes = f"{(r['ended'] - r['started']) / 60:.2f}" if r["ended"] and r["started"] else "-"
        lines.append(f"{r['round']:>5} {r['status']:>6} {('last' if r['final'] else r['strategy'] or '-'):>11} "
                     f"{r['n_train']:>10} {r['n_labels'] if r['n_labels'] is not None else '-':>8} "
                     f"{r['n_failed'] if r['n_failed'] is not None else '-':>6} {shown_mae(metrics.get('active')):>10}"
                     + (f" {shown_mae(metrics.get('random')):>10}" if has_random else "") + f"  {minutes:>7}")
    labels, failures = summary["labels"], summary["failures"]
    lines.append(f"labels: {labels['active']} of the budget {summary['budget']} in the active-learning set"
                 + (f", {labels['random']} in the random baseline" if labels["random"] else "")
                 + (f", {labels['test']} test" if labels["test"] else "")
                 + f"; {labels['all']} oracle labels in all ({summary['oracle_seconds']:.1f} s of oracle time)"
                 + (f"; MAE in {unit}" if unit else ""))
    lines.append(f"failures: {failures['calls']} failed calls on {failures['structures']} structures"
                 + (f", {len(failures['given_up'])} given up" if failures["given_up"] else "")
                 + (f" (e.g. {failures['reasons'][0]})" if failures["reasons"] else ""))
    if not summary["finished"]:
        lines.append("not finished: run the same 'ml4ms active run' command to continue")
    elif summary.get("stop") == "converged":
        lines.append("finished: converged (every MD run of the last round stayed under the threshold)")
    elif summary.get("stop") == "unstable":
        lines.append("finished: the last round's MD runs ran away without an uncertain frame to label")
    else:
        lines.append("finished: the budget is spent (raise [loop] budget and run again to go on)")
    return lines


def _batch_rows(store):
    """Label rows with the prediction of the model that chose them, by round: ``{round: (y, mean, std)}``."""
    out = {}
    for row in store.labels("pred_std>0", light=True):
        if row.get("active") is None:
            continue
        y, mean, std = out.setdefault(row.active, ([], [], []))
        y.append(row.label)
        mean.append(row.pred)
        std.append(row.pred_std)
    return {k: tuple(np.array(v) for v in values) for k, values in out.items()}


def learning_curves(store, summary=None):
    """Error (MAE) against the number of labels per set: ``{"on": "test" or "batch", "curves": {label: {...}}}``.

    Each curve is ``{"train_size": [...], "mae": [...], "rmse": [...]}``.
    """
    summary = summary or summarize(store)
    curves = {}
    for r in summary["round_list"]:
        for name, m in (r["metrics"] or {}).items():
            if m:
                c = curves.setdefault(name, {"train_size": [], "mae": [], "rmse": []})
                c["train_size"].append(m["n_train"])
                c["mae"].append(m["mae"])
                c["rmse"].append(m["rmse"])
    if curves:
        return {"on": "test", "curves": curves}
    batches = _batch_rows(store)
    c = {"train_size": [], "mae": [], "rmse": []}
    for r in summary["round_list"]:
        if r["round"] in batches:
            y, mean, _ = batches[r["round"]]
            c["train_size"].append(r["n_train"])
            c["mae"].append(float(mae(y, mean)))
            c["rmse"].append(float(rmse(y, mean)))
    return {"on": "batch", "curves": {"active": c} if c["train_size"] else {}}


def discovery_curve(store, reference=None, k=None, goal="minimize"):
    """How fast each set finds the best candidates: ``{set: {"n_labels", "best", "found"}}``, one entry per round.

    After every round of a set (``active``, and ``random`` where the run has the
    baseline): ``n_labels``, the labels of the set up to and including that
    round; ``best``, the lowest label among them (the highest with ``goal =
    "maximize"``); and, given ``reference`` and ``k``, ``found``: the fraction of
    the ``k`` best candidates of the pool that the set has labelled.

    Parameters
    ----------
    store : LabelStore
    reference : array-like, shape (n_pool,), optional
        The label of every candidate, by index (a replayed pool's labels; NaN
        where there is none). The held-out test structures cannot be found and
        do not count among the ``k`` best.
    k : int, optional
        How many of the best candidates to look for (with ``reference``).
    goal : {"minimize", "maximize"}

    Examples
    --------
    >>> import os, tempfile
    >>> from ase import Atoms
    >>> from ml4ms.active.store import LabelStore
    >>> store = LabelStore(os.path.join(tempfile.mkdtemp(), "l.db"))
    >>> store.begin({"target": "e", "runtime": {"budget": 4}})
    >>> for r, (c, y) in enumerate([(2, 0.5), (0, 0.1)]):
    ...     _ = store.open_round(r, {"active": [c], "random": [], "test": []})
    ...     _ = store.add_label(Atoms("H"), c, y, {}, r, {"replay": "pool"}, sets={"active": r})
    ...     _ = store.close_round(r)
    >>> discovery_curve(store, reference=[0.1, 0.0, 0.5, 0.9], k=2)["active"]
    {'n_labels': [1, 2], 'best': [0.5, 0.1], 'found': [0.0, 0.5]}
    """
    sign = 1.0 if goal == "minimize" else -1.0
    rounds = store.rounds()
    top = None
    if reference is not None and k:
        values = sign * np.asarray(reference, dtype=float)
        values[~np.isfinite(values)] = np.inf
        if rounds:
            values[list(rounds[0]["data"]["plan"].get("test", []))] = np.inf
        top = set(int(i) for i in np.argsort(values, kind="stable")[:int(k)] if np.isfinite(values[i]))
    labels = store.labels(light=True)
    out = {}
    for name in ("active", "random"):
        rows = sorted(((row.get(name), row.candidate, row.label) for row in labels if row.get(name) is not None))
        if not rows:
            continue
        curve = {"n_labels": [], "best": []}
        if top is not None:
            curve["found"] = []
        best, found, i = np.inf, set(), 0
        for entry in rounds:
            r = entry["round"]
            if i >= len(rows) or rows[i][0] > r:
                continue
            while i < len(rows) and rows[i][0] <= r:
                best = min(best, sign * rows[i][2])
                if top is not None and rows[i][1] in top:
                    found.add(rows[i][1])
                i += 1
            curve["n_labels"].append(i)
            curve["best"].append(float(sign * best))
            if top is not None:
                curve["found"].append(len(found) / max(len(top), 1))
        out[name] = curve
    return out


def calibration_by_round(store, summary=None):
    """Per round of the active-learning set: ``n_train``, ``within_1sigma``, ``within_2sigma``, ``mean_z2``.

    From the test set where the run has one, else from the batch each round chose.
    """
    from ..uncertainty import calibration_metrics

    summary = summary or summarize(store)
    rows = []
    for r in summary["round_list"]:
        m = ((r["metrics"] or {}).get("active") or {}).get("calibration")
        if m:
            rows.append({"round": r["round"], "n_train": r["n_train"], "on": "test", **m})
    if rows:
        return rows
    batches = _batch_rows(store)
    for r in summary["round_list"]:
        if r["round"] in batches:
            y, mean, std = batches[r["round"]]
            rows.append({"round": r["round"], "n_train": r["n_train"], "on": "batch",
                         **calibration_metrics(y, mean, std)})
    return rows


def curve_plot(curves, path, target, unit, strategy=None):
    """The MAE against the number of labels, one line per set (:func:`ml4ms.plots.learning_curve_plot`)."""
    from ..plots import learning_curve_plot

    names = {"active": f"active learning ({strategy})" if strategy else "active learning",
             "random": "random sampling"}
    on = "test MAE" if curves["on"] == "test" else "MAE on the batch it chose"
    plot = {"curves": {names.get(k, k): {"train_size": c["train_size"],
                                         "targets": {target: {"mean": c["mae"], "std": [0.0] * len(c["mae"])}}}
                       for k, c in curves["curves"].items()}}
    return learning_curve_plot(plot, path, metric="MAE", units=[unit], title=f"{on} against the number of labels")


def calibration_plot(rows, path):
    """Coverage of ±1σ and ±2σ, and the mean squared z-score, against the number of labels (PNG)."""
    from ..plots import axis_label, pyplot, save_figure

    plt = pyplot()
    n = [r["n_train"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.8, 3.6), layout="constrained")
    for key, expected, colour in (("within_1sigma", EXPECTED_1SIGMA, "C0"), ("within_2sigma", EXPECTED_2SIGMA, "C1")):
        left.plot(n, [r[key] for r in rows], "o-", color=colour, label=f"within ±{key[7]}σ")
        left.axhline(expected, color=colour, ls="--", lw=0.8)
    left.set_ylim(0, 1.02)
    left.set_xlabel("labelled structures in the training set")
    left.set_ylabel(axis_label("errors within the interval", "fraction"))
    left.legend(fontsize=8, loc="lower right")
    right.plot(n, [r["mean_z2"] for r in rows], "o-", color="C2")
    right.axhline(1.0, color="k", ls="--", lw=0.8, label="calibrated")
    right.set_yscale("log")
    right.set_xlabel("labelled structures in the training set")
    right.set_ylabel(axis_label("mean squared z-score", ""))
    right.legend(fontsize=8)
    on = rows[0]["on"] if rows else "test"
    fig.suptitle(f"calibration of the uncertainty per round (on the {'test set' if on == 'test' else 'chosen batch'};"
                 " dashed: a calibrated model)", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)
    return fig


def md_runs(store):
    """The MD runs of on-the-fly MD, in order: dicts of ``round``, ``trajectory``, ``steps``, ``stopped`` and
    the ``trace`` (``step``, ``force_std``, ...: :func:`ml4ms.active.otf.committee_md`); empty for a pool run."""
    return [{"round": entry["round"], **run} for entry in store.rounds() for run in entry["data"].get("md", [])]


def md_plot(runs, path, threshold=None, steps=None):
    """The uncertainty along every MD run (left) and how far each round's runs got (right) (PNG).

    Left: the largest per-atom force standard deviation against the MD step,
    one line per run coloured by round, a cross where a run stopped at a
    candidate; right: the steps each run reached, by round.
    """
    from ..plots import axis_label, pyplot, save_figure

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.8), layout="constrained",
                                      gridspec_kw={"width_ratios": [3, 2]})
    last = max(r["round"] for r in runs)
    colour = plt.get_cmap("viridis")
    for run in runs:
        c = colour((run["round"] - 1) / max(last - 1, 1))
        trace = run["trace"]
        left.plot(trace["step"], trace["force_std"], "-", color=c, lw=0.8, alpha=0.8)
        if run["stopped"] == "candidate":
            left.plot(trace["step"][-1], trace["force_std"][-1], "x", color=c, ms=5)
        right.plot(run["round"], run["steps"], "o" if run["stopped"] == "completed" else "x", color=c, ms=4)
    if threshold is not None:
        left.axhline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold:g} eV/Å")
        left.legend(fontsize=8, loc="lower right")
    if steps is not None:
        right.axhline(steps, color="k", ls="--", lw=0.8, label=f"the run's length ({steps} steps)")
        right.legend(fontsize=8, loc="lower right")
    left.set_yscale("log")
    left.set_xlabel("MD step")
    left.set_ylabel(axis_label("largest per-atom force std", "eV/Å"))
    right.set_xlabel("round (colour on the left)")
    right.set_ylabel("MD steps before the first uncertain frame")
    right.set_ylim(bottom=0)
    right.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("on-the-fly MD: the committee's uncertainty along each run (x: stopped at a frame to label)",
                 fontsize=10)
    save_figure(fig, path)
    plt.close(fig)
    return fig


def write_report(store, folder):
    """Write the error curve, the calibration plot and ``summary.json`` into ``folder``; returns the paths written.

    A plot with nothing to show (no round has a trained model yet; a model without an
    uncertainty) is left out, and the summary says why.
    """
    from ..outputs import write_json

    summary = summarize(store)
    curves = learning_curves(store, summary)
    calibration = calibration_by_round(store, summary)
    os.makedirs(folder, exist_ok=True)
    written, skipped = [], {}
    if curves["curves"]:
        path = os.path.join(folder, FILES["curve"])
        curve_plot(curves, path, summary["target"], summary["unit"], summary["strategy"])
        written.append(path)
    else:
        skipped[FILES["curve"]] = "no round has a trained model yet"
    if calibration:
        path = os.path.join(folder, FILES["calibration"])
        calibration_plot(calibration, path)
        written.append(path)
    else:
        skipped[FILES["calibration"]] = "no round has a model with an uncertainty and labels to compare it with"
    runs = md_runs(store)
    if runs:
        strategy = (store.settings.get("config") or {}).get("strategy", {})
        path = os.path.join(folder, FILES["md"])
        md_plot(runs, path, strategy.get("threshold"), strategy.get("steps"))
        written.append(path)
    elif summary["strategy"] == "md":
        skipped[FILES["md"]] = "no round has run MD yet"
    path = os.path.join(folder, FILES["summary"])
    write_json(path, {**summary, "curves": curves, "calibration": calibration, "not_drawn": skipped})
    written.append(path)
    return written, skipped
