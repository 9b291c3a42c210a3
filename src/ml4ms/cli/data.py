"""``ml4ms datasets`` and ``ml4ms duplicates``: what data ships, and which structures repeat."""

import numpy as np

from ..errors import InputError
from .options import add_input, add_output, add_quiet, add_scheduler, non_negative_float, positive_float

#: record keys that name a record, in order of preference
_ID_KEYS = ("id", "structure", "source_file", "material", "name")


def add_parsers(sub):
    p = sub.add_parser("datasets", help="list the bundled datasets: splits, targets with units, citation")
    add_quiet(p)
    p.set_defaults(func=run_datasets)

    p = sub.add_parser(
        "duplicates",
        help="find duplicate structures (rotation, translation, permutation, cell choice and supercells ignored)",
        description="Find duplicate structures in DATA, or between DATA and DATA2 (e.g. train vs test). "
        "Two structures are duplicates when, species pair by species pair, their interatomic distances "
        "(periodic images within --cutoff) agree within --tol Å, atom by atom.",
    )
    add_input(p, "data", help="NAME[:SPLIT] (bundled) or a structure file")
    add_input(p, "data2", nargs="?", help="second data set: report pairs across DATA and DATA2")
    p.add_argument("--tol", type=non_negative_float, default=None, metavar="Å",
                   help="largest distance deviation (default 1e-3)")
    p.add_argument("--cutoff", type=positive_float, default=None, metavar="Å",
                   help="radius of the distances compared in periodic cells (default 5.0)")
    add_output(p, "--json", metavar="OUT", suffixes=(".json",), what="the pairs", help="write the pairs as JSON")
    add_quiet(p)
    add_scheduler(p)
    p.set_defaults(func=run_duplicates)


def format_datasets(cards):
    """Readable text table of dataset cards.

    Examples
    --------
    >>> from ml4ms.datasets import CARDS
    >>> print(format_datasets([CARDS["octet"]]).splitlines()[0])
    octet — 82 octet AB binaries, rocksalt vs zincblende: table of atomic primary features (split 'table') and the 164 two-atom RS/ZB cells (split 'structures')
    """
    blocks = []
    for card in cards:
        splits = ", ".join(
            f"{name} ({size}{', default' if name == card.default_split else ''})" for name, size in card.splits.items()
        )
        targets = ", ".join(f"{key} [{unit}]" for key, unit in card.targets.items())
        blocks.append(
            "\n".join(
                [
                    f"{card.name} — {card.description}",
                    f"  splits:   {splits}",
                    f"  targets:  {targets}",
                    f"  cite:     {card.citation}",
                    f"  load:     ml4ms.datasets.load('{card.name}', '{card.default_split}')"
                    f"  |  CLI: {card.name}:{card.default_split}",
                ]
            )
        )
    return "\n\n".join(blocks)


def run_datasets(args):
    from ..datasets import list_datasets

    print(format_datasets(list_datasets()))
    return 0


def _record_id(record):
    from ..structures import get_property

    for key in _ID_KEYS:
        value = get_property(record, key)
        if value is not None and getattr(value, "ndim", 0) == 0:
            return value.item() if hasattr(value, "item") else value
    return None


def _structures(data):
    from ..structures import check_structures, is_atoms

    records = data.records
    if not records or not all(is_atoms(r) for r in records):
        raise InputError(
            "duplicate detection needs structures, this is a table",
            source=data.source,
            hint="give a structure file or a bundled structure set such as nomad2018:train",
        )
    return check_structures(records, source=data.source)


def _conflicting(rows, first, second, keys, fraction=0.05):
    """(id_i, id_j) of the pairs whose labels differ by more than ``fraction`` of a label's std."""
    out = []
    for row in rows:
        if any(abs(row["label_difference"][k]) > fraction * np.std(np.r_[first.targets[k], second.targets[k]])
               for k in keys):
            out.append((row["id_i"], row["id_j"]))
    return out


def _same_data(path, path2, first, second):
    """True if two arguments name one data set: the same file (by any path) or the same bundled split."""
    import os

    if os.path.exists(path) and os.path.exists(path2):
        return os.path.samefile(path, path2)
    return first.source == second.source


def run_duplicates(args):
    from ..datasets import load_data
    from ..duplicates import DEFAULT_CUTOFF, DEFAULT_TOL, find_duplicates
    from ..outputs import write_json

    tol = DEFAULT_TOL if args.tol is None else args.tol
    cutoff = DEFAULT_CUTOFF if args.cutoff is None else args.cutoff
    first = load_data(args.data)
    records = _structures(first)
    second = others = None
    if args.data2 is not None:
        second = load_data(args.data2)
        if _same_data(args.data, args.data2, first, second):
            raise InputError("DATA and DATA2 are the same data set: every structure would pair with itself",
                             source=second.source, hint="give it once, as DATA, for the duplicates within it")
        others = _structures(second)
    try:
        pairs, deviations = find_duplicates(records, others, tol=tol, cutoff=cutoff,
                                            progress=not args.quiet, return_deviation=True)
    except InputError as exc:
        raise InputError(exc.message, source=first.source if second is None else None,
                         index=exc.index, hint=exc.hint) from None
    # labels present on both sides: duplicates whose labels disagree are worth a look
    other_data = second if second is not None else first
    shared = [k for k in first.targets if k in other_data.targets]
    rows = []
    for (i, j), dev in zip(pairs, deviations):
        row = {"i": int(i), "j": int(j), "id_i": _record_id(records[i]),
               "id_j": _record_id((others if others is not None else records)[j]),
               "max_deviation": float(dev)}
        if shared:
            row["label_difference"] = {k: float(other_data.targets[k][j] - first.targets[k][i]) for k in shared}
        rows.append(row)
    sources = [first.source] + ([second.source] if second is not None else [])
    where = f"{first.source} vs {second.source}" if second is not None else first.source
    print(f"{len(rows)} duplicate pair{'s' if len(rows) != 1 else ''} in {where} "
          f"(tol {tol:g} Å, cutoff {cutoff:g} Å)")
    if rows:
        label_i = "i" if second is None else f"i ({first.source})"
        label_j = "j" if second is None else f"j ({second.source})"
        labels = "".join(f"  Δ{k:>14.14}" for k in shared)
        print(f"{label_i:>10} {label_j:>10}  {'id_i':>14} {'id_j':>14}  max_dev/Å{labels}")
        for row in rows:
            diffs = "".join(f"  {row['label_difference'][k]:>+15.4g}" for k in shared)
            print(f"{row['i']:>10} {row['j']:>10}  {str(row['id_i']):>14} {str(row['id_j']):>14}  "
                  f"{row['max_deviation']:.2e}{diffs}")
        if shared:
            conflicts = _conflicting(rows, first, other_data, shared)
            print(f"{len(conflicts)} of these pairs have labels that differ by more than 5% of the "
                  f"label's spread: {', '.join(f'{a}/{b}' for a, b in conflicts) or 'none'}")
    if args.json:
        write_json(args.json, {"pairs": rows, "n_pairs": len(rows), "data": sources,
                               "tol": tol, "cutoff": cutoff})
        print(f"wrote {args.json}")
    return 0
