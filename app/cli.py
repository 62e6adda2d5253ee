"""The `headscope` command (also `python -m app`).

  headscope serve [--host 127.0.0.1] [--port 8000] [--model NAME[=PATH]]... [--allow-host NAME]...
                                                                              start the web app
  headscope heads corpus.txt --out heads.csv [--model NAME[=PATH]]           per-head corpus averages
            [--engine ray [--address HOST:PORT] [--actors N]]                  ... computed on Ray

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
from typing import TYPE_CHECKING, NoReturn


def fail(error: Exception | str) -> NoReturn:
    """What stops the command (a model that cannot be loaded, a busy port): one line on stderr, exit
    status 2, no traceback."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    print(f"headscope: error: {lines[0]}", file=sys.stderr)
    sys.exit(2)

if TYPE_CHECKING:
    from model.heads import Sums


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
        sock.close()
        fail(e)
    print(f"Headscope: models {', '.join(app.state.models)} loaded; open http://{args.host}:{args.port}/", flush=True)
    make_server(app, args.host, args.port, settings, log_level=args.log_level).run(sockets=[sock])


OUTPUT_SUFFIXES = (".csv", ".json")  # what `heads --out` can write


def output_file(text: str) -> Path:
    path = Path(text)
    if path.suffix not in OUTPUT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} must end in {' or '.join(OUTPUT_SUFFIXES)}")
    return path


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def unreadable(path: str, e: OSError | UnicodeDecodeError) -> NoReturn:
    if isinstance(e, UnicodeDecodeError):
        fail(f"cannot read {path}: not UTF-8 text ({e.reason} at byte {e.start})")
    fail(f"cannot read {path}: {e.strerror or e}")


def read_corpus(path: str) -> list[str]:
    """The file's lines, split as `str.splitlines` does; an unreadable file ends the command."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        unreadable(path, e)


def local_engine(args: argparse.Namespace) -> tuple["Sums", list[dict]]:
    from tqdm import tqdm

    from model.heads import lines_sums
    from model.registry import load_model

    lines = read_corpus(args.corpus)
    try:
        model = load_model(args.model[0])
    except (FileNotFoundError, ValueError) as e:  # a model we cannot load, as in serve
        fail(e)
    with tqdm(total=len(lines), unit=" lines", file=sys.stderr) as bar:
        return lines_sums(model, lines, list(range(1, len(lines) + 1)), args.truncate, args.batch_size, bar.update)


def ray_engine(args: argparse.Namespace) -> tuple["Sums", list[dict]]:
    from tqdm import tqdm

    from model.corpus_ray import RayNotInstalled, import_ray, ray_lines_sums

    try:
        import_ray()
    except RayNotInstalled as e:
        fail(str(e))
    try:  # Ray's read task reads it; see here first that it is a readable file
        with open(args.corpus, "rb") as f:
            f.read(1)
    except OSError as e:
        unreadable(args.corpus, e)
    try:
        with tqdm(unit=" lines", file=sys.stderr) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            return ray_lines_sums(args.corpus, args.model[0], truncate=args.truncate, batch_size=args.batch_size,
                                  address=args.address, actors=args.actors, progress=progress)
    except UnicodeDecodeError as e:  # found by Ray's read task
        unreadable(args.corpus, e)


def write_heads(out: Path, model: str, sums: "Sums", skipped: list[dict]) -> None:
    """The per-head averages as CSV (a row per head) or JSON (with the skipped lines), by `out`'s suffix."""
    from model.metrics import METRICS  # imports torch: only after main() set OMP_WAIT_POLICY

    summary = sums.summary()
    try:
        if out.suffix == ".json":
            data = {"model": model, "sentences": sums.sentences, "skipped": skipped, "heads": summary}
            out.write_text(json.dumps(data, indent=1))
            return
        with out.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["kind", "layer", "head", "name", *METRICS, "roles"])
            for kind, records in summary.items():
                for r in records:
                    values = ["" if r["metrics"][m] is None else f"{r['metrics'][m]:.6g}" for m in METRICS]
                    writer.writerow([kind, r["layer"], r["head"], r["name"], *values, " ".join(r["roles"])])
    except OSError as e:
        fail(f"cannot write {out}: {e.strerror or e}")


def heads(args: argparse.Namespace) -> None:
    if not args.out.parent.is_dir():
        fail(f"cannot write {args.out}: there is no folder {args.out.parent}")
    sums, skipped = (ray_engine if args.engine == "ray" else local_engine)(args)
    for s in skipped:
        print(f"skipped line {s['line']}: {s['error']}", file=sys.stderr)
    write_heads(args.out, args.model[0].name, sums, skipped)
    print(f"wrote {args.out}: {sums.sentences} sentences averaged", file=sys.stderr)


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
    p.add_argument("--out", required=True, type=output_file, help="output file: .csv or .json")
    add_model_option(p, "the model to run (default: the first built-in)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="sentences run together (default: 32)")
    p.add_argument("--truncate", action="store_true", help="cut lines longer than the model's maximum")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: an actor pool on Ray (pip install -e '.[ray]')")
    p.add_argument("--address", help="with --engine ray: join this Ray cluster (HOST:PORT, or auto) "
                   "instead of starting a local Ray")
    p.add_argument("--actors", type=positive_int, help="with --engine ray: model copies, each on one CPU "
                   "(default: the cluster's CPUs less one)")
    p.set_defaults(func=heads)

    from app.importance_cli import add_parser as add_importance_parser

    add_importance_parser(sub)

    args = parser.parse_args(argv)
    from model.registry import parse_specs

    if args.command in ("heads", "importance") and args.model and len(args.model) > 1:
        parser.error(f"{args.command} runs one model: give --model once")
    try:
        args.model = parse_specs(args.model)  # NAME[=PATH] strings -> ModelSpecs
    except ValueError as e:
        parser.error(str(e))
    if args.command == "heads" and args.engine != "ray" and (args.address or args.actors):
        parser.error("--address and --actors are for --engine ray")
    args.func(args)
