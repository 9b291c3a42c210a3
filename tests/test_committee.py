"""The calibrated committee: finite uncertainties, a calibration that works, groups, saving."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from ml4ms.errors import InputError
from ml4ms.models.committee import CommitteeRegressor, fit_alpha_squared, subsample_groups
from ml4ms.models.kernel import KernelRidge

KRR = dict(kernel="gaussian", alpha=1e-3, gamma=0.5)


def _heteroscedastic(n, rng):
    X = rng.uniform(-3, 3, size=(n, 2))
    noise = 0.05 + 0.25 * np.abs(X[:, 0]) / 3
    y = np.sin(1.5 * X[:, 0]) + 0.5 * np.cos(X[:, 1]) + noise * rng.normal(size=n)
    return X, y


def test_finite_std_and_mean_of_members():
    rng = np.random.default_rng(0)
    X, y = _heteroscedastic(120, rng)
    model = CommitteeRegressor(regressor=KernelRidge(**KRR), n_models=5, random_state=0).fit(X, y)
    mean, std = model.predict(X[:20], return_std=True)
    assert mean.shape == std.shape == (20,)
    assert np.all(np.isfinite(std)) and np.all(std > 0)
    members = model.predict_members(X[:20])
    assert members.shape == (5, 20)
    assert np.allclose(mean, members.mean(axis=0))
    assert np.allclose(std, model.std_scale_[0] * members.std(axis=0, ddof=1))
    assert np.allclose(model.predict(X[:20]), mean)


@pytest.mark.parametrize("seed", [0, 1])
def test_calibration_gives_honest_coverage_on_held_out_data(seed):
    rng = np.random.default_rng(seed)
    X, y = _heteroscedastic(300, rng)
    Xt, yt = _heteroscedastic(2000, rng)
    cal = CommitteeRegressor(regressor=KernelRidge(**KRR), random_state=seed).fit(X, y)
    raw = CommitteeRegressor(regressor=KernelRidge(**KRR), random_state=seed, calibrate=False).fit(X, y)
    mu, sd = cal.predict(Xt, return_std=True)
    z = (yt - mu) / sd
    assert 0.6 <= np.mean(np.abs(z) <= 1) <= 0.76
    assert 0.6 <= np.mean(z**2) <= 1.8
    mu0, sd0 = raw.predict(Xt, return_std=True)
    assert np.allclose(mu, mu0)  # calibration changes only the spread
    assert np.mean(np.abs(yt - mu0) <= sd0) < 0.4  # the raw spread is far too small here
    assert cal.n_calibration_ > 100 and cal.alpha_squared_[0] > 1


def test_alpha_squared_recovers_known_scale():
    rng = np.random.default_rng(3)
    m = rng.integers(2, 7, size=3000)
    s2 = rng.chisquare(m - 1) / (m - 1)
    t = (2.0 + 1.0 / m) * rng.chisquare(1, size=3000) / s2
    assert fit_alpha_squared(t, m) == pytest.approx(2.0, rel=0.15)
    # closed form of Musil et al. for one committee size agrees with the likelihood
    m6 = np.full(3000, 6)
    t6 = (2.0 + 1 / 6) * rng.chisquare(1, size=3000) / (rng.chisquare(5, size=3000) / 5)
    closed = -1 / 6 + (6 - 3) / (6 - 1) * t6.mean()
    assert fit_alpha_squared(t6, m6) == pytest.approx(closed, rel=0.2)


def test_groups_stay_whole_and_reach_members():
    groups = np.repeat(np.arange(30), 3)
    idx = subsample_groups(groups, 0.8, np.random.RandomState(0))
    kept = set(groups[idx])
    assert all(np.sum(groups[idx] == g) == 3 for g in kept)
    assert abs(len(idx) - 72) <= 3

    seen = []

    class Spy(KernelRidge):
        def fit(self, X, y, groups=None):
            seen.append(None if groups is None else np.asarray(groups).copy())
            return super().fit(X, y, groups=groups)

    rng = np.random.default_rng(1)
    X, y = _heteroscedastic(90, rng)
    CommitteeRegressor(regressor=Spy(**KRR), n_models=3, random_state=0).fit(X, y, groups=groups)
    assert len(seen) == 4 and len(seen[0]) == 90  # one fit on everything (tune_once), then the members
    assert all(g is not None and len(g) % 3 == 0 and len(g) < 90 for g in seen[1:])
    # a member without groups in fit still works
    CommitteeRegressor(regressor=Ridge(), n_models=3, random_state=0).fit(X, y, groups=groups)


def test_multi_output_recipe_spec_and_saving(tmp_path):
    from ml4ms.serialize import load_model, save_model

    rng = np.random.default_rng(2)
    X, y = _heteroscedastic(100, rng)
    Y = np.column_stack([y, 2 * y + 0.1 * rng.normal(size=100)])
    model = CommitteeRegressor(regressor={"name": "krr", **KRR}, n_models=4, random_state=0)
    assert model._per_output_search
    model.fit(X, Y)
    mean, std = model.predict(X[:5], return_std=True)
    assert mean.shape == std.shape == (5, 2) and model.std_scale_.shape == (2,)
    save_model(tmp_path / "m", model)
    loaded, _ = load_model(tmp_path / "m")
    m2, s2 = loaded.predict(X[:5], return_std=True)
    assert np.allclose(m2, mean) and np.allclose(s2, std)


def test_tune_once_gives_members_the_chosen_hyperparameters():
    rng = np.random.default_rng(4)
    X, y = _heteroscedastic(120, rng)
    grid = KernelRidge(kernel="gaussian", alpha=[1e-4, 1e-3, 1e-2, 1e-1], gamma=[0.1, 0.5, 2.0])
    model = CommitteeRegressor(regressor=grid, n_models=3, random_state=0).fit(X, y)
    full = KernelRidge(kernel="gaussian", alpha=[1e-4, 1e-3, 1e-2, 1e-1], gamma=[0.1, 0.5, 2.0]).fit(X, y)
    assert model.member_params_ == full.best_params_
    for member in model.estimators_:
        assert member.alpha == full.best_params_["alpha"] and member.gamma == full.best_params_["gamma"]
    free = CommitteeRegressor(regressor=grid, n_models=3, random_state=0, tune_once=False).fit(X, y)
    assert free.member_params_ is None and free.estimators_[0].alpha == grid.alpha


def test_bad_parameters():
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20.0)
    with pytest.raises(InputError, match="n_models"):
        CommitteeRegressor(n_models=1).fit(X, y)
    with pytest.raises(InputError, match="subsample"):
        CommitteeRegressor(subsample=1.0).fit(X, y)
    with pytest.raises(InputError, match="name"):
        CommitteeRegressor(regressor={"kernel": "gaussian"}).fit(X, y)
    with pytest.warns(UserWarning, match="not calibrated"):
        model = CommitteeRegressor(regressor=Ridge(), n_models=2, random_state=0).fit(X, y)
    assert model.std_scale_[0] == 1.0


def test_in_a_recipe_through_the_workflow(tmp_path):
    """A recipe's [model] can name the committee with the member as a nested table."""
    from ml4ms.datasets import load
    from ml4ms.recipe import recipe_from_dict
    from ml4ms.serialize import load_model, save_model
    from ml4ms.workflow import fit, predict

    recipe = recipe_from_dict({
        "targets": ["dE_RS_minus_ZB_eV_per_atom"],
        "descriptor": {"name": "columns", "columns": ["IP_A_eV", "IP_B_eV", "r_s_A_ang", "r_p_A_ang", "r_p_B_ang"]},
        "model": {"name": "committee", "n_models": 4, "random_state": 0,
                  "regressor": {"name": "krr", "kernel": "gaussian", "alpha": [1e-3, 1e-2], "gamma": 0.2}},
    })
    data = load("octet")
    model, meta = fit(recipe, data, progress=False)
    assert meta["has_uncertainty"]
    save_model(tmp_path / "m", model, meta)
    loaded, meta2 = load_model(tmp_path / "m")
    rows = predict(loaded, meta2, data, progress=False)
    std = np.array([r["dE_RS_minus_ZB_eV_per_atom_std"] for r in rows])
    assert len(rows) == 82 and np.all(np.isfinite(std)) and np.all(std > 0)


@parametrize_with_checks([CommitteeRegressor(regressor=Ridge(), n_models=3, random_state=0)])
def test_sklearn_contract(estimator, check):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny check data: too few samples to calibrate
        check(estimator)
