"""Our MiniLM forward vs transformers' eager BertModel forward with attentions, same process.

    python -m bench.model_forward
Target: ours <= 1.0x transformers at 16, 64, 128, 256 and 512 tokens.
"""

import torch

from bench.common import interleaved, report, text_of
from headscope.models.minilm import MiniLM, default_path


def main() -> None:
    from transformers import BertModel

    ours = MiniLM.load()
    hf = BertModel.from_pretrained(str(default_path()), attn_implementation="eager").eval()
    rows = []
    for tokens in (16, 64, 128, 256, 512):
        ids = torch.tensor([ours.tokenize(text_of(tokens))["ids"]])
        assert ids.shape[1] == tokens

        def run_ours():
            with torch.inference_mode():
                ours.encoder(ids)

        def run_hf():
            with torch.inference_mode():
                hf(input_ids=ids, output_attentions=True)

        t = interleaved({"ours": run_ours, "transformers": run_hf}, seconds=4.0)
        rows.append({"tokens": tokens, "ours ms": t["ours"] * 1e3, "transformers ms": t["transformers"] * 1e3,
                     "ratio": t["ours"] / t["transformers"]})
    report(f"Model forward, {torch.get_num_threads()} threads (ratio = ours / transformers, target <= 1.0)", rows)


if __name__ == "__main__":
    main()
