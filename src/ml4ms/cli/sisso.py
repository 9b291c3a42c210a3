"""``ml4ms sisso --config FILE.toml [--json OUT] [--out DIR]``."""

import os
import sys

from ..errors import InputError
from .options import add_input, add_old_name, add_output, add_quiet, non_negative_int


def add_parsers(sub):
    p = sub.add_parser("sisso", help="SISSO descriptor formulas (regression or classification) from a TOML config")
    add_input(p, "--config", required=True, metavar="FILE.toml",
              help="data, primary features with units, operators, rung, SIS size, dimensions, CV; a TOML "
                   "file or the name of a bundled config (octet_prl2015, octet_sisso, octet_classify)")
    add_output(p, "--json", metavar="OUT", suffixes=(".json",), what="the results", help="write the results as JSON")
    add_output(p, "-o", "--output", dest="out", metavar="DIR", folder="files", what="the results folder",
               help="folder for results.json, parity.png and map.png")
    add_old_name(p, "--out", "out")
    p.add_argument("--cv-repeats", type=non_negative_int, metavar="N", help="override [cv] repeats (0 = no CV)")
    p.add_argument("--loo", action="store_true", help="leave-one-out CV instead of [cv]")
    add_quiet(p)
    p.set_defaults(func=run_sisso)


def run_sisso(args):
    from ..outputs import write_json
    from ..sisso.workflow import plot_results, read_config, run, summary_lines

    if args.loo and args.cv_repeats is not None:
        raise InputError("--cv-repeats sets the repeats of leave-out CV; --loo leaves each row out once",
                         hint="give one of them")
    cfg = read_config(args.config)
    if args.cv_repeats is not None:
        cfg["cv"]["repeats"] = args.cv_repeats
    if args.loo:
        cfg["cv"]["method"] = "loo"

    def progress(done, total):
        if not args.quiet:
            print(f"CV {done}/{total}", file=sys.stderr, flush=True)

    model, result, rows, y, classes = run(cfg, progress=progress)
    for line in summary_lines(result):
        print(line)
    if args.json:
        write_json(args.json, result)
    if args.out:
        from ..datasets import target_unit

        write_json(os.path.join(args.out, "results.json"), result)
        target = cfg["data"]["target"]
        unit = target_unit(target, cfg["data"]["path"].partition(":")[0])
        for path in plot_results(model, result, rows, y, classes, args.out, target=target, unit=unit):
            print(f"wrote {path}")
    return 0
