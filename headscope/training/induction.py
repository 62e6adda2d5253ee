"""Train the induction model on this machine's CPU and write its weights.

    python -m headscope.training.induction [--out headscope/data/weights/induction.safetensors] [--steps N] [--seed S]

Data, made on the fly from a seeded `random.Random`: windows of Python standard-library
docstrings (read with `ast` from a sorted list of the standard library's top-level .py files, so
nothing is imported or downloaded), and the same text with a random string of random length
written twice or more at a random offset. The repeats teach induction: the second copy of a
random string can only be predicted by finding the token after the current one's earlier
occurrence. Random lengths and offsets keep the model from copying by a fixed distance.

Reproducibility: Python's and torch's RNGs are seeded, torch uses deterministic algorithms and
exactly THREADS threads. On the same machine, Python (its docstrings) and torch build, the
weights file comes out byte for byte identical.
"""

import argparse
import ast
import json
import math
import platform
import random
import sys
import sysconfig
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import torch

from headscope.models.induction import BOS_ID, DEFAULT_WEIGHTS, RANDOM_SYMBOLS, config_to_metadata, induction_scores
from headscope.models.nets.causal import CausalLM, CausalLMConfig

CONFIG = CausalLMConfig(vocab_size=257, max_positions=128, layers=2, heads=4, width=64, mlp_width=256)
THREADS = 1
BATCH_SIZE = 16
PEAK_LR = 3e-3
FINAL_LR_FRACTION = 0.05
WARMUP_STEPS = 200
WEIGHT_DECAY = 0.01
REPEAT_SHARE = 0.5  # share of examples with a repeated random string
REPEAT_LENGTHS = (2, 20)  # shortest and longest random string, inclusive
SYMBOL_IDS = tuple(ord(c) for c in RANDOM_SYMBOLS)


@cache
def docstring_corpus() -> bytes:
    """Every docstring (module, class, function) of the standard library's top-level .py files,
    files in sorted order, docstrings in source order, UTF-8, separated by blank lines."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(stdlib.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    docs.append(doc)
    return "\n\n".join(docs).encode("utf-8")


def example(rng: random.Random, corpus: bytes, width: int) -> list[int]:
    """`<s>` then `width` bytes: a window of text, or (REPEAT_SHARE of the time) text with a random
    string repeated from a random offset to the end."""
    start = rng.randrange(len(corpus) - width)
    body = list(corpus[start : start + width])
    if rng.random() < REPEAT_SHARE:
        n = rng.randint(*REPEAT_LENGTHS)
        offset = rng.randint(0, width - 2 * n)
        symbols = [rng.choice(SYMBOL_IDS) for _ in range(n)]
        repeats = (symbols * (width // n + 1))[: width - offset]
        body[offset:] = repeats
    return [BOS_ID, *body]


def make_batch(rng: random.Random, corpus: bytes) -> torch.Tensor:
    return torch.tensor([example(rng, corpus, CONFIG.max_positions - 1) for _ in range(BATCH_SIZE)])  # (B, T)


def learning_rate(step: int, steps: int) -> float:
    """Linear warmup to PEAK_LR, capped by a cosine from PEAK_LR at step 0 down to FINAL_LR_FRACTION of it."""
    warmup = (step + 1) / WARMUP_STEPS
    cosine = FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * step / steps))
    return PEAK_LR * min(warmup, cosine)


@contextmanager
def pinned_torch(threads: int):
    """torch with exactly `threads` threads and deterministic algorithms inside; the caller's settings after."""
    saved = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])


def train_net(steps: int, seed: int, log_every: int = 0) -> CausalLM:
    """The recipe: `steps` AdamW steps from `seed`; returns the network, the same to the bit on every run."""
    with pinned_torch(THREADS):
        return _train(steps, seed, log_every)


def _train(steps: int, seed: int, log_every: int) -> CausalLM:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    corpus = docstring_corpus()

    net = CausalLM(CONFIG)
    optimizer = torch.optim.AdamW(net.parameters(), lr=PEAK_LR, betas=(0.9, 0.98), weight_decay=WEIGHT_DECAY)
    start = time.perf_counter()
    net.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps)
        ids = make_batch(rng, corpus)  # (B, T)
        logits, _ = net(ids[:, :-1])  # (B, T - 1, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            s = induction_scores(net)
            print(f"step {step:6d}/{steps}  loss {loss.item():.4f}  lr {learning_rate(step, steps):.2e}  "
                  f"induction {max(map(max, s['induction'])):.3f} {s['induction_head']}  "
                  f"prev {max(s['previous_token'][0]):.3f}  loss ratio {s['loss_ratio']:.3f}  "
                  f"{time.perf_counter() - start:6.0f}s", flush=True)
    return net.eval()


def train(steps: int, seed: int, out: Path) -> dict:
    start = time.perf_counter()
    net = train_net(steps, seed, log_every=500)
    train_seconds = time.perf_counter() - start
    scores = induction_scores(net)

    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out), metadata=config_to_metadata(CONFIG))
    record = {
        "seed": seed,
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "peak_lr": PEAK_LR,
        "repeat_share": REPEAT_SHARE,
        "repeat_lengths": list(REPEAT_LENGTHS),
        "parameters": net.num_params(),
        "config": vars(CONFIG),
        "train_seconds": round(train_seconds, 1),
        "scores": scores,
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "threads": THREADS,
        "machine": platform.machine(),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(scores))
    print(f"trained in {train_seconds:.0f}s; wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json')}")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train(args.steps, args.seed, args.out)


if __name__ == "__main__":
    sys.exit(main())
