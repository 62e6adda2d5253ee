"""The `headscope` command (also `python -m app`).

  headscope serve [--host 127.0.0.1] [--port 8000] [--model NAME[=PATH]]... [--allow-host NAME]...
                                                                              start the web app
  headscope heads corpus.txt --out heads.csv [--model NAME[=PATH]]           per-head corpus averages

`--model` names a built-in (minilm, dates, ...) or serves a local Hugging Face checkpoint
directory as NAME=PATH; repeat it for several. Without it: every built-in. The first is the default.
"""

import argparse
import csv
import errno
import json
import os
import sys
from pathlib import Path
from typing import NoReturn


def fail(error: Exception | str) -> NoReturn:
    """What stops the command (a model that cannot be loaded, a busy port): one line on stderr, exit
    status 2, no traceback."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    print(f"headscope: error: {lines[0]}", file=sys.stderr)
    sys.exit(2)


def serve(args: argparse.Namespace) -> None:
    from app.main import create_app
    from app.server import bind, make_server
    from app.settings import Settings

    try:  # before loading the models: a busy port is said at once, in one line
        sock = bind(args.host, args.port)
    except OSError as e:
        fail(f"port {args.port} is in use; stop the server that holds it or choose another with --port"
             if e.errno == errno.EADDRINUSE else f"cannot listen on {args.host}:{args.port}: {e.strerror}")
    settings = Settings(models=args.model, max_connections=args.max_connections, allowed_hosts=tuple(args.allow_host))
    try:
        app = create_app(settings)
    except (FileNotFoundError, ValueError) as e:  # a model we cannot load (model.hf.CheckpointError is a ValueError)
        fail(e)
    print(f"Headscope: models {', '.join(app.state.models)} loaded; open http://{args.host}:{args.port}/", flush=True)
    make_server(app, args.host, args.port, settings, log_level=args.log_level).run(sockets=[sock])


def heads(args: argparse.Namespace) -> None:
    from model.heads import CorpusAverage, plan_corpus
    from model.metrics import METRICS
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
    # PyTorch's OpenMP threads spin for a while after each forward pass, taking the cores from the browser
    # and from the server's own event loop; passive threads sleep. Read when torch loads, which is below.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from app.settings import Settings

    parser = argparse.ArgumentParser(prog="headscope", description="See what every attention head looks at.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    add_model_option(p, "models to serve; the first is the default (default: every built-in)")
    p.add_argument("--log-level", default="info")
    p.add_argument("--max-connections", type=int, default=Settings.max_connections,
                   help="open connections; beyond it a new one closes the longest-idle one, or gets 503 if none is idle")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests whose Host header is NAME (a name or address this server is reached "
                   "by, besides localhost, 127.0.0.1, [::1] and the address it listens on; * for any); repeatable")
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
