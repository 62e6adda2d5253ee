"""A playground for `torch.nn.MultiheadAttention`: one configuration in, its shapes and weights out,
checked against our own attention.

`build(config)` makes the module and its random inputs by exactly the steps of `python_code(config)`
(seed, construct, draw query, then keys and values), so the code a reader copies reproduces the
numbers of the answer. `run(config)` runs PyTorch's module and a second implementation holding the
same weights; it reports the weights of every batch element, the shape of every parameter (from the
module's `named_parameters()`) and of every step (from the textbook steps' tensors on the same inputs),
and the largest difference:
  - our `headscope.models.attention.MultiHeadAttention` where it applies: kdim = vdim = embed_dim, no
    add_bias_kv, no add_zero_attn (keys and values then come from one tensor, as ours reads them);
  - otherwise `textbook_attention` below, the same steps written out with those options.
Our module is kept the textbook module the whole app shows; the legacy options live here.

Legend: N batch, L target (query) length, S source (key) length, S' = S + 1 per added key
(add_bias_kv, add_zero_attn), E embed_dim, H heads, D = E // H, Ek kdim, Ev vdim.
"""

import math
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn
from torch.nn import functional as F

from headscope.models.attention import MultiHeadAttention

OURS = "headscope.models.attention.MultiHeadAttention"
TEXTBOOK = "headscope.analyses.playground.textbook_attention"
# What each second implementation is, in words a student reads on the page (the technical name above is kept
# in the answer's `compared_with`).
IN_WORDS = {
    OURS: "Our step-by-step attention (Headscope's own module, the one every other tab runs)",
    TEXTBOOK: "Our step-by-step attention (the same steps written out with these options)",
}

# Each parameter of nn.MultiheadAttention and each step of the computation: its shape in the legend's symbols
# (checked against the real tensors' shapes in tests/analyses/test_playground.py) and what it is.
PARAMETERS = {
    "in_proj_weight": (("3E", "E"), "W_Q, W_K and W_V stacked: rows [0, E) make Q, [E, 2E) K, [2E, 3E) V"),
    "q_proj_weight": (("E", "E"), "W_Q (kdim or vdim differs from embed_dim: three matrices)"),
    "k_proj_weight": (("E", "Ek"), "W_K: keys of width kdim into E"),
    "v_proj_weight": (("E", "Ev"), "W_V: values of width vdim into E"),
    "in_proj_bias": (("3E",), "the biases of Q, K and V stacked"),
    "bias_k": (("1", "1", "E"), "add_bias_kv: the learned key appended to every sequence"),
    "bias_v": (("1", "1", "E"), "add_bias_kv: the learned value appended to every sequence"),
    "out_proj.weight": (("E", "E"), "W_O: the heads' concatenated outputs back to width E"),
    "out_proj.bias": (("E",), "the bias of W_O"),
}
STEPS = (  # name, title, dims, symbols
    ("q", "Q, per head", ("batch", "head", "query_pos", "head_dim"), ("N", "H", "L", "D")),
    ("k", "K, per head", ("batch", "head", "key_pos", "head_dim"), ("N", "H", "S'", "D")),
    ("v", "V, per head", ("batch", "head", "key_pos", "head_dim"), ("N", "H", "S'", "D")),
    ("attn_scores", "scores Q·Kᵀ / √D", ("batch", "head", "query_pos", "key_pos"), ("N", "H", "L", "S'")),
    ("pattern", "weights softmax(scores)", ("batch", "head", "query_pos", "key_pos"), ("N", "H", "L", "S'")),
    ("z", "each head's output, weights · V", ("batch", "head", "query_pos", "head_dim"), ("N", "H", "L", "D")),
    ("z_concat", "heads concatenated", ("batch", "query_pos", "embed"), ("N", "L", "E")),
    ("output", "output, W_O · concatenated", ("batch", "query_pos", "embed"), ("N", "L", "E")),
)


@dataclass(frozen=True)
class MHALimits:
    """The largest configuration one request may ask for: any request within them runs in a few ms."""

    max_embed_dim: int = 256  # embed_dim, kdim and vdim
    max_heads: int = 16
    max_length: int = 64  # L and S
    max_batch: int = 8  # N
    max_seed: int = 2**31 - 1


LIMITS = MHALimits()


@dataclass(frozen=True)
class MHAConfig:
    """The arguments of nn.MultiheadAttention(...) and of its call, and the sizes of the inputs."""

    embed_dim: int = 64
    num_heads: int = 8
    kdim: int | None = None  # None: embed_dim
    vdim: int | None = None  # None: embed_dim
    bias: bool = True
    add_bias_kv: bool = False
    add_zero_attn: bool = False
    batch_first: bool = False
    L: int = 10  # target (query) length
    S: int = 10  # source (key and value) length
    N: int = 2  # batch
    # Either N lengths (keys at positions >= length are padding) or N rows of S bools (True: padding,
    # PyTorch's own convention); None: no padding.
    key_padding_mask: tuple[int, ...] | tuple[tuple[bool, ...], ...] | None = None
    causal: bool = False  # an L x S attn_mask: query i may not attend to key j > i
    need_weights: bool = True
    average_attn_weights: bool = True
    seed: int = 0

    @classmethod
    def make(cls, **fields) -> "MHAConfig":
        """From JSON-like fields: a key_padding_mask given as lists becomes tuples."""
        m = fields.get("key_padding_mask")
        if m is not None:
            fields["key_padding_mask"] = tuple(row if isinstance(row, int) else tuple(row) for row in m)
        return cls(**fields)

    @property
    def Ek(self) -> int:
        return self.embed_dim if self.kdim is None else self.kdim

    @property
    def Ev(self) -> int:
        return self.embed_dim if self.vdim is None else self.vdim

    @property
    def shared_memory(self) -> bool:
        """Keys and values come from one tensor (`memory`) when they have the same width."""
        return self.Ek == self.Ev

    @property
    def extra_keys(self) -> list[str]:
        """Names of the keys PyTorch appends after the S source keys."""
        return [name for name, on in (("bias_kv", self.add_bias_kv), ("zero_attn", self.add_zero_attn)) if on]


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    config: MHAConfig = field(default_factory=MHAConfig)


# PyTorch's docs' classic shapes: outputs (L, N, E) = (10, 2, 64), (5, 3, 128) and (6, 4, 32).
PRESETS = (
    Preset("self-attention", "Self-attention: 10 tokens, batch 2, width 64, 8 heads",
           MHAConfig(embed_dim=64, num_heads=8, L=10, S=10, N=2)),
    Preset("cross-attention", "Cross-attention: 5 queries read 7 padded keys of width 96 (kdim = vdim = 96)",
           MHAConfig(embed_dim=128, num_heads=8, kdim=96, vdim=96, L=5, S=7, N=3, key_padding_mask=(7, 5, 3))),
    Preset("causal", "Causal self-attention: 6 tokens, batch 4, width 32, 4 heads, weights per head",
           MHAConfig(embed_dim=32, num_heads=4, L=6, S=6, N=4, causal=True, average_attn_weights=False)),
)


class InvalidConfig(ValueError):
    """A configuration PyTorch would refuse or that cannot run; `rule` names the broken rule."""

    def __init__(self, rule: str, detail: str):
        self.rule = rule
        super().__init__(detail)


# ---- masks and checks -------------------------------------------------------------------------------


def padding(config: MHAConfig) -> torch.Tensor | None:
    """(N, S) bool, True where a key is padding; None without a key_padding_mask."""
    m = config.key_padding_mask
    if m is None:
        return None
    if all(isinstance(n, int) for n in m):
        return torch.arange(config.S)[None, :] >= torch.tensor(m)[:, None]  # (N, S)
    return torch.tensor(m, dtype=torch.bool)  # (N, S)


def causal_mask(config: MHAConfig) -> torch.Tensor | None:
    """(L, S) bool, True where query i may not attend to key j (j > i); None unless causal."""
    return torch.ones(config.L, config.S, dtype=torch.bool).triu(1) if config.causal else None  # (L, S)


def check(config: MHAConfig) -> None:
    """Raise InvalidConfig for a configuration PyTorch refuses or that leaves a query with no key."""
    c, lim = config, LIMITS
    for name, value, limit in (("embed_dim", c.embed_dim, lim.max_embed_dim), ("kdim", c.Ek, lim.max_embed_dim),
                               ("vdim", c.Ev, lim.max_embed_dim), ("num_heads", c.num_heads, lim.max_heads),
                               ("L", c.L, lim.max_length), ("S", c.S, lim.max_length), ("N", c.N, lim.max_batch),
                               ("seed", c.seed, lim.max_seed)):
        low = 0 if name == "seed" else 1
        if not low <= value <= limit:
            raise InvalidConfig("limits", f"{name} is {value}; it must be between {low} and {limit}")
    if c.embed_dim % c.num_heads:
        raise InvalidConfig("embed_dim_divisible_by_num_heads", f"embed_dim {c.embed_dim} is not divisible by "
                            f"num_heads {c.num_heads}: every head gets embed_dim // num_heads dimensions")
    m = c.key_padding_mask
    if m is not None:
        if len(m) != c.N:
            raise InvalidConfig("key_padding_mask_shape", f"key_padding_mask has {len(m)} entries; it needs one "
                                f"per batch element, N = {c.N}")
        if all(isinstance(n, int) for n in m):
            if not all(1 <= n <= c.S for n in m):
                raise InvalidConfig("key_padding_mask_shape", f"key_padding_mask lengths must be between 1 and "
                                    f"S = {c.S} (at least one key is not padding); got {list(m)}")
        elif any(len(row) != c.S for row in m):
            raise InvalidConfig("key_padding_mask_shape", f"key_padding_mask rows must have S = {c.S} bools each; "
                                f"got lengths {[len(row) for row in m]}")
    if not c.extra_keys:  # appended keys are never masked, so only then can a query lose every key
        masked = torch.zeros(c.N, c.L, c.S, dtype=torch.bool)  # (N, L, S)
        if (pad := padding(c)) is not None:
            masked |= pad[:, None, :]
        if (causal := causal_mask(c)) is not None:
            masked |= causal
        if masked.all(-1).any():
            n, i = masked.all(-1).nonzero()[0].tolist()
            raise InvalidConfig("every_query_sees_a_key", f"batch element {n}, query {i} has every key masked "
                                "(key_padding_mask and causal together): its softmax would be 0/0")


# ---- building the module and its inputs, as the code does -----------------------------------------


def module_kwargs(config: MHAConfig) -> dict:
    """nn.MultiheadAttention's arguments that differ from its defaults, in its own order."""
    c = config
    kwargs = {"embed_dim": c.embed_dim, "num_heads": c.num_heads}
    for name, value, default in (("bias", c.bias, True), ("add_bias_kv", c.add_bias_kv, False),
                                 ("add_zero_attn", c.add_zero_attn, False), ("kdim", c.kdim, None),
                                 ("vdim", c.vdim, None), ("batch_first", c.batch_first, False)):
        if value != default:
            kwargs[name] = value
    return kwargs


def input_shape(config: MHAConfig, length: int, width: int) -> tuple[int, int, int]:
    return (config.N, length, width) if config.batch_first else (length, config.N, width)


def build(config: MHAConfig):
    """(module, query, key, value, key_padding_mask, attn_mask), made from `seed` in python_code's order."""
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(config.seed)
        mha = nn.MultiheadAttention(**module_kwargs(config)).eval()
        query = torch.randn(input_shape(config, config.L, config.embed_dim))  # (L, N, E) or (N, L, E)
        if config.shared_memory:
            key = value = torch.randn(input_shape(config, config.S, config.Ek))  # (S, N, Ek) or (N, S, Ek)
        else:
            key = torch.randn(input_shape(config, config.S, config.Ek))  # (S, N, Ek) or (N, S, Ek)
            value = torch.randn(input_shape(config, config.S, config.Ev))  # (S, N, Ev) or (N, S, Ev)
    return mha, query, key, value, padding(config), causal_mask(config)


def python_code(config: MHAConfig) -> str:
    """The Python a reader would write for this configuration; running it prints the answer's shapes."""
    c = config
    args = ", ".join(f"{k}={v!r}" for k, v in module_kwargs(c).items())
    order = "N, L, E" if c.batch_first else "L, N, E"
    k_order = "N, S, {}" if c.batch_first else "S, N, {}"
    lines = [
        "import torch",
        "from torch import nn",
        "",
        f"torch.manual_seed({c.seed})",
        f"mha = nn.MultiheadAttention({args})",
        "mha.eval()",
        f"query = torch.randn{input_shape(c, c.L, c.embed_dim)}  # ({order})",
    ]
    if c.shared_memory:
        lines.append(f"key = value = torch.randn{input_shape(c, c.S, c.Ek)}  # ({k_order.format('kdim')}): "
                     "keys and values read from one sequence")
    else:
        lines.append(f"key = torch.randn{input_shape(c, c.S, c.Ek)}  # ({k_order.format('kdim')})")
        lines.append(f"value = torch.randn{input_shape(c, c.S, c.Ev)}  # ({k_order.format('vdim')})")
    call = ["query", "key", "value"]
    m = c.key_padding_mask
    if m is not None:
        if all(isinstance(n, int) for n in m):
            lines.append(f"lengths = torch.tensor({list(m)})  # (N,): keys at positions >= length are padding")
            lines.append(f"key_padding_mask = torch.arange({c.S})[None, :] >= lengths[:, None]  # (N, S), True at padding")
        else:
            lines.append(f"key_padding_mask = torch.tensor({[list(row) for row in m]})  # (N, S), True at padding")
        call.append("key_padding_mask=key_padding_mask")
    if not c.need_weights:
        call.append("need_weights=False")
    if c.causal:
        lines.append(f"attn_mask = torch.ones({c.L}, {c.S}, dtype=torch.bool).triu(1)  # (L, S), True: query i may "
                     "not attend to key j > i")
        call.append("attn_mask=attn_mask")
    if not c.average_attn_weights:
        call.append("average_attn_weights=False")
    lines += [
        "with torch.no_grad():",
        f"    attn_output, attn_weights = mha({', '.join(call)})",
        "print(attn_output.shape)",
        "print(None if attn_weights is None else attn_weights.shape)",
    ]
    return "\n".join(lines) + "\n"


# ---- the second implementation --------------------------------------------------------------------


def textbook_attention(mha: nn.MultiheadAttention, query, key, value, key_padding_mask=None, attn_mask=None,
                       steps: dict | None = None):
    """nn.MultiheadAttention's computation written out, batch first and without dropout.

    query (N, L, E), key (N, S, Ek), value (N, S, Ev); key_padding_mask (N, S) and attn_mask (L, S)
    bool, True where attention is not allowed. Returns output (N, L, E) and pattern (N, H, L, S'); with
    `steps` a dict, fills it with every intermediate tensor (STEPS' names).
    """
    N, L, E = query.shape
    S = key.shape[1]
    H = mha.num_heads
    D = E // H
    if mha._qkv_same_embed_dim:  # one (3E, E) matrix, as in our MultiHeadAttention
        w_q, w_k, w_v = mha.in_proj_weight.split(E)  # 3 x (E, E)
    else:  # kdim or vdim differs from embed_dim: three matrices
        w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight  # (E, E), (E, Ek), (E, Ev)
    b_q, b_k, b_v = (None, None, None) if mha.in_proj_bias is None else mha.in_proj_bias.split(E)  # 3 x (E,)
    q = F.linear(query, w_q, b_q)  # (N, L, E)
    k = F.linear(key, w_k, b_k)  # (N, S, E)
    v = F.linear(value, w_v, b_v)  # (N, S, E)

    blocked = torch.zeros(N, L, S, dtype=torch.bool)  # (N, L, S), True: query i may not see key j
    if key_padding_mask is not None:
        blocked = blocked | key_padding_mask[:, None, :]
    if attn_mask is not None:
        blocked = blocked | attn_mask

    def append_key(k_row, v_row, k, v, blocked):  # one more key every query may see
        k = torch.cat([k, k_row.expand(N, H, 1, D)], dim=2)  # (N, H, S' + 1, D)
        v = torch.cat([v, v_row.expand(N, H, 1, D)], dim=2)  # (N, H, S' + 1, D)
        return k, v, F.pad(blocked, (0, 1))  # (N, L, S' + 1)

    def split_heads(t):
        return t.view(N, -1, H, D).transpose(1, 2)  # (N, H, T, D)

    q, k, v = split_heads(q), split_heads(k), split_heads(v)  # (N, H, L, D), (N, H, S, D), (N, H, S, D)
    if mha.bias_k is not None:  # add_bias_kv: a learned key and value, the same for every sequence
        k, v, blocked = append_key(mha.bias_k.view(1, H, 1, D), mha.bias_v.view(1, H, 1, D), k, v, blocked)
    if mha.add_zero_attn:  # a key and value of zeros: a query can put weight on "nothing"
        zeros = torch.zeros(1, H, 1, D)
        k, v, blocked = append_key(zeros, zeros, k, v, blocked)

    attn_scores = q @ k.transpose(-2, -1) / math.sqrt(D)  # (N, H, L, S')
    attn_scores = attn_scores.masked_fill(blocked[:, None], float("-inf"))  # (N, H, L, S')
    pattern = torch.softmax(attn_scores, dim=-1)  # (N, H, L, S')
    z = pattern @ v  # (N, H, L, D), one result per head
    z_concat = z.transpose(1, 2).reshape(N, L, E)  # (N, L, E), heads concatenated
    output = mha.out_proj(z_concat)  # (N, L, E)
    if steps is not None:
        steps.update(q=q, k=k, v=v, attn_scores=attn_scores, pattern=pattern, z=z, z_concat=z_concat, output=output)
    return output, pattern  # (N, L, E), (N, H, L, S')


def ours_applies(config: MHAConfig) -> bool:
    """Our MultiHeadAttention: one (3E, E) projection, keys and values from one tensor, no added keys."""
    return config.Ek == config.Ev == config.embed_dim and not config.extra_keys


def ours_from(mha: nn.MultiheadAttention) -> MultiHeadAttention:
    """Our module holding PyTorch's weights (same layout: in_proj_weight rows q, k, v)."""
    ours = MultiHeadAttention(mha.embed_dim, mha.num_heads, bias=mha.in_proj_bias is not None).eval()
    with torch.no_grad():
        ours.qkv.weight.copy_(mha.in_proj_weight)
        ours.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.in_proj_bias is not None:
            ours.qkv.bias.copy_(mha.in_proj_bias)
            ours.out_proj.bias.copy_(mha.out_proj.bias)
    return ours


@torch.no_grad()
def second_opinion(config: MHAConfig, mha, query, key, value, key_padding_mask, attn_mask,
                   steps: dict | None = None):
    """(output, pattern (N, H, L, S'), name) from ours where it applies, else the textbook; batch first. With
    `steps` a dict, fills it with the textbook steps' intermediate tensors (run on their own when ours applies)."""
    if not config.batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)  # (N, T, width)
    if ours_applies(config):
        output, pattern = ours_from(mha)(query, context=key, key_padding_mask=key_padding_mask, causal=config.causal)
        name = OURS
        if steps is not None:
            textbook_attention(mha, query, key, value, key_padding_mask, attn_mask, steps=steps)
    else:
        output, pattern = textbook_attention(mha, query, key, value, key_padding_mask, attn_mask, steps=steps)
        name = TEXTBOOK
    if not config.batch_first:
        output = output.transpose(0, 1)  # (L, N, E)
    return output, pattern, name


def sizes(config: MHAConfig, mha: nn.MultiheadAttention) -> dict[str, int]:
    """The legend's symbols for this configuration; D is the module's own head_dim."""
    S_ = config.S + len(config.extra_keys)
    return {"N": config.N, "L": config.L, "S": config.S, "S'": S_, "E": mha.embed_dim, "H": mha.num_heads,
            "D": mha.head_dim, "Ek": mha.kdim, "Ev": mha.vdim}


def parameters(mha: nn.MultiheadAttention) -> list[dict]:
    """Every parameter of the module as torch holds it: name, shape, the shape in symbols, what it is."""
    return [{"name": name, "shape": list(p.shape), "symbols": list(PARAMETERS[name][0]), "about": PARAMETERS[name][1]}
            for name, p in mha.named_parameters()]


def step_shapes(tensors: dict[str, torch.Tensor]) -> list[dict]:
    """The shape of every intermediate tensor (STEPS, from second_opinion's `steps`), with its axes and symbols."""
    return [{"name": name, "title": title, "shape": list(tensors[name].shape), "dims": list(dims),
             "symbols": list(symbols)} for name, title, dims, symbols in STEPS]


def key_padding(config: MHAConfig) -> list[list[bool]]:
    """(N, S') True where a key is padding; the appended keys (bias_kv, zero_attn) never are."""
    pad = padding(config)
    pad = torch.zeros(config.N, config.S, dtype=torch.bool) if pad is None else pad  # (N, S)
    return F.pad(pad, (0, len(config.extra_keys))).tolist()  # (N, S')


@torch.no_grad()
def run(config: MHAConfig) -> dict:
    """PyTorch's answer for the configuration, the code, the shapes of the parameters and of every step, and the
    difference to the second implementation."""
    check(config)
    mha, query, key, value, key_padding_mask, attn_mask = build(config)
    output, weights = mha(query, key, value, key_padding_mask=key_padding_mask, need_weights=config.need_weights,
                          attn_mask=attn_mask, average_attn_weights=config.average_attn_weights)
    tensors = {}
    other, pattern, name = second_opinion(config, mha, query, key, value, key_padding_mask, attn_mask, tensors)
    diff = (output - other).abs().max()
    if weights is not None:
        mine = pattern.mean(dim=1) if config.average_attn_weights else pattern  # (N, L, S') or (N, H, L, S')
        diff = torch.maximum(diff, (weights - mine).abs().max())
    keys = [str(j) for j in range(config.S)] + config.extra_keys
    weights_axes = None if weights is None else (
        ["batch", "query_pos", "key_pos"] if config.average_attn_weights else ["batch", "head", "query_pos", "key_pos"])
    return {
        "config": asdict(replace(config, kdim=config.Ek, vdim=config.Ev)),
        "code": python_code(config),
        "input_shapes": {
            "query": list(query.shape), "key": list(key.shape), "value": list(value.shape),
            "key_padding_mask": None if key_padding_mask is None else list(key_padding_mask.shape),
            "attn_mask": None if attn_mask is None else list(attn_mask.shape),
        },
        "output_shape": list(output.shape),
        "weights_shape": None if weights is None else list(weights.shape),
        "weights_axes": weights_axes,
        # (N, L, S') or (N, H, L, S'), every batch element; float32 numpy, which orjson writes fast and short
        "weights": None if weights is None else weights.numpy(),
        "key_padding": key_padding(config),  # (N, S')
        "dims": {"weights": weights_axes, "key_padding": ["batch", "key_pos"]},
        "labels": {"batch": [str(n) for n in range(config.N)], "head": [str(h) for h in range(config.num_heads)],
                   "query_pos": [f"q{i}" for i in range(config.L)], "key_pos": keys},
        "key_labels": keys,
        "sizes": sizes(config, mha),
        "parameters": parameters(mha),
        "steps": step_shapes(tensors),
        "max_abs_diff": float(diff),
        "compared_with": name,
        "compared_with_words": IN_WORDS[name],
    }
