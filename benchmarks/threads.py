"""Threads on a shared machine: the demo fit alone, and beside a CPU-bound job, with ml4ms's thread choice and with
every core's worth of threads (what BLAS and torch start by default).

    python benchmarks/threads.py [--repeats 2] [--competitor spin|fit] [--json out.json]

Runs ``ml4ms fit nomad2018:train --config nomad2018_demo`` as a separate process:

- ``idle``: nothing else running, default threads (the free cores: all of them);
- ``shared, ml4ms``: beside a competing CPU-bound process, default threads (``ml4ms.threads.free_cores``
  sees the busy core and takes the rest);
- ``shared, all cores``: beside the same competitor with ``--threads`` set to every usable core, as the
  libraries do on their own (the behaviour before ``ml4ms.threads``).

The competitor is ``spin`` (one Python process busy on one core) or ``fit`` (a second copy of the same fit with
all-core threads, as a second ``make demo`` would be). The goal (issue "Trustworthy at the edges"): the shared
run within 1.5x of the idle run. Prints each median and its ratio to idle, then one summary line.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from statistics import median

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ml4ms():
    return [sys.executable, "-m", "ml4ms"]


def _fit_command(out, threads=None):
    cmd = _ml4ms() + ["fit", "nomad2018:train", "--config", "nomad2018_demo", "-o", out, "--quiet"]
    return cmd + (["--threads", str(threads)] if threads else [])


def _competitor(kind, folder):
    if kind == "spin":
        return subprocess.Popen([sys.executable, "-c", "while True: pass"])
    # a second fit, again and again, with all-core threads
    loop = ("import subprocess, sys\n"
            f"cmd = {_fit_command(os.path.join(folder, 'competitor'), os.cpu_count())!r}\n"
            "while True:\n    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n")
    return subprocess.Popen([sys.executable, "-c", loop], start_new_session=True)


def _timed(cmd):
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - start


def run(repeats, competitor):
    from ml4ms.threads import usable_cores

    cores = usable_cores()
    folder = tempfile.mkdtemp(prefix="ml4ms-threads-")
    out = os.path.join(folder, "model")
    results = {"cores": cores, "competitor": competitor, "repeats": repeats}
    try:
        results["idle"] = sorted(_timed(_fit_command(out)) for _ in range(repeats))
        print(f"idle: {results['idle']}", flush=True)
        other = _competitor(competitor, folder)
        try:
            time.sleep(3.0 if competitor == "fit" else 1.0)  # let it take its core(s)
            for name, threads in (("shared, ml4ms", None), ("shared, all cores", cores)):
                results[name] = sorted(_timed(_fit_command(out, threads)) for _ in range(repeats))
                print(f"{name}: {results[name]}", flush=True)
        finally:
            if competitor == "fit":
                os.killpg(other.pid, 9)
            else:
                other.kill()
            other.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--competitor", choices=["spin", "fit"], default="spin")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    results = run(args.repeats, args.competitor)

    idle = median(results["idle"])
    summary = {"cores": results["cores"], "competitor": results["competitor"], "idle_s": round(idle, 1)}
    print(f"\n{'run':<20} {'median (s)':>10} {'/ idle':>8}")
    for name in ("idle", "shared, ml4ms", "shared, all cores"):
        m = median(results[name])
        print(f"{name:<20} {m:>10.1f} {m / idle:>8.2f}")
        summary[name.replace(", ", "_").replace(" ", "_") + "_ratio"] = round(m / idle, 2)
    ours, theirs = median(results["shared, ml4ms"]), median(results["shared, all cores"])
    print(f"shared machine: ml4ms's threads are {theirs / ours:.2f}x faster than all-core threads; goal: "
          f"shared/idle <= 1.5 ({'met' if ours / idle <= 1.5 else 'missed'})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(ROOT, "src"))
    main()
