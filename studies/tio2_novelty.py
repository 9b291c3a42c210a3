"""Where do the TiO2 potential's large errors lie: beyond the training data (novelty) or where members disagree?

For each committee folder given (default ``models/tio2``) this prints, on the
770 test cells, the summary of ``ml4ms potential eval`` for novelty
(:mod:`ml4ms.potentials.novelty`) next to the committee's spread: the energy
RMSE of the cells with novelty above and at most 1, the ranks of the five
largest errors by novelty and by spread, and the share of the energy MSE in
the 5 % of cells ranked highest by each. A committee without reference
environments gets them from ``tio2:train`` first (in memory; the folder is
not changed).

``--heldout`` also asks how often structures like the training ones, but not
in it, lie above novelty 1 (the 99th percentile of the training structures'
novelty, each against the rest): reference environments are taken from a random 90 % of
``tio2:train`` (duplicates kept together) and the other 10 % are scored, for
each of ``--seeds``.

    python studies/tio2_novelty.py [MODEL ...] [--heldout] [--seeds 0 1]

Findings: docs/studies/tio2-potential.md, "The edge of the data".
"""

import argparse
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def summary(folder, train, test):
    """The novelty report of the committee in ``folder`` on ``test``."""
    import numpy as np

    from ml4ms.potentials import load_potential
    from ml4ms.potentials.committee import as_committee
    from ml4ms.potentials.novelty import novelty_report
    from ml4ms.potentials.metrics import labels_of

    members = as_committee(load_potential(folder))
    for m in members:
        if not hasattr(m, "novelty_references_"):
            m.fit_novelty(train)
    energies, _ = labels_of(test, "tio2:test")
    n = np.array([len(a) for a in test])
    predicted, _, spread = members.predict(test, return_std=True)
    return novelty_report(members.novelty(test), 1000 * (predicted - energies) / n, test,
                          1000 * spread / n if len(members) > 1 else None)


def heldout(model, train, seed, fraction=0.1):
    """Share of held-out training cells above novelty 1, with references from the rest."""
    import numpy as np

    from ml4ms.duplicates import duplicate_groups
    from ml4ms.model_selection import group_train_test_split

    keep, out = group_train_test_split(duplicate_groups(train, progress=False), fraction, random_state=seed)
    model.fit_novelty([train[k] for k in keep])
    novelty = model.novelty([train[k] for k in out])
    return len(out), float(np.mean(novelty > 1.0)), float(novelty.max())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=[os.path.join(HERE, "..", "models", "tio2")])
    parser.add_argument("--heldout", action="store_true", help="also score held-out training cells")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)

    from ml4ms.datasets import load
    from ml4ms.potentials import load_potential
    from ml4ms.potentials.committee import as_committee

    train, test = load("tio2", "train").records, load("tio2", "test").records
    for folder in args.models:
        r = summary(folder, train, test)
        print(f"{folder}: {r['above_1']} of {r['n_structures']} test cells above novelty 1; energy RMSE "
              f"{r['rmse_at_most_1']:.2f} meV/atom at novelty <= 1, {r['rmse_above_1']:.2f} above; "
              f"{r['rmse_less_novel']:.2f} outside the 5 % most novel")
        print(f"  the 5 largest errors (cells {r['largest_errors']}) rank {r['largest_errors_novelty_rank']} by "
              f"novelty, {r.get('largest_errors_spread_rank')} by spread; the 5 % most novel cells hold "
              f"{100 * r['top_share_of_mse']:.0f} % of the energy MSE, the 5 % of largest spread "
              f"{100 * r.get('spread_top_share_of_mse', float('nan')):.0f} %")
    if args.heldout:
        model = load_potential(args.models[0])
        model = as_committee(model)[0]
        for seed in args.seeds:
            n, share, top = heldout(model, train, seed)
            print(f"held-out training cells, seed {seed}: {100 * share:.1f} % of {n} above novelty 1 "
                  f"(largest {top:.2f})")


if __name__ == "__main__":
    main()
