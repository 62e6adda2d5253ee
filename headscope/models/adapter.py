"""What every model adapter shares: text in, an Analysis out, with or without heads knocked out, written once.

An adapter (headscope/models/minilm.py, dates.py, induction.py, hf/model.py) says only what differs by model:
  prepare(text, truncate, new_tokens)  tokenize, and for a model that generates, generate (greedily, with no
                                       edits): a `Prepared` text whose tokens are fixed from now on
  forward(batch)                       one teacher-forced pass over prepared texts, as the model runs at that
                                       moment (inside whatever `editing` block): an `Outputs` per text. Texts of
                                       the same shape run as one batched pass, row b of every place being batch[b]
                                       (so edits with `rows` can make each row a different experiment)
  regenerate(batch)                    encoder–decoders: the output written again, under the current edits
  attention_modules()                  (kind, layer) -> the attention module that computes it: where edits and
                                       captures happen (headscope/models/interventions.py)
  output_projections()                 (kind, layer) -> the linear layer W_O that reads that module's heads
  hook_points()                        (point, kind, layer) -> the HookPoint of the residual stream, attention and
                                       MLP outputs (headscope/models/interventions.py): activation patching
  mlp_projections()                    (stack, layer) -> the MLP's last linear layer (its output is mlp_out)
  readout()                            how the stream becomes logits: the final norm and the unembedding
                                       (models that predict tokens; direct logit attribution)
  output_ids(text)                     how a text tokenizes as tokens the model writes next (patching's answers)
  with_output(prepared, other)         encoder–decoders: one text's input with another's decoder positions
  own_task()                           optional: the model's own evaluation data (importance's default)
and `Adapter` does the rest: `analyze` and `analyze_batch` run the text as it is and, with an ablation, again
with the heads knocked out, on the same tokens, and measure what changed (headscope/models/effect.py).

Legend: T tokens, N scored rows, C model width, V vocabulary, L layers, H heads, Tq/Tk query/key positions.
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from headscope.models.analysis import Analysis, ModelInfo, Task
from headscope.models.effect import active_ablation, effect_of
from headscope.models.interventions import Ablation, ablating


@dataclass
class Prepared:
    """One text, tokenized (and its output or continuation generated), ready for teacher-forced passes."""

    text: str  # the text as run (after any cut to fit)
    fields: dict  # what the Analysis says of its tokens: tokens, offsets, special, words, truncated, generated,
    #               output_text, output_tokens, output_special, output_words, stopped, output_check
    inputs: dict  # what the adapter's forward reads for this text (ids, masks ...), unbatched
    targets: list[int] = field(default_factory=list)  # the ids the rows of Outputs.logits are scored on
    target_tokens: list[str] = field(default_factory=list)  # those ids as tokens
    targets_axis: str | None = None  # the token list whose position i targets[i] belongs to


@dataclass
class Outputs:
    """What one teacher-forced pass of one text produced."""

    patterns: dict[str, torch.Tensor]  # kind -> (L, H, Tq, Tk) float32 pattern
    hidden: torch.Tensor | None = None  # (T, C): an encoder's last hidden states of the text's tokens
    logits: torch.Tensor | None = None  # (N, V): row i is the model's prediction of Prepared.targets[i]
    next_logits: torch.Tensor | None = None  # (V,): a causal LM's prediction of the token after the last one


@dataclass
class Readout:
    """How a model turns its residual stream into logits: logits = norm(resid_final) @ weight.T + bias (up to a
    constant factor some families apply in between, T5's d_model^-0.5, which direct logit attribution measures)."""

    stack: str  # the stack whose stream the logits read: "decoder"
    norm: nn.Module  # the final norm (LayerNorm or RMSNorm), applied to ("resid_final", stack, layers)
    weight: torch.Tensor  # (V, C): the unembedding
    bias: torch.Tensor | None = None  # (V,)


class Adapter:
    """The shared part of every model adapter (see the module docstring)."""

    info: ModelInfo

    # --- what each adapter writes -------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def prepare(self, text: str, truncate: bool = False, new_tokens: int | None = None) -> Prepared:
        raise NotImplementedError

    def forward(self, batch: list[Prepared]) -> list[Outputs]:
        raise NotImplementedError

    def regenerate(self, batch: list[Prepared]) -> list[str]:
        raise NotImplementedError(f"{self.info.name} does not write an output")

    def attention_modules(self) -> dict:
        raise NotImplementedError

    def output_projections(self) -> dict:
        """(kind, layer) -> W_O: for Headscope's own attention (headscope/models/attention.py), its out_proj."""
        return {key: module.out_proj for key, module in self.attention_modules().items()}

    def hook_points(self) -> dict:
        """(point, kind, layer) -> HookPoint (headscope/models/interventions.py)."""
        raise NotImplementedError(f"{self.info.name} exposes no hook points of its residual stream")

    def mlp_projections(self) -> dict:
        """(stack, layer) -> the MLP's last linear layer, whose output is ("mlp_out", stack, layer)."""
        raise NotImplementedError(f"{self.info.name}'s MLP output layers are not known")

    def readout(self) -> Readout:
        raise NotImplementedError(f"{self.info.name} has no unembedding: it predicts no tokens")

    def output_ids(self, text: str) -> tuple[list[int], list[str]]:
        """The ids and tokens of `text` as the model would write them next (no special tokens added)."""
        raise NotImplementedError(f"{self.info.name} predicts no tokens")

    def id_tokens(self, ids: list[int]) -> list[str]:
        """How output ids are shown as tokens."""
        raise NotImplementedError(f"{self.info.name} predicts no tokens")

    def id_text(self, id: int) -> str | None:
        """The text of one output token, as `output_ids` would read it back to that one id; None when no text does
        (a byte that is not a whole character, a special token)."""
        raise NotImplementedError(f"{self.info.name} predicts no tokens")

    def with_output(self, prepared: Prepared, other: Prepared) -> Prepared:
        """Encoder–decoders: `prepared`'s input with `other`'s decoder positions and targets (teacher-forced on the
        output `other` wrote)."""
        raise NotImplementedError(f"{self.info.name} does not write an output")

    def own_task(self, n: int | None = None) -> Task | None:
        """The model's own evaluation data, if it has any (None: free text is measured); n: its first n examples
        (None: all)."""
        return None

    # --- what every adapter shares -----------------------------------------------------------------------

    def analyze(self, text: str, truncate: bool = False, new_tokens: int | None = None,
                ablation: Ablation | None = None) -> Analysis:
        """Run one text. Raises TooManyTokens when it does not fit and truncate is False.

        new_tokens: for models that generate, the most tokens to generate (None: info.default_new_tokens).
        ablation: heads to knock out (BadAblation if the model lacks them): the tokens and any generation are the
        un-ablated model's; the patterns are the ablated model's on those same tokens, and `effect` compares.
        """
        return self.analyze_batch([text], truncate, new_tokens, ablation)[0]

    @torch.no_grad()  # plain tensors out (inference-mode tensors refuse later in-place use)
    def analyze_batch(self, texts: list[str], truncate: bool = False, new_tokens: int | None = None,
                      ablation: Ablation | None = None) -> list[Analysis]:
        """Several texts: each result equals `analyze` of that text (forward batches them where it can)."""
        ablation = active_ablation(self, ablation)
        batch = [self.prepare(text, truncate, new_tokens) for text in texts]
        if not batch:
            return []
        before = self.forward(batch)
        if ablation is None:
            return [self.analysis(p, out, out) for p, out in zip(batch, before, strict=True)]
        with ablating(self.attention_modules(), ablation):
            after = self.forward(batch)
            again = self.regenerate(batch) if self.info.generation == "output" else [None] * len(batch)
        return [self.analysis(p, a, b, effect_of(self.info, p, b, a, g, ablation.metric))
                for p, b, a, g in zip(batch, before, after, again, strict=True)]

    def analysis(self, prepared: Prepared, outputs: Outputs, base: Outputs, effect: dict | None = None) -> Analysis:
        """The Analysis of a prepared text: patterns from `outputs`, the output's probabilities from `base` (the
        un-ablated pass)."""
        fields = dict(prepared.fields)
        if self.info.generation == "output":
            probs = base.logits.float().softmax(-1)  # (N, V)
            fields["output_probs"] = probs[torch.arange(len(prepared.targets)), prepared.targets].tolist()  # (N,)
        return Analysis(model=self.info.name, patterns=outputs.patterns, layout=self.info.kinds, effect=effect,
                        **fields)


def padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and the padding mask (B, T), True at padding."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])  # (B,)
    return ids, torch.arange(width)[None, :] >= lengths[:, None]  # (B, T), (B, T)
