"""The `headscope` command (also `python -m app`).

  headscope serve [--host 127.0.0.1] [--port 8000] [--model NAME[=PATH]]... [--allow-host NAME]...
                                                                              start the web app
  headscope heads corpus.txt --out heads.csv [--model NAME[=PATH]]           per-head corpus means, spreads, role shares
            [--engine ray [--address HOST:PORT] [--actors N]]                  ... computed on Ray
  headscope probe pairs.jsonl [--model NAME[=PATH]] [--json]                 heads as classifiers of a relation
  headscope attention "TEXT" --out a.json [--weights value_norm] [--rollout]  one text's answer, as the API's
  headscope ablate "TEXT" --head KIND:LAYER:HEAD... [--ablation zero|mean]   the effect of knocking heads
            [--model NAME[=PATH]] [--new-tokens N] [--truncate] [--json]       out (docs/ablation.md)
  headscope importance [--model NAME[=PATH]] [--texts FILE] [--ablation zero|mean] [--json]
                                                                              each head's importance, the pruning curve

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
from typing import TYPE_CHECKING

from headscope.cli.common import add_model_option, fail, read_corpus, unreadable

if TYPE_CHECKING:
    from headscope.analyses.heads import Sums


def serve(args: argparse.Namespace) -> None:
    from headscope.server.app import create_app
    from headscope.server.http.connections import bind, make_server
    from headscope.server.settings import Settings

    try:  # before loading the models: a busy port is said at once, in one line
        sock = bind(args.host, args.port)
    except OSError as e:
        fail(f"port {args.port} is in use; stop the server that holds it or choose another with --port"
             if e.errno == errno.EADDRINUSE else f"cannot listen on {args.host}:{args.port}: {e.strerror}")
    settings = Settings(models=args.model, max_connections=args.max_connections, allowed_hosts=tuple(args.allow_host))
    try:
        app = create_app(settings)
    except (FileNotFoundError, ValueError) as e:  # a model we cannot load (headscope.models.hf.model.CheckpointError is a ValueError)
        sock.close()
        fail(e)
    port = sock.getsockname()[1]  # the port asked for, or the one the system chose for --port 0
    print(f"Headscope: models {', '.join(app.state.models)} loaded; open http://{args.host}:{port}/", flush=True)
    make_server(app, args.host, port, settings, log_level=args.log_level).run(sockets=[sock])


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


def local_engine(args: argparse.Namespace) -> tuple["Sums", list[dict]]:
    from tqdm import tqdm

    from headscope.analyses.heads import lines_sums
    from headscope.models.registry import load_model

    lines = read_corpus(args.corpus)
    try:
        model = load_model(args.model[0])
    except (FileNotFoundError, ValueError) as e:  # a model we cannot load, as in serve
        fail(e)
    with tqdm(total=len(lines), unit=" lines", file=sys.stderr) as bar:
        return lines_sums(model, lines, list(range(1, len(lines) + 1)), args.truncate, args.batch_size, bar.update)


def ray_engine(args: argparse.Namespace) -> tuple["Sums", list[dict]]:
    from tqdm import tqdm

    from headscope.corpus.ray import RayNotInstalled, import_ray, ray_lines_sums

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
    """The per-head corpus statistics as CSV (a row per head: means, `std_<metric>`, `n_<metric>`, the roles of
    the means, `share_<role>`) or JSON (/api/corpus's answer, with the skipped lines and the head similarity),
    by `out`'s suffix."""
    from headscope.analyses.metrics import METRICS  # imports torch: only after main() set OMP_WAIT_POLICY
    from headscope.analyses.roles import ROLES

    summary = sums.summary()
    number = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
    try:
        if out.suffix == ".json":
            data = {"model": model, "sentences": sums.sentences, "skipped": skipped, "heads": summary,
                    "roles_of": "corpus means", "similarity": sums.similarity()}
            out.write_text(json.dumps(data, indent=1))
            return
        with out.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["kind", "layer", "head", "name", *METRICS, *(f"std_{m}" for m in METRICS),
                             *(f"n_{m}" for m in METRICS), "roles", *(f"share_{r}" for r in ROLES)])
            for kind, records in summary.items():
                for r in records:
                    writer.writerow([kind, r["layer"], r["head"], r["name"], *(number(r["metrics"][m]) for m in METRICS),
                                     *(number(r["std"][m]) for m in METRICS), *(r["n"][m] for m in METRICS),
                                     " ".join(r["roles"]), *(number(r["role_share"][role]) for role in ROLES)])
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


ATTENTION_SUFFIXES = {".json": "json", ".safetensors": "safetensors"}  # `attention --out` -> the API's format


def attention_out(text: str) -> Path:
    path = Path(text)
    if path.suffix not in ATTENTION_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} must end in {' or '.join(ATTENTION_SUFFIXES)}")
    return path


def attention(args: argparse.Namespace) -> None:
    """One text's POST /api/attention answer, written to a file: attention weights or value norms, and the
    rollout, with every field the API gives (headscope/server/weights.py)."""
    from headscope.models.analysis import TooManyCharacters, TooManyTokens, cut_to_chars
    from headscope.models.registry import load_model
    from headscope.server.errors import ApiError
    from headscope.server.routes.api import attention_body
    from headscope.server.schemas import AttentionRequest
    from headscope.server.settings import Settings
    from headscope.server.weights import check_weights_request

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


def add_attention_parser(sub) -> None:
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


def head_spec(text: str) -> tuple[str, int, int]:
    """KIND:LAYER:HEAD, e.g. cross:0:1, as (kind, layer, head); fail naming the form otherwise."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0] or not all(p.isdigit() for p in parts[1:]):
        fail(f"--head {text!r} is not KIND:LAYER:HEAD, e.g. encoder:2:5")
    return parts[0], int(parts[1]), int(parts[2])


def effect_lines(analysis) -> list[str]:
    """The effect (headscope/models/effect.py) as text: each single measure on a line, then one row per position with
    every per-position measure, read from the effect's own `measures` (their axes) and not from their names."""
    effect = analysis.effect
    single = [name for name, m in effect["measures"].items() if m["axis"] is None]
    lines = []
    if analysis.output_text is not None:
        lines.append(f"un-ablated output: {analysis.output_text}")
    for name in single:
        value = effect[name]
        lines.append(f"{name}: {value:.6g}" if isinstance(value, float) else f"{name}: {value}")
    by_axis: dict[str, list[str]] = {}
    for name, m in effect["measures"].items():
        if m["axis"] is not None:
            by_axis.setdefault(m["axis"], []).append(name)
    for axis, names in by_axis.items():
        tokens = analysis.axis(axis)
        lines.append("\t".join(["position", "token", *names]))
        for i in range(min(len(effect[n]) for n in names)):
            cells = [f"{v:.6g}" if isinstance(v, float) else repr(v) for v in (effect[n][i] for n in names)]
            lines.append("\t".join([str(i), repr(tokens[i]), *cells]))
    return lines


def ablate(args: argparse.Namespace) -> None:
    """Knock heads out of one text's run and print the effect on the output (headscope/models/effect.py)."""
    from headscope.models.analysis import TooManyCharacters, TooManyTokens, cut_to_chars
    from headscope.models.interventions import Ablation, BadAblation
    from headscope.models.registry import load_model

    if not args.text.strip():
        fail("the text is empty or only whitespace")
    ablation = Ablation(tuple(head_spec(h) for h in args.head), args.ablation)
    try:
        model = load_model(args.model[0])
    except (FileNotFoundError, ValueError) as e:
        fail(e)
    try:
        text, _ = cut_to_chars(model.info, args.text, args.truncate)
        analysis = model.analyze(text, args.truncate, args.new_tokens if model.info.generation else None, ablation)
    except (BadAblation, TooManyTokens, TooManyCharacters) as e:
        fail(e)
    if args.json:
        heads = [{"kind": kind, "layer": layer, "head": head} for kind, layer, head in ablation.heads]
        print(json.dumps({"model": model.info.name, "ablate": heads, "ablation": ablation.mode,
                          "tokens": analysis.tokens, "output_tokens": analysis.output_tokens,
                          "output_text": analysis.output_text, "effect": analysis.effect}))
        return
    heads = ", ".join(f"{kind} L{layer}H{head}" for kind, layer, head in ablation.heads)
    print(f"{model.info.name}: {heads} ablated ({ablation.mode}); effect against the same text un-ablated:")
    print("\n".join(effect_lines(analysis)))


def main(argv: list[str] | None = None) -> None:
    # PyTorch's OpenMP threads spin for a while after each forward pass, taking the cores from the browser
    # and from the server's own event loop; passive threads sleep. Read when torch loads, which is below.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from headscope.cli.probe import add_probe_parser
    from headscope.server.settings import Settings

    parser = argparse.ArgumentParser(prog="headscope", description="See what every attention head looks at.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0: any free port (the one chosen is printed)")
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
    add_attention_parser(sub)

    add_probe_parser(sub)

    p = sub.add_parser("ablate", help="knock heads out of one text's run and print the effect on the output")
    p.add_argument("text", help="the text to run")
    add_model_option(p, "the model to run (default: the first built-in)")
    p.add_argument("--head", action="append", required=True, metavar="KIND:LAYER:HEAD",
                   help="a head to knock out, e.g. cross:0:1; repeatable")
    p.add_argument("--ablation", choices=("zero", "mean"), default="zero",
                   help="set the head's output to zero, or to its mean over the query positions (default: zero)")
    p.add_argument("--new-tokens", type=positive_int,
                   help="models that generate: how many tokens (default: the model's)")
    p.add_argument("--truncate", action="store_true", help="cut a text longer than the model's maximum")
    p.add_argument("--json", action="store_true", help="print the effect as JSON")
    p.set_defaults(func=ablate)

    from headscope.cli.importance import add_parser as add_importance_parser

    add_importance_parser(sub)

    args = parser.parse_args(argv)
    from headscope.models.registry import parse_specs

    if args.command in ("heads", "probe", "attention", "ablate", "importance") and args.model and len(args.model) > 1:
        parser.error(f"{args.command} runs one model: give --model once")
    try:
        args.model = parse_specs(args.model)  # NAME[=PATH] strings -> ModelSpecs
    except ValueError as e:
        parser.error(str(e))
    if args.command == "heads" and args.engine != "ray" and (args.address or args.actors):
        parser.error("--address and --actors are for --engine ray")
    args.func(args)
