"""Per-head metrics against the forward pass they summarise, on MiniLM.

    python -m bench.metrics
Rows:
  - head_metrics (special keys removed, rows renormalised) / the forward, at 128 and 512 tokens;
  - a corpus's per-sentence sums (metrics, roles, head affinity for the similarity) / its forwards, on the
    199 sentences of tests/data/varied.txt in batches of 32.
Target: metrics <= 0.5x the forward at 512 tokens; corpus sums <= 1x the forwards.
"""

from pathlib import Path

import torch

from bench.common import interleaved, report, text_of
from headscope.analyses.heads import analysis_sums, kind_metrics
from headscope.models.minilm import MiniLM

VARIED = Path(__file__).parents[1] / "tests" / "data" / "varied.txt"


def main() -> None:
    model = MiniLM.load()
    rows = []
    for tokens in (128, 512):
        text = text_of(tokens)
        analysis = model.analyze(text)
        times = interleaved({"forward": lambda: model.analyze(text), "metrics": lambda: kind_metrics(analysis, "encoder")})
        rows.append({"what": f"head_metrics, {tokens} tokens", "forward ms": times["forward"] * 1000,
                     "ms": times["metrics"] * 1000, "ratio": times["metrics"] / times["forward"]})
    texts = [line for line in VARIED.read_text().splitlines() if line.strip()]
    batches = [texts[i : i + 32] for i in range(0, len(texts), 32)]
    analyses = [model.analyze_batch(batch) for batch in batches]

    def forwards():
        for batch in batches:
            model.analyze_batch(batch)

    def sums():
        for batch in analyses:
            for analysis in batch:
                analysis_sums(analysis)

    times = interleaved({"forward": forwards, "sums": sums})
    rows.append({"what": f"corpus sums, {len(texts)} sentences", "forward ms": times["forward"] * 1000,
                 "ms": times["sums"] * 1000, "ratio": times["sums"] / times["forward"]})
    report("Per-head metrics / the forward they summarise (target: <= 0.5 at 512 tokens, <= 1 on a corpus)", rows)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
