import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from ml4ms.neighbors import ase_neighbor_pairs, neighbor_pairs


def _cases():
    rng = np.random.default_rng(0)
    rutile = bulk("Ti", "hcp", a=2.95, c=4.68)  # cell smaller than the cutoffs
    yield rutile
    tri = Atoms("SiO2", scaled_positions=rng.random((3, 3)), cell=[[4.1, 0, 0], [1.3, 3.7, 0], [0.7, 1.1, 3.2]],
                pbc=True)
    yield tri
    unwrapped = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    unwrapped.positions += [[13.0, -7.5, 22.0]] * len(unwrapped)  # far outside the cell
    unwrapped.rattle(0.05, seed=1)
    yield unwrapped
    slab = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    slab.pbc = [True, True, False]
    slab.cell[2] = [0, 0, 0]
    yield slab
    mixed = bulk("Cu", "fcc", a=3.6)
    mixed.pbc = [True, False, True]  # periodic in two directions, full cell
    yield mixed
    yield molecule("C6H6")
    yield Atoms("Cu", cell=[2.0, 2.5, 3.0], pbc=True)  # its own images only


def _sorted(i, j, D):
    keys = np.lexsort(np.round(np.c_[i, j, D], 8).T[::-1])
    return i[keys], j[keys], D[keys]


@pytest.mark.parametrize("atoms", list(_cases()))
@pytest.mark.parametrize("cutoff", [2.5, 5.0, 7.0])
def test_same_pairs_as_ase(atoms, cutoff):
    i, j, D, S = neighbor_pairs(atoms, cutoff)
    ri, rj, rD, _ = ase_neighbor_pairs(atoms, cutoff)
    assert len(i) == len(ri)
    a, b = _sorted(i, j, D), _sorted(ri, rj, rD)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[2], b[2], atol=1e-9)
    # the shifts reproduce the vectors
    pos = atoms.positions
    np.testing.assert_allclose(pos[j] + S @ atoms.cell.array - pos[i], D, atol=1e-9)


def test_a_cutoff_beyond_the_memory_is_refused_before_the_list_is_built(monkeypatch):
    import warnings

    from ml4ms import neighbors
    from ml4ms.errors import InputError

    atoms = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)  # 8 atoms in 93.3 Å^3
    monkeypatch.setattr(neighbors, "available_memory", lambda: 1 << 20)  # 1 MiB
    with pytest.raises(InputError, match="about 2.3e.04 neighbour pairs .* lower the cutoff"):
        neighbors.neighbor_pairs(atoms, 20.0)  # 8 * 8/93.3 * 4/3 pi 20^3 = 23,000 pairs: 2.6 MiB
    with pytest.warns(UserWarning, match="a large part of"):
        neighbors.neighbor_pairs(atoms, 12.0)  # 5,000 pairs: 0.57 MiB, over a quarter
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        neighbors.neighbor_pairs(atoms, 6.0)  # 620 pairs: 73 kB
    estimate = neighbors.estimated_pairs(atoms, 6.0)
    true = len(neighbors.neighbor_pairs(atoms, 6.0)[0])
    assert 0.7 < estimate / true < 1.3
