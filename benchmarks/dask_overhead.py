"""Dask's cost per task on this machine, and what it means for screening 4.5 million structures on 100 nodes.

    OMP_NUM_THREADS=1 python benchmarks/dask_overhead.py [--workers 16] [--tasks 2000] [--repeats 3]
        [--chunks 1 10 50 250 1000] [--scaling-json scaling.json | --model DIR]
        [--structures 4500000] [--nodes 100] [--cores-per-node 64] [--price 0.045] [--json out.json]

Measured on a local Dask cluster of ``--workers`` single-thread worker processes (127.0.0.1, started and warmed
up before any timing), many more workers than this machine has cores:

1. ``empty tasks``: ``--tasks`` tasks that do nothing, submitted at once with Dask's ``client.map`` (what the
   scheduler sustains), and through ``ml4ms.parallel.map_ordered(..., chunk=1)`` (what ml4ms's executor
   sustains: results in input order, at most two tasks per worker waiting). The cost of one task is
   c = 1 / (tasks per second). The workers share two cores with the scheduler and this process, so c is an
   upper bound of what a scheduler with a core of its own achieves.
2. ``simulated screening``: the screening of chunks of k structures on the same workers, each task carrying what
   the client sends for a chunk of an XYZ file (the byte range of its k NOMAD 2018 structures, as
   ``ml4ms.datasets.sources`` describes it) and returning k rows of two numbers, its reading and computation
   replaced by a sleep of k x t (t: the measured seconds per structure on one core), so that ``--workers``
   workers fit on two cores. Efficiency = (tasks x task time / workers) / wall time; beside it the model:
   rounds of a task (d = k t) plus the scheduler serving each of the W busy workers once (W c), so
   d / (d + W c) when every worker has a task.

Then, on paper, for ``--structures`` structures on ``--nodes`` x ``--cores-per-node`` single-thread workers:
the work in core-hours, the smallest chunk that keeps the scheduler's share below 5 % (W c / (d + W c) <= 0.05,
so k >= 19 W c / t), the fastest chunk size and its wall time by the same model, what limits it, the worker
counts where it stops scaling (with a chunk per worker, the scheduler's rounds cost as much as the work at
W = sqrt(N t / c)), and the cost at an
assumed price per core-hour (``--price``; the default, $0.045, is an assumption: about the on-demand price of a
64-vCPU compute-optimised cloud instance, $2.9 per hour, divided by 64).

t comes from ``benchmarks/scaling.py --json`` (``--scaling-json``: screening on one Dask worker, without
reading the file), else from a serial ``ml4ms screen`` of NOMAD 2018 train + test (3,000 structures) here, with
the demo model (``--model``, else fitted here). The seconds per structure this process spends on the input
and pickling it for the workers come from the same place: it scans an XYZ file for where each frame starts and
sends each chunk as a byte range, which the worker reads and parses.

Timings on a shared machine are meaningless: run it when the machine is quiet. The last line is
``SUMMARY {json}``.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
from statistics import median

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
#: the share of the time the scheduler may take
OVERHEAD = 0.05


def _nothing(x):
    return x


def _pretend_chunk(item):
    """A screening chunk's traffic without its work: sleep ``seconds``, return a row of two numbers per structure."""
    seconds, (count, _piece) = item
    time.sleep(seconds)
    return [(0.0, 0.0)] * count


def empty_tasks(client, n, repeats):
    """Tasks per second, median of ``repeats``: ``{"dask": client.map, "ml4ms": map_ordered(chunk=1)}``."""
    from ml4ms.parallel import map_ordered

    def dask_map():
        futures = client.map(_nothing, range(n), pure=False)
        client.gather(futures)

    rates = {"dask": [], "ml4ms": []}
    for _ in range(repeats):
        for name, run in (("dask", dask_map), ("ml4ms", lambda: map_ordered(_nothing, range(n), scheduler=client,
                                                                             chunk=1))):
            start = time.perf_counter()
            run()
            rates[name].append(n / (time.perf_counter() - start))
            print(f"  empty tasks, {name:<5}: {rates[name][-1]:8.0f} tasks/s", flush=True)
    return {name: median(values) for name, values in rates.items()}


def simulated(client, piece, chunk, seconds_per_structure, workers, max_tasks, cost):
    """One simulated screening run with chunks of ``chunk`` structures: measured and modelled efficiency."""
    from ml4ms.parallel import map_ordered

    d = chunk * seconds_per_structure
    n = int(min(max_tasks, max(8 * workers, math.ceil(5.0 * workers / d))))
    # what the client sends for a chunk of an XYZ file: the description of a byte range, as pickled by
    # ml4ms.datasets.sources (the worker's reading and parsing is part of t)
    payload = (chunk, piece)
    items = [(d, payload)] * n
    start = time.perf_counter()
    map_ordered(_pretend_chunk, items, scheduler=client, chunk=1)
    wall = time.perf_counter() - start
    out = {"chunk": chunk, "task_s": d, "tasks": n, "wall_s": wall, "efficiency": n * d / (workers * wall),
           "model": n * d / (workers * round_model(n, workers, 1, d, cost))}
    print(f"  chunk {chunk:>5}: {n:>5} tasks of {1e3 * d:8.1f} ms on {workers} workers: {wall:6.2f} s, "
          f"efficiency {out['efficiency']:.2f} (model {out['model']:.2f})", flush=True)
    return out


def screening_costs(args, folder):
    """``{"worker": t, "read": r, "pickle": p, "source": ...}``: seconds per structure of screening (a worker's,
    and this process's to read the input and to pickle it for the workers)."""
    from scaling import client_costs, fit_demo_model, screen, screening_data

    if args.scaling_json:
        with open(args.scaling_json) as handle:
            r = json.load(handle)["screen"]
        return {"worker": r["worker_s_per_structure"], "read": r["read_s_per_structure"],
                "pickle": r["pickle_s_per_structure"],
                "source": f"{args.scaling_json}: {r['records']} structures on one Dask worker, --chunk {r['chunk']}"}
    model = args.model or fit_demo_model(folder)
    data = screening_data(folder, 3000)
    read, pickled = client_costs(data, 1000)
    screen(model, data, os.path.join(folder, "warm-up.csv"), 1000, None)
    start = time.perf_counter()
    screen(model, data, os.path.join(folder, "survivors.csv"), 1000, None)
    seconds = time.perf_counter() - start
    return {"worker": (seconds - 3000 * read) / 3000, "read": read, "pickle": pickled,
            "source": "serial ml4ms screen of 3000 NOMAD 2018 structures in this process, --chunk 1000"}


def round_model(n, workers, k, t, cost):
    """Wall seconds of ``n`` structures in chunks of ``k`` on ``workers``: rounds of (a task + the scheduler
    serving every busy worker once), the model that the simulated runs check.

    Examples
    --------
    >>> round_model(100, 10, 10, 0.1, 0.001)  # one round: a task of 1 s + 10 tasks x 1 ms
    1.01
    """
    tasks = math.ceil(n / k)
    return math.ceil(tasks / workers) * (k * t + min(workers, tasks) * cost)


def on_paper(n, workers, costs, cost, price):
    """The projection: work, chunk sizes, wall time, where it stops scaling, cost (a dict)."""
    t, read, pickled = costs["worker"], costs["read"], costs["pickle"]
    share = OVERHEAD / (1 - OVERHEAD)  # W c / d <= share keeps the scheduler's part of each round below OVERHEAD
    k_min = math.ceil(workers * cost / (share * t))
    grid = sorted({max(1, round(10 ** (x / 20))) for x in range(0, 20 * len(str(n)) + 1)} | {k_min, -(-n // workers)})
    k_best = min(grid, key=lambda k: round_model(n, workers, k, t, cost))
    compute = round_model(n, workers, k_best, t, cost)
    sending, reading = n * pickled, n * read  # the input is scanned whole first; sending overlaps the work
    wall = reading + max(compute, sending)
    out = {"structures": n, "workers": workers, "seconds_per_structure": t, "read_s_per_structure": read,
           "pickle_s_per_structure": pickled, "task_cost_s": cost, "work_core_hours": n * t / 3600,
           "min_chunk": k_min, "structures_per_worker": n / workers, "best_chunk": k_best,
           "compute_s": compute, "compute_efficiency": n * t / (workers * compute), "sending_s": sending,
           "reading_s": reading, "wall_s": wall, "allocated_core_hours": workers * wall / 3600,
           "price_per_core_hour": price,
           "chunks": {k: round_model(n, workers, k, t, cost) for k in sorted({10, 100, 1000, k_best, k_min})},
           "stops_scaling_at_workers": {
               "the scheduler (fastest run: sqrt(N t / c))": math.sqrt(n * t / cost),
               f"the scheduler below {100 * OVERHEAD:.0f} % (sqrt(N t share / c))": math.sqrt(n * t * share / cost),
               "this process pickles and sends every structure (t / pickling)": t / pickled,
               "reading the input takes as long as computing (t / reading)": t / read}}
    out["cost_allocated"] = out["allocated_core_hours"] * price
    out["cost_work"] = out["work_core_hours"] * price
    return out


def print_paper(p, nodes, cores):
    w, t, n = p["workers"], p["seconds_per_structure"], p["structures"]
    print(f"\nOn paper: {n:,} structures on {nodes} nodes x {cores} cores = {w:,} single-thread workers")
    print(f"inputs (measured here): t = {1e3 * t:.2f} ms per structure on one core; c = {1e3 * p['task_cost_s']:.2f} "
          f"ms per task (ml4ms executor); this process scans {1e3 * p['read_s_per_structure']:.3f} ms and pickles "
          f"{1e3 * p['pickle_s_per_structure']:.4f} ms per structure. Assumed: ${p['price_per_core_hour']:.3f} per "
          "core-hour")
    print(f"work: {p['work_core_hours']:.1f} core-hours (${p['cost_work']:.2f}); {p['structures_per_worker']:.0f} "
          f"structures, {p['structures_per_worker'] * t:.1f} s of work per worker")
    print(f"smallest chunk with the scheduler below {100 * OVERHEAD:.0f} % at {w:,} workers: "
          f"k >= W c / ({OVERHEAD / (1 - OVERHEAD):.4f} t) = {p['min_chunk']:,} structures")
    if p["min_chunk"] > p["structures_per_worker"]:
        print(f"  more than the {p['structures_per_worker']:.0f} structures each worker gets: at {w:,} workers no "
              f"chunk size keeps every worker busy and the scheduler below {100 * OVERHEAD:.0f} %")
    print(f"{'chunk':>9} {'tasks':>9} {'computing s':>12}   (rounds x (k t + busy workers x c))")
    for k, seconds in p["chunks"].items():
        print(f"{k:>9,} {-(-n // k):>9,} {seconds:>12.1f}" + ("   fastest" if k == p["best_chunk"] else ""))
    print(f"wall time: reading the input {p['reading_s']:.0f} s (one process, before any chunk is sent), then "
          f"max(computing {p['compute_s']:.1f} s at chunk {p['best_chunk']:,} (efficiency "
          f"{p['compute_efficiency']:.2f}), sending {p['sending_s']:.0f} s) = {p['wall_s']:.0f} s "
          f"({p['wall_s'] / 3600:.2f} h); starting the workers and sending them the model are not included")
    print(f"allocated: {p['allocated_core_hours']:.0f} core-hours, ${p['cost_allocated']:.0f} at the assumed price")
    print("stops scaling (more workers no longer shorten the run) at about:")
    for what, workers in p["stops_scaling_at_workers"].items():
        print(f"  {workers:>10,.0f} workers: {what}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=16, help="worker processes of the local cluster")
    parser.add_argument("--tasks", type=int, default=2000, help="empty tasks per measurement; most simulated tasks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 10, 50, 250, 1000],
                        help="chunk sizes of the simulated screening (structures per task)")
    parser.add_argument("--scaling-json", metavar="FILE", help="the --json of benchmarks/scaling.py")
    parser.add_argument("--model", help="a model folder of 'ml4ms fit' (without --scaling-json)")
    parser.add_argument("--structures", type=int, default=4_500_000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--cores-per-node", type=int, default=64)
    parser.add_argument("--price", type=float, default=0.045, help="assumed price per core-hour (USD)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    from ml4ms.datasets.sources import open_parts
    from ml4ms.threads import limit_threads

    from scaling import clusters, screening_data

    limit_threads(1)
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="ml4ms-overhead-") as folder:
        costs = screening_costs(args, folder)
        part = open_parts([screening_data(folder, 3000)])[0]
        pieces = {k: part.piece(0, min(k, len(part))) for k in args.chunks}  # what the client sends per chunk
    print(f"per structure: {1e3 * costs['worker']:.2f} ms on a worker, {1e3 * costs['read']:.3f} ms reading and "
          f"{1e3 * costs['pickle']:.3f} ms pickling in this process ({costs['source']})", flush=True)
    with clusters([args.workers]) as started:
        _, client = started[args.workers]
        client.gather(client.map(_nothing, range(4 * args.workers), pure=False))  # warm up
        print(f"{args.workers} workers, {args.tasks} empty tasks, {args.repeats} repeats", flush=True)
        rates = empty_tasks(client, args.tasks, args.repeats)
        cost = 1.0 / rates["ml4ms"]
        print(f"simulated screening, {costs['worker'] * 1e3:.2f} ms per structure", flush=True)
        runs = [simulated(client, pieces[k], k, costs["worker"], args.workers, args.tasks, cost) for k in args.chunks]
    workers = args.nodes * args.cores_per_node
    paper = on_paper(args.structures, workers, costs, cost, args.price)
    print(f"\n{'measurement':<28} {'value':>10}")
    print(f"{'tasks/s, Dask client.map':<28} {rates['dask']:>10.0f}")
    print(f"{'tasks/s, ml4ms executor':<28} {rates['ml4ms']:>10.0f}")
    print(f"\n{'chunk':>6} {'task ms':>9} {'tasks':>6} {'wall s':>7} {'efficiency':>11} {'model':>6}")
    for r in runs:
        print(f"{r['chunk']:>6} {1e3 * r['task_s']:>9.1f} {r['tasks']:>6} {r['wall_s']:>7.2f} "
              f"{r['efficiency']:>11.2f} {r['model']:>6.2f}")
    print_paper(paper, args.nodes, args.cores_per_node)
    summary = {"workers_here": args.workers, "tasks_per_s_dask": round(rates["dask"]),
               "tasks_per_s_ml4ms": round(rates["ml4ms"]),
               "simulated": {r["chunk"]: round(r["efficiency"], 3) for r in runs},
               "paper": {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in paper.items()
                         if k not in ("stops_scaling_at_workers", "chunks")},
               "stops_scaling_at_workers": {k: round(v) for k, v in paper["stops_scaling_at_workers"].items()}}
    if args.json:
        from ml4ms.outputs import write_json

        write_json(args.json, {"costs": costs, "rates": rates, "simulated": runs, "paper": paper})
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(ROOT, "src"))
    sys.path.insert(0, BENCHMARKS)
    main()
