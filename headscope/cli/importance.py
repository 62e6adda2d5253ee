"""`headscope importance`: each head's importance and the pruning curve (headscope/analyses/importance.py), as a table.

  headscope importance [--model NAME[=PATH]] [--texts FILE] [--ablation zero|mean]
                       [--metric loss|logit_diff|prob [--span START END] [--answer TOKEN] [--wrong TOKEN]] [--json]

--metric (causal LMs) scores each head by the metric of POST /api/importance (headscope/models/metric_choice.py):
loss over a span of each text's tokens, or logit_diff / prob of an answer at the last position.

Progress on stderr (tqdm), the answer on stdout: tables, or with --json the same object as
POST /api/importance. Texts (one per line, blank lines skipped) are held to the server's limits
(Settings.importance_max_texts and importance_max_tokens). Torch is imported only once running.
"""

import argparse
import json
import sys
import time

from headscope.cli.common import add_model_option, fail, read_corpus


def add_parser(sub) -> None:
    p = sub.add_parser("importance", help="each head's importance (quality drop when it alone is ablated) and the "
                       "pruning curve")
    add_model_option(p, "the model to measure (default: the first built-in)")
    p.add_argument("--texts", metavar="FILE", help="texts to measure on, one per line (default: the model's own "
                   "set: dates and induction their generated data, any other 48 varied sentences)")
    p.add_argument("--ablation", choices=("zero", "mean"), default="zero",
                   help="a head's output set to 0, or to its mean over the text's query positions (default: zero)")
    p.add_argument("--metric", help="causal LMs (checked when running, against headscope/models/metric_choice.py): score by loss over --span, or by logit_diff "
                   "(--answer minus --wrong) or prob (--answer) at the last position (default: the model's own measure)")
    p.add_argument("--span", nargs=2, type=int, metavar=("START", "END"),
                   help="--metric loss: the [START, END) of each text's tokens to score (default: every token after the first)")
    p.add_argument("--answer", help="--metric logit_diff and prob: the answer, one token of the model, as text")
    p.add_argument("--wrong", help="--metric logit_diff: the wrong answer, one token")
    p.add_argument("--json", action="store_true", help="print the result as JSON (as POST /api/importance)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from headscope.analyses.importance import BadTexts, check_texts, head_importance
    from headscope.models.metric_choice import BadMetric, choose_metric
    from headscope.models.registry import load_model
    from headscope.server.settings import Settings

    settings = Settings()
    lines = None
    if args.texts is not None:
        lines = [line for line in read_corpus(args.texts) if line.strip()]
    try:
        model = load_model(args.model[0])
    except (FileNotFoundError, ValueError) as e:  # a model we cannot load, as in serve
        fail(e)
    started = time.perf_counter()
    try:
        metric = choose_metric(model, args.metric, args.span, args.answer, args.wrong)
        texts = None if lines is None else check_texts(model, lines, settings.importance_max_texts,
                                                       settings.importance_max_tokens)
        with tqdm(unit=" evaluations", file=sys.stderr) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            result = head_importance(model, args.ablation, texts, progress, metric=metric)
    except (BadTexts, BadMetric, ValueError) as e:
        fail(e)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(tables(result, seconds))


def tables(result: dict, seconds: float) -> str:
    m = result["measure"]
    direction = m["direction"].replace("_", " ")
    lines = [f"{result['model']}: {m['name']} ({direction}, {m['units']}), ablation {result['ablation']}",
             f"  {m['description']}",
             f"baseline {result['baseline']:.4f}; importance = {result['importance_formula']}", ""]
    for kind, rows in result["importance"].items():
        H = max(len(r) for r in rows)
        lines.append(f"importance, {kind} (layer x head):")
        lines.append("     " + "".join(f"{'H' + str(h):>9}" for h in range(H)))
        for layer, row in enumerate(rows):
            lines.append(f"  L{layer:<2}" + "".join(f"{v:9.4f}" for v in row))
        lines.append("")
    lines.append("pruning curve (heads ablated together, least important first):")
    lines.append(f"  {'removed':>7}  {'last removed':<22} quality")
    curve = result["curve"]
    lines.append(f"  {0:>7}  {'(none)':<22} {curve['quality'][0]:.4f}")
    for k, (head, q) in enumerate(zip(curve["removed"], curve["quality"][1:], strict=True), start=1):
        lines.append(f"  {k:>7}  {head['kind'] + ' ' + head['name']:<22} {q:.4f}")
    lines.append(f"\n{result['evaluations']} evaluations in {seconds:.1f} s")
    return "\n".join(lines)
