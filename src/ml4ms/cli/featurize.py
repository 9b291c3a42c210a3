"""``ml4ms featurize``: descriptors as arrays, for users who want the features themselves."""

import io
import json

import numpy as np

from ..errors import InputError, from_source
from .options import add_input, add_output, add_quiet, add_scheduler


def add_parsers(sub):
    from ..descriptors import DESCRIPTORS

    p = sub.add_parser("featurize", help="compute a descriptor and save it as .npz")
    add_input(p, "data", help="NAME:SPLIT (bundled), a structure file, or a CSV table")
    p.add_argument("--descriptor", metavar="NAME", help=f"descriptor name: {', '.join(DESCRIPTORS)}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="descriptor parameter, VALUE in TOML syntax (e.g. r_cut=5.0, species=['Ti','O'])")
    add_input(p, "--config", metavar="FILE.toml",
              help="take the [descriptor] table of a recipe (a TOML file or a bundled recipe's name)")
    p.add_argument("--per-atom", action="store_true", help="per-atom rows (local descriptors) with structure_index")
    add_output(p, "-o", "--output", required=True, metavar="FILE.npz", suffixes=(".npz",), what="the features",
               help="features, feature names and the descriptor settings as .npz")
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
    from ..outputs import write_bytes
    from ..structures import check_structures

    spec = descriptor_spec(args)
    if not spec.get("name"):
        raise InputError("no descriptor given", hint="use --descriptor NAME or --config with a [descriptor] table")
    params = {k: v for k, v in spec.items() if k != "name"}
    descriptor = make_descriptor(spec["name"], **params)
    if hasattr(descriptor, "progress"):
        descriptor.set_params(progress=not args.quiet)
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
    buf = io.BytesIO()
    np.savez_compressed(buf, **out)
    write_bytes(args.output, buf.getvalue())
    print(f"{features.shape[0]} x {features.shape[1]} features ({spec['name']}) written to {args.output}")
