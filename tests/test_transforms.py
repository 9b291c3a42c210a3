import numpy as np
import pytest
from ase import Atoms

from ml4ms.errors import InputError
from ml4ms.transforms import TargetTransform


def _records():
    return [Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"base": 1.0}),
            Atoms("H4", positions=[[0, 0, 0], [0, 0, 1.0], [0, 1.0, 0], [1.0, 0, 0]], info={"base": -2.0})]


@pytest.mark.parametrize("kw", [dict(), dict(function="log1p"), dict(per_atom=True),
                                dict(baseline="base"), dict(function="log1p", per_atom=True, baseline="base")])
def test_round_trip(kw):
    recs = _records()
    y = np.array([3.0, 6.0])
    t = TargetTransform(**kw)
    np.testing.assert_allclose(t.inverse(t.forward(y, recs), recs), y)


def test_forward_values():
    recs = _records()
    t = TargetTransform(per_atom=True, baseline="base")
    np.testing.assert_allclose(t.forward(np.array([3.0, 6.0]), recs), [(3 - 1) / 2, (6 + 2) / 4])


def test_log1p_clips_at_zero_and_maps_std():
    t = TargetTransform(function="log1p")
    y, s = t.inverse(np.array([-0.5, np.log(3.0)]), [{}, {}], std=np.array([0.1, 0.1]))
    assert y[0] == 0.0 and np.isclose(y[1], 2.0)
    assert np.isclose(s[1], 0.3)  # d/dz expm1(z) = 1 + y


def test_errors():
    with pytest.raises(InputError, match="unknown target transform"):
        TargetTransform(function="sqrt")
    with pytest.raises(InputError, match="> -1"):
        TargetTransform(function="log1p").forward(np.array([-2.0]), [{}])
    with pytest.raises(InputError, match="'nope' is missing"):
        TargetTransform(baseline="nope").forward(np.array([1.0, 2.0]), _records())
