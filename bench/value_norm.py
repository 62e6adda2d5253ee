"""What value norms and rollout cost: building a /api/attention answer with `weights: value_norm` (one more
forward pass with every attention module captured, then the norms) and with `rollout: true`, against the plain
answer, on MiniLM in this process.

    python -m bench.value_norm
Expected: value_norm about 2x the plain answer (a second forward pass); rollout under 1.1x.
"""

import torch

from bench.common import interleaved, report, text_of
from headscope.models.minilm import MiniLM
from headscope.server.answers import attention_body
from headscope.server.schemas.attention import AttentionRequest


def main() -> None:
    model = MiniLM.load()
    rows = []
    for tokens in (16, 128, 512):
        text = text_of(tokens)

        def answer(**options):
            req = AttentionRequest(text=text, format="compact", **options)
            with torch.inference_mode():
                return attention_body(model.analyze(text), req, False, None, 10**9, model=model, text=text)

        t = interleaved({"plain": answer, "value_norm": lambda: answer(weights="value_norm"),
                         "rollout": lambda: answer(rollout=True)}, seconds=4.0)
        rows.append({"tokens": tokens, "plain ms": t["plain"] * 1e3, "value_norm / plain": t["value_norm"] / t["plain"],
                     "rollout / plain": t["rollout"] / t["plain"]})
    report(f"Value norms and rollout, MiniLM, {torch.get_num_threads()} threads", rows)


if __name__ == "__main__":
    main()
