"""TorchScript export against the library: one energy + forces + virial call on a 96-atom TiO2 cell.

Exports MODEL (default models/tio2) with ``export_torchscript``, loads it with
``torch.jit.load`` and times, on one thread, the module, ``NeuralPotential.compute``
with a cached neighbour list (stress included), and ASE's ``neighbor_list``.

    python benchmarks/tio2_export.py [--model models/tio2] [--repeats 40]

The last line is ``SUMMARY {json}`` with the same timings (ms).
"""

import argparse
import json
import os
import tempfile
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/tio2")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args(argv)

    import torch
    from ase.neighborlist import neighbor_list

    from ml4ms.datasets import load
    from ml4ms.potentials import load_potential
    from ml4ms.potentials.committee import Committee
    from ml4ms.potentials.export import export_torchscript

    torch.set_num_threads(1)
    model = load_potential(args.model)
    if isinstance(model, Committee):  # a committee: time one member (the committee module runs each member's networks)
        print(f"{args.model} is a committee of {len(model)}: timing member 0")
        model = model[0]
    path = os.path.join(tempfile.mkdtemp(), "model.pt")
    export_torchscript(model, path)
    module = torch.jit.load(path)
    frames = load("tio2", "test").records + load("tio2", "train").records
    cell = next(a for a in frames if len(a) == 24).copy() * (2, 2, 1)  # the cell of benchmarks/tio2.py --md-steps
    cell.calc = None

    def timed(call):
        for _ in range(3):
            call()
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            call()
        return (time.perf_counter() - t0) / args.repeats

    i, j, S = neighbor_list("ijS", cell, module.cutoff)
    inputs = [torch.tensor(x) for x in (cell.positions, cell.numbers, cell.cell[:], i, j, S)]
    tensors = model.tensors([cell])
    t_script = timed(lambda: module(*inputs))
    t_model = timed(lambda: model.compute(cell, stress=True, tensors=tensors))
    t_nl = timed(lambda: neighbor_list("ijS", cell, module.cutoff))
    print(f"{len(cell)} atoms, 1 thread: TorchScript {1e3 * t_script:.1f} ms, NeuralPotential.compute "
          f"{1e3 * t_model:.1f} ms (ratio {t_script / t_model:.2f}), ASE neighbor_list {1e3 * t_nl:.1f} ms")
    print("SUMMARY " + json.dumps({"atoms": len(cell), "threads": 1, "torchscript_ms": round(1e3 * t_script, 1),
                                   "compute_ms": round(1e3 * t_model, 1), "ratio": round(t_script / t_model, 2),
                                   "neighbor_list_ms": round(1e3 * t_nl, 1)}))


if __name__ == "__main__":
    main()
