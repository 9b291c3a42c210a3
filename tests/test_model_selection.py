"""Group-aware splits, repeated cross-validation and learning curves."""

import re

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, cross_val_score

from ml4ms.errors import InputError
from ml4ms.model_selection import (
    GroupedKFold,
    RepeatedGroupedKFold,
    cross_validate,
    format_summary,
    group_train_test_split,
    learning_curve,
)


@pytest.fixture
def groups():
    rng = np.random.default_rng(0)
    # 60 samples: many singletons plus some duplicate groups of size 2-5
    sizes = [5, 4, 3, 3, 2, 2, 2, 2] + [1] * 37
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return rng.permutation(labels)


def _check_folds(splits, groups):
    seen = []
    for train, test in splits:
        assert len(np.intersect1d(train, test)) == 0
        assert len(train) + len(test) == len(groups)
        assert not set(groups[train]) & set(groups[test]), "a group is split across train and test"
        seen.append(test)
    return seen


def test_grouped_kfold_keeps_groups_and_covers_all(groups):
    cv = GroupedKFold(n_splits=5, random_state=0)
    tests = _check_folds(cv.split(np.zeros(len(groups)), groups=groups), groups)
    assert len(tests) == cv.get_n_splits() == 5
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(len(groups)))
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_reproducible_and_seed_dependent(groups):
    X = np.zeros(len(groups))

    def folds(seed):
        return [t.tolist() for _, t in GroupedKFold(5, random_state=seed).split(X, groups=groups)]

    assert folds(3) == folds(3)
    assert folds(3) != folds(4)
    no_shuffle = GroupedKFold(5, shuffle=False)
    assert [t.tolist() for _, t in no_shuffle.split(X, groups=groups)] == \
        [t.tolist() for _, t in no_shuffle.split(X, groups=groups)]


def test_repeated(groups):
    cv = RepeatedGroupedKFold(n_splits=3, n_repeats=4, random_state=7)
    splits = list(cv.split(np.zeros(len(groups)), groups=groups))
    assert len(splits) == cv.get_n_splits() == 12
    _check_folds(splits, groups)
    first = [t.tolist() for _, t in splits[:3]]
    second = [t.tolist() for _, t in splits[3:6]]
    assert first != second
    again = list(RepeatedGroupedKFold(n_splits=3, n_repeats=4, random_state=7).split(
        np.zeros(len(groups)), groups=groups))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))


def test_group_train_test_split(groups):
    for seed in range(5):
        train, test = group_train_test_split(groups, 0.25, random_state=seed)
        _check_folds([(train, test)], groups)
        assert abs(len(test) - 15) <= 3


def test_sklearn_compatibility(groups):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(len(groups), 3))
    y = X @ [1.0, 2.0, 3.0]
    scores = cross_val_score(Ridge(), X, y, groups=groups, cv=GroupedKFold(4, random_state=0))
    assert len(scores) == 4
    search = GridSearchCV(Ridge(), {"alpha": [1e-3, 10.0]}, cv=RepeatedGroupedKFold(3, n_repeats=2, random_state=0))
    search.fit(X, y, groups=groups)
    assert search.best_params_ == {"alpha": 1e-3}
    assert "GroupedKFold(n_splits=4" in repr(GroupedKFold(4))


def test_errors(groups):
    with pytest.raises(InputError, match="groups are required"):
        list(GroupedKFold(2).split(np.zeros(3)))
    with pytest.raises(InputError, match="3 folds from 2 groups"):
        list(GroupedKFold(3).split(np.zeros(3), groups=[0, 0, 1]))
    with pytest.raises(InputError, match="groups for"):
        list(GroupedKFold(2).split(np.zeros(3), groups=[0, 1]))
    with pytest.raises(InputError, match="n_splits"):
        GroupedKFold(1).get_n_splits()
    with pytest.raises(InputError, match="unknown metric"):
        cross_validate(DummyRegressor(), np.zeros((6, 1)), np.zeros(6), np.arange(6), metrics=("acc",),
                       progress=False)


def test_cross_validate_dummy_by_hand(groups):
    rng = np.random.default_rng(2)
    y = rng.normal(size=(len(groups), 2)) + [0.0, 5.0]
    X = np.zeros((len(groups), 1))
    out = cross_validate(DummyRegressor(), X, y, groups, n_splits=4, seeds=(0, 1),
                         metrics=("mae", "rmse"), target_names=["a", "b"], progress=False)
    assert len(out["folds"]) == 2 * 4 * 2
    for t, name in enumerate(["a", "b"]):
        maes, rmses = [], []
        for seed in (0, 1):
            for train, test in GroupedKFold(4, random_state=seed).split(X, groups=groups):
                assert not set(groups[train]) & set(groups[test])
                err = y[test, t] - y[train, t].mean()
                maes.append(np.mean(np.abs(err)))
                rmses.append(np.sqrt(np.mean(err**2)))
        assert out["summary"][name]["mae"]["mean"] == pytest.approx(np.mean(maes))
        assert out["summary"][name]["mae"]["std"] == pytest.approx(np.std(maes, ddof=1))
        assert out["summary"][name]["rmse"]["mean"] == pytest.approx(np.mean(rmses))
    assert out["predictions"].shape == (2, len(groups), 2)
    assert not np.isnan(out["predictions"]).any()  # every sample predicted once per seed
    assert "a  mae" in format_summary(out)


class _MeanPerAtom(RegressorMixin, BaseEstimator):
    """Predicts mean(y / n_atoms) * n_atoms from a list of dict records."""

    def fit(self, X, y):
        n = np.array([r["n_atoms"] for r in X], dtype=float)
        self.per_atom_ = float(np.mean(np.asarray(y) / n))
        return self

    def predict(self, X):
        return self.per_atom_ * np.array([r["n_atoms"] for r in X], dtype=float)


def test_cross_validate_on_records():
    records = [{"n_atoms": n} for n in range(1, 21)]
    y = 2.5 * np.arange(1, 21)
    out = cross_validate(_MeanPerAtom(), records, y, np.arange(20), n_splits=5, seeds=(0,), progress=False)
    assert out["summary"]["y"]["mae"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert out["summary"]["y"]["r2"]["mean"] == pytest.approx(1.0)


def test_learning_curve(groups):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(len(groups), 4))
    y = X @ [1.0, -1.0, 0.5, 2.0] + rng.normal(0, 0.1, size=len(groups))
    out = learning_curve(Ridge(alpha=1e-6), X, y, groups, train_sizes=(5, 0.5, 1.0), seeds=(0, 1, 2),
                         progress=False)
    assert out["scores"]["y"].shape == (3, 3)
    assert out["train_sizes"][0] == 5
    assert out["mean"]["y"][-1] < out["mean"]["y"][0]  # more data, smaller error
    assert np.all(out["std"]["y"] >= 0)
    again = learning_curve(Ridge(alpha=1e-6), X, y, groups, train_sizes=(5, 0.5, 1.0), seeds=(0, 1, 2),
                           progress=False)
    np.testing.assert_array_equal(out["scores"]["y"], again["scores"]["y"])

    pools = []

    def first(pool, n, rng):
        pools.append(np.asarray(pool))
        return np.sort(pool)[:n]

    learning_curve(Ridge(), X, y, groups, train_sizes=(10,), seeds=(0,), selection=first, progress=False)
    test = np.setdiff1d(np.arange(len(groups)), pools[0])
    assert not set(groups[pools[0]]) & set(groups[test])


def test_repeated_group_shuffle_split_keeps_groups_and_is_reproducible():
    from ml4ms.model_selection import RepeatedGroupShuffleSplit

    groups = np.repeat(np.arange(30), [1, 2, 3] * 10)
    cv = RepeatedGroupShuffleSplit(n_repeats=4, test_fraction=0.2, random_state=3)
    splits = list(cv.split(np.zeros(len(groups)), groups=groups))
    assert len(splits) == cv.get_n_splits() == 4
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == len(groups)
        assert abs(len(test) - 0.2 * len(groups)) <= 3
    again = list(RepeatedGroupShuffleSplit(n_repeats=4, test_fraction=0.2, random_state=3).split(
        np.zeros(len(groups)), groups=groups))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))
    assert not np.array_equal(splits[0][1], splits[1][1])


def test_learning_curve_sizes_and_seeds_are_checked_before_any_fit(groups):
    X, y = np.zeros((len(groups), 1)), np.arange(len(groups), dtype=float)

    class _NeverFit(DummyRegressor):
        def fit(self, X, y):
            raise AssertionError("fitted before the sizes were checked")

    for kwargs, needle in [({"train_sizes": (1.5,)}, "train_sizes must be a non-empty list of distinct values, each "
                                                     "a fraction in (0, 1] or a whole number > 1, got [1.5]"),
                           ({"train_sizes": (0.5, 0.5)}, "train_sizes must be"),
                           ({"train_sizes": ()}, "train_sizes must be a non-empty list"),
                           ({"seeds": (0, 0)}, "seeds must be a non-empty list of distinct values"),
                           ({"train_sizes": (5, 100)}, "train size 100 exceeds the training pool of ")]:
        with pytest.raises(InputError, match=re.escape(needle)):
            learning_curve(_NeverFit(), X, y, groups, **{"train_sizes": (5,), **kwargs}, progress=False)


def test_cross_validate_seeds_and_folds_without_a_defined_r2():
    X, y = np.zeros((6, 1)), np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    with pytest.raises(InputError, match="seeds must be a non-empty list"):
        cross_validate(DummyRegressor(), X, y, np.arange(6), n_splits=2, seeds=[], progress=False)
    out = cross_validate(DummyRegressor(), X, y, np.arange(6), n_splits=6, seeds=(0,), progress=False)
    assert "r2" not in out["summary"]["y"] and "mae" in out["summary"]["y"]  # one label per test fold
    assert out["omitted"]["y"]["r2"].endswith("and no test fold has them")
