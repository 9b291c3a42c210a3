"""The bad-input matrix: every subcommand, every shared kind of bad input.

Each command is registered once in :data:`COMMANDS` with a good command line
(its placeholders are filled from small files made here). The matrix derives
the bad variants from that line and from the parser itself:

- the data: a missing file, an unreadable file, an empty structure, NaN
  positions, overlapping atoms, NaN labels (commands that learn or score), an
  element the model does not know (commands that apply a model);
- models: a missing folder, an edited file, a model of the other kind;
- configs: an unknown table, invalid TOML;
- outputs declared with :func:`ml4ms.cli.options.add_output`: an existing
  folder where a file is expected, a place that cannot be written, the output
  equal to the input, a wrong suffix;
- every number option found in the parser: zero, negative, non-finite and
  non-numeric values as its type refuses them;
- an unknown option.

Every case must end with exit code 2, one line on stderr that starts with
``ml4ms: error:``, no traceback, and nothing written. A new subcommand that is
not registered here fails :func:`test_every_subcommand_is_registered`.
"""

import argparse
import json
import os
import shutil

import ase.io
import numpy as np
import pytest
from ase import Atoms

from ml4ms.cli import build_parser, main
from ml4ms.cli import options

RECIPE = """
targets = ["y"]
[descriptor]
name = "composition"
[model]
name = "krr"
kernel = "gaussian"
[cv]
n_splits = 2
seeds = [0]
[learning_curve]
train_sizes = [0.5, 1.0]
"""

POTENTIAL = """
[model]
hidden = [4]
[descriptor]
radial_order = 2
angular_order = 1
radial_cutoff = 4.0
angular_cutoff = 3.0
[training]
epochs = 1
batch_size = 4
valid_fraction = 0.25
novelty_references = 20
"""

SISSO = """
[data]
path = "octet"
target = "dE_RS_minus_ZB_eV_per_atom"
[features]
IP_A = { column = "IP_A_eV", unit = "eV" }
IP_B = { column = "IP_B_eV", unit = "eV" }
r_s_A = { column = "r_s_A_ang", unit = "angstrom" }
[sisso]
operators = ["+", "-", "*"]
rung = 1
n_sis = 5
max_dim = 1
"""

ACTIVE = """
[oracle]
calculator = "ase.calculators.emt:EMT"
target = "energy_per_atom"
[pool.generate]
elements = ["Cu", "Au"]
n = 20
repeat = [1, 1, 1]
[start]
n = 3
[recipe]
descriptor = { name = "composition" }
model = { name = "gp" }
[strategy]
name = "uncertainty"
batch = 2
[loop]
budget = 5
"""

#: command -> its good command line; placeholders in capitals are files made by the ``world`` fixture:
#: DATA (labelled structures), MODEL (a property model), POT (a potential), OLDPOT (a potential in the format of
#: earlier versions), CONFIG, POTCONFIG, SISSOCONFIG,
#: ACTIVECONFIG (an active-learning run), DB (the label database of that run),
#: and outputs OUT.<suffix> (a file) or OUTDIR (a folder) in a folder of their own
COMMANDS = {
    "datasets": ["datasets"],
    "duplicates": ["duplicates", "DATA", "--json", "OUT.json"],
    "fit": ["fit", "DATA", "--config", "CONFIG", "-o", "OUTDIR"],
    "predict": ["predict", "MODEL", "DATA", "-o", "OUT.csv"],
    "screen": ["screen", "MODEL", "DATA", "--where", "y > -1e9", "-o", "OUT.csv"],
    "evaluate": ["evaluate", "MODEL", "DATA", "--json", "OUT.json", "--plot", "OUT.png"],
    "cv": ["cv", "DATA", "--config", "CONFIG", "--n-splits", "2", "--seeds", "0", "--json", "OUT.json",
           "--plot", "OUT.png"],
    "demo": ["demo", "--quick", "--quiet", "-o", "OUTDIR"],
    "learning-curve": ["learning-curve", "DATA", "--config", "CONFIG", "--seeds", "0", "--sizes", "0.5", "1.0",
                       "--json", "OUT.json", "-o", "OUT.png"],
    "featurize": ["featurize", "DATA", "--descriptor", "composition", "-o", "OUT.npz"],
    "select": ["select", "DATA", "--descriptor", "chebyshev", "-n", "2", "-o", "OUT.txt"],
    "map": ["map", "DATA", "--descriptor", "chebyshev", "--color", "y", "-o", "OUT.png", "--csv", "OUT.csv"],
    "sisso": ["sisso", "--config", "SISSOCONFIG", "--json", "OUT.json", "-o", "OUTDIR"],
    "potential fit": ["potential", "fit", "DATA", "--config", "POTCONFIG", "-o", "OUTDIR"],
    "potential eval": ["potential", "eval", "POT", "DATA", "--json", "OUT.json", "--plot", "OUT.png"],
    "potential fit-novelty": ["potential", "fit-novelty", "POT", "DATA", "-n", "10"],
    "potential select": ["potential", "select", "POT", "DATA", "-n", "2", "-o", "OUT.extxyz", "--json", "OUT.json"],
    "potential check": ["potential", "check", "DATA", "--json", "OUT.json"],
    "potential export": ["potential", "export", "POT", "-o", "OUT.pt"],
    "potential convert": ["potential", "convert", "OLDPOT", "-o", "OUTDIR"],
    "md": ["md", "POT", "DATA", "--steps", "2", "--interval", "1", "-o", "OUT.extxyz", "--json", "OUT.json"],
    "active run": ["active", "run", "ACTIVECONFIG", "--db", "OUT.db"],
    "active status": ["active", "status", "DB", "--json", "OUT.json"],
    "active report": ["active", "report", "DB", "-o", "OUTDIR"],
}

#: commands whose DATA must carry labels, and commands that apply a trained model to DATA
LABELLED = {"fit", "evaluate", "cv", "learning-curve", "potential fit", "potential eval", "potential check"}
APPLY_MODEL = {"predict", "screen", "evaluate", "potential eval", "potential select", "md"}
#: bad inputs of one command: case -> arguments appended to its good command line (later options win);
#: ``SLOT=name`` puts the bad input ``name`` in the place of the good line's SLOT, ``BAD:name`` appends it
EXTRA_CASES = {
    "duplicates": {"cutoff beyond memory": ["--cutoff", "1000", "--quiet"],
                   "--scheduler not an address": ["--scheduler", "localhost"]},
    "fit": {"-o holds a potential": ["-o", "POT"], "--scheduler not an address": ["--scheduler", "host"]},
    "evaluate": {"--scheduler not an address": ["--scheduler", "localhost:8786"]},
    "cv": {"--scheduler not an address": ["--scheduler", "tcp:x:1"]},
    "learning-curve": {"--scheduler not an address": ["--scheduler", "tcp://:8786"]},
    "map": {"--scheduler not an address": ["--scheduler", "http://x:1"]},
    "predict": {"two outputs in one file": ["--contributions", "OUT.csv"],
                "--scheduler not an address": ["--scheduler", "localhost:8786"]},
    "screen": {"--where calls a function": ["--where", "__import__('os') == 0"],
               "--where an unknown column": ["--where", "volume > 1"],
               "--rank-by an unknown column": ["--rank-by", "volume"],
               "--scheduler not an address": ["--scheduler", "8786"]},
    "featurize": {"cutoff beyond memory": ["--descriptor", "acsf", "--set", "r_cut=1000", "--quiet"],
                  "unknown descriptor parameter": ["--set", "r_cutt=5"],
                  "--scheduler not an address": ["--scheduler", "tcp:/x:1"]},
    "potential fit": {"--init of the other kind": ["--init", "MODEL"], "-o holds a property model": ["-o", "MODEL"],
                      "--checkpoint is a file": ["--checkpoint", "DATA"], "--checkpoint is -o": ["--checkpoint", "OUTDIR"],
                      "both loss weights 0": ["--config", "BAD:zero loss weights"],
                      "--jobs of one potential": ["--jobs", "2"],
                      "--scheduler not an address": ["--scheduler", "tcp//x:1"],
                      "--checkpoint inside -o": ["--checkpoint", "OUTDIR/checkpoint"]},
    "md": {"--friction with nve": ["--friction", "0.1"], "--pressure with nvt": ["--ensemble", "nvt", "--pressure", "1"],
           "npt of a molecule": ["DATA=molecule", "--ensemble", "npt"],
           "one atom": ["DATA=one atom"], "--dt beyond 10 fs": ["--dt", "1000"],
           "--temperature beyond 50000 K": ["--temperature", "1e7"],
           "--friction beyond 1/fs": ["--ensemble", "nvt", "--friction", "1e9"],
           "--pressure beyond 1000 GPa": ["--ensemble", "npt", "--pressure", "1e9"]},
    "select": {"-o not .txt": ["-o", "OUT.csv"], "--scheduler not an address": ["--scheduler", "8786"]},
    "active run": {"unknown oracle import path": ["ACTIVECONFIG=unknown oracle"],
                   "oracle not a calculator": ["ACTIVECONFIG=oracle not a calculator"],
                   "missing pool file": ["ACTIVECONFIG=missing pool"],
                   "non-positive budget": ["ACTIVECONFIG=zero budget"],
                   "--db not .db": ["--db", "OUT.csv"],
                   "--db not a database": ["--db", "BAD:garbage db"],
                   "--db of another run": ["ACTIVECONFIG=other batch", "--db", "DB"],
                   "--scheduler not an address": ["--scheduler", "127.0.0.1:8786"]},
    "active status": {"missing database": ["DB=missing db"], "not a database": ["DB=garbage db"],
                      "a database of something else": ["DB=other db"]},
    "active report": {"missing database": ["DB=missing db"], "not a database": ["DB=garbage db"],
                      "a database of something else": ["DB=other db"]},
}

#: commands too slow for their good run in the test suite (their pieces are tested elsewhere)
NO_GOOD_RUN = {"demo"}


def _labelled(n=8):
    from ml4ms.datasets import load

    frames = [a.copy() for a in load("tio2", "test").records[:n]]
    for src, a in zip(load("tio2", "test").records[:n], frames):
        a.calc = None
        a.info["energy"] = src.get_potential_energy()
        a.arrays["forces"] = src.get_forces()
        a.info["y"] = a.info["energy"] / len(a)
    return frames


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    inputs = root / "inputs"
    inputs.mkdir()
    frames = _labelled()
    files = {"DATA": inputs / "data.extxyz", "CONFIG": inputs / "recipe.toml",
             "POTCONFIG": inputs / "potential.toml", "SISSOCONFIG": inputs / "sisso.toml",
             "ACTIVECONFIG": inputs / "active.toml", "DB": inputs / "labels.db"}
    ase.io.write(files["DATA"], frames, format="extxyz")
    files["CONFIG"].write_text(RECIPE)
    files["POTCONFIG"].write_text(POTENTIAL)
    files["SISSOCONFIG"].write_text(SISSO)
    files["ACTIVECONFIG"].write_text(ACTIVE)
    assert main(["active", "run", str(files["ACTIVECONFIG"]), "--db", str(files["DB"]), "--quiet"]) == 0
    files["MODEL"], files["POT"] = inputs / "model", inputs / "pot"
    assert main(["fit", str(files["DATA"]), "--config", str(files["CONFIG"]), "-o", str(files["MODEL"]),
                 "--quiet"]) == 0
    assert main(["potential", "fit", str(files["DATA"]), "--config", str(files["POTCONFIG"]), "-o",
                 str(files["POT"]), "--quiet"]) == 0
    shutil.rmtree(str(files["POT"]) + ".checkpoint", ignore_errors=True)

    def variant(name, change):
        out = [a.copy() for a in frames]
        change(out[0])  # the first: md uses the first frame
        path = inputs / f"{name}.extxyz"
        ase.io.write(path, out, format="extxyz")
        return path

    bad = {
        "missing file": inputs / "no-such-file.extxyz",
        "unreadable file": inputs / "garbage.extxyz",
        "empty structure": inputs / "empty.extxyz",
        "NaN positions": variant("nan_positions", lambda a: a.positions.__setitem__((0, 0), np.nan)),
        "overlapping atoms": variant("overlap", lambda a: a.positions.__setitem__(1, a.positions[0] + 0.1)),
        "NaN label": variant("nan_label", lambda a: (a.info.update(energy=np.nan, y=np.nan),
                                                     a.arrays["forces"].__setitem__((0, 0), np.nan))),
        "unknown element": variant("unknown_element", lambda a: a.numbers.__setitem__(0, 29)),
    }
    bad["unreadable file"].write_text("this is not a structure file\n\x00\x01")
    ase.io.write(bad["empty structure"], [Atoms(), frames[0]], format="extxyz")
    edited = inputs / "edited_model"
    shutil.copytree(files["MODEL"], edited)
    doc = json.loads((edited / "model.json").read_text())
    doc["metadata"]["targets"] = ["z"]
    (edited / "model.json").write_text(json.dumps(doc))
    edited_pot = inputs / "edited_pot"
    shutil.copytree(files["POT"], edited_pot)
    doc = json.loads((edited_pot / "model.json").read_text())
    doc["estimator"]["params"]["seed"] = 7
    (edited_pot / "model.json").write_text(json.dumps(doc))
    from ml4ms.potentials.io import load_potential
    from ml4ms.serialize import save_model

    files["OLDPOT"] = inputs / "old_pot"  # a potential as earlier versions wrote it
    save_model(files["OLDPOT"], load_potential(files["POT"]), {"kind": "ml4ms-neural-potential"})
    bad.update({"edited model": edited, "edited potential": edited_pot, "missing model": inputs / "no-model"})
    bad["unknown table"] = inputs / "unknown_table.toml"
    bad["unknown table"].write_text("[bogus]\nx = 1\n")
    for slot, text, table, flag in (("CONFIG", RECIPE + "[target]\n", "[target]", "per_atom"),
                                    ("POTCONFIG", POTENTIAL, "[model]", "linear"),
                                    ("SISSOCONFIG", SISSO, "[sisso]", "allow_transcendental_units"),
                                    ("ACTIVECONFIG", ACTIVE, "[strategy]", "diversity")):
        for case, line in (("unknown key", "bogus_key = 1"), ("'yes' for a bool", f'{flag} = "yes"')):
            bad[f"{slot}: {case}"] = inputs / f"{slot}_{case.split()[0].strip(chr(39))}.toml"
            bad[f"{slot}: {case}"].write_text(text.replace(table, f"{table}\n{line}"))
    bad["one atom"] = inputs / "one_atom.extxyz"
    ase.io.write(bad["one atom"], Atoms("Ti", cell=[3.0, 3.0, 3.0], pbc=True), format="extxyz")
    bad["molecule"] = inputs / "molecule.extxyz"
    ase.io.write(bad["molecule"], Atoms("O2", positions=[[0, 0, 0], [0, 0, 1.2]]), format="extxyz")
    bad["zero loss weights"] = inputs / "zero_weights.toml"
    bad["zero loss weights"].write_text(POTENTIAL.replace("[training]", "[training]\nenergy_weight = 0\nforce_weight = 0"))
    for name, old, new in (("unknown oracle", "ase.calculators.emt:EMT", "ase.calculators.emtt:EMT"),
                           ("oracle not a calculator", "ase.calculators.emt:EMT", "ase.build:bulk"),
                           ("missing pool", '[pool.generate]\nelements = ["Cu", "Au"]\nn = 20\nrepeat = [1, 1, 1]',
                            '[pool]\nfile = "no-such-pool.extxyz"'),
                           ("zero budget", "budget = 5", "budget = 0"),
                           ("other batch", "batch = 2", "batch = 1")):
        bad[name] = inputs / f"active_{name.replace(' ', '_')}.toml"
        assert old in ACTIVE
        bad[name].write_text(ACTIVE.replace(old, new))
    bad["missing db"] = inputs / "no-such.db"
    bad["garbage db"] = inputs / "garbage.db"
    bad["garbage db"].write_bytes(b"not a database\n" * 20)
    bad["other db"] = inputs / "other.db"
    from ase.db import connect

    connect(str(bad["other db"]), use_lock_file=False).write(frames[0])
    bad["invalid TOML"] = inputs / "invalid.toml"
    bad["invalid TOML"].write_text("[model\nname = \n")
    (inputs / "a-file").write_text("")
    return {"root": root, "inputs": inputs, "files": {k: str(v) for k, v in files.items()},
            "bad": {k: str(v) for k, v in bad.items()}}


def _fill(template, world, out):
    """The command line of ``template`` with its placeholders filled; outputs go to the folder ``out``."""
    argv = []
    for item in template:
        if item in world["files"]:
            argv.append(world["files"][item])
        elif item.startswith("OUT."):
            argv.append(str(out / ("result" + item[3:])))
        elif item == "OUTDIR" or item.startswith("OUTDIR/"):
            argv.append(str(out / "result" / item[7:]) if "/" in item else str(out / "result"))
        else:
            argv.append(item)
    return argv


def _snapshot(*folders):
    seen = {}
    for folder in folders:
        for base, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(base, name)
                st = os.stat(path)
                seen[path] = (st.st_size, st.st_mtime_ns)
    return seen


def _leaf_parsers(parser=None, prefix=()):
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaf_parsers(sub, prefix + (name,))
            return
    yield " ".join(prefix), parser


NUMBER_TYPES = {options.positive_int: ["0", "-1", "1.5", "nan"], options.non_negative_int: ["-1", "x"],
                options.positive_float: ["0", "-2", "nan", "inf"], options.non_negative_float: ["-1", "inf"],
                options.finite_float: ["nan", "-inf", "x"], options.fraction: ["0", "1", "nan"]}


def _cases():
    """``(command, case, replacement)``: what to put where in the good command line."""
    parsers = dict(_leaf_parsers())
    cases = []
    for command, template in COMMANDS.items():
        parser = parsers[command]
        cases.append((command, "unknown option", ("append", ["--no-such-option"])))
        cases += [(command, case, ("append", extra)) for case, extra in EXTRA_CASES.get(command, {}).items()]
        if "DATA" in template:
            kinds = ["missing file", "unreadable file", "empty structure", "NaN positions", "overlapping atoms"]
            kinds += ["NaN label"] * (command in LABELLED) + ["unknown element"] * (command in APPLY_MODEL)
            cases += [(command, f"data: {k}", ("DATA", k)) for k in kinds]
            outputs = parser.get_default("_outputs") or []
            if any(not o["folder"] for o in outputs):
                cases.append((command, "output equal to the input", ("output=input", None)))
        for slot, wrong in (("MODEL", "POT"), ("POT", "MODEL")):
            if slot in template:
                cases += [(command, f"model: {k}", (slot, k)) for k in
                          ("missing model", "edited model" if slot == "MODEL" else "edited potential")]
                cases.append((command, "model of the other kind", (slot, "=" + wrong)))
        for slot in ("CONFIG", "POTCONFIG", "SISSOCONFIG", "ACTIVECONFIG"):
            if slot in template:
                cases += [(command, f"config: {k}", (slot, k)) for k in ("unknown table", "invalid TOML",
                                                                         f"{slot}: unknown key",
                                                                         f"{slot}: 'yes' for a bool")]
        for spec in parser.get_default("_outputs") or []:
            flag = spec["flag"]
            if not spec["folder"]:
                cases.append((command, f"{flag}: an existing folder", ("output", (spec, "folder"))))
            cases.append((command, f"{flag}: cannot be written", ("output", (spec, "unwritable"))))
            if spec["suffixes"]:
                cases.append((command, f"{flag}: wrong suffix", ("output", (spec, "suffix"))))
        for action in parser._actions:
            bounded = getattr(action.type, "__name__", "").startswith("a number in")  # options.in_range
            for value in NUMBER_TYPES.get(action.type, ["nan", "x", "-1e9", "1e9"] if bounded else []):
                cases.append((command, f"{action.option_strings[-1]} {value}", ("number", (action, value))))
    return cases


def _bad_argv(template, world, out, replacement):
    kind, what = replacement
    argv = _fill(template, world, out)
    if kind == "append":
        swaps = [a for a in what if "=" in a and a.split("=")[0] in world["files"]]
        for slot, _, name in (a.partition("=") for a in swaps):
            argv = [world["bad"][name] if a == world["files"][slot] else a for a in argv]
        extra = [a for a in what if a not in swaps]
        return argv + [world["bad"][a[4:]] if a.startswith("BAD:") else a for a in _fill(extra, world, out)]
    if kind in ("DATA", "MODEL", "POT", "CONFIG", "POTCONFIG", "SISSOCONFIG", "ACTIVECONFIG"):
        value = world["files"][what[1:]] if what.startswith("=") else world["bad"][what]
        return [value if a == world["files"][kind] else a for a in argv]
    if kind == "output=input":
        for flag in ("-o", "--output", "--json", "--csv"):
            if flag in argv and "." in os.path.basename(argv[argv.index(flag) + 1]):
                argv[argv.index(flag) + 1] = world["files"]["DATA"]
                return argv
        raise AssertionError("no file output to point at the input")
    if kind == "output":
        spec, how = what
        path = {"folder": str(world["inputs"]), "unwritable": str(world["inputs"] / "a-file" / "x.out"),
                "suffix": str(out / "result.wrong")}[how]
        flags = [f for f in spec["flags"] if f in argv]
        if flags:
            argv[argv.index(flags[0]) + 1] = path
        else:
            argv += [spec["flag"], path]
        return argv
    if kind == "number":
        action, value = what
        flag = next((f for f in action.option_strings if f in argv), None)
        if flag is None:
            return argv + [action.option_strings[-1], value]
        at = argv.index(flag) + 1
        return argv[:at] + [value] + argv[at + 1:]
    raise AssertionError(kind)


def _run(capsys, argv):
    try:
        code = main(argv)
    except BaseException as exc:  # a traceback: the matrix reports it as a failure
        raise AssertionError(f"{' '.join(argv)} raised {exc.__class__.__name__}: {exc}") from exc
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_subcommand_is_registered():
    leaves = {name for name, _ in _leaf_parsers()}
    assert leaves == set(COMMANDS), f"register in COMMANDS: {sorted(leaves - set(COMMANDS))}"


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - NO_GOOD_RUN))
def test_good_command_lines_run(world, tmp_path, capsys, command):
    """The matrix's baseline: each good command line works, so each bad case differs by its bad input only."""
    work = tmp_path / "pot"
    shutil.copytree(world["files"]["POT"], work)
    argv = [str(work) if a == world["files"]["POT"] else a for a in _fill(COMMANDS[command], world, tmp_path)]
    code, _, err = _run(capsys, argv + ["--quiet"] * ("--quiet" not in argv))
    assert code == 0, err
    assert err == "", f"--quiet, but stderr has: {err}"  # no progress bar, no stray warning


@pytest.mark.parametrize("command, case, replacement", _cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input(world, tmp_path, capsys, command, case, replacement):
    out = tmp_path / "out"
    out.mkdir()
    before = _snapshot(world["inputs"], out)
    argv = _bad_argv(COMMANDS[command], world, out, replacement)
    code, _, err = _run(capsys, argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"{case}: exit {code}; stderr: {err}"
    assert len(lines) == 1 and lines[0].startswith("ml4ms: error:"), f"{case}: {err}"
    assert "Traceback" not in err
    assert _snapshot(world["inputs"], out) == before, f"{case}: something was written"


def test_every_option_has_help_text():
    missing = [f"{command}: {'/'.join(a.option_strings) or a.dest}" for command, parser in _leaf_parsers()
               for a in parser._actions if a.dest != "help" and not a.help]
    assert not missing


def test_a_command_group_alone_lists_its_commands(capsys):
    assert main(["potential"]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in ("fit", "eval", "select", "check", "fit-novelty", "export"))


def test_usage_errors_are_one_line(capsys):
    assert main(["fit"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ml4ms: error: fit: the following arguments are required")
    assert main(["--help"]) == 0
