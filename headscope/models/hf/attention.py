"""One attention function for every transformers family, so that Headscope can knock heads out and
see each head's query, key and value in checkpoints it did not write.

transformers (5.x) runs every attention module's core through a function it looks up by the name in
`config._attn_implementation`; each family's module computes Q, K, V (rotary embeddings, T5's
position bias and grouped key/value heads included) and hands them to it, then applies the output
projection to what it returns: the heads' outputs z, (B, Tq, H, D), not yet concatenated. We
register "headscope": it calls the family's own `eager_attention_forward` (the code `eager` would
run, so the weights are the same to the bit), then fills the module's `capture` and makes its `edits`
(headscope/models/interventions.py). Masks are built as for eager attention.

Everything Headscope finds at load comes from ONE short probe pass, `traced(net, run)`: forward hooks record
every attention call (module, z), every linear layer's input and output width, every norm-like module's input
and every layer block's output (a `Trace`); each discovery then reads the trace, and none runs the model again.

`attention_modules(trace, arch, layers)` finds which module computes which (kind, layer) from the order the
modules were called in: an encoder's layers first, then, per decoder layer, its self-attention and
(encoder–decoders) its cross-attention.

`output_projections(modules, trace)` finds each module's output projection W_O, the layer that reads the heads'
outputs concatenated, without knowing the family's attribute names (`o_proj`, `out_proj`, `c_proj`, `o`,
`output.dense`, `out_lin`): W_O is the linear layer whose input equals the module's z, (B, Tq, H·D), to the bit.
"""

import sys

import torch

from headscope.models.interventions import edit_z

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


class Trace:
    """What one probe pass did, in call order (see the module). Tensors are kept as the pass made them.

    attention  (module, z (B, Tq, H, D)) for every call of an attention module through "headscope" attention
    linear_in  (linear layer, its input x) for every call of every linear layer (nn.Linear, Conv1D)
    linear_out (linear layer, its output's last dimension) for every call, in the order the calls return
    norm_in    (module, its first argument) for every call of a module named *norm* that has a weight
    outputs    id(layer block) -> the output of its last call (out[0] when it returns a tuple); a block is any
               element of an nn.ModuleList
    """

    def __init__(self):
        self.attention: list[tuple[torch.nn.Module, torch.Tensor]] = []
        self.linear_in: list[tuple[torch.nn.Module, torch.Tensor]] = []
        self.linear_out: list[tuple[torch.nn.Module, int]] = []
        self.norm_in: list[tuple[torch.nn.Module, object]] = []
        self.outputs: dict[int, torch.Tensor] = {}


def is_norm(module: torch.nn.Module) -> bool:
    """LayerNorm, RMSNorm, T5LayerNorm ...: a module whose class is named *norm* and that has a weight."""
    return "norm" in type(module).__name__.lower() and getattr(module, "weight", None) is not None


def traced(net, run):
    """(run()'s result, the Trace of that one pass). run(): one forward pass of `net` with "headscope" attention
    (no module has edits or capture at load, so z is the family's eager output)."""
    import transformers

    trace = Trace()

    def recording(module, *args, **kwargs):
        z, pattern = headscope_attention(module, *args, **kwargs)  # z (B, Tq, H, D)
        trace.attention.append((module, z))
        return z, pattern

    def block_output(module, args, out):
        trace.outputs[id(module)] = out[0] if isinstance(out, tuple) else out

    hooks = []
    for m in net.modules():
        if is_linear(m):
            hooks.append(m.register_forward_pre_hook(lambda m, args: trace.linear_in.append((m, args[0]))))
            hooks.append(m.register_forward_hook(lambda m, args, out: trace.linear_out.append((m, out.shape[-1]))))
        if is_norm(m):
            hooks.append(m.register_forward_pre_hook(lambda m, args: trace.norm_in.append((m, args[0]))))
        if isinstance(m, torch.nn.ModuleList):
            hooks += [block.register_forward_hook(block_output) for block in m]
    transformers.AttentionInterface.register(NAME, recording)
    try:
        result = run()
    finally:
        transformers.AttentionInterface.register(NAME, headscope_attention)
        for hook in hooks:
            hook.remove()
    return result, trace


def attention_modules(trace: Trace, arch: str, layers: dict[str, int]) -> dict[tuple[str, int], torch.nn.Module]:
    """(kind, layer) -> attention module, from the order in which the traced probe pass called them.

    layers: kind -> layer count. ValueError when the pass did not call as many modules as that.
    """
    calls: list[torch.nn.Module] = []
    for module, _ in trace.attention:
        if all(m is not module for m in calls):
            calls.append(module)
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


def output_projections(modules: dict, trace: Trace) -> dict[tuple[str, int], torch.nn.Module]:
    """(kind, layer) -> the linear layer that reads that module's heads concatenated (its W_O), from the trace.

    ValueError when some module's z reaches no linear layer unchanged, or reaches more than one.
    """
    last_z = {id(module): z for module, z in trace.attention}  # each module's last call
    found = {}
    for key, module in modules.items():
        z = last_z[id(module)]  # (B, Tq, H, D)
        B, Tq, H, D = z.shape
        heads_z = z.reshape(B, Tq, H * D)  # (B, Tq, H·D), the heads concatenated
        readers = {id(m): m for m, x in trace.linear_in if x.shape == heads_z.shape and torch.equal(x, heads_z)}
        if len(readers) != 1:
            raise ValueError(f"{key}: {len(readers)} linear layers read the heads' concatenated output, not one")
        found[key] = next(iter(readers.values()))
    return found
