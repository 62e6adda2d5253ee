"""One head or many? The dates model's architecture trained with 1, 2, 4 and 8 heads, same recipe.

    python -m headscope.training.one_head_or_many [--steps N] [--out headscope/data/one_head_or_many.json] [--weights DIR]

Every run has the same width (128), so the same parameter count: heads split the width into
H heads of D = 128 / H (the Q, K, V and output projections are 128 x 128 whatever H is). Same data
stream, seed and schedule as headscope/training/dates.py, shortened to STEPS steps for all four alike
(the CPU budget: four runs on 2 cores), so the models are less trained than the served `dates`. For each head count it records:
  heldout_exact      exact match on FINAL_SIZE held-out examples (dates never seen in training)
  train_exact        exact match on FINAL_SIZE fresh examples from the training dates; gap = train - held-out
  loss               the training loss every LOG_EVERY steps (the curve)
  exact_curve        held-out exact match on EVAL_SIZE examples every EVAL_EVERY steps
  steps_to_95        the first evaluated step with held-out exact match >= 0.95 (None: never)
  grad_norm          the gradient norm before clipping: mean, std and the 95th percentile after warm-up,
                     and its coefficient of variation (std / mean), a measure of how steady training is
  head_roles         per attention kind, how many heads are `local` or `long_range` (headscope/analyses/roles.py rules)
                     on metrics averaged over ROLE_TEXTS held-out texts, and the per-head mean distance
Results go to one JSON file; the weights of every run to --weights (optional). With --weights,
the record also keeps, for the 1-head model and the multi-head model with the best held-out exact
match, every attention pattern on EXAMPLE (rounded to 4 decimals): the page draws their grids
side by side. `--examples-from DIR` adds them to an existing record from saved weights.
"""

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from headscope.data import ONE_HEAD_OR_MANY
from headscope.data.calendar import heldout_examples, training_stream
from headscope.models.dates import DatesModel, config_to_metadata
from headscope.models.nets.seq2seq import Seq2Seq
from headscope.training.dates import (
    BATCH_SIZE,
    CONFIG,
    HELDOUT_SEED,
    HELDOUT_SIZE,
    PEAK_LR,
    WARMUP_STEPS,
    WEIGHT_DECAY,
    exact_match,
    learning_rate,
    make_batch,
)

HEADS = (1, 2, 4, 8)
STEPS = 400  # headscope/training/dates.py runs 1800; shortened alike for all four to fit the 2-core CPU budget
FINAL_SIZE = 1000  # held-out and training examples scored at the end
LOG_EVERY = 10
EVAL_EVERY = 100
PROGRESS_EVERY = 25  # a progress line on stderr every this many steps (a run of 400 steps takes minutes)
EVAL_SIZE = 300  # held-out examples scored at every evaluation along the way
ROLE_TEXTS = 150
DEFAULT_OUT = ONE_HEAD_OR_MANY  # the committed results
EXAMPLE = "Wednesday, the 25th of November 2026"


def example(weights: Path, text: str = EXAMPLE) -> dict:
    """One run's analysis of `text` from its saved weights: the fields the page needs to draw its grids."""
    analysis = DatesModel.load(weights).analyze(text)
    fields = ("tokens", "offsets", "special", "words", "output_text", "output_tokens", "output_special", "output_words")
    return {
        **{name: getattr(analysis, name) for name in fields},
        "layout": {kind: vars(layout) for kind, layout in analysis.layout.items()},
        "patterns": {kind: torch.round(p, decimals=4).tolist() for kind, p in analysis.patterns.items()},  # (L, H, Tq, Tk)
    }


def add_examples(record: dict, weights: Path) -> None:
    """Keep the grids of the 1-head run and of the best multi-head run (ties: fewer heads)."""
    runs = record["runs"]
    one = next(r for r in runs if r["heads"] == 1)
    best = max((r for r in runs if r["heads"] > 1), key=lambda r: (r["heldout_exact"], -r["heads"]))
    record["examples"] = {str(r["heads"]): example(weights / f"dates-{r['heads']}h.safetensors") for r in (one, best)}


def head_roles(net: Seq2Seq, texts: list[str]) -> dict:
    """Per kind: how many heads get the `local` and `long_range` roles on metrics averaged over texts."""
    from headscope.analyses.heads import head_records, kind_keys, kind_metrics

    model = DatesModel(net.cpu().eval())
    sums, keys = {}, {}
    for text in texts:
        analysis = model.analyze(text)
        for kind in analysis.patterns:
            metrics = kind_metrics(analysis, kind)
            keys[kind] = keys.get(kind, 0) + kind_keys(analysis, kind)  # non-special keys, as the role rules count
            for name, value in metrics.items():
                total, count = sums.setdefault(kind, {}).get(name, (0, 0))
                defined = ~torch.isnan(value)
                sums[kind][name] = (total + torch.where(defined, value.double(), 0.0), count + defined)
    out = {}
    for kind, metrics in sums.items():
        means = {name: (total / count).float() for name, (total, count) in metrics.items()}
        records = head_records(means, keys[kind] / len(texts))
        out[kind] = {
            "local": sum("local" in r["roles"] for r in records),
            "long_range": sum("long_range" in r["roles"] for r in records),
            "heads": len(records),
            "distance": [r["metrics"]["distance"] for r in records],
            "roles": {r["name"]: r["roles"] for r in records},
        }
    return out


def run(heads: int, steps: int, seed: int, device: str, weights: Path | None, final_size: int = FINAL_SIZE,
        role_texts: int = ROLE_TEXTS) -> dict:
    config = replace(CONFIG, heads=heads)
    random.seed(seed)
    torch.manual_seed(seed)
    net = Seq2Seq(config).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=PEAK_LR, betas=(0.9, 0.98), weight_decay=WEIGHT_DECAY)
    heldout = heldout_examples(HELDOUT_SIZE, HELDOUT_SEED)[:final_size]
    stream = training_stream(seed, BATCH_SIZE)
    losses, norms, curve = [], [], []
    started = time.perf_counter()
    net.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps)
        source, source_pad_mask, target, labels = (t.to(device) for t in make_batch(next(stream)))
        logits, _ = net(source, target, source_pad_mask)  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)))  # the norm before clipping
        optimizer.step()
        if step % LOG_EVERY == 0 or step == steps - 1:
            losses.append([step, round(loss.item(), 5)])
        if (step + 1) % EVAL_EVERY == 0:
            curve.append([step + 1, exact_match(net.cpu(), heldout[:EVAL_SIZE])])
            net.to(device)
        if (step + 1) % PROGRESS_EVERY == 0 or step == steps - 1:
            print(f"{heads} head{'s' if heads > 1 else ''}: step {step + 1}/{steps}, loss {loss.item():.4f}, "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    net = net.cpu().eval()
    train_sample = next(training_stream(seed + 1, final_size))  # one batch of fresh examples of training dates
    heldout_exact, train_exact = exact_match(net, heldout), exact_match(net, train_sample)
    after_warmup = norms[WARMUP_STEPS:] or norms  # a run shorter than the warm-up (tests): all of it
    mean, std = statistics.fmean(after_warmup), statistics.pstdev(after_warmup)
    result = {
        "heads": heads,
        "head_width": config.width // heads,
        "parameters": net.num_params(),
        "seconds": round(seconds, 1),
        "heldout_exact": heldout_exact,
        "train_exact": train_exact,
        "gap": round(train_exact - heldout_exact, 5),
        "steps_to_95": next((s for s, acc in curve if acc >= 0.95), None),
        "grad_norm": {"mean": round(mean, 4), "std": round(std, 4), "cv": round(std / mean, 4),
                      "p95": round(sorted(after_warmup)[int(0.95 * len(after_warmup))], 4)},
        "loss": losses,
        "exact_curve": curve,
        "head_roles": head_roles(net, [text for text, _ in heldout[:role_texts]]),
    }
    if weights is not None:
        from safetensors.torch import save_file

        weights.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights / f"dates-{heads}h.safetensors"),
                  metadata=config_to_metadata(config))
    print(f"{heads} heads: held-out {heldout_exact:.4f}, train {train_exact:.4f}, 95% at step {result['steps_to_95']}, "
          f"grad-norm cv {result['grad_norm']['cv']}, {seconds:.0f}s", flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--weights", type=Path, help="folder for every run's weights (dates-<H>h.safetensors)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--heads", type=int, nargs="+", default=list(HEADS))
    parser.add_argument("--examples-from", type=Path, help="only add the example grids to --out, from this weights folder")
    args = parser.parse_args(argv)
    if args.examples_from:
        record = json.loads(args.out.read_text())
        add_examples(record, args.examples_from)
        args.out.write_text(json.dumps(record, separators=(",", ":")) + "\n")
        print(f"added the examples of {', '.join(record['examples'])} heads to {args.out}")
        return
    if args.device == "cpu":
        torch.set_num_threads(2)
    results = [run(h, args.steps, args.seed, args.device, args.weights) for h in args.heads]
    record = {
        "recipe": {"steps": args.steps, "seed": args.seed, "batch_size": BATCH_SIZE, "peak_lr": PEAK_LR,
                   "width": CONFIG.width, "layers": [CONFIG.encoder_layers, CONFIG.decoder_layers],
                   "device": args.device, "torch": torch.__version__},
        "runs": results,
    }
    if args.weights is not None and 1 in args.heads and len(args.heads) > 1:
        add_examples(record, args.weights)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
