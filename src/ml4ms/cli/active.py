"""``ml4ms active run | status | report``: the active-learning loop and what its database holds."""

from .options import add_input, add_output, add_quiet, add_scheduler, positive_int


def add_parsers(sub):
    p = sub.add_parser("active", help="active learning: a loop from a model's uncertainty to new labels, every "
                                      "label kept in an ASE database (run, status, report)")
    p.set_defaults(_parser=p)
    asub = p.add_subparsers(dest="active_command", metavar="SUBCOMMAND")

    q = asub.add_parser("run", help="run the loop of a config, or continue it (after a kill too): train, choose, "
                                    "label with the oracle, record")
    add_input(q, "config", metavar="CONFIG.toml",
              help="the run: [oracle], [pool], [start], [recipe], [strategy], [loop], [evaluation]; a TOML file or "
                   "the name of a bundled recipe (active_cuau_pool_emt; on-the-fly MD of a potential: active_cuau_emt)")
    add_output(q, "--db", required=True, metavar="LABELS.db", what="the label database",
               help="the ASE database of labels, failures and rounds: a .db file (SQLite; created, or continued "
                    "when it holds this run) or a postgresql:// URL")
    q.add_argument("--rounds", type=positive_int, metavar="N",
                   help="run at most N rounds now (finishing an open round counts); run again to go on")
    add_quiet(q)
    add_scheduler(q)
    q.set_defaults(func=run_run)

    q = asub.add_parser("status", help="the rounds, labels and failures of a label database")
    add_input(q, "db", metavar="LABELS.db", help="the database written by 'ml4ms active run' (or its URL)")
    add_output(q, "--json", metavar="OUT", suffixes=(".json",), what="the status", help="write the status as JSON")
    add_quiet(q)
    q.set_defaults(func=run_status)

    q = asub.add_parser("report", help="plots of a run: error against the number of labels (with the random "
                                       "baseline), calibration of the uncertainty per round, the uncertainty along "
                                       "each MD run (on-the-fly MD); a JSON summary")
    add_input(q, "db", metavar="LABELS.db", help="the database written by 'ml4ms active run' (or its URL)")
    add_output(q, "-o", "--output", required=True, metavar="DIR", folder="files", what="the report",
               help="folder for error_vs_labels.png, calibration.png, md_uncertainty.png (on-the-fly MD) and "
                    "summary.json")
    add_quiet(q)
    q.set_defaults(func=run_report)


def run_run(args):
    from ..active.config import read_config
    from ..active.loop import ActiveLoop

    config = read_config(args.config)
    loop = ActiveLoop(config, args.db, progress=not args.quiet, echo=print)  # checks everything, writes nothing
    summary = loop.run(args.rounds)
    labels = summary["labels"]
    state = "finished" if summary["finished"] else "not finished (run the same command to continue)"
    print(f"{summary['ran']} rounds run; {labels['active']} of {summary['budget']} labels in the active-learning "
          f"set, {summary['failures']['calls']} failed oracle calls; {state}; see 'ml4ms active status {args.db}'")
    return 0


def run_status(args):
    from ..active.report import status_lines, summarize
    from ..active.store import LabelStore
    from ..outputs import write_json

    summary = summarize(LabelStore(args.db, must_exist=True))
    for line in status_lines(summary):
        print(line)
    if args.json:
        write_json(args.json, summary)
    return 0


def run_report(args):
    from ..active.report import write_report
    from ..active.store import LabelStore

    store = LabelStore(args.db, must_exist=True)
    store.settings  # noqa: B018 - refuse a database of anything else before writing
    written, skipped = write_report(store, args.output)
    print(f"wrote {', '.join(written)}")
    for name, why in skipped.items():
        print(f"{name} not drawn: {why}")
    return 0
