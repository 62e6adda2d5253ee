"""`headscope patch CLEAN CORRUPTED --answer A --wrong W`: activation patching (headscope/analyses/patching.py), as
tables of each map's recovery, or with --json the same object as POST /api/patch.

  headscope patch CLEAN CORRUPTED [--answer A] [--wrong W] [--metric logit_diff|prob|embedding_cosine]
                  [--patch heads|head_positions|residual|layers] [--direction denoise|noise] [--step N]
                  [--model NAME[=PATH]] [--json]

Progress on stderr (tqdm), the answer on stdout. The work is held to the server's limit (Settings.patch_max_work).
Torch is imported only once running.
"""

import argparse
import json
import sys

from headscope.cli.common import add_model_option, fail

MODES = ("heads", "head_positions", "residual", "layers")  # headscope/analyses/patching.py MODES (not imported: torch)


def add_parser(sub) -> None:
    p = sub.add_parser("patch", help="activation patching between a clean and a corrupted prompt (docs/patching.md)")
    p.add_argument("clean", help="the clean prompt")
    p.add_argument("corrupted", help="the corrupted prompt: the same number of tokens")
    add_model_option(p, "the model to run (default: the first built-in)")
    p.add_argument("--answer", help="the clean answer, one token (models that predict tokens)")
    p.add_argument("--wrong", help="the wrong answer, one token (metric logit_diff)")
    p.add_argument("--metric", choices=("logit_diff", "prob", "embedding_cosine"),
                   help="default: logit_diff, or embedding_cosine for an encoder")
    p.add_argument("--patch", choices=MODES, default="heads", help="what to patch, one cell at a time (default: heads)")
    p.add_argument("--direction", choices=("denoise", "noise"), default="denoise",
                   help="denoise: clean activations into the corrupted run; noise: the reverse (default: denoise)")
    p.add_argument("--step", type=int, help="encoder-decoders: the output step of the answer")
    p.add_argument("--json", action="store_true", help="print the result as JSON (as POST /api/patch)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from headscope.analyses.patching import CannotPatch, PatchSpec, patching_steps
    from headscope.models.analysis import TooManyCharacters, TooManyTokens
    from headscope.models.registry import load_model
    from headscope.server.settings import Settings

    for name in ("clean", "corrupted"):
        if not getattr(args, name).strip():
            fail(f"the {name} prompt is empty or only whitespace")
    try:
        model = load_model(args.model[0])
    except (FileNotFoundError, ValueError) as e:
        fail(e)
    spec = PatchSpec(args.clean, args.corrupted, args.answer, args.wrong, args.metric, args.patch, args.direction,
                     args.step)
    steps = patching_steps(model, spec, Settings().patch_max_work)
    try:  # the first step checks everything: a refusal is one line, before any progress bar
        first = next(steps)
    except CannotPatch as e:
        extra = e.extra.get("clean_tokens")
        fail(f"{e}" + (f": clean {extra}, corrupted {e.extra['corrupted_tokens']}" if extra else ""))
    except (TooManyTokens, TooManyCharacters) as e:
        fail(e)
    with tqdm(total=first["total"], unit=" cells", file=sys.stderr) as bar:
        for event in steps:
            if "result" in event:
                result = event["result"]
                break
            bar.update(event["done"] - bar.n)
    print(json.dumps(result, indent=1) if args.json else tables(result))


def tables(result: dict) -> str:
    m = result["metric"]
    choice = "".join(f", {k} {m[k]['token']!r}" for k in ("answer", "wrong") if m[k])
    lines = [f"{result['model']}: {result['patch']}, {result['direction']}; metric {m['name']} ({m['description']}"
             f"{choice}){'' if m['where'] is None else ' at ' + m['where']}",
             f"clean {result['clean_metric']:.4f}, corrupted {result['corrupted_metric']:.4f}; recovery = "
             f"{result['recovery_formula']}"]
    if result["recovery_note"]:
        lines.append(result["recovery_note"])
    for mp in result["maps"]:
        lines += ["", f"{mp['name']}: recovery, {' x '.join(mp['dims'])}"]
        grids = mp["recovery"] if mp["dims"] != ["layer", "head", "position"] else [
            [max((v for v in head if v is not None), default=None, key=abs) for head in layer] for layer in mp["recovery"]]
        columns = mp["labels"][mp["dims"][1]]
        if mp["dims"][-1] == "position" and len(mp["dims"]) == 3:
            lines[-1] += " (the largest over positions shown)"
        lines.append("     " + "".join(f"{str(c)[:8]:>9}" for c in columns))
        for label, row in zip(mp["labels"]["layer"], grids):
            lines.append(f"  {label:<3}" + "".join("        -" if v is None else f"{v:9.3f}" for v in row))
    lines.append(f"\n{result['cells']} cells in {result['forward_passes']} forward passes")
    return "\n".join(lines)
