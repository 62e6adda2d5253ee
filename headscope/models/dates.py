"""The dates model: a small encoder–decoder that rewrites a written date as ISO (YYYY-MM-DD).

Tokens are single characters. The vocabulary is four special tokens, then printable ASCII:
  <pad> 0, <s> 1, </s> 2, <unk> 3, then chr(32) .. chr(126) as ids 4 .. 98.
Any other character becomes <unk> but keeps its own position, so offsets stay exact.
The encoder sees `<s> c1 c2 ... cn </s>`; the decoder starts from `<s>` and writes characters
until it predicts `</s>` (greedy decoding). See docs/dates.md.
"""

import datetime
import json
import re
from pathlib import Path

import torch

from headscope.data import WEIGHTS
from headscope.data.calendar import FIRST, LAST, heldout_examples
from headscope.models.adapter import Adapter, Outputs, Prepared, Readout
from headscope.models.analysis import CROSS, DECODER_SELF, SELF, ModelInfo, Task, TooManyTokens
from headscope.models.nets.seq2seq import Seq2Seq, Seq2SeqConfig

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
CHARS = tuple(chr(i) for i in range(32, 127))
VOCAB = SPECIALS + CHARS  # id -> token
CHAR_ID = {c: i + len(SPECIALS) for i, c in enumerate(CHARS)}
DEFAULT_WEIGHTS = WEIGHTS / "dates.safetensors"
DATES_HELDOUT = 500  # held-out dates of the model's own task (`own_task`, head importance's default)
DATES_HELDOUT_SEED = 1234  # headscope/training/dates.py's HELDOUT_SEED: its held-out set starts with these


def encode_chars(text: str) -> list[int]:
    return [CHAR_ID.get(c, UNK_ID) for c in text]


def encode_source(text: str) -> list[int]:
    """`<s>` + one id per character + `</s>`."""
    return [BOS_ID, *encode_chars(text), EOS_ID]


def decode_ids(ids) -> str:
    """Characters of the ids, specials dropped."""
    return "".join(VOCAB[i] for i in ids if i >= len(SPECIALS))


def char_words(chars) -> list[int | None]:
    """Word index of each character: a run of letters and digits is one word; any other character
    (space, punctuation, special token) stands alone, with None."""
    words, count, previous = [], -1, False
    for c in chars:
        inside = len(c) == 1 and c.isalnum()
        if inside and not previous:
            count += 1
        words.append(count if inside else None)
        previous = inside
    return words


ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def is_valid_date(text: str) -> bool:
    """True when `text` is YYYY-MM-DD, a real calendar date, inside the trained range 1900-2099."""
    match = ISO_DATE.fullmatch(text)
    if not match:
        return False
    try:
        date = datetime.date(*map(int, match.groups()))
    except ValueError:  # 2024-02-31, month 00, ...
        return False
    return FIRST <= date <= LAST


def date_check(text: str) -> dict:
    """The Analysis's output_check: whether the output is a real date in the trained range."""
    ok = is_valid_date(text)
    return {"name": "valid date", "ok": ok, "label": "valid date" if ok else "not a valid date",
            "description": f"the output is YYYY-MM-DD, a real calendar date from {FIRST} to {LAST}"}


def pad_batch(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists: ids (B, T) long and pad mask (B, T) bool, True at padding."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, ids == PAD_ID  # (B, T), (B, T)


def config_to_metadata(config: Seq2SeqConfig) -> dict[str, str]:
    """safetensors metadata: one key, so the file's bytes do not depend on the order of a map."""
    return {"config": json.dumps(vars(config), sort_keys=True)}


def config_from_metadata(metadata: dict[str, str]) -> Seq2SeqConfig:
    return Seq2SeqConfig(**json.loads(metadata["config"]))


class DatesModel(Adapter):
    """Adapter: text -> Analysis with encoder, decoder and cross patterns for one text."""

    def __init__(self, net: Seq2Seq):
        self.net = net.eval()
        config = net.config
        self.info = ModelInfo(
            name="dates",
            description=(
                "Character-level encoder-decoder transformer trained here to rewrite written dates "
                "(1900-2099, e.g. 'Wednesday, the 25th of November 2026', '25/11/2026') as ISO "
                "YYYY-MM-DD; numeric dates are read day first."
            ),
            layers=max(config.encoder_layers, config.decoder_layers),
            heads=config.heads,
            max_tokens=config.max_source,
            kinds={"encoder": SELF, "decoder": DECODER_SELF, "cross": CROSS},
            generation="output",
            max_new_tokens=config.max_target,  # the decoder has max_target positions
            default_new_tokens=config.max_target,
            example="Wednesday, the 25th of November 2026",
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DatesModel":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path) if path is not None else DEFAULT_WEIGHTS
        with safe_open(str(path), framework="pt") as f:
            config = config_from_metadata(f.metadata())
        net = Seq2Seq(config)
        net.load_state_dict(load_file(str(path)))
        return cls(net)

    def count_tokens(self, text: str) -> int:
        return len(text.strip()) + 2  # one token per character of the stripped text, plus <s> and </s>

    def attention_modules(self) -> dict:
        """(kind, layer) -> the attention module that computes it (see headscope/models/interventions.py)."""
        return {
            **{("encoder", i): block.self_attn for i, block in enumerate(self.net.encoder)},
            **{("decoder", i): block.self_attn for i, block in enumerate(self.net.decoder)},
            **{("cross", i): block.cross_attn for i, block in enumerate(self.net.decoder)},
        }

    def hook_points(self) -> dict:
        """(point, kind, layer) -> the net's HookPoints (headscope/models/nets/seq2seq.py): both stacks' streams,
        the cross-attention's output as ("attn_out", "cross", layer), and the decoder's resid_final."""
        points = {}
        for stack, blocks in (("encoder", self.net.encoder), ("decoder", self.net.decoder)):
            for i, block in enumerate(blocks):
                points |= {("resid_pre", stack, i): block.hook_resid_pre, ("attn_out", stack, i): block.hook_attn_out,
                           ("mlp_out", stack, i): block.hook_mlp_out}
        points |= {("attn_out", "cross", i): block.hook_cross_out for i, block in enumerate(self.net.decoder)}
        return points | {("resid_final", "decoder", len(self.net.decoder)): self.net.hook_resid_final}

    def mlp_projections(self) -> dict:
        return {(stack, i): block.mlp.proj for stack, blocks in (("encoder", self.net.encoder),
                                                                 ("decoder", self.net.decoder))
                for i, block in enumerate(blocks)}

    def readout(self) -> Readout:
        return Readout("decoder", self.net.ln_f, self.net.token_emb.weight)  # tied: logits = ln_f(x) @ E.T

    def output_ids(self, text: str) -> tuple[list[int], list[str]]:
        """One token per character (<unk> for one outside printable ASCII)."""
        ids = encode_chars(text)
        return ids, [VOCAB[i] for i in ids]

    def with_output(self, prepared: Prepared, other: Prepared) -> Prepared:
        outputs = ("output_text", "output_tokens", "output_special", "output_words", "stopped", "output_check")
        return Prepared(prepared.text, {**prepared.fields, **{k: other.fields[k] for k in outputs}},
                        {**prepared.inputs, "target": other.inputs["target"], "steps": other.inputs["steps"]},
                        targets=other.targets, target_tokens=other.target_tokens, targets_axis=other.targets_axis)

    def prepare(self, text: str, truncate: bool = False, new_tokens: int | None = None) -> Prepared:
        """The characters between `<s>` and `</s>`, and the greedy output (up to new_tokens; None: all positions)."""
        limit = self.info.max_tokens
        count = self.count_tokens(text)
        start = len(text) - len(text.lstrip())  # surrounding whitespace is not part of a date
        text = text.strip()
        truncated = False
        if count > limit:
            if not truncate:
                raise TooManyTokens(count, limit, self.info.name)
            text, truncated = text[: limit - 2], True
        source = encode_source(text)
        tokens = [BOS, *(c if c in CHAR_ID else UNK for c in text), EOS]
        predictions = self.net.generate(torch.tensor([source]), BOS_ID, EOS_ID, steps=new_tokens)[0, 1:].tolist()
        stopped = "end" if EOS_ID in predictions else "length"
        if stopped == "end":
            predictions = predictions[: predictions.index(EOS_ID) + 1]
        # Decoder positions: <s> and every prediction but the last (the last one, </s> or the character made at
        # the final position, is produced by the last row).
        target = [BOS_ID, *predictions[:-1]]
        output_text = decode_ids(p for p in predictions if p != EOS_ID)
        output_tokens = [VOCAB[i] for i in target]
        fields = {
            "tokens": tokens,
            "offsets": [None, *((start + i, start + i + 1) for i in range(len(text))), None],  # into the text as sent
            "special": [True, *(False for _ in text), True],
            "words": char_words(tokens),
            "truncated": truncated,
            "output_text": output_text,
            "output_tokens": output_tokens,
            "output_special": [t in SPECIALS for t in output_tokens],
            "output_words": char_words(output_tokens),
            "stopped": stopped,  # "end": the last row produced </s>; "length": ran out of positions
            "output_check": date_check(output_text),
        }
        return Prepared(text, fields, {"source": source, "target": target, "steps": new_tokens}, targets=predictions,
                        target_tokens=[VOCAB[i] for i in predictions], targets_axis="output_tokens")

    def forward(self, batch: list[Prepared]) -> list[Outputs]:
        """One teacher-forced pass: of the whole batch when every text has the same source and target lengths
        (nothing to pad), else one per text, so that padding never enters a head's mean over queries."""
        shapes = {(len(p.inputs["source"]), len(p.inputs["target"])) for p in batch}
        groups = [batch] if len(shapes) == 1 else [[p] for p in batch]
        out = []
        for group in groups:
            source = torch.tensor([p.inputs["source"] for p in group])  # (B, S)
            target = torch.tensor([p.inputs["target"] for p in group])  # (B, T)
            logits, patterns = self.net(source, target)  # (B, T, V), kind -> (L, B, H, Tq, Tk)
            out += [Outputs({kind: pattern[:, b].float().contiguous() for kind, pattern in patterns.items()},
                            logits=logits[b]) for b in range(len(group))]  # kind -> (L, H, Tq, Tk); (T, V)
        return out

    def regenerate(self, batch: list[Prepared]) -> list[str]:
        """The outputs written again as the model runs now, greedily, in one padded batch, with the step limit
        the batch was prepared with. Padding only pads the encoder's keys, which are masked exactly; every decoder
        position is real, so a mean over queries never sees padding."""
        source, mask = pad_batch([p.inputs["source"] for p in batch])  # (B, S), (B, S)
        made = self.net.generate(source, BOS_ID, EOS_ID, mask, steps=batch[0].inputs["steps"])[:, 1:].tolist()
        return [decode_ids(row[: row.index(EOS_ID)] if EOS_ID in row else row) for row in made]

    def own_task(self, n: int | None = None) -> Task:
        """Held-out written dates (never seen in training) and the ISO date each should become."""
        n = n or DATES_HELDOUT
        pairs = heldout_examples(n, DATES_HELDOUT_SEED)
        return Task("exact_match", "exact_match", f"{n} held-out generated dates (never seen in training, "
                    "every written form) whose greedy output, up to </s>, is exactly the ISO date",
                    tuple(text for text, _ in pairs), expected=tuple(iso for _, iso in pairs))
