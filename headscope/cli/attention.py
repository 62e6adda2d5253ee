"""`headscope attention "TEXT" --out a.json [--weights value_norm] [--rollout]`: one text's answer, as the API's;
`headscope attention --image FILE --model digits --out a.json`: one picture's, for an image model (its prediction
printed too)."""

import argparse
import base64
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
    from headscope.models.images import NotAnImage
    from headscope.models.registry import load_model
    from headscope.server.answers import attention_body, check_weights_request
    from headscope.server.errors import ApiError
    from headscope.server.inputs import decode_image
    from headscope.server.schemas.attention import AttentionRequest
    from headscope.server.settings import Settings

    if not args.out.parent.is_dir():
        fail(f"cannot write {args.out}: there is no folder {args.out.parent}")
    try:
        model = load_model(args.model[0])
    except (FileNotFoundError, ValueError) as e:
        fail(e)
    from pydantic import ValidationError

    takes = model.info.takes
    if takes == "image" and args.image is None:
        fail(f"{model.info.name} takes an image, not a text: give --image FILE (a PNG or JPEG) instead of TEXT")
    if takes == "text" and (args.image is not None or args.text is None):
        fail(f"{model.info.name} takes a text, not an image: give TEXT" + (" instead of --image" if args.image else ""))
    if args.image is not None and args.text is not None:
        fail("give TEXT or --image FILE, not both")
    settings = Settings()
    data = read_picture(args.image, settings.max_image_bytes) if args.image is not None else None
    try:
        inputs = {"text": args.text} if data is None else {"image": base64.b64encode(data).decode("ascii")}
        req = AttentionRequest(**inputs, truncate=args.truncate, format=ATTENTION_SUFFIXES[args.out.suffix],
                               weights=args.weights, rollout=args.rollout)
    except ValidationError as e:
        fail(f"text: {e.errors()[0]['msg']}")
    try:
        check_weights_request(model, req.weights)  # value norms need every W_O: a 422's words, one line
        if data is None:
            text, cut = cut_to_chars(model.info, req.text, req.truncate)
        else:  # the server's own checks: max_image_pixels from the header, before any pixel is decoded
            text, cut = decode_image(data, settings.max_image_pixels), False  # (H, W, 3)
        analysis = model.analyze(text, req.truncate)
        body = attention_body(analysis, req, cut, None, settings.max_json_floats, model=model, text=text)
    except (TooManyTokens, TooManyCharacters, NotAnImage) as e:
        fail(e)
    except ApiError as e:
        fail(e.detail)
    try:
        args.out.write_bytes(body)
    except OSError as e:
        fail(f"cannot write {args.out}: {e.strerror or e}")
    units = "tokens" if analysis.image is None else "positions"
    print(f"wrote {args.out}: {model.info.name}, {len(analysis.tokens)} {units}, {args.weights}"
          f"{', rollout' if args.rollout else ''}", file=sys.stderr)
    if analysis.image is not None:
        image = analysis.image
        grid = (f"{image['patch_grid'][0]} x {image['patch_grid'][1]} patches of {image['patch_size'][0]} x "
                f"{image['patch_size'][1]} pixels")
        if not image["predicts"]:
            print(f"prediction: none, a feature model (no classifier head); {grid}", file=sys.stderr)
            return
        p = image["probabilities"][image["classes"].index(image["prediction"])]
        print(f"prediction: {image['prediction']} (probability {p:.4f}; {grid}"
              f"{'; the picture was inverted: mostly bright' if image['inverted'] else ''})", file=sys.stderr)


def read_picture(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, its size checked (max_image_bytes) before it is read; an unreadable file ends the command."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            fail(f"{path} is {size} bytes; max_image_bytes is {max_bytes}")
        return path.read_bytes()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}")


def add_parser(sub) -> None:
    p = sub.add_parser("attention", help="one text's attention (or value norms, rollout) as the API answers it")
    p.add_argument("text", nargs="?", help="the text to analyse (text models)")
    p.add_argument("--image", type=Path, metavar="FILE", help="image models (e.g. --model digits): a PNG or JPEG "
                   "picture to analyse instead of a text; its prediction is printed too")
    p.add_argument("--out", required=True, type=attention_out,
                   help="output file: .json (the API's json answer) or .safetensors (its exact binary answer)")
    add_model_option(p, "the model to run (default: the first built-in)")
    p.add_argument("--weights", choices=("attention", "value_norm"), default="attention",
                   help="what the arrays hold: attention weights, or value norms ‖α f(x)‖ (docs/metrics.md)")
    p.add_argument("--rollout", action="store_true", help="add the attention rollout of every kind that has one")
    p.add_argument("--truncate", action="store_true", help="cut a text longer than the model's maximum")
    p.set_defaults(func=attention)
