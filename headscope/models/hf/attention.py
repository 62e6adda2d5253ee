"""One attention function for every transformers family, so that Headscope can knock heads out and
see each head's query, key and value in checkpoints it did not write.

transformers (5.x) runs every attention module's core through a function it looks up by the name in
`config._attn_implementation`; each family's module computes Q, K, V (rotary embeddings, T5's
position bias and grouped key/value heads included) and hands them to it, then applies the output
projection to what it returns: the heads' outputs z, (B, Tq, H, D), not yet concatenated. We
register "headscope": it calls the family's own `eager_attention_forward` (the code `eager` would
run, so the weights are the same to the bit), then fills the module's `capture` and makes its `edits`
(headscope/models/interventions.py). Masks are built as for eager attention.

`attention_modules(net, arch)` finds which module computes which (kind, layer): it runs one short
probe and records the order modules are called in: an encoder's layers first, then, per decoder
layer, its self-attention and (encoder–decoders) its cross-attention.

`output_projections(net, modules, run_probe)` finds each module's output projection W_O, the layer
that reads the heads' outputs concatenated, without knowing the family's attribute names (`o_proj`,
`out_proj`, `c_proj`, `o`, `output.dense`, `out_lin`): during one probe every linear layer records
its input, and W_O is the one whose input equals the module's z, (B, Tq, H·D), to the bit.
"""

import sys

import torch

from headscope.models.interventions import capturing, edit_z

NAME = "headscope"


def headscope_attention(module, query, key, value, attention_mask, **kwargs):
    """The family's eager attention, then the module's capture and edits (headscope/models/interventions.py).

    query (B, H, Tq, D); key, value (B, H_kv, Tk, D); returns z (B, Tq, H, D) and the pattern (B, H, Tq, Tk).
    """
    family = sys.modules[type(module).__module__]
    z, pattern = family.eager_attention_forward(module, query, key, value, attention_mask, **kwargs)
    capture = getattr(module, "capture", None)
    if capture is not None:
        scaling = kwargs.get("scaling")
        capture.append({"query": query, "key": key, "value": value, "pattern": pattern, "z": z.transpose(1, 2),
                        "scale": query.shape[-1] ** -0.5 if scaling is None else scaling,
                        "bias": kwargs.get("position_bias"), "mask": attention_mask})
    if getattr(module, "edits", ()):
        z = edit_z(module, z.transpose(1, 2)).transpose(1, 2)  # edited as (B, H, Tq, D); a batch of one: every query is real
    return z, pattern


def register() -> None:
    """Make "headscope" a name transformers knows, for attention and for its masks (as eager's)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    AttentionInterface.register(NAME, headscope_attention)
    AttentionMaskInterface.register(NAME, eager_mask)


def attention_modules(net, arch: str, run_probe, layers: dict[str, int]) -> dict[tuple[str, int], torch.nn.Module]:
    """(kind, layer) -> attention module, from the order in which one probe run calls them.

    run_probe(): one forward pass of `net` with "headscope" attention. layers: kind -> layer count.
    """
    import transformers

    calls: list[torch.nn.Module] = []

    def recording(module, *args, **kwargs):
        if all(m is not module for m in calls):
            calls.append(module)
        return headscope_attention(module, *args, **kwargs)

    transformers.AttentionInterface.register(NAME, recording)
    try:
        run_probe()
    finally:
        transformers.AttentionInterface.register(NAME, headscope_attention)
    if arch == "encoder":
        order = [("encoder", i) for i in range(layers["encoder"])]
    elif arch == "decoder":
        order = [("decoder", i) for i in range(layers["decoder"])]
    else:
        order = [("encoder", i) for i in range(layers["encoder"])]
        order += [(kind, i) for i in range(layers["decoder"]) for kind in ("decoder", "cross")]
    if len(calls) != len(order):
        raise ValueError(f"expected {len(order)} attention modules to run, saw {len(calls)}")
    return dict(zip(order, calls, strict=True))


def is_linear(module: torch.nn.Module) -> bool:
    """nn.Linear, or transformers' Conv1D (GPT-2), a linear layer whose weight is stored (in, out)."""
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def linear_weight(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight (out, in) as nn.Linear holds it, bias (out,) or None) of a linear layer or a Conv1D."""
    if isinstance(module, torch.nn.Linear):
        return module.weight, module.bias
    return module.weight.T, module.bias  # Conv1D: y = x @ weight + bias, weight (in, out)


def output_projections(net, modules: dict, run_probe) -> dict[tuple[str, int], torch.nn.Module]:
    """(kind, layer) -> the linear layer that reads that module's heads concatenated (its W_O).

    run_probe(): one forward pass of `net` with "headscope" attention. ValueError when some module's
    z reaches no linear layer unchanged, or reaches more than one.
    """
    seen: list[tuple[torch.nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append((m, args[0])))
             for m in net.modules() if is_linear(m)]
    try:
        with capturing(modules) as records:
            run_probe()
    finally:
        for hook in hooks:
            hook.remove()
    found = {}
    for key, calls in records.items():
        z = calls[-1]["z"]  # (B, H, Tq, D)
        B, H, Tq, D = z.shape
        heads_z = z.transpose(1, 2).reshape(B, Tq, H * D)  # (B, Tq, H·D), the heads concatenated
        readers = {id(m): m for m, x in seen if x.shape == heads_z.shape and torch.equal(x, heads_z)}
        if len(readers) != 1:
            raise ValueError(f"{key}: {len(readers)} linear layers read the heads' concatenated output, not one")
        found[key] = next(iter(readers.values()))
    return found
