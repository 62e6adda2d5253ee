"""`headscope ablate "TEXT" --head KIND:LAYER:HEAD... [--ablation zero|mean]`: the effect of knocking heads out
(docs/ablation.md)."""

import argparse
import json

from headscope.cli.common import add_model_option, fail, positive_int


def add_parser(sub) -> None:
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
