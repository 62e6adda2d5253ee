"""What activation patching costs: patching every head (and the residual stream at every position) of a clean and a
corrupted prompt, against the bare forward of one prompt, in this process (headscope/analyses/patching.py).

    python -m bench.patching
Each cell is one row of a batched pass (BATCH_ROWS rows, BATCH_POSITIONS positions a pass), plus the two recorded
runs, so the ratio grows with the cells but well below one forward per cell: `/ cell` says how many bare forwards one
patched cell costs.
"""

import torch

from bench.common import interleaved, report, text_of
from headscope.analyses.patching import PatchSpec, activation_patching
from headscope.models.induction import InductionModel, random_strings
from headscope.models.minilm import MiniLM


def cases():
    induction = InductionModel.load()
    s = random_strings(2, 20, seed=0)
    clean, corrupted = s[0] + s[0], s[1] + s[0]  # 41 tokens; the first half changed
    yield "induction (2x4)", induction, clean, corrupted, "b", "Y"
    minilm = MiniLM.load()
    text = text_of(128)
    words = text.split()
    words[0], words[1] = words[1], words[0]
    yield "minilm (6x12)", minilm, text, " ".join(words), None, None


def main() -> None:
    rows = []
    for name, model, clean, corrupted, answer, wrong in cases():
        prepared = model.prepare(clean, new_tokens=0 if model.info.generation == "continuation" else None)

        def bare():
            with torch.no_grad():
                model.forward([prepared])

        def patch(mode):
            spec = PatchSpec(clean, corrupted, answer, None if answer is None else wrong, None, mode)
            return lambda: activation_patching(model, spec)

        heads = activation_patching(model, PatchSpec(clean, corrupted, answer, wrong if answer else None))
        resid = activation_patching(model, PatchSpec(clean, corrupted, answer, wrong if answer else None, None, "residual"))
        t = interleaved({"bare": bare, "heads": patch("heads"), "residual": patch("residual")}, seconds=6.0)
        rows.append({"model": name, "tokens": len(prepared.fields["tokens"]), "bare forward ms": t["bare"] * 1e3,
                     "heads: cells": heads["cells"], "heads / bare": t["heads"] / t["bare"],
                     "heads / bare / cell": t["heads"] / t["bare"] / heads["cells"],
                     "residual: cells": resid["cells"], "residual / bare": t["residual"] / t["bare"],
                     "residual / bare / cell": t["residual"] / t["bare"] / resid["cells"]})
    report(f"Activation patching against the bare forward, {torch.get_num_threads()} threads", rows)


if __name__ == "__main__":
    main()
