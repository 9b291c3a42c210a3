"""A table of elemental ("primary") properties for H to Rn (Z = 1..86).

Properties, their units and sources:

========================  =====  ==========================================================
name                      unit   source
========================  =====  ==========================================================
``atomic_number``         –      Z
``period``                –      row of the periodic table
``group``                 –      IUPAC group 1..18; La–Lu are put in group 3
``atomic_mass``           u      ``ase.data.atomic_masses`` (IUPAC standard atomic weights)
``electronegativity``     –      Pauling scale, as tabulated in the CRC Handbook of
                                 Chemistry and Physics; He, Ne and Ar have none (NaN)
``covalent_radius``       Å      ``ase.data.covalent_radii``: Cordero et al., Dalton Trans.
                                 2832 (2008)
``ionization_energy``     eV     first ionisation energy, NIST Atomic Spectra Database
                                 (Kramida et al.), rounded to 3 decimals
``electron_affinity``     eV     Andersen, Haugen & Hotop, J. Phys. Chem. Ref. Data 28,
                                 1511 (1999) and the CRC Handbook; 0 for anions that are
                                 not bound (noble gases, Be, N, Mg, Mn, Zn, Cd, Hg, Yb);
                                 the lanthanides Ce–Er, whose values are poorly known,
                                 get a rough 0.5 eV
``valence_electrons``     –      electrons outside the noble-gas core, without filled d
                                 or f shells: the group number for groups 1–12, group − 10
                                 for groups 13–18 (He: 2), 3 for La–Lu
``mendeleev_number``      –      position in a walk through the table group by group
                                 (1 → 18), top to bottom within a group, La–Lu after Y;
                                 a simple Mendeleev-like ordering in the spirit of Pettifor
                                 (Solid State Commun. 51, 31, 1984) and Villars et al.
                                 (J. Alloys Compd. 367, 167, 2004), not their values
========================  =====  ==========================================================

The numbers were typed in from these public sources for this module and
rounded; they are for machine-learning features, not reference data.

Examples
--------
>>> from ml4ms.descriptors.elements import element_property
>>> float(element_property("electronegativity")[8])  # O
3.44
>>> int(element_property("group")[31]), int(element_property("valence_electrons")[31])  # Ga
(13, 3)
"""

import numpy as np

#: Highest atomic number in the table.
Z_MAX = 86

#: Property names, in the order of :func:`property_table` columns.
PROPERTIES = (
    "atomic_number",
    "period",
    "group",
    "atomic_mass",
    "electronegativity",
    "covalent_radius",
    "ionization_energy",
    "electron_affinity",
    "valence_electrons",
    "mendeleev_number",
)

#: Units of the properties ("" for dimensionless).
UNITS = {
    "atomic_number": "",
    "period": "",
    "group": "",
    "atomic_mass": "u",
    "electronegativity": "",
    "covalent_radius": "Å",
    "ionization_energy": "eV",
    "electron_affinity": "eV",
    "valence_electrons": "",
    "mendeleev_number": "",
}

# Z symbol  Pauling-EN  first-IE(eV)  EA(eV)
_TABLE = """
1 H 2.20 13.598 0.754
2 He nan 24.587 0
3 Li 0.98 5.392 0.618
4 Be 1.57 9.323 0
5 B 2.04 8.298 0.277
6 C 2.55 11.260 1.262
7 N 3.04 14.534 0
8 O 3.44 13.618 1.461
9 F 3.98 17.423 3.401
10 Ne nan 21.565 0
11 Na 0.93 5.139 0.548
12 Mg 1.31 7.646 0
13 Al 1.61 5.986 0.433
14 Si 1.90 8.152 1.390
15 P 2.19 10.487 0.747
16 S 2.58 10.360 2.077
17 Cl 3.16 12.968 3.613
18 Ar nan 15.760 0
19 K 0.82 4.341 0.501
20 Ca 1.00 6.113 0.025
21 Sc 1.36 6.561 0.188
22 Ti 1.54 6.828 0.079
23 V 1.63 6.746 0.525
24 Cr 1.66 6.767 0.666
25 Mn 1.55 7.434 0
26 Fe 1.83 7.902 0.151
27 Co 1.88 7.881 0.662
28 Ni 1.91 7.640 1.156
29 Cu 1.90 7.726 1.236
30 Zn 1.65 9.394 0
31 Ga 1.81 5.999 0.430
32 Ge 2.01 7.899 1.233
33 As 2.18 9.789 0.804
34 Se 2.55 9.752 2.021
35 Br 2.96 11.814 3.364
36 Kr 3.00 14.000 0
37 Rb 0.82 4.177 0.486
38 Sr 0.95 5.695 0.048
39 Y 1.22 6.217 0.307
40 Zr 1.33 6.634 0.426
41 Nb 1.60 6.759 0.916
42 Mo 2.16 7.092 0.748
43 Tc 1.90 7.280 0.550
44 Ru 2.20 7.361 1.050
45 Rh 2.28 7.459 1.137
46 Pd 2.20 8.337 0.562
47 Ag 1.93 7.576 1.302
48 Cd 1.69 8.994 0
49 In 1.78 5.786 0.300
50 Sn 1.96 7.344 1.112
51 Sb 2.05 8.608 1.046
52 Te 2.10 9.010 1.971
53 I 2.66 10.451 3.059
54 Xe 2.60 12.130 0
55 Cs 0.79 3.894 0.472
56 Ba 0.89 5.212 0.145
57 La 1.10 5.577 0.470
58 Ce 1.12 5.539 0.5
59 Pr 1.13 5.473 0.5
60 Nd 1.14 5.525 0.5
61 Pm 1.13 5.582 0.5
62 Sm 1.17 5.644 0.5
63 Eu 1.20 5.670 0.5
64 Gd 1.20 6.150 0.5
65 Tb 1.10 5.864 0.5
66 Dy 1.22 5.939 0.5
67 Ho 1.23 6.022 0.5
68 Er 1.24 6.108 0.5
69 Tm 1.25 6.184 1.029
70 Yb 1.10 6.254 0
71 Lu 1.27 5.426 0.340
72 Hf 1.30 6.825 0.178
73 Ta 1.50 7.550 0.322
74 W 2.36 7.864 0.816
75 Re 1.90 7.834 0.150
76 Os 2.20 8.438 1.100
77 Ir 2.20 8.967 1.565
78 Pt 2.28 8.959 2.128
79 Au 2.54 9.226 2.309
80 Hg 2.00 10.438 0
81 Tl 1.62 6.108 0.320
82 Pb 2.33 7.417 0.360
83 Bi 2.02 7.286 0.942
84 Po 2.00 8.414 1.900
85 At 2.20 9.318 2.420
86 Rn 2.20 10.749 0
"""


def _period(z):
    for p, last in enumerate((2, 10, 18, 36, 54, 86), start=1):
        if z <= last:
            return p
    raise ValueError(z)


def _group(z):
    if z == 1:
        return 1
    if z == 2:
        return 18
    p = _period(z)
    start = {2: 3, 3: 11, 4: 19, 5: 37, 6: 55}[p]
    k = z - start
    if p in (2, 3):
        return k + 1 if k < 2 else k + 11
    if p in (4, 5):
        return k + 1
    if k < 2:
        return k + 1
    if z <= 71:  # La-Lu
        return 3
    return z - 72 + 4


def _valence(z):
    g = _group(z)
    if z == 2:
        return 2
    if 57 <= z <= 71:
        return 3
    return g if g <= 12 else g - 10


def _build():
    from ase.data import atomic_masses, chemical_symbols, covalent_radii

    table = np.full((Z_MAX + 1, len(PROPERTIES)), np.nan)
    col = {name: k for k, name in enumerate(PROPERTIES)}
    for line in _TABLE.strip().splitlines():
        z, sym, en, ie, ea = line.split()
        z = int(z)
        assert chemical_symbols[z] == sym, (z, sym)
        row = table[z]
        row[col["atomic_number"]] = z
        row[col["period"]] = _period(z)
        row[col["group"]] = _group(z)
        row[col["atomic_mass"]] = atomic_masses[z]
        row[col["electronegativity"]] = float(en)
        row[col["covalent_radius"]] = covalent_radii[z]
        row[col["ionization_energy"]] = float(ie)
        row[col["electron_affinity"]] = float(ea)
        row[col["valence_electrons"]] = _valence(z)
    order = sorted(range(1, Z_MAX + 1), key=lambda z: (_group(z), 0 if z < 57 or z > 71 else 1, z))
    for rank, z in enumerate(order, start=1):
        table[z, col["mendeleev_number"]] = rank
    table.setflags(write=False)
    return table


_CACHE = {}


def property_table(properties=None):
    """Array of element properties, rows indexed by Z (row 0 is NaN).

    Parameters
    ----------
    properties : list of str, optional
        Names from :data:`PROPERTIES` (all by default), in column order.

    Returns
    -------
    ndarray, shape (Z_MAX + 1, n_properties)
        Read-only when ``properties`` is None (the shared table), a copy otherwise.
    """
    if "table" not in _CACHE:
        _CACHE["table"] = _build()
    table = _CACHE["table"]
    if properties is None:
        return table
    names = [properties] if isinstance(properties, str) else list(properties)
    unknown = [p for p in names if p not in PROPERTIES]
    if unknown:
        from ..errors import InputError

        raise InputError(
            f"unknown element property '{unknown[0]}'", hint=f"choose from: {', '.join(PROPERTIES)}"
        )
    return table[:, [PROPERTIES.index(p) for p in names]]


def element_property(name):
    """One property for Z = 0..Z_MAX as a 1-D array (index by atomic number)."""
    return property_table([name])[:, 0]
