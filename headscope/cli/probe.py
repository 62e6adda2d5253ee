"""`headscope probe PAIRS.jsonl [--model NAME[=PATH]] [--json]`: each head as a classifier of a relation.

Prints the best heads beside the best fixed-offset baseline (headscope/analyses/probes.py; the format of the pairs
file is in docs/probes.md), or with --json the same answer as POST /api/probe. Skipped pairs are
listed on stderr. What stops it (an unreadable file, a bad line, a model it cannot load) is one line
on stderr and exit status 2.
"""

import argparse
import json
import sys

from headscope.cli.common import add_model_option, fail, unreadable


def add_parser(sub) -> None:
    p = sub.add_parser("probe", help="how often each head's strongest weight from one word lands on another "
                       "(Clark et al. 2019), beside the best fixed-offset baseline")
    p.add_argument("pairs", help='JSONL file, one {"sentence", "from", "to"} object per line (docs/probes.md)')
    add_model_option(p, "the model to run (default: the first built-in)")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON, as POST /api/probe gives it")
    p.add_argument("--top", type=int, default=10, help="best heads to list (default: 10)")
    p.set_defaults(func=probe_command)


def table(result: dict, top: int) -> str:
    """The best heads beside the baseline, as aligned text."""
    base = result["baseline"]
    lines = [
        f"{result['model']}: {result['pairs']} pairs in {result['sentences']} sentences"
        + (f" ({len(result['skipped'])} skipped)" if result["skipped"] else ""),
        f"baseline: the word at offset {base['offset']:+d}, right on {base['correct']}/{result['pairs']} = "
        f"{base['accuracy']:.3f}",
        "",
        f"{'head':<8} {'kind':<10} {'correct':>8} {'accuracy':>9} {'vs baseline':>12}",
    ]
    for h in result["best"][:top]:
        lines.append(f"{h['name']:<8} {h['kind']:<10} {h['correct']:>8} {h['accuracy']:>9.3f} "
                     f"{h['above_baseline']:>+12.3f}")
    return "\n".join(lines)


def probe_command(args: argparse.Namespace) -> None:
    from headscope.analyses.probes import NotProbeable, NoUsablePairs, PairsError, parse_pairs, probe
    from headscope.models.registry import load_model

    if args.top < 1:
        fail(f"--top must be 1 or more, not {args.top}")
    try:
        with open(args.pairs, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        unreadable(args.pairs, e)
    try:
        pairs = parse_pairs(text)
    except PairsError as e:
        fail(f"{args.pairs}: {e}")
    try:
        model = load_model(args.model[0])
    except (FileNotFoundError, ValueError) as e:  # a model we cannot load, as in serve
        fail(e)
    try:
        result = probe(model, pairs, best=args.top)
    except (NotProbeable, NoUsablePairs) as e:
        fail(e)
    for s in result["skipped"]:
        print(f"skipped line {s['line']}: {s['reason']}", file=sys.stderr)
    for kind in result["kinds"].values():
        if kind["note"]:
            print(f"note: {kind['note']}", file=sys.stderr)
    print(json.dumps(result, indent=1) if args.json else table(result, args.top))

