"""Does the graph network help the NOMAD 2018 stacked ensemble? Both stacks scored on a held-out part of train.

    python studies/nomad2018_graph_member.py [--minutes 4] [--seed 0] [--subset N] [--json out.json]

The recipe ``configs/nomad2018.toml`` (four Laplacian KRR members, stacked) is compared with the same recipe plus
a fifth member: the graph network of ``configs/nomad2018_mpnn.toml`` (Voronoi graph, both targets at once, its
``max_minutes`` set to ``--minutes`` per fit) on the rows of the ``structures`` descriptor.

Both are fitted on the same grouped 80 % of ``nomad2018:train`` (duplicate groups kept whole;
``group_train_test_split`` with ``default_rng(seed)``, the split of ``benchmarks/graph_models.py nomad2018``) and
scored once on the other 20 %. Every choice (each KRR's α and γ by grouped leave-one-out, the graph network's early
stopping, the stacking weights on the members' out-of-fold predictions: 5 more graph-network fits) is made
inside the 80 %, so the held-out score is nested. The descriptors are fitted on all structures (label-free, as in
``ml4ms cv``). It prints the RMSLE of each target and their mean, the stacking weights, and each member's own
held-out RMSLE (log1p RMSE); the last line is ``SUMMARY {json}``.

Findings: docs/studies/nomad2018.md, "The graph network as a member".
"""

import argparse
import copy
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(os.path.dirname(HERE), "configs")


def with_graph_member(base, graph_recipe, n_columns, minutes):
    """The ``base`` recipe (a dict) with a ``structures`` part and a graph-network member.

    The new part is appended after the others, so the members' columns keep their meaning; an open-ended column
    range (``[start]``: to the end) is closed at ``n_columns``, the width of the base recipe's features.
    """
    doc = copy.deepcopy(base)
    doc["descriptor"]["parts"].append({"name": "structures"})

    def closed(spec):
        if len(spec) == 1 and not isinstance(spec[0], list):
            return [spec[0], n_columns]
        return [closed(s) if isinstance(s, list) else s for s in spec]

    for member in doc["model"]["members"]:
        if "columns" in member:
            member["columns"] = closed(member["columns"])
    doc["graph"] = copy.deepcopy(graph_recipe["graph"])
    regressor = {**graph_recipe["model"], "max_minutes": float(minutes)}
    doc["model"]["members"].append({"label": "graph network (Voronoi)", "block": "structures",
                                    "regressor": regressor})
    return doc


def score(prep, train, test, targets):
    """Fit the prepared recipe on ``train`` and score it on ``test``."""
    from sklearn.base import clone

    from ml4ms.metrics import rmsle

    y, groups, F, records = prep.y, prep.groups, prep.features, prep.records
    t = time.perf_counter()
    model = clone(prep.model).fit_features(F[train], y[train], [records[i] for i in train], groups=groups[train])
    seconds = time.perf_counter() - t
    pred = np.asarray(model.predict_features(F[test], [records[i] for i in test])).reshape(len(test), -1)
    ens = model.estimators_[0]
    members = ens.predict_members(F[test])  # (n_test, n_members, n_targets), log1p space
    member_rmsle = np.sqrt(np.mean((members - np.log1p(y[test])[:, None, :]) ** 2, axis=0))
    per_target = [rmsle(y[test, j], pred[:, j]) for j in range(len(targets))]
    return {"rmsle": dict(zip(targets, per_target)), "mean_rmsle": float(np.mean(per_target)),
            "fit_seconds": seconds, "weights": np.asarray(ens.weights_).tolist(),
            "members": [m.get("label", f"member{i}") for i, m in enumerate(prep.model.regressor.members)],
            "member_rmsle": member_rmsle.tolist()}


def main(argv=None):
    from ml4ms.config import read_toml
    from ml4ms.datasets import load
    from ml4ms.model_selection import group_train_test_split
    from ml4ms.recipe import recipe_from_dict
    from ml4ms.workflow import prepare_features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=4.0, help="training budget of each graph-network fit")
    ap.add_argument("--seed", type=int, default=0, help="the held-out split")
    ap.add_argument("--subset", type=int, help="only the first N train structures (a quick check)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    data = load("nomad2018", "train")
    if args.subset:
        import dataclasses

        data = dataclasses.replace(data, records=data.records[:args.subset],
                                   targets={k: v[:args.subset] for k, v in data.targets.items()})
    base, _ = read_toml(os.path.join(CONFIGS, "nomad2018.toml"))
    graph, _ = read_toml(os.path.join(CONFIGS, "nomad2018_mpnn.toml"))
    t = time.perf_counter()
    prep = prepare_features(recipe_from_dict(base), data, progress=False)
    stacked = with_graph_member(base, graph, prep.features.shape[1], args.minutes)
    prep_graph = prepare_features(recipe_from_dict(stacked), data, progress=False)
    assert np.array_equal(prep_graph.features[:, :prep.features.shape[1]], prep.features)
    feature_seconds = time.perf_counter() - t
    train, test = group_train_test_split(prep.groups, 0.2, random_state=np.random.default_rng(args.seed))
    targets = list(base["targets"])
    print(f"nomad2018:train {len(prep.y)} structures: {len(train)} to fit, {len(test)} held out (seed {args.seed}); "
          f"features {feature_seconds:.0f} s", flush=True)
    results = {"seed": args.seed, "minutes": args.minutes, "n_train": len(train), "n_test": len(test)}
    for name, p in (("kernels", prep), ("kernels+graph", prep_graph)):
        r = score(p, train, test, targets)
        results[name] = r
        print(f"{name}: held-out RMSLE " + " / ".join(f"{v:.4f}" for v in r["rmsle"].values())
              + f", mean {r['mean_rmsle']:.4f} (fit {r['fit_seconds']:.0f} s)", flush=True)
        for label, w, m in zip(r["members"], r["weights"], r["member_rmsle"]):
            print(f"    {label:45s} weights {' '.join(f'{v:.2f}' for v in w)}  alone "
                  + " ".join(f"{v:.4f}" for v in m), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    print("SUMMARY " + json.dumps({"seed": args.seed, "minutes": args.minutes,
                                   **{name: {"rmsle": {t: round(v, 4) for t, v in results[name]["rmsle"].items()},
                                             "mean": round(results[name]["mean_rmsle"], 4)}
                                      for name in ("kernels", "kernels+graph")}}))
    return results


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    main()
