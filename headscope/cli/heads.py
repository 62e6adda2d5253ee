"""`headscope heads corpus.txt --out heads.csv [--model NAME[=PATH]] [--engine ray ...]`: per-head corpus means,
spreads and role shares of a text file, one sentence per line, computed here or on Ray (headscope/corpus/)."""

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from headscope.cli.common import add_model_option, fail, positive_int, read_corpus, unreadable

if TYPE_CHECKING:
    from headscope.analyses.heads import Sums


def add_parser(sub) -> None:
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


OUTPUT_SUFFIXES = (".csv", ".json")  # what `heads --out` can write


def output_file(text: str) -> Path:
    path = Path(text)
    if path.suffix not in OUTPUT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} must end in {' or '.join(OUTPUT_SUFFIXES)}")
    return path


def local_engine(args: argparse.Namespace) -> tuple["Sums", list[dict]]:
    from tqdm import tqdm

    from headscope.analyses.heads import lines_sums
    from headscope.models.registry import load_model

    lines = read_corpus(args.corpus)
    if not any(line.strip() for line in lines):
        fail(f"{args.corpus} has no sentences (it is empty or blank): nothing to average")
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
    if sums.sentences == 0:
        fail(f"no line of {args.corpus} could be averaged ({len(skipped)} skipped): nothing written to {args.out}")
    write_heads(args.out, args.model[0].name, sums, skipped)
    print(f"wrote {args.out}: {sums.sentences} sentences averaged", file=sys.stderr)
