"""A local Hugging Face checkpoint directory as a Headscope model, through `transformers`, offline.

`headscope serve --model mine=./some-dir` loads `./some-dir` here. Nothing is ever downloaded:
HF_HUB_OFFLINE=1 and local_files_only=True. The directory needs config.json, the weights
(model*.safetensors or pytorch_model*.bin, read with torch's weights_only loader) and a fast
tokenizer (tokenizer.json, or files transformers turns into one).

Which transformers class runs it, from config.json alone:
  config.is_encoder_decoder                      -> AutoModelForSeq2SeqLM  encoder–decoder (BART, T5)
  config.is_decoder, or the model type has a causal-LM class and no masked-LM class
                                                 -> AutoModelForCausalLM   decoder-only (GPT-2, Llama)
  anything else                                  -> AutoModel              encoder (BERT, RoBERTa, DistilBERT)
The rule sends BERT-like types (which have both a masked-LM and a causal-LM head) to the encoder
unless their config says is_decoder, and every decoder-only LM to the causal class.

Attention is transformers' own: `attn_implementation="eager"` (the only one that materialises the
weights) and `output_attentions=True`, stacked per kind to (L, H, Tq, Tk) float32. The model runs in
float32 whatever dtype the file holds. With grouped-query attention there is one pattern per query
head, and `ModelInfo.kv_heads` says how many key/value groups they share.

Tokens, offsets, special flags and words are the checkpoint's own tokenizer's, called as
`tokenizer(text)` (its default special tokens included). Word ids come from its pre-tokenizer: one
that does not split on spaces (Llama's Metaspace) puts the whole text in word 0.

Generation is plain greedy decoding, stopping at the end token: the argmax at every step. A
checkpoint's own generation settings (sampling, beams, length and repetition penalties, forced
tokens) are not applied, so row i of a decoder pattern is exactly the position whose argmax is the
next token.
  decoder-only     `new_tokens` n > 0 continues the text by up to n tokens, then one forward pass
                   over text + continuation; text and continuation must fit max_tokens together
                   (truncate cuts the text). Generated tokens have no offsets and no words.
  encoder–decoder  generates up to n tokens (default DEFAULT_MAX_NEW_TOKENS), then one teacher-forced
                   pass over the decoder's positions, as headscope/models/dates.py. output_words: word ids of
                   output_text tokenized again, when that gives back exactly the generated tokens;
                   else None (decoding and encoding need not round-trip).

Limits: input positions are the config's (max_position_embeddings or n_positions; RoBERTa-like
types lose their padding offset), capped at MAX_POSITIONS = 1024 to keep one answer's memory and
time bounded on a CPU; a config without positions (T5: relative positions) gets NO_POSITIONS_LIMIT
= 512. Before loading, the weights' float32 size is compared with the memory that is free.
Anything Headscope cannot serve raises CheckpointError with one line: the problem and what to do.

Heads one by one: `attention_modules()` (headscope/models/hf/attention.py's attention function, for ablation and
capture) and `output_projections()`, each module's W_O, found at load, in the same single probe pass that checks
the patterns, by what it reads (value norms,
headscope/analyses/value_norm.py; the mechanism view, headscope/analyses/mechanism.py). The residual stream,
attention and MLP outputs: `hook_points()`, driven by forward hooks (headscope/models/hf/hooks.py), and for models
that predict tokens `readout()`, the final norm found there and `get_output_embeddings()`.

Teacher-forced passes of texts of the same length run as one batch (no padding, so nothing a family does with it
can change what a head sees); texts of different lengths run one at a time.

Legend: B batch (always 1 here), L layers, H query heads, T tokens, Tq query positions, Tk key positions.
"""

import json
import math
import os
import pickle
import re
from pathlib import Path

import torch

from headscope.models.adapter import Adapter, Outputs, Prepared, Readout
from headscope.models.analysis import (
    CAUSAL_SELF,
    CROSS,
    DECODER_SELF,
    DEFAULT_MAX_NEW_TOKENS,
    MAX_NEW_TOKENS,
    SELF,
    ModelInfo,
    TooManyTokens,
)
from headscope.models.hf import attention as hf_attention
from headscope.models.hf import hooks as hf_hooks

MAX_POSITIONS = 1024  # the most input positions we run, whatever the config allows
NO_POSITIONS_LIMIT = 512  # for configs with no absolute positions (T5)
# Types whose position ids start after the padding id, so max_position_embeddings - (pad_token_id + 1) are usable.
PADDING_OFFSET_TYPES = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm",
                        "data2vec-text", "xmod", "longformer"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")
PROBE_TEXT = "Attention is all you need, they said."  # run once at load to check the model returns attention


class CheckpointError(ValueError):
    """A checkpoint directory Headscope cannot serve; the message is one line: the problem and what to do."""


class ContinuationTooLong(TooManyTokens):
    """The text plus the tokens asked for do not fit the model's positions."""

    def __init__(self, count: int, new_tokens: int, limit: int, model: str):
        super().__init__(count + new_tokens, limit, model)
        self.args = (f"text has {count} tokens and generate asks for {new_tokens} more, but {model} takes at most "
                     f"{limit} positions; shorten the text, generate fewer, or send truncate: true",)


# --- the checkpoint's files, checked before transformers reads them ---------------------------------------------

def weight_files(path: Path) -> list[Path]:
    """The weight files transformers would read: safetensors if there are any, else PyTorch pickles."""
    return sorted(path.glob("model*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))


def float32_bytes(files: list[Path]) -> int:
    """Memory the weights take as float32: counted from each safetensors header (no tensor is read);
    a .bin's dtype is unknown without unpickling it, so it counts twice its size (float32, plus the
    copy torch.load holds while the model is filled)."""
    total = 0
    for f in files:
        if f.suffix != ".safetensors":
            total += 2 * f.stat().st_size
            continue
        with f.open("rb") as fh:
            head = fh.read(8)
            if head.startswith(b"versio"):  # "version https://git-lfs..."
                raise CheckpointError(f"{f} is a Git LFS pointer, not the weights; fetch them with `git lfs pull`")
            try:
                header = json.loads(fh.read(int.from_bytes(head, "little")))
                total += 4 * sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
            except (ValueError, MemoryError, OverflowError, KeyError, TypeError):
                raise CheckpointError(f"{f} is not a readable safetensors file; save the model again "
                                      "with save_pretrained") from None
    return total


def available_memory() -> int:
    """Bytes this process can still allocate: MemAvailable, or less under a cgroup (container) limit."""
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def check_memory(path: Path, needed: int, available: int) -> None:
    if needed > available:
        raise CheckpointError(f"{path}: its weights need about {needed / 2**30:.1f} GiB as float32 but only "
                              f"{available / 2**30:.1f} GiB of memory is free; serve a smaller checkpoint or free "
                              "memory")


def check_directory(path: Path) -> list[Path]:
    """The directory's weight files, after checking that config, weights and tokenizer are there."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give NAME=PATH with a Hugging Face checkpoint directory")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; give the checkpoint directory (with config.json), "
                              "not a file in it")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json, so it is not a Hugging Face checkpoint; "
                              "save one with model.save_pretrained(PATH)")
    files = weight_files(path)
    if not files:
        raise CheckpointError(f"{path} has no weights (model.safetensors or pytorch_model.bin); "
                              "save them with model.save_pretrained(PATH)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(f"{path} has no tokenizer (tokenizer.json); save it there with "
                              "tokenizer.save_pretrained(PATH)")
    return files


def one_line(error: BaseException) -> str:
    """The first line of an error's message, without terminal colour codes."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def architecture(config) -> str:
    """"encoder-decoder", "decoder" or "encoder": which Auto class runs this config (the rule above)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    causal_only = (config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
                   and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    if getattr(config, "is_decoder", False) or causal_only:
        return "decoder"
    return "encoder"


def position_limit(config) -> int:
    """Input positions we allow: the config's, capped at MAX_POSITIONS (NO_POSITIONS_LIMIT if it has none)."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not isinstance(limit, int) or limit <= 0:
        return NO_POSITIONS_LIMIT
    if config.model_type in PADDING_OFFSET_TYPES:
        limit -= (config.pad_token_id or 0) + 1
    return min(limit, MAX_POSITIONS)


def stack(attentions, row: int = 0) -> torch.Tensor:
    """transformers' per-layer tuple of (B, H, Tq, Tk) -> batch row `row`'s (L, H, Tq, Tk) float32."""
    return torch.stack([a[row] for a in attentions]).float().contiguous()  # (L, H, Tq, Tk)


KINDS = {  # architecture -> attention kind -> its layout
    "encoder": {"encoder": SELF},
    "decoder": {"decoder": CAUSAL_SELF},
    "encoder-decoder": {"encoder": SELF, "decoder": DECODER_SELF, "cross": CROSS},
}


def probe(net, tokenizer, arch: str) -> tuple[dict, dict]:
    """One forward pass over a short text: kind -> transformers' attentions, kind -> (Tq, Tk) expected."""
    ids = tokenizer(PROBE_TEXT, return_tensors="pt", verbose=False)["input_ids"]  # (1, T)
    T = ids.shape[1]
    with torch.no_grad():
        if arch == "encoder-decoder":
            start = net.generation_config.decoder_start_token_id
            start = start if start is not None else net.config.decoder_start_token_id
            out = net(input_ids=ids, decoder_input_ids=torch.tensor([[start, start]]), output_attentions=True)
            return ({"encoder": getattr(out, "encoder_attentions", None),
                     "decoder": getattr(out, "decoder_attentions", None),
                     "cross": getattr(out, "cross_attentions", None)},
                    {"encoder": (T, T), "decoder": (2, 2), "cross": (2, T)})
        out = net(input_ids=ids, output_attentions=True)
    kind = next(iter(KINDS[arch]))
    return {kind: getattr(out, "attentions", None)}, {kind: (T, T)}


def check_patterns(path: Path, arch: str, kinds: dict, attentions: dict, shapes: dict[str, tuple[int, int]]) -> None:
    """Every kind must come back as L tensors (1, H, Tq, Tk) of rows that sum to 1; causal kinds with
    zeros above the diagonal. Models without attention (Mamba, RWKV, FNet) fail here."""
    for kind, layers in attentions.items():
        Tq, Tk = shapes[kind]
        ok = (isinstance(layers, tuple | list) and len(layers) > 0
              and all(isinstance(a, torch.Tensor) and a.dim() == 4 and a.shape[0] == 1 and a.shape[2:] == (Tq, Tk)
                      for a in layers))
        if ok:
            pattern = torch.stack([a[0] for a in layers]).float()  # (L, H, Tq, Tk)
            ok = bool(torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-3) and (pattern >= 0).all())
        if not ok:
            raise CheckpointError(f"{path} ({arch}) returns no attention weights for output_attentions=True; "
                                  "Headscope needs a transformer whose layers compute attention")
        if kinds[kind].causal and not bool((pattern.triu(1) == 0).all()):
            raise CheckpointError(f"{path} ({arch}) is a decoder whose attention is not causal; "
                                  "Headscope cannot say which tokens its rows see")


def traced_probe(net, run):
    """(run()'s result, its Trace): the one probe pass at load, with headscope/models/hf/attention.py's attention
    (which calls the family's own eager attention, so the patterns are eager's to the bit) and every discovery's
    hooks. A family that refuses that attention, or whose pass fails with it, keeps eager attention: (the result
    of an eager pass, None), and its heads cannot be reached one by one.
    run(): one short probe pass of `net` (a text's, or an image model's)."""
    hf_attention.register()
    try:
        net.set_attn_implementation(hf_attention.NAME)
        return hf_attention.traced(net, run)
    except Exception:  # noqa: BLE001 - any family that does not fit: patterns still come from eager
        net.set_attn_implementation("eager")
        return run(), None


def headscope_modules(net, trace, arch: str, layers: dict[str, int]) -> dict | None:
    """(kind, layer) -> attention module, from the probe's trace; None (and eager attention set back) for a family
    whose modules do not all run through transformers' attention interface."""
    if trace is None:
        return None
    try:
        return hf_attention.attention_modules(trace, arch, layers)
    except ValueError:
        net.set_attn_implementation("eager")
        return None


def find_output_projections(trace, modules: dict | None) -> dict | None:
    """(kind, layer) -> output projection W_O of each attention module (headscope/models/hf/attention.py); None where
    the modules are not reachable or some module's W_O cannot be told apart."""
    if modules is None:
        return None
    try:
        return hf_attention.output_projections(modules, trace)
    except ValueError:
        return None


def has_custom_code(path: Path) -> bool:
    """Whether the checkpoint's config.json or tokenizer_config.json points transformers at code of its own."""
    for name in ("config.json", "tokenizer_config.json"):
        try:
            if "auto_map" in json.loads((path / name).read_text(encoding="utf-8")):
                return True
        except (OSError, ValueError, TypeError):
            continue
    return False


def find_hook_points(net, trace, arch: str, modules: dict | None, out_projs: dict | None):
    """(hook points, MLP projections, final norm) of headscope/models/hf/hooks.py, the hooks registered; (None, None,
    None) where the blocks or MLPs cannot be told apart."""
    if modules is None or out_projs is None:
        return None, None, None
    try:
        blocks = hf_hooks.find_blocks(net, modules)
        mlps = hf_hooks.find_mlp_projections(blocks, out_projs, trace)
        norm = hf_hooks.find_final_norm(net, blocks, trace) if arch != "encoder" else None
    except (ValueError, KeyError):
        return None, None, None
    return hf_hooks.attach(blocks, out_projs, mlps, norm), mlps, norm


class HFModel(Adapter):
    """A transformers model and its fast tokenizer; `analyze` returns every head's pattern per kind."""

    def __init__(self, name: str, net, tokenizer, arch: str, description: str, layers: int, heads: int):
        self.net = net.eval()
        self.tokenizer = tokenizer
        self.arch = arch  # "encoder", "decoder" or "encoder-decoder"
        self.modules: dict | None = None  # (kind, layer) -> attention module, when it runs headscope/models/hf/attention.py's
        self.out_projs: dict | None = None  # (kind, layer) -> that module's output projection W_O, when found
        self.points: dict | None = None  # (point, kind, layer) -> HookPoint (headscope/models/hf/hooks.py), when found
        self.mlps: dict | None = None  # (stack, layer) -> the MLP's last linear layer, when found
        self.final_norm = None  # the norm that reads the decoder's stream before the unembedding, when found
        config = net.config
        self.special_ids = set(tokenizer.all_special_ids)
        generation = getattr(net, "generation_config", None)  # encoders have none
        eos = generation.eos_token_id if generation is not None and generation.eos_token_id is not None \
            else tokenizer.eos_token_id
        self.eos = eos  # an id, a list of ids (Llama 3) or None
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        max_tokens = position_limit(config)
        kv_heads = getattr(config, "num_key_value_heads", None)
        common = dict(name=name, description=description, layers=layers, heads=heads, max_tokens=max_tokens,
                      kv_heads=kv_heads if kv_heads is not None and kv_heads != heads else None)
        if arch == "encoder":
            self.info = ModelInfo(**common, kinds=KINDS[arch])
        elif arch == "decoder":
            self.info = ModelInfo(**common, kinds=KINDS[arch], generation="continuation",
                                  max_new_tokens=min(MAX_NEW_TOKENS, max_tokens - 1), default_new_tokens=0)
        else:
            # The decoder has as many positions as the config gives (T5: no limit), and uses one per token but the last.
            most = min(MAX_NEW_TOKENS, max_tokens)
            self.info = ModelInfo(**common, kinds=KINDS[arch],
                                  generation="output", max_new_tokens=most,
                                  default_new_tokens=min(DEFAULT_MAX_NEW_TOKENS, most))

    @classmethod
    def load(cls, name: str, path: str | Path, source: str | None = None) -> "HFModel":
        """The checkpoint folder at path; source: what the description names it by (default: the folder).

        Every from_pretrained here says trust_remote_code=False: a checkpoint's own Python never runs, and
        transformers never asks (on a terminal it would offer to run it)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it: never reach the hub
        path = Path(path).expanduser()
        files = check_directory(path)
        check_memory(path, float32_bytes(files), available_memory())

        import transformers
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        except Exception as e:  # unknown model type, code the checkpoint asks us to trust, bad JSON
            if has_custom_code(path):
                raise CheckpointError(f"{path}: it needs custom code (auto_map in its config.json), and Headscope "
                                      "never runs a checkpoint's own Python; use a model type transformers "
                                      "knows") from None
            raise CheckpointError(f"{path}/config.json: transformers cannot read it: {one_line(e)}") from None
        arch = architecture(config)
        auto = {"encoder": AutoModel, "decoder": AutoModelForCausalLM, "encoder-decoder": AutoModelForSeq2SeqLM}[arch]
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        except Exception as e:
            raise CheckpointError(f"{path}: cannot load its tokenizer: {one_line(e)}; save a fast tokenizer there "
                                  "with tokenizer.save_pretrained(PATH)") from None
        if not getattr(tokenizer, "is_fast", False):
            raise CheckpointError(f"{path}: its tokenizer ({type(tokenizer).__name__}) is a slow, Python-only one; "
                                  "Headscope needs a fast one (tokenizer.json) for character offsets and word ids")

        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # the load report: we check missing weights ourselves
        try:
            net, loading = auto.from_pretrained(path, config=config, local_files_only=True, trust_remote_code=False,
                                                attn_implementation="eager",
                                                dtype=torch.float32, weights_only=True, output_loading_info=True)
        except pickle.UnpicklingError:
            raise CheckpointError(f"{path}: its .bin weights hold more than tensors (a pickle that could run code), "
                                  "so they are refused; convert them to safetensors where you trust them") from None
        except Exception as e:
            raise CheckpointError(f"{path}: transformers cannot load it as {auto.__name__} with eager attention: "
                                  f"{one_line(e)}") from None
        finally:
            transformers.logging.set_verbosity(verbosity)
        missing = sorted(k for k in loading["missing_keys"] if "pooler" not in k)  # an encoder's pooler: unused here
        if missing or loading["mismatched_keys"]:
            wrong = missing or sorted(map(str, loading["mismatched_keys"]))
            raise CheckpointError(f"{path}: weights missing or of the wrong shape for {type(net).__name__}: "
                                  f"{', '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}; they would be random")

        arch_name = (config.architectures or [type(net).__name__])[0]
        # the one probe pass: attention patterns to check, and the trace every discovery below reads
        (attentions, shapes), trace = traced_probe(net, lambda: probe(net, tokenizer, arch))
        check_patterns(path, arch_name, KINDS[arch], attentions, shapes)
        layers = max(len(a) for a in attentions.values())
        heads = max(a[0].shape[1] for a in attentions.values())
        params = sum(p.numel() for p in net.parameters())
        description = (f"{arch_name} ({arch}, {params:,} parameters) from {source or f'the folder {path.name}'}, "
                       "run by transformers")
        model = cls(name, net, tokenizer, arch, description, layers, heads)
        model.modules = headscope_modules(net, trace, arch, {kind: len(a) for kind, a in attentions.items()})
        model.out_projs = find_output_projections(trace, model.modules)
        model.points, model.mlps, model.final_norm = find_hook_points(net, trace, arch, model.modules,
                                                                      model.out_projs)
        return model

    # --- running it -----------------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, verbose=False)["input_ids"])

    def attention_modules(self) -> dict:
        """(kind, layer) -> the attention module that computes it (see headscope/models/interventions.py)."""
        if self.modules is None:
            raise NotImplementedError(f"{self.info.name}'s attention modules do not run through transformers' "
                                      "attention interface, so their heads cannot be reached one by one")
        return self.modules

    def output_projections(self) -> dict:
        """(kind, layer) -> the linear layer W_O that reads that attention module's heads concatenated."""
        if self.out_projs is None:
            raise NotImplementedError(f"{self.info.name}'s attention output projections could not be found, so "
                                      "what its heads hand on cannot be computed")
        return self.out_projs

    def hook_points(self) -> dict:
        if self.points is None:
            raise NotImplementedError(f"{self.info.name}'s layers, attention outputs and MLP outputs could not be "
                                      "told apart, so its residual stream cannot be reached")
        return self.points

    def mlp_projections(self) -> dict:
        if self.mlps is None:
            raise NotImplementedError(f"{self.info.name}'s MLP output layers could not be found")
        return self.mlps

    def readout(self) -> Readout:
        if self.arch == "encoder":
            raise NotImplementedError(f"{self.info.name} is an encoder: it has no unembedding and predicts no tokens")
        if self.final_norm is None:
            raise NotImplementedError(f"{self.info.name} has no final norm that reads its residual stream before the "
                                      "unembedding (a post-norm model such as BART normalises inside every layer)")
        unembed = self.net.get_output_embeddings()
        return Readout("decoder", self.final_norm, unembed.weight, getattr(unembed, "bias", None))

    def output_ids(self, text: str) -> tuple[list[int], list[str]]:
        """The tokenizer's ids of the text with no special tokens added, as a continuation would be written."""
        if self.arch == "encoder":
            raise NotImplementedError(f"{self.info.name} is an encoder: it predicts no tokens")
        ids = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return ids, self.id_tokens(ids)

    def id_text(self, id: int) -> str | None:
        text = self.tokenizer.decode([id], clean_up_tokenization_spaces=False)
        return text if text and self.output_ids(text)[0] == [id] else None

    def with_output(self, prepared: Prepared, other: Prepared) -> Prepared:
        if self.arch != "encoder-decoder":
            raise NotImplementedError(f"{self.info.name} does not write an output")
        outputs = ("output_text", "output_tokens", "output_special", "output_words", "stopped")
        return Prepared(prepared.text, {**prepared.fields, **{k: other.fields[k] for k in outputs}},
                        {**prepared.inputs, "decoder_ids": other.inputs["decoder_ids"], "steps": other.inputs["steps"]},
                        targets=other.targets, target_tokens=other.target_tokens, targets_axis=other.targets_axis)

    def encode(self, text: str, limit: int, truncate: bool) -> tuple[dict, bool]:
        """The tokenizer's encoding of text (special tokens as it adds them by default), cut to `limit`
        tokens by the tokenizer itself when truncate is set."""
        options = dict(return_offsets_mapping=True, return_special_tokens_mask=True, verbose=False)
        enc = self.tokenizer(text, **options)
        count = len(enc["input_ids"])
        if count <= limit:
            return enc, False
        if not truncate:
            raise TooManyTokens(count, limit, self.info.name)
        return self.tokenizer(text, truncation=True, max_length=limit, **options), True

    def prepare(self, text: str, truncate: bool = False, new_tokens: int | None = None) -> Prepared:
        n = self.info.default_new_tokens if new_tokens is None else new_tokens
        if self.arch == "encoder":
            return self.prepare_encoder(text, truncate)
        if self.arch == "decoder":
            return self.prepare_decoder(text, truncate, n)
        return self.prepare_encoder_decoder(text, truncate, n)

    def forward(self, batch: list[Prepared]) -> list[Outputs]:
        """Texts of one shape as one pass; otherwise one text at a time: a checkpoint's padding side and position
        handling for padded batches vary by family, so padding could change what a head sees."""
        shapes = {self.shape(p) for p in batch}
        if len(batch) > 1 and len(shapes) == 1:
            return self.forward_same(batch)
        return [out for p in batch for out in self.forward_same([p])]

    def shape(self, p: Prepared) -> tuple:
        if self.arch == "decoder":
            return tuple(p.inputs["ids"].shape)
        decoder = tuple(p.inputs["decoder_ids"].shape) if self.arch == "encoder-decoder" else ()
        return tuple((k, tuple(v.shape)) for k, v in p.inputs["model"].items()) + decoder

    def forward_same(self, batch: list[Prepared]) -> list[Outputs]:
        """One pass over texts whose inputs have the same shape, stacked: row b is batch[b]."""
        B = len(batch)
        if self.arch == "encoder":
            inputs = {k: torch.cat([p.inputs["model"][k] for p in batch]) for k in batch[0].inputs["model"]}  # (B, T)
            out = self.net(**inputs, output_attentions=True)
            return [Outputs({"encoder": stack(out.attentions, b)}, hidden=out.last_hidden_state[b])
                    for b in range(B)]  # (L, H, T, T), (T, C)
        if self.arch == "decoder":
            ids = torch.cat([p.inputs["ids"] for p in batch])  # (B, T)
            out = self.net(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)
            return [Outputs({"decoder": stack(out.attentions, b)}, logits=out.logits[b, :-1],
                            next_logits=out.logits[b, -1]) for b in range(B)]  # (L, H, T, T), (T-1, V), (V,)
        inputs = {k: torch.cat([p.inputs["model"][k] for p in batch]) for k in batch[0].inputs["model"]}  # (B, S)
        decoder_ids = torch.cat([p.inputs["decoder_ids"] for p in batch])  # (B, T)
        out = self.net(**inputs, decoder_input_ids=decoder_ids, output_attentions=True)
        return [Outputs({"encoder": stack(out.encoder_attentions, b), "decoder": stack(out.decoder_attentions, b),
                         "cross": stack(out.cross_attentions, b)}, logits=out.logits[b])
                for b in range(B)]  # kind -> (L, H, Tq, Tk); (T, V)

    def regenerate(self, batch: list[Prepared]) -> list[str]:
        """Each output written again as the model runs now, greedily, without a cache: every step re-runs the whole
        prefix (with a cache, a step's queries are one token, and a mean over them would change nothing)."""
        out = []
        for p in batch:
            config = self.greedy(p.inputs["steps"], use_cache=False)
            again = self.net.generate(**p.inputs["model"], generation_config=config)[0, 1:].tolist()
            out.append(self.tokenizer.decode(again, skip_special_tokens=True))
        return out

    def id_tokens(self, ids: list[int]) -> list[str]:
        """Token strings of generated ids. A model's vocabulary may be larger than its tokenizer's (rows
        padded to a round number): an id the tokenizer lacks reads `<id N>`."""
        return [t if t is not None else f"<id {i}>" for i, t in zip(ids, self.tokenizer.convert_ids_to_tokens(ids))]

    def inputs(self, enc) -> dict[str, torch.Tensor]:
        """What the tokenizer returned that the model takes (input_ids, attention_mask, token_type_ids ...)."""
        return {k: torch.tensor([enc[k]]) for k in self.tokenizer.model_input_names if k in enc}  # each (1, T)

    def token_fields(self, enc) -> dict:
        # a special token typed in the text (BERT's [SEP], SmolLM2's <|im_end|>) is the same token the template adds
        # or the model generates: special too, not only the ones the template added (special_tokens_mask)
        special = [bool(s) or i in self.special_ids for s, i in zip(enc["special_tokens_mask"], enc["input_ids"])]
        return {
            "tokens": enc.tokens(),
            "offsets": [None if s else (a, b) for (a, b), s in zip(enc["offset_mapping"], special)],
            "special": special,
            "words": [None if s else w for w, s in zip(enc.word_ids(), special)],
        }

    def prepare_encoder(self, text: str, truncate: bool) -> Prepared:
        enc, truncated = self.encode(text, self.info.max_tokens, truncate)
        return Prepared(text, {**self.token_fields(enc), "truncated": truncated}, {"model": self.inputs(enc)})

    def greedy(self, n: int, use_cache: bool = True):
        """Plain greedy decoding of at most n tokens, stopping at the end token. use_cache=False re-runs the
        whole prefix at every step: what mean ablation needs (with a cache, a step's queries are one token)."""
        from transformers import GenerationConfig

        g, pad, eos = self.net.generation_config, self.tokenizer.pad_token_id, self.eos
        return GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=n, eos_token_id=eos, use_cache=use_cache,
                                bos_token_id=g.bos_token_id, decoder_start_token_id=g.decoder_start_token_id,
                                pad_token_id=pad if pad is not None else (eos[0] if isinstance(eos, list) else eos))

    def prepare_decoder(self, text: str, truncate: bool, n: int) -> Prepared:
        """The text, or, with n > 0, the text and its greedy continuation of up to n tokens."""
        limit = self.info.max_tokens
        room = limit - n  # positions left for the prompt
        if n < 0 or room < 1 + self.tokenizer.num_special_tokens_to_add():
            raise ContinuationTooLong(self.count_tokens(text), n, limit, self.info.name)
        try:
            enc, truncated = self.encode(text, room, truncate)
        except TooManyTokens as e:
            raise (ContinuationTooLong(e.count, n, limit, self.info.name) if n else e) from None
        fields = {**self.token_fields(enc), "truncated": truncated, "generated": None, "stopped": None}
        ids = torch.tensor([enc["input_ids"]])  # (1, T)
        if n > 0:
            sequence = self.net.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                         generation_config=self.greedy(n))  # (1, T + new)
            new = sequence[0, ids.shape[1]:].tolist()
            fields["stopped"] = "end" if new and new[-1] in self.eos_ids else "length"
            ids = sequence[:, : ids.shape[1] + len(new)]  # (1, T + new)
            fields["tokens"] += self.id_tokens(new)
            fields["offsets"] += [None] * len(new)  # not in the text
            fields["special"] += [i in self.special_ids for i in new]
            fields["words"] += [None] * len(new)
            fields["generated"] = [False] * len(enc["input_ids"]) + [True] * len(new)
        row = ids[0].tolist()
        return Prepared(text, fields, {"ids": ids}, targets=row[1:], target_tokens=fields["tokens"][1:],
                        targets_axis="tokens")

    def prepare_encoder_decoder(self, text: str, truncate: bool, n: int) -> Prepared:
        """Greedy output of up to n tokens; the teacher-forced passes then run over the decoder's positions: the
        start token and every generated token but the last (row i produced output token i+1, the last row the last
        token), as headscope/models/dates.py."""
        if not 1 <= n <= self.info.max_new_tokens:
            raise ValueError(f"new_tokens must be 1..{self.info.max_new_tokens}, not {n}")
        enc, truncated = self.encode(text, self.info.max_tokens, truncate)
        inputs = self.inputs(enc)
        sequence = self.net.generate(**inputs, generation_config=self.greedy(n))[0].tolist()  # [start, g1 .. gk]
        made = sequence[1:]
        positions = sequence[:-1]  # the decoder's positions: start, g1 .. g(k-1)
        output_text = self.tokenizer.decode(made, skip_special_tokens=True)
        fields = {
            **self.token_fields(enc),
            "truncated": truncated,
            "output_text": output_text,
            "output_tokens": self.id_tokens(positions),
            "output_special": [i in self.special_ids for i in positions],
            "output_words": self.output_words(positions, made, output_text),
            "stopped": "end" if made and made[-1] in self.eos_ids else "length",
        }
        return Prepared(text, fields, {"model": inputs, "decoder_ids": torch.tensor([positions]), "steps": n},
                        targets=made, target_tokens=self.id_tokens(made), targets_axis="output_tokens")

    def output_words(self, positions: list[int], made: list[int], output_text: str) -> list[int | None] | None:
        """Word index of each decoder position, from tokenizing output_text again: only when that gives
        back exactly the generated tokens (decoding and re-encoding need not round-trip); else None."""
        kept = [i for i, t in enumerate(made) if t not in self.special_ids]
        enc = self.tokenizer(output_text, add_special_tokens=False, verbose=False)
        if enc["input_ids"] != [made[i] for i in kept]:
            return None
        words: list[int | None] = [None] * len(made)
        for i, w in zip(kept, enc.word_ids()):
            words[i] = w
        return [None, *words[: len(positions) - 1]]  # position 0 is the start token; position i holds made[i-1]
