"""`headscope attribute TEXT --answer A --wrong W`: direct logit attribution (headscope/analyses/attribution.py),
the components largest first, or with --json the same object as POST /api/attribute.

  headscope attribute TEXT --answer A --wrong W [--step N] [--model NAME[=PATH]] [--top N] [--json]
"""

import argparse
import json

from headscope.cli.common import add_model_option, fail, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("attribute", help="each head's and MLP's direct contribution to logit(answer) - logit(wrong)")
    p.add_argument("text", help="the prompt")
    add_model_option(p, "the model to run (default: the first built-in)")
    p.add_argument("--answer", required=True, help="one token")
    p.add_argument("--wrong", required=True, help="one token")
    p.add_argument("--step", type=int, help="encoder-decoders: the output step (default 0)")
    p.add_argument("--top", type=positive_int, default=20, help="components to print, largest first (default 20)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (as POST /api/attribute)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from headscope.analyses.attribution import attribute
    from headscope.analyses.patching import CannotPatch
    from headscope.models.analysis import TooManyCharacters, TooManyTokens
    from headscope.models.registry import load_model

    if not args.text.strip():
        fail("the text is empty or only whitespace")
    try:
        model = load_model(args.model[0])
    except (FileNotFoundError, ValueError) as e:
        fail(e)
    try:
        result = attribute(model, args.text, args.answer, args.wrong, args.step)
    except (CannotPatch, TooManyTokens, TooManyCharacters) as e:
        fail(e)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    a, w = result["answer"]["token"], result["wrong"]["token"]
    print(f"{result['model']}: logit({a!r}) - logit({w!r}) at position {result['position']} "
          f"({result['position_token']!r}) = {result['total']:.4f}; the {len(result['components'])} components sum "
          f"to {result['sum']:.4f}")
    print(f"final {result['norm']['form']}, scale {result['norm']['scale']:.4g} frozen at this run")
    print(f"{'component':<28}{'type':<7}{'value':>10}")
    for c in sorted(result["components"], key=lambda c: -abs(c["value"]))[: args.top]:
        print(f"{c['name']:<28}{c['type']:<7}{c['value']:10.4f}")
