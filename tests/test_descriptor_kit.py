"""The shared descriptor test kit: property checks every registered descriptor must pass.

Every name in :data:`ml4ms.descriptors.DESCRIPTORS` is run through every
check below; a check that does not apply to a descriptor is skipped with the
reason written in :data:`KIT_SETTINGS`. A new descriptor gets all of them by
being registered, and registering it without a kit entry fails
:func:`test_every_registered_descriptor_has_a_kit_entry`.

Checks (each ``test_*`` function below):

* shape: one 2-D, finite, float row per record, the same width for every
  record, as many feature names as columns, fit + transform = fit_transform;
* subset: transforming some records gives exactly their rows, in order;
* parallel: ``n_jobs=2`` gives the serial result (the parallel code path is
  forced even for the kit's few records);
* invariance: rotating (positions and cell), translating (with and without
  wrapping into the cell) and permuting the atoms leave the per-structure
  features unchanged; per-atom rows are unchanged or permuted alike;
* supercell: a 2x1x1 supercell of a periodic cell gives the same features
  (intensive settings) or twice them (``reduce="sum"``, raw counts);
* gradients: ``gradients(atoms, strain=True)`` agrees with central finite
  differences in positions and in a homogeneous strain;
* save/load: a fitted descriptor written by :func:`ml4ms.serialize.save_model`
  and read back gives identical features;
* unmodified: the records given (positions, numbers, cell, info; table rows)
  are the same after fit, transform and gradients.

Every descriptor passes the invariance checks at the default tolerance
(1e-8 of the largest feature); a looser one is set per descriptor with
``Kit(rtol=...)`` and a reason.
"""

import copy
import dataclasses

import numpy as np
import pytest

from ml4ms.descriptors import DESCRIPTORS, descriptor_class, make_descriptor

INPUTS = ("structures", "molecules", "rows")
CHECKS = ("shape", "subset", "parallel", "invariance", "supercell", "gradients", "save_load", "unmodified")
GEOMETRY = ("invariance", "supercell", "gradients")


@dataclasses.dataclass(frozen=True)
class Kit:
    """How the kit runs one registered descriptor.

    Attributes
    ----------
    params : dict
        Constructor keyword arguments that keep it small and fast.
    inputs : {"structures", "molecules", "rows"}
        The records it takes: the conftest fixture of that name.
    supercell : tuple of (dict, float)
        Parameter overrides and the factor a 2x1x1 supercell multiplies the
        features by (1: intensive, 2: extensive); empty when the check is skipped.
    skip : dict of str -> str
        Checks (from :data:`CHECKS`) that do not apply, with the reason.
    xfail : dict of str -> str
        Checks that fail because of a known bug, with the bug.
    rtol : float
        Relative tolerance of the invariance checks (of the largest feature).
    """

    params: dict
    inputs: str = "structures"
    supercell: tuple = ()
    skip: dict = dataclasses.field(default_factory=dict)
    xfail: dict = dataclasses.field(default_factory=dict)
    rtol: float = 1e-8


SOAP_SMALL = {"r_cut": 3.0, "n_max": 2, "l_max": 2, "sigma": 0.5}
#: per-atom descriptors: their mean (and per-species mean) is intensive, their sum extensive
REDUCED = (({"reduce": "mean"}, 1.0), ({"reduce": "species_mean"}, 1.0), ({"reduce": "sum"}, 2.0))
NO_GEOMETRY = "reads numbers from table columns; there is no geometry to move"
MOLECULES_ONLY = ("a global descriptor of molecules: periodic cells are refused, and a doubled "
                  "molecule is a different molecule (more atoms, new pairs)")

KIT_SETTINGS = {
    "columns": Kit({"columns": ["a", "b"]}, inputs="rows", skip=dict.fromkeys(GEOMETRY, NO_GEOMETRY)),
    "composition": Kit({"properties": ["electronegativity", "atomic_mass"]}, supercell=(({}, 1.0),),
                       skip={"parallel": "n_jobs is accepted for a uniform interface but unused: "
                                         "transform is one vectorised pass over all records"}),
    "concat": Kit({"parts": [{"name": "composition", "properties": ["covalent_radius"]},
                             {"name": "soap", **SOAP_SMALL}], "weights": [1.0, 0.5]},
                  supercell=(({}, 1.0),)),
    "ngrams": Kit({"normalize": "atom", "ionic_radii": {"H": 0.3}},
                  supercell=(({"normalize": "atom"}, 1.0), ({"normalize": "volume"}, 1.0), ({"normalize": None}, 2.0))),
    "soap": Kit({**SOAP_SMALL, "n_max": 3, "l_max": 4}, supercell=REDUCED),
    "acsf": Kit({"r_cut": 3.5, "g2_params": [(0.5, 0.0), (1.0, 1.5)], "g3_params": [1.0],
                 "g4_params": [(0.05, 1.0, 1.0), (0.05, 2.0, -1.0)], "g5_params": [(0.05, 1.0, 1.0)]},
                supercell=REDUCED),
    "chebyshev": Kit({"radial_cutoff": 3.5, "radial_order": 4, "angular_cutoff": 3.0, "angular_order": 3},
                     supercell=REDUCED),
    "coulomb_matrix": Kit({}, inputs="molecules", skip={"supercell": MOLECULES_ONLY}),
    "bag_of_bonds": Kit({}, inputs="molecules", skip={"supercell": MOLECULES_ONLY}),
    "local_kernel": Kit({"descriptor": {"name": "soap", **SOAP_SMALL}, "n_active": 8},
                        supercell=(({"reduce": "sum"}, 2.0), ({"reduce": "mean"}, 1.0))),
    "structures": Kit({}, skip=dict.fromkeys(("invariance", "supercell"),
                                             "the structure itself, written as numbers, not a description of it: "
                                             "the graph model that reads it is invariant (tests/test_mpnn.py)")),
}


# ----------------------------------------------------------------- helpers --
def kit(name):
    """The kit entry of a registered descriptor; fails the test if there is none.

    Parameters
    ----------
    name : str
        A key of :data:`ml4ms.descriptors.DESCRIPTORS`.

    Returns
    -------
    Kit
    """
    if name not in KIT_SETTINGS:
        pytest.fail(f"descriptor '{name}' is registered but has no entry in KIT_SETTINGS "
                    "(tests/test_descriptor_kit.py): add small, fast settings for it")
    return KIT_SETTINGS[name]


def automatic_skip(name, check):
    """Why ``check`` does not apply to descriptor ``name``, read from its class; None if it applies.

    Parameters
    ----------
    name : str
    check : str
        One of :data:`CHECKS`.

    Returns
    -------
    str or None
    """
    cls = descriptor_class(name)
    if check == "parallel" and "n_jobs" not in cls._get_param_names():
        return "has no n_jobs parameter"
    if check == "gradients" and not hasattr(cls, "gradients"):
        return "provides no gradients(atoms, strain=...)"
    return None


def cases(check):
    """Every registered descriptor name, marked skip or xfail (with the reason) where ``check`` says so.

    Parameters
    ----------
    check : str
        One of :data:`CHECKS`.

    Returns
    -------
    list of pytest.param
    """
    out = []
    for name in sorted(DESCRIPTORS):
        entry = KIT_SETTINGS.get(name)
        marks = []
        reason = (entry.skip.get(check) if entry else None) or automatic_skip(name, check)
        if reason:
            marks.append(pytest.mark.skip(reason=f"{name}: {reason}"))
        elif entry and check in entry.xfail:
            marks.append(pytest.mark.xfail(reason=f"{name}: {entry.xfail[check]}", strict=True))
        out.append(pytest.param(name, id=name, marks=marks))
    return out


def build(name, **overrides):
    """A fresh, unfitted descriptor with its kit settings (quiet: no progress bars).

    Parameters
    ----------
    name : str
    **overrides
        Parameters replacing the kit's.

    Returns
    -------
    sklearn transformer
    """
    descriptor = make_descriptor(name, **{**copy.deepcopy(kit(name).params), **overrides})
    if "progress" in descriptor.get_params():
        descriptor.set_params(progress=False)
    return descriptor


def records_for(name, request):
    """The records descriptor ``name`` takes (its kit ``inputs`` fixture), fresh.

    Parameters
    ----------
    name : str
    request : pytest.FixtureRequest

    Returns
    -------
    list
    """
    return request.getfixturevalue(kit(name).inputs)


def assert_same_features(actual, expected, rtol=1e-12):
    """Arrays equal to ``rtol`` of the largest expected value (elementwise tolerances fail on zeros).

    Parameters
    ----------
    actual, expected : array_like
    rtol : float
    """
    expected = np.asarray(expected)
    scale = np.abs(expected).max() if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def per_atom(descriptor, records):
    """Per-atom rows of a fitted descriptor that has ``transform_local``, else None.

    Returns
    -------
    ndarray or None
    """
    if not hasattr(descriptor, "transform_local"):
        return None
    return descriptor.transform_local(records)[0]


def random_rotation(seed):
    """A proper rotation matrix (det = +1) drawn from a seeded generator.

    Parameters
    ----------
    seed : int

    Returns
    -------
    ndarray, shape (3, 3)
    """
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def deformed(atoms, matrix):
    """A copy with every position and cell vector ``r`` mapped to ``matrix @ r``.

    Parameters
    ----------
    atoms : ase.Atoms
    matrix : ndarray, shape (3, 3)

    Returns
    -------
    ase.Atoms
    """
    out = atoms.copy()
    out.positions = atoms.positions @ np.asarray(matrix).T
    out.set_cell(atoms.cell.array @ np.asarray(matrix).T, scale_atoms=False)
    return out


def translated(atoms, wrap):
    """A copy moved by a fixed vector that is not a lattice vector; ``wrap``: then wrapped into the cell.

    Returns
    -------
    ase.Atoms
    """
    out = atoms.copy()
    out.positions += [0.37, -1.21, 2.53]
    if wrap:
        out.wrap()
    return out


def permutation(n, seed):
    """A seeded permutation of ``range(n)``, never the identity when n > 1.

    Returns
    -------
    ndarray of int
    """
    perm = np.random.default_rng(seed).permutation(n)
    return np.roll(perm, 1) if np.array_equal(perm, np.arange(n)) else perm


def snapshot(record):
    """Everything of a record a descriptor could change: arrays, cell, pbc and info of Atoms, or a row's items.

    Returns
    -------
    dict
    """
    if isinstance(record, dict):
        return {"row": copy.deepcopy(record)}
    return {"arrays": {k: v.copy() for k, v in record.arrays.items()}, "cell": record.cell.array.copy(),
            "pbc": record.pbc.copy(), "info": copy.deepcopy(record.info)}


def assert_same_snapshot(after, before):
    """Two :func:`snapshot` results are identical (same keys, bitwise equal arrays)."""
    assert after.keys() == before.keys()
    for key, value in before.items():
        if key == "arrays":
            assert after[key].keys() == value.keys()
            for name in value:
                np.testing.assert_array_equal(after[key][name], value[name], err_msg=name)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(after[key], value, err_msg=key)
        else:
            assert after[key] == value, key


def split_gradients(result):
    """``(d_positions, d_strain)`` of a ``gradients(atoms, strain=True)`` result, with or without features first.

    ACSF and Chebyshev return ``(features, d_positions, d_strain)``, SOAP
    returns ``(d_positions, d_strain)``.
    """
    return tuple(result[-2:])


# ------------------------------------------------------------------ checks --
def test_every_registered_descriptor_has_a_kit_entry():
    """Registering a descriptor without kit settings fails here; so does an entry for an unregistered one."""
    assert sorted(KIT_SETTINGS) == sorted(DESCRIPTORS), (
        "KIT_SETTINGS (tests/test_descriptor_kit.py) must have one entry per registered descriptor")
    for name, entry in KIT_SETTINGS.items():
        assert entry.inputs in INPUTS, name
        assert set(entry.skip) | set(entry.xfail) <= set(CHECKS), name
        assert bool(entry.supercell) != ("supercell" in entry.skip), (
            f"{name}: give supercell factors, or skip the supercell check with a reason")


@pytest.mark.parametrize("name", cases("shape"))
def test_one_fixed_width_row_per_record(name, request):
    """fit_transform: one finite float row per record, one name per column; the rows do not depend on the batch."""
    records = records_for(name, request)
    descriptor = build(name)
    X = descriptor.fit_transform(records)
    assert isinstance(X, np.ndarray) and X.dtype == np.float64
    assert X.ndim == 2 and X.shape[0] == len(records) and X.shape[1] > 0
    assert np.all(np.isfinite(X))
    assert np.abs(X).max() > 0
    names = descriptor.get_feature_names_out()
    assert len(names) == X.shape[1] and len(set(names)) == len(names)
    assert all(isinstance(n, str) for n in names)
    assert getattr(descriptor, "n_features_out_", X.shape[1]) == X.shape[1]
    one_at_a_time = [descriptor.transform([r]) for r in records]
    assert all(row.shape == (1, X.shape[1]) for row in one_at_a_time)
    assert_same_features(np.vstack(one_at_a_time), X)
    assert_same_features(build(name).fit(records).transform(records), X)


@pytest.mark.parametrize("name", cases("subset"))
def test_a_subset_gives_its_rows_in_order(name, request):
    """Transforming some records, reordered, gives exactly their rows of the whole, in that order."""
    records = records_for(name, request)
    descriptor = build(name).fit(records)
    X = descriptor.transform(records)
    order = [len(records) - 1, 0, 1]
    assert_same_features(descriptor.transform([records[k] for k in order]), X[order])


@pytest.fixture
def parallel_runs(monkeypatch):
    """Make the kit's few small records take the ``n_jobs`` code path; record every joblib run.

    Records are normally featurized in parallel only above a few hundred of
    them, or when batches of atoms fill up; both thresholds are set to their
    minimum here.

    Returns
    -------
    list of int
        The ``n_jobs`` of every ``joblib.Parallel`` call made.
    """
    import joblib

    from ml4ms.descriptors import base, soap

    runs = []

    class CountingParallel(joblib.Parallel):
        def __call__(self, iterable):
            runs.append(self.n_jobs)
            return super().__call__(iterable)

    monkeypatch.setattr(joblib, "Parallel", CountingParallel)
    monkeypatch.setattr(base, "PROGRESS_MIN", 1)
    monkeypatch.setattr(soap, "BATCH_ELEMENTS", 1)
    for name in DESCRIPTORS:
        cls = descriptor_class(name)
        if hasattr(cls, "_batch_atoms"):
            monkeypatch.setattr(cls, "_batch_atoms", 1)
    return runs


@pytest.mark.parametrize("name", cases("parallel"))
def test_parallel_equals_serial(name, request, parallel_runs):
    """n_jobs=2 really runs in parallel and gives the serial features (and per-atom rows)."""
    records = records_for(name, request)
    serial = build(name).fit(records)
    X = serial.transform(records)
    assert not parallel_runs
    parallel = build(name, n_jobs=2).fit(records)
    assert_same_features(parallel.transform(records), X)
    assert parallel_runs and set(parallel_runs) == {2}, "n_jobs=2 did not run anything in parallel"
    if hasattr(serial, "transform_local"):
        assert_same_features(per_atom(parallel, records), per_atom(serial, records))


def assert_unchanged(descriptor, records, moved, rtol):
    """The features of ``moved`` equal those of ``records``, per structure and, where there are, per atom.

    Parameters
    ----------
    descriptor : fitted descriptor
    records, moved : list of ase.Atoms
    rtol : float
    """
    assert_same_features(descriptor.transform(moved), descriptor.transform(records), rtol)
    if hasattr(descriptor, "transform_local"):
        assert_same_features(per_atom(descriptor, moved), per_atom(descriptor, records), rtol)


@pytest.mark.parametrize("name", cases("invariance"))
def test_rotation_leaves_features_unchanged(name, request):
    """A random rotation of positions and cell changes no feature."""
    records = records_for(name, request)
    rotation = random_rotation(seed=7)
    assert_unchanged(build(name).fit(records), records, [deformed(r, rotation) for r in records], kit(name).rtol)


@pytest.mark.parametrize("name", cases("invariance"))
@pytest.mark.parametrize("wrap", [False, True], ids=["unwrapped", "wrapped"])
def test_translation_leaves_features_unchanged(name, wrap, request):
    """Moving all atoms by one vector (out of the cell, or wrapped back into it) changes no feature."""
    records = records_for(name, request)
    assert_unchanged(build(name).fit(records), records, [translated(r, wrap) for r in records], kit(name).rtol)


@pytest.mark.parametrize("name", cases("invariance"))
def test_permuting_atoms_leaves_features_unchanged(name, request):
    """Reordering the atoms changes no per-structure feature and reorders the per-atom rows alike."""
    records = records_for(name, request)
    descriptor = build(name).fit(records)
    orders = [permutation(len(r), seed=k) for k, r in enumerate(records)]
    shuffled = [r[order] for r, order in zip(records, orders)]
    assert_same_features(descriptor.transform(shuffled), descriptor.transform(records), kit(name).rtol)
    if hasattr(descriptor, "transform_local"):
        rows = [per_atom(descriptor, [r])[order] for r, order in zip(records, orders)]
        assert_same_features(per_atom(descriptor, shuffled), np.concatenate(rows), kit(name).rtol)


@pytest.mark.parametrize("name", cases("supercell"))
def test_supercell_gives_the_same_or_twice_the_features(name, crystals):
    """A 2x1x1 supercell: intensive settings give the same features, extensive ones twice; atoms keep their rows."""
    doubled = [c.repeat((2, 1, 1)) for c in crystals]
    for overrides, factor in kit(name).supercell:
        descriptor = build(name, **overrides).fit(crystals)
        assert_same_features(descriptor.transform(doubled), factor * descriptor.transform(crystals), 1e-10)
        if hasattr(descriptor, "transform_local"):  # every atom keeps its environment
            rows = [np.tile(per_atom(descriptor, [c]), (2, 1)) for c in crystals]
            assert_same_features(per_atom(descriptor, doubled), np.concatenate(rows), 1e-10)


#: (atom, direction) and strain components checked by finite differences
POSITION_STEPS = [(0, 0), (1, 2), (-1, 1)]
STRAIN_STEPS = [(0, 0), (0, 1), (1, 0), (2, 1)]
STEP = 1e-5
#: the order of the ``structures`` fixture (tests/conftest.py)
STRUCTURE_NAMES = ("rutile", "rocksalt", "water", "triclinic")


def finite_difference(descriptor, atoms, move):
    """Central difference of the per-atom rows: ``(X(move(+STEP)) - X(move(-STEP))) / 2 STEP``.

    Parameters
    ----------
    descriptor : fitted descriptor with ``transform_local``
    atoms : ase.Atoms
    move : callable
        ``move(atoms, h)`` returns a displaced copy.

    Returns
    -------
    ndarray, shape (n_atoms, n_features)
    """
    plus = per_atom(descriptor, [move(atoms, STEP)])
    minus = per_atom(descriptor, [move(atoms, -STEP)])
    return (plus - minus) / (2 * STEP)


def displaced(atom, direction):
    """``move(atoms, h)`` for :func:`finite_difference`: one coordinate of one atom moved by h."""
    def move(atoms, h):
        out = atoms.copy()
        out.positions[atom, direction] += h
        return out
    return move


def strained(a, b):
    """``move(atoms, h)`` for :func:`finite_difference`: a homogeneous strain with ε[a, b] = h."""
    def move(atoms, h):
        eps = np.zeros((3, 3))
        eps[a, b] = h
        return deformed(atoms, np.eye(3) + eps)
    return move


@pytest.mark.parametrize("name", cases("gradients"))
@pytest.mark.parametrize("which", ["water", "triclinic"])
def test_gradients_match_finite_differences(name, which, structures):
    """Analytic derivatives in positions and strain equal central differences; a rigid shift has none."""
    descriptor = build(name).fit(structures)
    atoms = structures[STRUCTURE_NAMES.index(which)]
    n = len(atoms)
    result = descriptor.gradients(atoms, strain=True)
    d_pos, d_strain = split_gradients(result)
    F = descriptor.n_features_out_
    assert d_pos.shape == (n, F, n, 3) and d_strain.shape == (n, F, 3, 3)
    if len(result) == 3:
        assert_same_features(result[0], per_atom(descriptor, [atoms]))
    scale = np.abs(d_pos).max()
    assert scale > 1e-3
    for atom, direction in POSITION_STEPS:
        fd = finite_difference(descriptor, atoms, displaced(atom, direction))
        np.testing.assert_allclose(d_pos[:, :, atom, direction], fd, rtol=1e-6, atol=1e-7 * scale)
    for a, b in STRAIN_STEPS:
        fd = finite_difference(descriptor, atoms, strained(a, b))
        np.testing.assert_allclose(d_strain[:, :, a, b], fd, rtol=1e-6, atol=1e-7 * np.abs(d_strain).max())
    # moving every atom together changes nothing
    np.testing.assert_allclose(d_pos.sum(axis=2), 0.0, atol=1e-10 * scale)


@pytest.mark.parametrize("name", cases("save_load"))
def test_save_and_load_give_identical_features(name, request, tmp_path):
    """A fitted descriptor read back from a model folder has the same parameters and gives the same features."""
    from ml4ms.serialize import load_model, save_model

    records = records_for(name, request)
    descriptor = build(name).fit(records)
    save_model(tmp_path / "descriptor", descriptor, {"kit": name})
    loaded, metadata = load_model(tmp_path / "descriptor")
    assert type(loaded) is type(descriptor) and metadata["kit"] == name
    assert loaded.get_params(deep=False) == descriptor.get_params(deep=False)
    np.testing.assert_array_equal(loaded.transform(records), descriptor.transform(records))
    np.testing.assert_array_equal(loaded.get_feature_names_out(), descriptor.get_feature_names_out())
    if hasattr(descriptor, "transform_local"):
        np.testing.assert_array_equal(per_atom(loaded, records), per_atom(descriptor, records))


@pytest.mark.parametrize("name", cases("unmodified"))
def test_records_are_not_modified(name, request):
    """fit, transform, transform_local and gradients leave the records exactly as they were."""
    records = records_for(name, request)
    for k, r in enumerate(records):
        if not isinstance(r, dict):
            r.info["kit_id"] = k  # a descriptor must neither drop nor change info
    before = [snapshot(r) for r in records]
    descriptor = build(name)
    descriptor.fit_transform(records)
    descriptor.fit(records).transform(records)
    per_atom(descriptor, records)
    if hasattr(descriptor, "gradients"):
        descriptor.gradients(records[-1], strain=True)
    for after, expected in zip([snapshot(r) for r in records], before):
        assert_same_snapshot(after, expected)
