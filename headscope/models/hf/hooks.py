"""Hook points of a transformers checkpoint: its residual stream, attention outputs and MLP outputs, found by what
they do rather than by each family's attribute names, and driven by forward hooks.

Our own nets call their HookPoints in their forward passes (headscope/models/nets/); a transformers model cannot,
so the same HookPoint objects (headscope/models/interventions.py) are called from forward hooks registered once at
load. Each hook costs an attribute check when no `editing` or `capturing` block is open.

What is found, from the attention modules and the Trace of the one probe pass (headscope/models/hf/attention.py):
  blocks        each layer's block: the element of the outermost nn.ModuleList that holds the layer's
                self-attention module (GPT-2 `h.0`, Llama `layers.0`, BERT `layer.0`, T5 `block.0`; an
                encoder–decoder's decoder block also holds its cross-attention)
  resid_pre     the block's input hidden states (a forward pre-hook on the block: its first argument, or its
                `hidden_states` keyword)
  attn_out      the output of the module's W_O (`output_projections()`, bias included): a forward hook on it
  mlp_out       the output of the MLP's last linear layer: the last linear layer the block calls that is not a W_O
                (GPT-2 `mlp.c_proj`, Llama `mlp.down_proj`, BERT `output.dense`, T5 `DenseReluDense.wo`, BART `fc2`)
  resid_final   the input of the final norm: the norm module (LayerNorm, RMSNorm, T5LayerNorm ...) outside every
                block whose input is exactly the last decoder block's output (decoder-only and encoder–decoder
                models; BART, post-norm, has none)
Legend: B batch, T positions, C width.
"""

import torch
from torch import nn

from headscope.models.hf.attention import Trace, is_linear, is_norm, linear_weight
from headscope.models.interventions import HookPoint

STACKS = ("encoder", "decoder")  # a block belongs to the stack of its self-attention's kind


def find_blocks(net: nn.Module, modules: dict) -> dict[tuple[str, int], nn.Module]:
    """(stack, layer) -> the block holding that layer's self-attention module; ValueError if a module is in no
    nn.ModuleList, or a cross-attention is not in its layer's decoder block."""
    names = {id(m): name for name, m in net.named_modules()}
    by_name = dict(net.named_modules())

    def block_of(module: nn.Module) -> nn.Module:
        parts = names[id(module)].split(".")
        for i in range(1, len(parts)):
            if isinstance(by_name[".".join(parts[:i])], nn.ModuleList):
                return by_name[".".join(parts[: i + 1])]
        raise ValueError(f"{names[id(module)]} is not inside a list of layers")

    blocks = {key: block_of(module) for key, module in modules.items() if key[0] in STACKS}
    for (kind, layer), module in modules.items():
        if kind not in STACKS and block_of(module) is not blocks.get(("decoder", layer)):
            raise ValueError(f"{kind} layer {layer} is not in decoder layer {layer}'s block")
    return blocks


def find_mlp_projections(blocks: dict, out_projs: dict, trace: Trace) -> dict[tuple[str, int], nn.Module]:
    """(stack, layer) -> the last linear layer the block calls that is no attention module's W_O, and writes the
    stream's width; ValueError for a block that calls none."""
    w_o = {id(m) for m in out_projs.values()}
    width = linear_weight(next(iter(out_projs.values())))[0].shape[0]  # C: what any W_O writes
    found = {}
    for key, block in blocks.items():
        inside = {id(m) for m in block.modules() if is_linear(m) and id(m) not in w_o}
        seen = [(m, out) for m, out in trace.linear_out if id(m) in inside]  # the block's calls, in order
        last = next((m for m, out in reversed(seen) if out == width), None)
        if last is None:
            raise ValueError(f"{key[0]} layer {key[1]}: no MLP output layer found")
        found[key] = last
    return found


def find_final_norm(net: nn.Module, blocks: dict, trace: Trace) -> nn.Module | None:
    """The norm module outside every block whose input is the last decoder block's output; None if there is none."""
    decoder = [key for key in blocks if key[0] == "decoder"]
    if not decoder:
        return None
    last = blocks[max(decoder, key=lambda key: key[1])]
    inside = {id(m) for block in blocks.values() for m in block.modules()}
    norms = {id(m) for m in net.modules() if is_norm(m) and id(m) not in inside}
    output = trace.outputs.get(id(last))
    if output is None:
        return None
    found = [m for m, x in trace.norm_in if id(m) in norms and isinstance(x, torch.Tensor)
             and x.shape == output.shape and torch.equal(x, output)]
    return found[-1] if found else None


def block_input_hook(point: HookPoint):
    """A forward pre-hook (with kwargs) that passes a block's input hidden states through `point`."""

    def hook(module, args, kwargs):
        if not point.edits and point.capture is None:
            return None
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": point(kwargs["hidden_states"])}
        return (point(args[0]), *args[1:]), kwargs

    return hook


def output_hook(point: HookPoint):
    """A forward hook that passes a linear layer's output through `point`."""

    def hook(module, args, out):
        if not point.edits and point.capture is None:
            return None
        return point(out)

    return hook


def input_hook(point: HookPoint):
    """A forward pre-hook that passes a module's first argument through `point`."""

    def hook(module, args):
        if not point.edits and point.capture is None:
            return None
        return (point(args[0]), *args[1:])

    return hook


def attach(blocks: dict, out_projs: dict, mlps: dict, norm: nn.Module | None) -> dict[tuple[str, str, int], HookPoint]:
    """Make a HookPoint for every place and register the hooks that drive it: (point, kind, layer) -> HookPoint."""
    points: dict[tuple[str, str, int], HookPoint] = {}
    for (stack, layer), block in blocks.items():
        points[("resid_pre", stack, layer)] = point = HookPoint()
        block.register_forward_pre_hook(block_input_hook(point), with_kwargs=True)
    for (kind, layer), linear in out_projs.items():
        points[("attn_out", kind, layer)] = point = HookPoint()
        linear.register_forward_hook(output_hook(point))
    for (stack, layer), linear in mlps.items():
        points[("mlp_out", stack, layer)] = point = HookPoint()
        linear.register_forward_hook(output_hook(point))
    if norm is not None:
        layers = sum(1 for stack, _ in blocks if stack == "decoder")
        points[("resid_final", "decoder", layers)] = point = HookPoint()
        norm.register_forward_pre_hook(input_hook(point))
    return points
