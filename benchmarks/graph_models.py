"""Short screens of the graph property model (``ml4ms.models.mpnn``) on QM7 and NOMAD 2018, from the bundled recipes.

    python benchmarks/graph_models.py qm7 [--n-train 1000] [--minutes 4] [--set model.learning_rate=0.003]
    python benchmarks/graph_models.py nomad2018 [--minutes 4] [--set graph.kind=knn --set graph.k=12]

``qm7``: the protocol of ``benchmarks/qm7.py`` (the 7101 molecules shuffled with ``default_rng(seed)``, the last
1000 are the test set, the first ``--n-train`` the training set), recipe ``qm7_mpnn``; prints the test MAE in
kcal/mol (1 kcal/mol = 0.0433641039 eV). ``nomad2018``: a grouped 80/20 split of ``nomad2018:train`` (duplicate
groups kept whole, ``group_train_test_split`` with ``default_rng(seed)``), recipe ``nomad2018_mpnn``; prints the
test RMSLE of both targets and their mean. Both cap the training at ``--minutes`` (the recipe's ``max_minutes``)
and report the epochs run, the epochs that diverged and went back to the best weights (``restarts``), the fit's
seconds and the training throughput (training structures, less the
validation split, times epochs, over the fit's seconds, graphs included). Ends with one ``SUMMARY {json}`` line.
"""

import argparse
import json
import time

import numpy as np

KCAL = 0.0433641039  # eV


def split(dataset, records, n_train, seed):
    """Training and test indices of the protocol (see the module notes), and the duplicate groups."""
    from ml4ms.workflow import duplicate_groups

    groups = duplicate_groups(records, progress=False)
    if dataset == "qm7":
        perm = np.random.default_rng(seed).permutation(len(records))
        return perm[:n_train], perm[-1000:], groups
    from ml4ms.model_selection import group_train_test_split

    train, test = group_train_test_split(groups, 0.2, random_state=np.random.default_rng(seed))
    return (train[:n_train] if n_train else train), test, groups


def run(dataset, n_train, minutes, seed, values):
    """Fit the recipe's model on the training split and score it on the test split (a dict)."""
    from ml4ms.datasets import load
    from ml4ms.metrics import regression_metrics
    from ml4ms.recipe import apply_overrides, build_model, read_recipe

    data = load(dataset, "all" if dataset == "qm7" else "train")
    recipe = apply_overrides(read_recipe(f"{dataset}_mpnn"),
                             values={"model.max_minutes": minutes, **values})
    records = data.records
    y = np.column_stack([[a.info[t] for a in records] for t in recipe.targets])
    train, test, groups = split(dataset, records, n_train, seed)
    model = build_model(recipe, records, progress=False)
    model.descriptor.set_params(progress=False)
    t0 = time.perf_counter()
    model.fit([records[i] for i in train], y[train], groups=groups[train])  # duplicates on one side of validation
    seconds = time.perf_counter() - t0
    pred = np.asarray(model.predict([records[i] for i in test])).reshape(len(test), -1)
    net = model.estimators_[0]
    out = {"dataset": dataset, "n_train": len(train), "n_test": len(test), "seed": seed, "set": values,
           "epochs": net.n_epochs_, "best_epoch": net.best_epoch_, "restarts": net.history_["restarts"],
           "fit_seconds": round(seconds, 1),
           "structures_per_second": round(net.n_epochs_ * (len(train) - len(net.validation_indices_)) / seconds, 1)}
    if dataset == "qm7":
        out["mae_kcal_mol"] = round(float(np.mean(np.abs(pred[:, 0] - y[test, 0]))) / KCAL, 3)
    else:
        rmsle = [regression_metrics(y[test, j], pred[:, j], metrics=["rmsle"])["rmsle"] for j in range(y.shape[1])]
        out.update(rmsle=dict(zip(recipe.targets, np.round(rmsle, 4).tolist())),
                   mean_rmsle=round(float(np.mean(rmsle)), 4))
    return out


def main():
    from ml4ms.config import parse_assignments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["qm7", "nomad2018"])
    parser.add_argument("--n-train", type=int, default=None, help="training structures (qm7 default 1000; "
                                                                    "nomad2018 default the whole 80%%)")
    parser.add_argument("--minutes", type=float, default=4.0, help="training time budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                        help="override a recipe value (TOML syntax), e.g. model.features=32")
    args = parser.parse_args()
    n_train = args.n_train or (1000 if args.dataset == "qm7" else 0)
    result = run(args.dataset, n_train, args.minutes, args.seed, parse_assignments(args.set))
    print("SUMMARY " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
