"""``ml4ms featurize``: descriptors as arrays, for users who want the features themselves."""

import json

import numpy as np

from ..errors import InputError, from_source
from .options import add_input, add_output, add_quiet, add_scheduler, positive_int


def add_parsers(sub):
    from ..descriptors import DESCRIPTORS

    p = sub.add_parser("featurize", help="compute a descriptor and save it as .npz (or shards, with --chunk)")
    add_input(p, "data", help="NAME:SPLIT (bundled), a structure file, or a CSV table")
    p.add_argument("--descriptor", metavar="NAME", help=f"descriptor name: {', '.join(DESCRIPTORS)}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="descriptor parameter, VALUE in TOML syntax (e.g. r_cut=5.0, species=['Ti','O'])")
    add_input(p, "--config", metavar="FILE.toml",
              help="take the [descriptor] table of a recipe (a TOML file or a bundled recipe's name)")
    p.add_argument("--per-atom", action="store_true", help="per-atom rows (local descriptors) with structure_index")
    add_output(p, "-o", "--output", required=True, metavar="FILE.npz|FOLDER", suffixes=(".npz",), what="the features",
               switched={"chunk": {"suffixes": None, "folder": "files", "what": "the feature shards"}},
               help="features, feature names and the descriptor settings as .npz; with --chunk, a folder of shards "
                    "(one .npz per chunk and index.json; read them with ml4ms.shards.read_features)")
    p.add_argument("--chunk", type=positive_int, metavar="N",
                   help="compute and write the features N structures at a time into the folder -o (the unit of "
                        "work, memory and resuming; the same command continues an interrupted run)")
    add_scheduler(p)
    add_quiet(p)
    p.set_defaults(func=run_featurize)


def descriptor_spec(args):
    """``{"name": ..., **params}`` from ``--config``'s [descriptor], ``--descriptor`` and ``--set``.

    ``--descriptor`` replaces the recipe's descriptor; ``--set`` values override
    parameters and are checked as a recipe's [descriptor] table is. The name
    may be missing (the caller picks a default or complains).
    """
    from ..config import check, parse_assignments
    from ..recipe import SCHEMA, read_recipe

    spec = {}
    if args.config:
        spec = dict(read_recipe(args.config).descriptor or {})
    if args.descriptor:
        spec = {"name": args.descriptor}
    spec.update(parse_assignments(args.set))
    if args.set and spec.get("name"):
        check(spec, SCHEMA["descriptor"], source="--set", table=("descriptor",))
    return spec


def run_featurize(args):
    from ..datasets import load_data
    from ..descriptors import make_descriptor
    from ..outputs import write_npz
    from ..structures import check_structures

    spec = descriptor_spec(args)
    if not spec.get("name"):
        raise InputError("no descriptor given", hint="use --descriptor NAME or --config with a [descriptor] table")
    params = {k: v for k, v in spec.items() if k != "name"}
    descriptor = make_descriptor(spec["name"], **params)
    if hasattr(descriptor, "progress"):
        descriptor.set_params(progress=not args.quiet)
    if args.chunk:
        return _featurize_shards(args, descriptor, spec)
    data = load_data(args.data)
    check_structures(data.records, source=data.source)
    if args.per_atom and not hasattr(descriptor, "transform_local"):
        raise InputError(f"descriptor '{spec['name']}' is global: it has no per-atom rows", hint="drop --per-atom")
    with from_source(data.source):
        descriptor.fit(data.records)
        out = {}
        if args.per_atom:
            features, index = descriptor.transform_local(data.records)
            out["structure_index"] = index
        else:
            features = descriptor.transform(data.records)
    out["features"] = features
    out["feature_names"] = np.asarray(descriptor.get_feature_names_out(), dtype=str)
    out["descriptor"] = np.asarray(json.dumps(spec))
    write_npz(args.output, out)
    print(f"{features.shape[0]} x {features.shape[1]} features ({spec['name']}) written to {args.output}")


def _featurize_shards(args, descriptor, spec):
    from ..datasets.sources import open_parts
    from ..shards import INDEX, write_shards

    if args.output.lower().endswith(".npz"):
        raise InputError("-o: with --chunk the features go to a folder of shards", source=args.output,
                         hint="give a folder name, or drop --chunk for one .npz")
    parts = open_parts([args.data])
    summary = write_shards(descriptor, spec, parts, args.output, chunk=args.chunk, per_atom=args.per_atom,
                           progress=not args.quiet)
    if summary["resumed"]:
        print(f"continued from {summary['resumed']} of {summary['shards']} shards finished earlier")
    print(f"{summary['n_rows']} x {summary['n_features']} features ({spec['name']}) of {summary['n_structures']} "
          f"structures written to {args.output} in {summary['shards']} shards (index: {INDEX})")
