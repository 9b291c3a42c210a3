"""Scaling on this machine: 1 against 2 Dask workers (one thread each), on SOAP featurisation and on screening.

    OMP_NUM_THREADS=1 python benchmarks/scaling.py [--tio2 28000] [--featurize 28000] [--screen 12000]
                                                   [--chunk 250] [--featurize-chunk 1000] [--repeats 3]
                                                   [--model DIR] [--json out.json]

Three jobs, each timed three ways on the same input: serially in this process (the reference), on a local Dask
cluster of one worker process with one thread, and on one of two such workers. Both clusters (127.0.0.1, started
by this script) are started and warmed up (every worker has imported ml4ms and run a task) before any timing, so
start-up is not timed; sending the structures to the workers and the results back is.

- ``soap``: per-structure SOAP (mean over atoms) of the bundled ``tio2:train`` cells with the settings of
  ``benchmarks/descriptors_soap.py`` (r_cut 5 Å, n_max 8, l_max 6, sigma 1 Å, polynomial cutoff), through the
  library (``SOAP.transform`` inside ``ml4ms.parallel.use_scheduler``). ``--tio2`` cells are taken in order,
  the cells beyond the 6,937 of the set as copies whose positions are moved by a seeded 0.01 Å noise. The
  executor's default chunking applies (about four tasks per worker of SOAP batches); the number of tasks is read
  from Dask's task stream.
- ``featurize``: the same SOAP of ``--featurize`` TiO2 cells (the same cells, written once to a temporary extxyz)
  by ``ml4ms featurize DATA.extxyz --descriptor soap --chunk N -o FOLDER`` through ``ml4ms.cli.main``: shards
  of ``--featurize-chunk`` cells, which the workers read from the file themselves (this process sends byte
  ranges), the out-of-core path of the command line.
- ``screen``: ``ml4ms screen MODEL DATA.extxyz --where ... --chunk N`` through ``ml4ms.cli.main``, the whole
  command (reading the file, sending each chunk, filtering and writing the survivors). DATA is ``--screen``
  structures of NOMAD 2018 (train + test, then seeded perturbed copies) written once to a temporary extxyz. The
  model is the demo recipe (``ml4ms fit nomad2018:train --config nomad2018_demo``, fitted here unless
  ``--model`` names one). This process only scans the file for where each frame starts and sends each chunk
  as a byte range; the workers parse its structures (``ml4ms.datasets.sources``). The scan is serial work every
  run pays; its time is measured apart and the efficiency is also given without it.

Each configuration is repeated ``--repeats`` times, interleaved (serial, 1 worker, 2 workers, serial, ...), and
the median is reported: speedup = T1 / T2 and parallel efficiency = T1 / (2 T2) (goal of issue 31: >= 0.9).
``busy`` is the share of the workers' time spent computing tasks (Dask's task stream): what is left is waiting
for this process (scanning, sending, writing) or for the scheduler. Every configuration must give the same
features and the same survivors file; the script checks it.

Timings on a shared machine are meaningless: run it when the machine is quiet (the load average is printed).
The last line is ``SUMMARY {json}``; ``--json`` writes every time and the per-structure costs that
``benchmarks/dask_overhead.py --scaling-json`` projects to a large cluster.
"""

import argparse
import contextlib
import filecmp
import io
import json
import logging
import os
import pickle
import shutil
import sys
import tempfile
import time
import warnings
from statistics import median

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: SOAP of benchmarks/descriptors_soap.py's TiO2 setting
SOAP_SETTINGS = {"species": ["O", "Ti"], "r_cut": 5.0, "n_max": 8, "l_max": 6, "sigma": 1.0,
                 "cutoff_function": "poly", "cutoff_exponent": 2, "reduce": "mean"}
#: the screening filter (about half of NOMAD 2018 passes)
WHERE = "bandgap_energy_ev > 2"
GOAL = 0.9
RUNS = ("serial", "1 worker", "2 workers")
JOBS = ("soap", "featurize", "screen")


def take(records, n, seed=0, noise=0.01):
    """``n`` structures: ``records`` in order, then copies of them with positions moved by N(0, ``noise``) Å.

    Examples
    --------
    >>> from ase import Atoms
    >>> out = take([Atoms("H", positions=[[0, 0, 0]])], 3)
    >>> len(out), out[0].positions.tolist(), bool(out[1].positions[0, 0] != 0.0)
    (3, [[0.0, 0.0, 0.0]], True)
    """
    rng = np.random.default_rng(seed)
    out = list(records[:n])
    while len(out) < n:
        atoms = records[len(out) % len(records)].copy()
        atoms.positions += rng.normal(0.0, noise, atoms.positions.shape)
        out.append(atoms)
    return out


def local_cluster(n_workers):
    """A started local Dask cluster of ``n_workers`` processes with one thread each, and a client of it."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           protocol="tcp", dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster, set_as_default=False)
    client.wait_for_workers(n_workers)
    return cluster, client


@contextlib.contextmanager
def clusters(sizes):
    """``{n: (address, client)}`` of one local cluster per worker count ``n`` in ``sizes`` (closed on exit).

    Dask logs only errors, and two of its warnings are left out: a busy default dashboard port, and "Sending
    large graph", which every screening command triggers by sending its model to the workers once (part of the
    timed transfer).
    """
    from ml4ms.parallel import close_clients

    started = {}
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", message="Port .* is already in use")
    warnings.filterwarnings("ignore", message="Sending large graph")
    try:
        for n in sizes:
            started[n] = local_cluster(n)
        yield {n: (cluster.scheduler_address, client) for n, (cluster, client) in started.items()}
    finally:
        close_clients()
        for cluster, client in started.values():
            client.close()
            cluster.close()
        logging.disable(logging.NOTSET)


def timed(run, client=None):
    """``(seconds, result, tasks, busy)`` of ``run()``; with a client, its cluster's task stream: the tasks
    ml4ms ran and the share of the workers' time they computed."""
    from distributed import get_task_stream

    if client is None:
        start = time.perf_counter()
        result = run()
        return time.perf_counter() - start, result, None, None
    with get_task_stream(client=client) as stream:
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
    tasks = [t for t in stream.data if str(t["key"]).startswith("_run_shared")]
    compute = sum(s["stop"] - s["start"] for t in tasks for s in t["startstops"] if s["action"] == "compute")
    workers = len(client.nthreads())
    return seconds, result, len(tasks), compute / (workers * seconds)


def featurize(soap, records, scheduler):
    """The fitted ``soap``'s features of ``records`` on ``scheduler`` (None: this process)."""
    from ml4ms.parallel import use_scheduler

    with use_scheduler(scheduler):
        return soap.transform(records)


def screen(model, data, output, chunk, scheduler):
    """``ml4ms screen`` of ``data`` with ``model`` to ``output`` (started afresh), on ``scheduler`` (None: here)."""
    from ml4ms.cli import main
    from ml4ms.screening import partial_folder

    shutil.rmtree(partial_folder(output), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(output)
    argv = ["screen", model, data, "--where", WHERE, "-o", output, "--chunk", str(chunk), "--threads", "1",
            "--quiet"] + (["--scheduler", scheduler] if scheduler else [])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    if code:
        raise SystemExit(f"ml4ms {' '.join(argv)} failed with exit code {code}")
    return output


def featurize_file(data, output, chunk, scheduler):
    """``ml4ms featurize`` of the file ``data`` into the shard folder ``output`` (started afresh): the workers read
    their own chunks of the file."""
    from ml4ms.cli import main

    shutil.rmtree(output, ignore_errors=True)
    settings = [f"{k}={v!r}" if isinstance(v, (str, list)) else f"{k}={v}" for k, v in SOAP_SETTINGS.items()]
    argv = (["featurize", data, "--descriptor", "soap", "-o", output, "--chunk", str(chunk), "--threads", "1",
             "--quiet"] + [x for kv in settings for x in ("--set", kv)] + (["--scheduler", scheduler] if scheduler
                                                                            else []))
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code:
        raise SystemExit(f"ml4ms {' '.join(argv)} failed with exit code {code}")
    return output


def same_shards(a, b):
    """Whether two shard folders hold the same features."""
    from ml4ms.shards import read_features

    return np.array_equal(read_features(a)["features"], read_features(b)["features"])


def fit_demo_model(folder):
    """The demo recipe's NOMAD 2018 model, fitted into ``folder``/model (untimed)."""
    from ml4ms.cli import main

    out = os.path.join(folder, "model")
    argv = ["fit", "nomad2018:train", "--config", "nomad2018_demo", "-o", out, "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code:
        raise SystemExit(f"ml4ms {' '.join(argv)} failed with exit code {code}")
    return out


def screening_data(folder, n, seed=0):
    """``n`` NOMAD 2018 structures (train, test, then perturbed copies) written to an extxyz in ``folder``."""
    import ase.io

    from ml4ms.datasets import load

    records = load("nomad2018", "train").records + load("nomad2018", "test").records
    path = os.path.join(folder, f"nomad2018_x{n}.extxyz")
    ase.io.write(path, take(records, n, seed), format="extxyz")
    return path


def client_costs(path, chunk):
    """Seconds per structure this process spends on ``path``: scanning it for its frames, pickling the chunks sent."""
    from ml4ms.datasets.sources import chunk_pieces, open_parts, plan_chunks

    start = time.perf_counter()
    parts = open_parts([path])
    pieces = list(chunk_pieces(parts, plan_chunks(parts, chunk)))
    n = len(parts[0])
    scan = time.perf_counter() - start
    start = time.perf_counter()
    pickle.dumps(pieces, protocol=pickle.HIGHEST_PROTOCOL)
    return scan / n, (time.perf_counter() - start) / n


def measure(job, addresses, repeats, check):
    """``({run: [(seconds, tasks, busy)]}, same)`` of ``job(run, scheduler)`` for every run, repeats interleaved;
    ``same``: ``check(serial result, result)`` holds for every run."""
    times, first = {name: [] for name in RUNS}, {}
    for _ in range(repeats):
        for name in RUNS:
            address, client = addresses.get(name, (None, None))
            seconds, result, tasks, busy = timed(lambda: job(name, address), client)
            times[name].append((seconds, tasks, busy))
            first.setdefault(name, result)
            print(f"  {name:<10} {seconds:7.2f} s" + (f"  {tasks} tasks, busy {busy:.2f}" if tasks else ""),
                  flush=True)
    return times, all(check(first[RUNS[0]], first[name]) for name in RUNS[1:])


def summarise(times, records, serial_part=0.0):
    """Medians, speedup and efficiency of one job (``serial_part``: seconds every run spends in this process)."""
    med = {name: median(t for t, _, _ in runs) for name, runs in times.items()}
    t1, t2 = med["1 worker"], med["2 workers"]
    out = {"records": records, "serial_s": round(med["serial"], 2), "t1_s": round(t1, 2), "t2_s": round(t2, 2),
           "speedup": round(t1 / t2, 3), "efficiency": round(t1 / (2 * t2), 3),
           "tasks_1": times["1 worker"][0][1], "tasks_2": times["2 workers"][0][1],
           "busy_1": round(median(b for _, _, b in times["1 worker"]), 3),
           "busy_2": round(median(b for _, _, b in times["2 workers"]), 3)}
    if serial_part:
        out["serial_part_s"] = round(serial_part, 2)
        out["efficiency_without_serial_part"] = round((t1 - serial_part) / (2 * (t2 - serial_part)), 3)
    return out


def run(args):
    from ml4ms.datasets import load
    from ml4ms.descriptors.soap import SOAP
    from ml4ms.threads import limit_threads

    limit_threads(1)  # this process: one thread, as each worker
    folder = tempfile.mkdtemp(prefix="ml4ms-scaling-")
    results = {"load_average": os.getloadavg()[0], "cores": os.cpu_count(), "repeats": args.repeats}
    print(f"load average at start: {results['load_average']:.2f} on {results['cores']} cores", flush=True)
    try:
        tio2 = take(load("tio2", "train").records, args.tio2)
        soap = SOAP(progress=False, **SOAP_SETTINGS).fit(tio2 or load("tio2", "train").records[:1])
        if args.featurize:
            import ase.io

            cells = take(load("tio2", "train").records, args.featurize)
            tio2_file = os.path.join(folder, f"tio2_x{args.featurize}.extxyz")
            ase.io.write(tio2_file, cells, format="extxyz")
            tio2_warm = os.path.join(folder, "tio2_warm.extxyz")
            ase.io.write(tio2_warm, cells[:200], format="extxyz")
            del cells
        if args.screen:
            model = args.model or fit_demo_model(folder)
            data, warm = screening_data(folder, args.screen), screening_data(folder, min(args.screen, 200))
            read, pickled = client_costs(data, args.chunk)
        with clusters([1, 2]) as started:
            addresses = {"1 worker": started[1], "2 workers": started[2]}
            for address in [a for a, _ in started.values()] + [None]:  # warm up: imports, the first connection
                if args.tio2:
                    featurize(soap, tio2[:200], address)
                if args.screen:
                    screen(model, warm, os.path.join(folder, "warm-up.csv"), max(1, min(args.chunk, 50)), address)
                if args.featurize:
                    featurize_file(tio2_warm, os.path.join(folder, "warm-up-shards"), 50, address)
            if args.tio2:
                print(f"soap: {len(tio2)} TiO2 cells", flush=True)
                times, same = measure(lambda name, s: featurize(soap, tio2, s), addresses, args.repeats,
                                      np.array_equal)
                results["soap"] = dict(summarise(times, len(tio2)), same_result=same,
                                       atoms=int(sum(len(a) for a in tio2)), times=times)
            if args.featurize:
                print(f"featurize: {args.featurize} TiO2 cells from an extxyz, --chunk {args.featurize_chunk}",
                      flush=True)
                times, same = measure(
                    lambda name, s: featurize_file(tio2_file, os.path.join(folder, f"shards-{RUNS.index(name)}"),
                                                   args.featurize_chunk, s),
                    addresses, args.repeats, same_shards)
                results["featurize"] = dict(summarise(times, args.featurize), chunk=args.featurize_chunk,
                                            same_result=same, times=times)
            if args.screen:
                print(f"screen: {args.screen} NOMAD 2018 structures, --chunk {args.chunk}", flush=True)
                times, same = measure(
                    lambda name, s: screen(model, data, os.path.join(folder, f"survivors-{RUNS.index(name)}.csv"),
                                           args.chunk, s),
                    addresses, args.repeats, lambda a, b: filecmp.cmp(a, b, shallow=False))
                summary = summarise(times, args.screen, serial_part=read * args.screen)
                t1 = median(t for t, _, _ in times["1 worker"])
                per_structure = (t1 - read * args.screen) / args.screen
                results["screen"] = dict(summary, chunk=args.chunk, same_result=same, times=times,
                                         read_s_per_structure=read, pickle_s_per_structure=pickled,
                                         worker_s_per_structure=per_structure)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def report(results):
    """Print the table; returns the summary."""
    print(f"\n{'job':<9} {'records':>8} {'serial s':>9} {'1 worker s':>11} {'2 workers s':>12} {'speedup':>8} "
          f"{'efficiency':>11} {'tasks 1/2':>10} {'busy 1/2':>10}")
    summary = {"load_average": round(results["load_average"], 2), "goal_efficiency": GOAL}
    for job in JOBS:
        if job not in results:
            continue
        r = results[job]
        print(f"{job:<9} {r['records']:>8} {r['serial_s']:>9.2f} {r['t1_s']:>11.2f} {r['t2_s']:>12.2f} "
              f"{r['speedup']:>8.2f} {r['efficiency']:>11.2f} {r['tasks_1']:>4}/{r['tasks_2']:<5} "
              f"{r['busy_1']:.2f}/{r['busy_2']:.2f}")
        summary[job] = {k: v for k, v in r.items() if k != "times"}
    if "soap" in results:
        r = results["soap"]
        print(f"soap: {r['atoms']} atoms; default chunking: about {r['records'] / max(1, r['tasks_2']):.0f} cells "
              f"per task on 2 workers; same features on every run: {r['same_result']}")
    if "screen" in results:
        r = results["screen"]
        print(f"screen: --chunk {r['chunk']}; scanning the file in this process {r['serial_part_s']:.2f} s "
              f"({1e3 * r['read_s_per_structure']:.3f} ms/structure, pickling {1e3 * r['pickle_s_per_structure']:.4f}"
              f" ms/structure); efficiency without it {r['efficiency_without_serial_part']:.2f}; per structure on "
              f"one worker {1e3 * r['worker_s_per_structure']:.2f} ms; same survivors on every run: "
              f"{r['same_result']}")
    efficiencies = [summary[j]["efficiency"] for j in JOBS if j in summary]
    if efficiencies:
        summary["goal_met"] = min(efficiencies) >= GOAL
        print(f"goal: parallel efficiency >= {GOAL} ({'met' if summary['goal_met'] else 'missed'})")
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tio2", type=int, default=28000, help="TiO2 cells to featurise (0: skip)")
    parser.add_argument("--featurize", type=int, default=28000,
                        help="TiO2 cells to featurise from a file with `ml4ms featurize --chunk` (0: skip)")
    parser.add_argument("--featurize-chunk", type=int, default=1000, help="--chunk of ml4ms featurize")
    parser.add_argument("--screen", type=int, default=12000, help="structures to screen (0: skip)")
    parser.add_argument("--chunk", type=int, default=250, help="--chunk of ml4ms screen")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="a model folder of 'ml4ms fit' (default: fit the demo recipe here)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    results = run(args)
    summary = report(results)
    if args.json:
        from ml4ms.outputs import write_json

        write_json(args.json, results)
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(ROOT, "src"))
    main()
