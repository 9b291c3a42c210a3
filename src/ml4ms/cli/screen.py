"""``ml4ms screen``: a property model's predictions through filters, streamed in chunks, survivors ranked."""

from .options import (MODEL_DEVICE, add_chunk, add_device, add_input, add_output, add_quiet, add_scheduler,
                      checked_device, positive_int)


def add_parsers(sub):
    from ..screening import ALLOWED, CHUNK

    p = sub.add_parser("screen", help="predict, filter by conditions on predictions and uncertainty, rank")
    add_input(p, "model", help="model folder written by 'ml4ms fit'")
    add_input(p, "data", nargs="+",
              help="candidates: NAME:SPLIT (bundled), structure files, ASE databases (.db), patterns such as "
                   "'data/*.xyz' (quoted) or CSV tables; files are read chunk by chunk (several: a 'data' column)")
    p.add_argument("--where", action="append", default=[], metavar="EXPR",
                   help=f"a condition on the prediction columns ({ALLOWED}), e.g. 'bandgap_energy_ev > 2 and "
                        "bandgap_energy_ev_std < 0.2'; repeat for stages applied in order")
    p.add_argument("--rank-by", metavar="COLUMN",
                   help="rank the survivors by this prediction column (default: the model's first target)")
    p.add_argument("--descending", action="store_true", help="rank the largest first")
    add_output(p, "-o", "--output", required=True, metavar="OUT.csv", suffixes=(".csv",), what="the survivors",
               help="the survivors, ranked, as CSV; finished chunks wait in OUT.csv.partial until the end")
    add_chunk(p, CHUNK)
    p.add_argument("--max-chunks", type=positive_int, metavar="N",
                   help="stop after N chunks (e.g. within a batch job's time limit); the same command continues")
    add_device(p, "predict on", MODEL_DEVICE)
    add_scheduler(p)
    add_quiet(p)
    p.set_defaults(func=run_screen)


def run_screen(args):
    from ..datasets.sources import open_parts
    from ..screening import Filter, partial_folder, prediction_columns, stream
    from .learn import _load, model_identity, print_resumed

    model, meta = _load(args.model, checked_device(args))
    columns = prediction_columns(meta)
    filters = [Filter(text, columns) for text in args.where]  # every filter checked before any work
    rank_by = args.rank_by or meta["targets"][0]
    sources = open_parts(args.data)
    summary = stream(model, meta, sources, args.output, filters=filters, chunk=args.chunk, rank_by=rank_by,
                     descending=args.descending, identity=model_identity(args.model), progress=not args.quiet,
                     max_chunks=args.max_chunks)
    print_resumed(summary, args.output)
    print(f"{summary['n_records']} records screened ({summary['done']} of {summary['chunks']} chunks)")
    for k, (text, passed) in enumerate(summary["stages"], 1):
        print(f"stage {k}: {text}: {passed} passed")
    if not summary["complete"]:
        print(f"stopped after --max-chunks {args.max_chunks}; finished chunks are in {partial_folder(args.output)}: "
              "run the same command again to continue")
        return 0
    order = "largest" if args.descending else "smallest"
    print(f"{summary['n_survivors']} survivors, ranked by {rank_by} ({order} first), written to {args.output}")
