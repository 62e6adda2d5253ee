"""`headscope attention "TEXT" --out a.json [--weights value_norm] [--rollout]`: one text's answer, as the API's."""

import argparse
import sys
from pathlib import Path

from headscope.cli.common import add_model_option, fail

ATTENTION_SUFFIXES = {".json": "json", ".safetensors": "safetensors"}  # `attention --out` -> the API's format


def attention_out(text: str) -> Path:
    path = Path(text)
    if path.suffix not in ATTENTION_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} must end in {' or '.join(ATTENTION_SUFFIXES)}")
    return path


def attention(args: argparse.Namespace) -> None:
    """One text's POST /api/attention answer, written to a file: attention weights or value norms, and the
    rollout, with every field the API gives (headscope/server/answers.py)."""
    from headscope.models.analysis import TooManyCharacters, TooManyTokens, cut_to_chars
    from headscope.models.registry import load_model
    from headscope.server.answers import attention_body, check_weights_request
    from headscope.server.errors import ApiError
    from headscope.server.schemas.attention import AttentionRequest
    from headscope.server.settings import Settings

    if not args.out.parent.is_dir():
        fail(f"cannot write {args.out}: there is no folder {args.out.parent}")
    try:
        model = load_model(args.model[0])
    except (FileNotFoundError, ValueError) as e:
        fail(e)
    from pydantic import ValidationError

    try:
        req = AttentionRequest(text=args.text, truncate=args.truncate, format=ATTENTION_SUFFIXES[args.out.suffix],
                               weights=args.weights, rollout=args.rollout)
    except ValidationError as e:
        fail(f"text: {e.errors()[0]['msg']}")
    try:
        check_weights_request(model, req.weights)  # value norms need every W_O: a 422's words, one line
        text, cut = cut_to_chars(model.info, req.text, req.truncate)
        analysis = model.analyze(text, req.truncate)
        body = attention_body(analysis, req, cut, None, Settings().max_json_floats, model=model, text=text)
    except (TooManyTokens, TooManyCharacters) as e:
        fail(e)
    except ApiError as e:
        fail(e.detail)
    try:
        args.out.write_bytes(body)
    except OSError as e:
        fail(f"cannot write {args.out}: {e.strerror or e}")
    print(f"wrote {args.out}: {model.info.name}, {len(analysis.tokens)} tokens, {args.weights}"
          f"{', rollout' if args.rollout else ''}", file=sys.stderr)


def add_parser(sub) -> None:
    p = sub.add_parser("attention", help="one text's attention (or value norms, rollout) as the API answers it")
    p.add_argument("text", help="the text to analyse")
    p.add_argument("--out", required=True, type=attention_out,
                   help="output file: .json (the API's json answer) or .safetensors (its exact binary answer)")
    add_model_option(p, "the model to run (default: the first built-in)")
    p.add_argument("--weights", choices=("attention", "value_norm"), default="attention",
                   help="what the arrays hold: attention weights, or value norms ‖α f(x)‖ (docs/metrics.md)")
    p.add_argument("--rollout", action="store_true", help="add the attention rollout of every kind that has one")
    p.add_argument("--truncate", action="store_true", help="cut a text longer than the model's maximum")
    p.set_defaults(func=attention)
