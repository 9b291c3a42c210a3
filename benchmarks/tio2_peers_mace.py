"""The MACE side of benchmarks/tio2_peers.py: run by the peers' virtual environment's Python, never by ml4ms.

    PYTHONPATH=src PEERS_PYTHON benchmarks/tio2_peers_mace.py train --train T.extxyz --valid V.extxyz --work-dir DIR
        --minutes M --threads N --seed S --e0s "{8: ..., 22: ...}" --out RESULT.json
    PYTHONPATH=src PEERS_PYTHON benchmarks/tio2_peers_mace.py evaluate --model DIR/mace.model --test CELLS.extxyz
        --md-cell CELL.extxyz --md-steps N --threads N --seed S --predictions P.npz --out RESULT.json

``train`` runs MACE's own training (``mace.cli.run_train``, the code behind ``mace_run_train``) with the arguments of
:func:`mace_arguments`, and ends it at a wall-clock deadline the way ml4ms's ``time_limit`` ends its runs: the
budget starts when MACE's training loop starts (after its data loading and statistics, as ml4ms's counts after the
descriptor Jacobians), the loader yields no batch past the deadline, so the epoch in progress is cut, validated and
checkpointed by MACE as usual, and the loop ends before the next epoch (:class:`Deadline`). MACE then loads its best
checkpoint (exponential moving average of the weights) and saves ``DIR/mace.model`` as usual; two of its end-of-run
extras are skipped because the benchmark does them itself or does not need them: the error tables over the training
and validation sets (a full pass over the training set) and TorchScript compilation.

``evaluate`` predicts the test cells through MACE's ASE calculator and writes the predictions
(:func:`tio2_peers.save_predictions`) for the main script to score with the same code as ml4ms's models, then
runs NVE MD with :func:`ml4ms.potentials.run_md`, the function that measures ml4ms's own models.
"""

import argparse
import json
import os
import sys
import time

#: MACE 0.3.16 hyperparameters of the comparison; the rest are mace_run_train's defaults (weighted loss, energy
#: weight 1, force weight 100, AMSGrad at learning rate 0.01, ReduceLROnPlateau, max_ell 3, 8 Bessel functions)
SETTINGS = {
    "model": "ScaleShiftMACE",  # free-atom E0s, the mean binding energy as shift, like ml4ms's standardisation
    "num_channels": 32,  # 32x0e + 32x1o
    "max_L": 1,
    "correlation": 3,
    "num_interactions": 2,
    "r_max": 5.0,  # Å: the message-passing recipe's r_cut (configs/tio2_mpnn.toml)
    "batch_size": 10,
    "valid_batch_size": 10,
    "default_dtype": "float32",
    "ema_decay": 0.99,
}


class BudgetSpent(Exception):
    """Raised when MACE's training loop asks for an epoch after the deadline."""


class Deadline:
    """A training loader that ends MACE's training at a wall-clock deadline.

    Iterating it yields the batches of ``loader`` until ``seconds`` after :meth:`start`; the epoch in progress is
    cut there (the batch in progress finishes). Asking for a further epoch raises :class:`BudgetSpent`. It also
    counts the batches and atoms that reached the optimiser, and times the epochs (each from its first batch to
    the start of the next, its validation included).

    Examples
    --------
    >>> d = Deadline([[1, 2], [3]], 60.0, atoms_of=len)
    >>> d.start()
    >>> [b for b in d], d.batches, d.atoms, len(d)
    ([[1, 2], [3]], 2, 3, 2)
    >>> d.seconds = 0.0
    >>> try:
    ...     list(d)
    ... except BudgetSpent as exc:
    ...     print(exc)
    the training budget is spent
    """

    def __init__(self, loader, seconds, atoms_of=lambda batch: int(batch.positions.shape[0])):
        self.loader, self.seconds, self.atoms_of = loader, float(seconds), atoms_of
        self.batches = self.atoms = 0
        self.t_start = self.t_first = self.t_end = None

    def __len__(self):
        return len(self.loader)

    def start(self):
        self.t_start = time.time()

    def out_of_time(self):
        return time.time() - self.t_start > self.seconds

    def __iter__(self):
        if self.t_first is None:
            self.t_first = time.time()
        elif self.out_of_time():
            self.t_end = time.time()
            raise BudgetSpent("the training budget is spent")
        for batch in self.loader:
            yield batch
            self.batches += 1
            self.atoms += self.atoms_of(batch)
            if self.out_of_time():
                return


def mace_arguments(train, valid, work_dir, seed, e0s):
    """The ``mace_run_train`` command line of the comparison (a list of strings)."""
    args = ["--name", "mace", "--seed", str(seed), "--work_dir", work_dir, "--device", "cpu",
            "--train_file", train, "--valid_file", valid, "--energy_key", "REF_energy", "--forces_key", "REF_forces",
            "--E0s", e0s, "--ema", "--max_num_epochs", "100000", "--plot", "False", "--save_cpu"]
    for key, value in SETTINGS.items():
        args += [f"--{key}", str(value)]
    return args


def train(args):
    """Train MACE for ``args.minutes`` of its training loop; write the timings and counts to ``args.out``."""
    import torch

    torch.set_num_threads(args.threads)
    from mace import tools
    from mace.cli import run_train

    from ml4ms.outputs import write_json

    t_call = time.time()
    budget = {}
    mace_train = tools.train

    def train_to_deadline(*, train_loader, **kwargs):
        budget["deadline"] = Deadline(train_loader, 60.0 * args.minutes)
        budget["deadline"].start()
        try:
            mace_train(train_loader=budget["deadline"], **kwargs)
        except BudgetSpent:
            pass
        budget["seconds"] = time.time() - budget["deadline"].t_start

    tools.train = train_to_deadline
    run_train.create_error_table = lambda **kwargs: "(skipped by benchmarks/tio2_peers_mace.py)"
    run_train.jit.compile = _no_compile
    run_train.run(tools.build_default_arg_parser().parse_args(
        mace_arguments(args.train, args.valid, args.work_dir, args.seed, args.e0s)))
    d = budget["deadline"]
    loop = (d.t_end or time.time()) - d.t_first
    write_json(args.out, {
        "training_seconds": budget["seconds"], "preparation_seconds": d.t_start - t_call,
        "fit_seconds": time.time() - t_call, "epochs": d.batches / len(d), "batches": d.batches,
        "train_atoms_per_second": d.atoms / loop if loop > 0 else None,
        "model": os.path.join(args.work_dir, "mace.model"), "settings": SETTINGS, "threads": args.threads})


def _no_compile(*args, **kwargs):
    raise RuntimeError("TorchScript compilation skipped by benchmarks/tio2_peers_mace.py")


def evaluate(args):
    """Predict the test cells and run MD with MACE's ASE calculator; write the timings to ``args.out``."""
    import torch

    torch.set_num_threads(args.threads)
    from ase.io import read
    from mace.calculators import MACECalculator

    from ml4ms.outputs import write_json
    from ml4ms.potentials.md import run_md
    from tio2_peers import save_predictions

    calc = MACECalculator(model_paths=args.model, device="cpu", default_dtype=SETTINGS["default_dtype"])
    cells = read(args.test, ":")
    t0 = time.time()
    energies, forces = [], []
    for atoms in cells:
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
    eval_seconds = time.time() - t0
    save_predictions(args.predictions, energies, forces)
    md = run_md(read(args.md_cell), calc, steps=args.md_steps, timestep=1.0, seed=args.seed)
    write_json(args.out, {"eval_seconds": eval_seconds, "md": md})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    for name in ("--train", "--valid", "--work-dir", "--e0s", "--out"):
        p.add_argument(name, required=True)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("evaluate")
    for name in ("--model", "--test", "--md-cell", "--predictions", "--out"):
        p.add_argument(name, required=True)
    p.add_argument("--md-steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args)
    else:
        evaluate(args)
    print(json.dumps({"done": args.command}), file=sys.stderr)


if __name__ == "__main__":
    main()
