"""The `headscope` command (also `python -m app`).

  headscope serve [--host 127.0.0.1] [--port 8000] [--model NAME[=PATH]]...   start the web app
  headscope heads corpus.txt --out heads.csv [--model NAME[=PATH]]           per-head corpus averages

`--model` names a built-in (minilm, dates, ...) or serves a local Hugging Face checkpoint
directory as NAME=PATH; repeat it for several. Without it: every built-in. The first is the default.
"""

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import NoReturn

from model.metrics import METRICS


def fail(error: Exception) -> NoReturn:
    """A model that cannot be loaded: one line on stderr, exit status 2, no traceback."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    print(f"headscope: error: {lines[0]}", file=sys.stderr)
    sys.exit(2)


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from app.main import create_app
    from app.settings import Settings

    try:
        app = create_app(Settings(models=args.model))
    except (FileNotFoundError, ValueError) as e:  # a model we cannot load (model.hf.CheckpointError is a ValueError)
        fail(e)
    print(f"Headscope: models {', '.join(app.state.models)} loaded; open http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, limit_concurrency=args.max_connections)


def heads(args: argparse.Namespace) -> None:
    from model.heads import CorpusAverage, plan_corpus
    from model.registry import load_model

    texts = Path(args.corpus).read_text(encoding="utf-8").splitlines()
    try:
        model = load_model(args.model[0])
    except (FileNotFoundError, ValueError) as e:  # as in serve
        fail(e)
    batches, errors, _ = plan_corpus(model, texts, args.truncate, args.batch_size)
    errors = [e for e in errors if texts[e["index"]].strip()]  # blank lines are not errors in a file
    average = CorpusAverage()
    for batch in batches:
        average.add_batch(model, batch, args.truncate)
        print(f"\r{average.sentences}/{sum(map(len, batches))} sentences", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for e in errors:
        print(f"skipped line {e['index'] + 1}: {e['error']}", file=sys.stderr)
    summary = average.summary()
    out = Path(args.out)
    if out.suffix == ".json":
        out.write_text(json.dumps({"model": model.info.name, "sentences": average.sentences, "heads": summary}, indent=1))
    else:
        with out.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["kind", "layer", "head", "name", *METRICS, "roles"])
            for kind, records in summary.items():
                for r in records:
                    values = ["" if r["metrics"][m] is None else f"{r['metrics'][m]:.6g}" for m in METRICS]
                    writer.writerow([kind, r["layer"], r["head"], r["name"], *values, " ".join(r["roles"])])
    print(f"wrote {out}: {average.sentences} sentences averaged", file=sys.stderr)


def add_model_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--model", action="append", metavar="NAME[=PATH]",
                        help=f"{help}. NAME is a built-in; NAME=PATH a local Hugging Face checkpoint directory")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="headscope", description="See what every attention head looks at.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    add_model_option(p, "models to serve; the first is the default (default: every built-in)")
    p.add_argument("--log-level", default="info")
    p.add_argument("--max-connections", type=int, default=200, help="open connections beyond this get 503")
    p.set_defaults(func=serve)

    p = sub.add_parser("heads", help="average per-head metrics over a text file, one sentence per line")
    p.add_argument("corpus", help="text file, one sentence per line")
    p.add_argument("--out", required=True, help="output file: .csv or .json")
    add_model_option(p, "the model to run (default: the first built-in)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--truncate", action="store_true", help="cut lines longer than the model's maximum")
    p.set_defaults(func=heads)

    args = parser.parse_args(argv)
    from model.registry import parse_specs

    try:
        args.model = parse_specs(args.model)  # NAME[=PATH] strings -> ModelSpecs
    except ValueError as e:
        parser.error(str(e))
    args.func(args)
