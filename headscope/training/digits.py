"""Train the digits Vision Transformer on this machine's CPU and write its weights.

    python -m headscope.training.digits [--out headscope/data/weights/digits.safetensors] [--epochs N] [--seed S]

Data: scikit-learn's copy of the UCI handwritten digits (`sklearn.datasets.load_digits`, shipped with
scikit-learn, nothing downloaded): 1,797 images of 8 x 8 pixels with values 0..16, ten classes. Pixels are
divided by 16. A permutation seeded by SPLIT_SEED holds out TEST_SHARE of the images (`split()`); the model is
trained on the rest for a fixed number of epochs (no early stopping, nothing chosen on the held-out images) and
its accuracy and confusion matrix on the held-out images are written next to the weights (digits.json).

Augmentation: each training image is shifted by up to SHIFT pixels in each direction (zeros come in), drawn
from the seeded generator.

Reproducibility: torch's RNG is seeded, torch uses deterministic algorithms and exactly THREADS threads. On the
same machine and torch build, the weights file comes out byte for byte identical.
"""

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from headscope.models.digits import DEFAULT_WEIGHTS, config_to_metadata, held_out, load_images
from headscope.models.nets.vit import ViT, ViTConfig

CONFIG = ViTConfig(image_size=8, patch_size=2, classes=10, layers=3, heads=4, width=64, mlp_width=128, dropout=0.1)
THREADS = 1
EPOCHS = 200
BATCH_SIZE = 64
PEAK_LR = 3e-3
FINAL_LR_FRACTION = 0.02
WARMUP_EPOCHS = 5
WEIGHT_DECAY = 0.05
LABEL_SMOOTHING = 0.1
SHIFT = 1  # the most pixels a training image is shifted by, in each direction


def shifted(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image (B, S, S) moved by its own random (dy, dx) in [-SHIFT, SHIFT], zeros filling in."""
    B, S, _ = images.shape
    padded = torch.nn.functional.pad(images, (SHIFT, SHIFT, SHIFT, SHIFT))  # (B, S + 2s, S + 2s)
    dy = torch.randint(0, 2 * SHIFT + 1, (B,), generator=generator)  # (B,)
    dx = torch.randint(0, 2 * SHIFT + 1, (B,), generator=generator)  # (B,)
    rows = (dy[:, None] + torch.arange(S)[None, :])[:, :, None]  # (B, S, 1)
    cols = (dx[:, None] + torch.arange(S)[None, :])[:, None, :]  # (B, 1, S)
    return padded[torch.arange(B)[:, None, None], rows, cols]  # (B, S, S)


@torch.no_grad()
def evaluate(net: ViT, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy and the confusion matrix (rows: true class, columns: predicted) on the given images."""
    net.eval()
    logits, _ = net(images)  # (B, K)
    predicted = logits.argmax(-1)  # (B,)
    K = net.config.classes
    confusion = torch.zeros(K, K, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    return {"accuracy": (predicted == labels).float().mean().item(), "correct": int((predicted == labels).sum()),
            "total": len(labels), "confusion": confusion.tolist()}


def train(epochs: int = EPOCHS, seed: int = 0, log_every: int = 10) -> tuple[ViT, dict]:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        (train_x, train_y), (test_x, test_y) = held_out(*load_images())
        generator = torch.Generator().manual_seed(seed)
        net = ViT(CONFIG)
        decay = [p for n, p in net.named_parameters() if p.dim() >= 2 and "pos_emb" not in n and "cls_token" not in n]
        rest = [p for n, p in net.named_parameters() if not (p.dim() >= 2 and "pos_emb" not in n and "cls_token" not in n)]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                       {"params": rest, "weight_decay": 0.0}], lr=PEAK_LR)
        steps_per_epoch = math.ceil(len(train_x) / BATCH_SIZE)
        total, warmup = epochs * steps_per_epoch, WARMUP_EPOCHS * steps_per_epoch
        step, start = 0, time.perf_counter()
        for epoch in range(epochs):
            net.train()
            order = torch.randperm(len(train_x), generator=generator)
            for i in range(0, len(order), BATCH_SIZE):
                lr = PEAK_LR * (step + 1) / warmup if step < warmup else PEAK_LR * (
                    FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = order[i: i + BATCH_SIZE]
                logits, _ = net(shifted(train_x[batch], generator))  # (B, K)
                loss = torch.nn.functional.cross_entropy(logits, train_y[batch], label_smoothing=LABEL_SMOOTHING)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                step += 1
            if log_every and (epoch + 1) % log_every == 0:
                print(f"epoch {epoch + 1}: loss {loss.item():.3f}, held-out accuracy "
                      f"{evaluate(net, test_x, test_y)['accuracy']:.4f}", file=sys.stderr, flush=True)
        seconds = time.perf_counter() - start
        net.eval()
        recipe = {"seed": seed, "epochs": epochs, "batch_size": BATCH_SIZE, "peak_lr": PEAK_LR,
                  "weight_decay": WEIGHT_DECAY, "label_smoothing": LABEL_SMOOTHING, "shift": SHIFT,
                  "parameters": net.num_params(), "config": vars(CONFIG), "train_images": len(train_x),
                  "held_out_images": len(test_x), "train_seconds": round(seconds, 1), "threads": THREADS,
                  "torch": torch.__version__, "machine": platform.machine(),
                  "train": {k: v for k, v in evaluate(net, train_x, train_y).items() if k != "confusion"},
                  "held_out": evaluate(net, test_x, test_y)}
        return net, recipe
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    net, recipe = train(args.epochs, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(args.out), metadata=config_to_metadata(net.config))
    args.out.with_suffix(".json").write_text(json.dumps(recipe, indent=2) + "\n")
    print(f"held-out accuracy {recipe['held_out']['accuracy']:.4f} ({recipe['held_out']['correct']}/"
          f"{recipe['held_out']['total']}) in {recipe['train_seconds']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
