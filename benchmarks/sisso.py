"""SISSO speed: ml4ms against TorchSisso on the octet binaries, in one process.

Both codes get the same primary features (no units, so that every operator
applies to every pair, as in TorchSisso's non-dimensional mode), the same
binary operators, the same number of operator levels (rung) and the same SIS
size and dimension. Each builds its own feature space: the sizes are printed
(TorchSisso keeps duplicates, e.g. the rung-1 pairs again at rung 2; ml4ms
removes them). Prints wall time, feature-space size, peak memory (RSS growth
over the process baseline, sampled every 5 ms), the training RMSEs,
``speedup_vs_torchsisso=<TorchSisso time / ml4ms time>`` and, last, ``SUMMARY {json}``
with those numbers (``null`` for what was not run).

TorchSisso is a benchmark-only dependency (``pip install TorchSisso pandas``);
without it the script prints ml4ms's numbers and ``speedup_vs_torchsisso=nan`` (``null`` in the summary).

    python benchmarks/sisso.py                      # 20 primaries, + - * /, rung 2, SIS 10, 3D
    python benchmarks/sisso.py --primaries prl --rung 2
    python benchmarks/sisso.py --skip-torchsisso --rung 3 --primaries prl --ops "+,*"
"""

import argparse
import contextlib
import io
import json
import os
import resource
import threading
import time

import numpy as np

from ml4ms.datasets import load
from ml4ms.sisso import SISSORegressor

PRL = ["IP_A_eV", "IP_B_eV", "EA_A_eV", "EA_B_eV", "r_s_A_ang", "r_p_A_ang", "r_d_A_ang",
       "r_s_B_ang", "r_p_B_ang", "r_d_B_ang"]
OCTET = [f"{q}_{s}{u}" for s in "AB" for q, u in [("Z", ""), ("period", ""), ("IP", "_eV"), ("EA", "_eV"),
                                                   ("E_HOMO", "_eV"), ("E_LUMO", "_eV"), ("r_s", "_ang"),
                                                   ("r_p", "_ang"), ("r_d", "_ang")]]


class PeakRSS:
    """Peak resident memory growth (bytes) while the block runs, sampled from /proc."""

    def __init__(self, interval=0.005):
        self.interval = interval
        self.peak = 0

    @staticmethod
    def _rss():
        try:
            with open("/proc/self/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # pragma: no cover - not Linux
            return 0

    def __enter__(self):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0 = usage.ru_utime + usage.ru_stime
        self.base = self._rss()
        self.peak = self.base
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.growth = self.peak - self.base
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = usage.ru_utime + usage.ru_stime - self.cpu0


def run_ml4ms(X, names, y, ops, rung, n_sis, max_dim, cache_gb=2.0):
    model = SISSORegressor(feature_names=names, operators=ops, rung=rung, n_sis=n_sis, max_dim=max_dim,
                           cache_gb=cache_gb)
    with PeakRSS() as mem:
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu": mem.cpu, "n_features": model.n_features_, "peak_bytes": mem.growth,
            "rmse": [m["rmse"] for m in model.models_], "formulas": [m["features"] for m in model.models_]}


def run_torchsisso(X, names, y, ops, rung, n_sis, max_dim):
    import pandas as pd
    import torch
    from TorchSisso import SissoModel

    torch.set_num_threads(max(1, torch.get_num_threads()))
    df = pd.DataFrame(np.column_stack([y, X]), columns=["target"] + names)
    model = SissoModel(df, operators=list(ops), n_expansion=rung + 1, n_term=max_dim, k=n_sis, device="cpu")
    log = io.StringIO()
    with PeakRSS() as mem, contextlib.redirect_stdout(log):
        start = time.perf_counter()
        rmse, equation, r2, final = model.fit()
        seconds = time.perf_counter() - start
    size = None
    for line in log.getvalue().splitlines():
        if "feature space size" in line:
            size = int(line.split(":::")[1].split()[0])
    return {"seconds": seconds, "cpu": mem.cpu, "n_features": size, "peak_bytes": mem.growth, "rmse": rmse,
            "formulas": final}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--primaries", choices=["octet", "prl"], default="octet",
                        help="octet: 18 columns (Z, period, IP, EA, HOMO, LUMO, r_s, r_p, r_d of A and B); prl: 10")
    parser.add_argument("--ops", default="+,-,*,/", help="comma-separated binary operators")
    parser.add_argument("--rung", type=int, default=2)
    parser.add_argument("--n-sis", type=int, default=10)
    parser.add_argument("--max-dim", type=int, default=3)
    parser.add_argument("--cache-gb", type=float, default=2.0,
                        help="ml4ms keeps the streamed rung in memory up to this size (0: regenerate per SIS step)")
    parser.add_argument("--skip-torchsisso", action="store_true")
    args = parser.parse_args(argv)

    data = load("octet")
    columns = OCTET if args.primaries == "octet" else PRL
    X = np.array([[float(r[c]) for c in columns] for r in data.records])
    names = [c.replace("_eV", "").replace("_ang", "") for c in columns]
    y = data.targets["dE_RS_minus_ZB_eV_per_atom"]
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    print(f"octet binaries: {len(y)} samples, {len(names)} primary features, operators {ops}, "
          f"rung {args.rung}, SIS {args.n_sis}, dimensions 1..{args.max_dim}; {os.cpu_count()} CPU cores")

    ours = run_ml4ms(X, names, y, ops, args.rung, args.n_sis, args.max_dim, args.cache_gb)
    print(f"ml4ms:      {ours['seconds']:8.2f} s (CPU {ours['cpu']:6.2f} s)  features {ours['n_features']:>10}  "
          f"peak memory +{ours['peak_bytes'] / 2**20:8.1f} MiB  RMSE {np.round(ours['rmse'], 4).tolist()}")
    for dim, feats in enumerate(ours["formulas"], 1):
        print(f"  {dim}D {feats}")
    speedup = float("nan")
    theirs = None
    if not args.skip_torchsisso:
        try:
            theirs = run_torchsisso(X, names, y, ops, args.rung, args.n_sis, args.max_dim)
        except ImportError as exc:
            print(f"TorchSisso: not installed ({exc}); pip install TorchSisso pandas")
        else:
            print(f"TorchSisso: {theirs['seconds']:8.2f} s (CPU {theirs['cpu']:6.2f} s)  features {theirs['n_features']!s:>10}  "
                  f"peak memory +{theirs['peak_bytes'] / 2**20:8.1f} MiB  RMSE {np.round(theirs['rmse'], 4).tolist()}")
            print(f"  final {theirs['formulas']}")
            speedup = theirs["seconds"] / ours["seconds"]
    print(f"speedup_vs_torchsisso={speedup:.2f}")

    def side(run):
        return None if run is None else {
            "seconds": round(run["seconds"], 2), "cpu_seconds": round(run["cpu"], 2),
            "features": None if run["n_features"] is None else int(run["n_features"]),
            "peak_mib": round(run["peak_bytes"] / 2**20, 1),
            "rmse": np.round(np.asarray(run["rmse"], dtype=float), 4).tolist()}

    print("SUMMARY " + json.dumps({"primaries": args.primaries, "rung": args.rung, "max_dim": args.max_dim,
                                   "ml4ms": side(ours), "torchsisso": side(theirs),
                                   "speedup_vs_torchsisso": None if np.isnan(speedup) else round(speedup, 2)}))


if __name__ == "__main__":
    main()
