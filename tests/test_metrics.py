"""Metrics against scikit-learn's implementations."""

import numpy as np
import pytest
from sklearn import metrics as skm

from ml4ms.errors import InputError
from ml4ms.metrics import get_metric, mae, max_error, r2, regression_metrics, rmse, rmsle


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 3, size=(50, 2))
    pred = y + rng.normal(0, 0.3, size=y.shape)
    pred[0, 0] = -0.2  # negative prediction: rmsle clips it at 0
    return y, pred


def test_against_sklearn_per_column(data):
    y, pred = data
    for col in range(2):
        t, p = y[:, col], pred[:, col]
        assert mae(t, p) == pytest.approx(skm.mean_absolute_error(t, p))
        assert rmse(t, p) == pytest.approx(np.sqrt(skm.mean_squared_error(t, p)))
        assert rmsle(t, p) == pytest.approx(np.sqrt(skm.mean_squared_log_error(t, np.clip(p, 0, None))))
        assert max_error(t, p) == pytest.approx(skm.max_error(t, p))
        assert r2(t, p) == pytest.approx(skm.r2_score(t, p))
    np.testing.assert_allclose(mae(y, pred), skm.mean_absolute_error(y, pred, multioutput="raw_values"))
    np.testing.assert_allclose(r2(y, pred), skm.r2_score(y, pred, multioutput="raw_values"))
    np.testing.assert_allclose(
        rmse(y, pred), np.sqrt(skm.mean_squared_error(y, pred, multioutput="raw_values")))


def test_rmsle_formula_by_hand():
    # Kaggle: sqrt(mean((log1p(pred) - log1p(true))^2)), pred clipped at 0
    t = np.array([0.0, 1.0, 3.0])
    p = np.array([-1.0, 1.0, 1.0])
    expected = np.sqrt(np.mean([(0 - 0) ** 2, 0.0, (np.log(2) - np.log(4)) ** 2]))
    assert rmsle(t, p) == pytest.approx(expected)


def test_regression_metrics_dict(data):
    y, pred = data
    scores = regression_metrics(y, pred)
    assert set(scores) == {"mae", "rmse", "rmsle", "max_error", "r2"}
    assert scores["mae"].shape == (2,)
    one = regression_metrics(y[:, 0], pred[:, 0])
    assert isinstance(one["rmse"], float)
    assert one["rmse"] == pytest.approx(scores["rmse"][0])
    # rmsle undefined for targets <= -1: left out rather than failing
    assert "rmsle" not in regression_metrics([-2.0, 1.0], [-2.0, 1.5])


def test_constant_target_r2():
    assert r2([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert r2([1.0, 1.0], [1.0, 2.0]) == 0.0


def test_bad_input():
    with pytest.raises(InputError, match="shape"):
        mae([1, 2, 3], [1, 2])
    with pytest.raises(InputError, match="NaN"):
        rmse([1, 2], [1, np.nan])
    with pytest.raises(InputError, match="unknown metric"):
        get_metric("accuracy")
    with pytest.raises(InputError, match="> -1"):
        rmsle([-1.5], [0.0])


def test_r2_is_left_out_where_the_labels_have_no_spread():
    from ml4ms.metrics import undefined_reason

    same = [3.4387] * 6  # equal labels: their mean is not exactly 3.4387, and r2 came out as -2e30
    assert undefined_reason("r2", same) == "r2 needs at least 2 labels that differ by more than rounding"
    assert undefined_reason("r2", [1.0]) is not None and undefined_reason("r2", [1.0, 1.0 + 1e-6]) is None
    assert "r2" not in regression_metrics(same, [3.0] * 6) and "mae" in regression_metrics(same, [3.0] * 6)
    assert "r2" not in regression_metrics([1.0], [0.5])
    assert "r2" in regression_metrics([1.0, 2.0], [1.0, 2.5])
