"""`headscope detect [--model NAME[=PATH]] [--seed N] [--json]`: every head's previous-token, duplicate-token and
induction score on seeded synthetic inputs (headscope/analyses/detect.py), the same answer as POST /api/detect."""

import argparse
import json

from headscope.cli.common import add_model_option, fail, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("detect", help="score every head as a previous-token, duplicate-token and induction head")
    add_model_option(p, "the model to score (default: the first built-in)")
    p.add_argument("--seed", type=int, default=None, help="seeds the inputs (default: that of POST /api/detect)")
    p.add_argument("--sequences", type=positive_int, default=None, help="random word sequences written twice")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON (as POST /api/detect)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from headscope.analyses.detect import DEFAULT_SEED, DEFAULT_SEQUENCES, NotDetectable, detect_heads
    from headscope.models.registry import load_model
    from headscope.server.settings import Settings

    sequences = args.sequences or DEFAULT_SEQUENCES
    if sequences > Settings().detect_max_sequences:
        fail(f"--sequences {sequences}: the limit is {Settings().detect_max_sequences}")
    try:
        model = load_model(args.model[0])
        answer = detect_heads(model, DEFAULT_SEED if args.seed is None else args.seed, sequences)
    except NotDetectable as e:
        fail(e)
    except (FileNotFoundError, ValueError) as e:  # a model we cannot load, as in serve
        fail(e)
    if args.json:
        print(json.dumps(answer, indent=1))
        return
    print(f"{answer['model']}, seed {answer['seed']}: heads scoring at least {answer['threshold']} "
          f"({answer['used']['repeated']} repeated sequences, {answer['used']['natural']} sentences)")
    for kind in answer["kinds"]:
        for detector, heads in answer["found"][kind].items():
            named = ", ".join(f"{h['name']} {h['score']:.2f}" for h in heads) or "none"
            print(f"{kind} {detector}: {named}")
