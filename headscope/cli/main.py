"""The `headscope` command (also `python -m headscope`): one file per subcommand in this folder.

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
  headscope detect [--model NAME[=PATH]] [--seed N] [--json]                 previous-token, duplicate-token and
                                                                              induction heads (docs/detect.md)
  headscope patch CLEAN CORRUPTED --answer A --wrong W [--patch heads|head_positions|residual|layers]
            [--direction denoise|noise] [--metric M] [--step N] [--model NAME[=PATH]] [--json]
                                                                              activation patching (docs/patching.md)
  headscope attribute TEXT --answer A --wrong W [--step N] [--model NAME[=PATH]] [--json]
                                                                              direct logit attribution

`--model` names a built-in (minilm, dates, ...) or serves a local Hugging Face checkpoint
directory or GGUF file as NAME=PATH; repeat it for several. Without it: every built-in. The first is the default.
Every command builds its answers with the server's own builder (headscope/server/answers.py) or the
analyses', so the numbers are the API's.
"""

import argparse
import os

from headscope.cli import ablate, attention, attribute, detect, heads, importance, patch, probe, serve

COMMANDS = (serve, heads, attention, probe, ablate, importance, detect, patch, attribute)  # each: add_parser(sub)
ONE_MODEL = ("heads", "probe", "attention", "ablate", "importance", "detect", "patch", "attribute")  # one model each


def main(argv: list[str] | None = None) -> None:
    # PyTorch's OpenMP threads spin for a while after each forward pass, taking the cores from the browser
    # and from the server's own event loop; passive threads sleep. Read when torch loads, which is below.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(prog="headscope", description="See what every attention head looks at.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    args = parser.parse_args(argv)
    from headscope.models.registry import parse_specs

    if args.command in ONE_MODEL and args.model and len(args.model) > 1:
        parser.error(f"{args.command} runs one model: give --model once")
    try:
        args.model = parse_specs(args.model)  # NAME[=PATH] strings -> ModelSpecs
    except ValueError as e:
        parser.error(str(e))
    if getattr(args, "cache_dir", None):  # read by headscope/models/hf/gguf.py (and by Ray's workers, which inherit it)
        from headscope.models.hf.gguf import CACHE_ENV

        os.environ[CACHE_ENV] = args.cache_dir
    if args.command == "heads" and args.engine != "ray" and (args.address or args.actors):
        parser.error("--address and --actors are for --engine ray")
    args.func(args)
