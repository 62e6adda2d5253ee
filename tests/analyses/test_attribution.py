"""headscope/analyses/attribution.py: direct logit attribution adds up to the model's own logit difference, and each
component equals a hand computation from the model's own modules.

The sum is checked against logit(answer) - logit(wrong) from the model run directly (our nets called as they are,
transformers' models through their own forward), to the answer's stated tolerance (1e-5 of max(1, |difference|)). Each head's,
MLP's and the embeddings' value is recomputed by hand for GPT-2 (LayerNorm, Conv1D), Llama (RMSNorm) and our
induction model: the part read with plain torch hooks at the family's own modules (W_O's input, the MLP's last
layer's output, the final norm's input), the final norm's scale 1/sqrt(var + eps) or 1/sqrt(mean(x²) + eps) from the
norm's own eps, and the unembedding rows of the two tokens; 1e-4.
"""

import pytest
import torch

from headscope.analyses.attribution import attribute
from headscope.analyses.patching import CannotPatch
from headscope.models.hf.model import HFModel
from tests.analyses.test_patching import one_tokens
from tests.checkpoints import build, save

TOL = 1e-4
TEXT = "k#9Qz.m>Ab k#9Qz.m>A"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch.set_num_threads(1)
    out = {}
    for family in ("gpt2", "llama", "t5", "bart", "bert"):
        tokenizer, original = build(family)
        path = save(tmp_path_factory.mktemp(family), tokenizer, original)
        out[family] = (HFModel.load(f"tiny-{family}", path), original, tokenizer)
    return out


def own_difference(name, models, checkpoints, text, a, w, step=None) -> tuple[float, dict]:
    """logit(a) - logit(w) from the model run directly, and the answer."""
    if name == "induction":
        model = models["induction"]
        with torch.no_grad():
            logits = model.net(torch.tensor([[256, *text.encode()]]))[0][0, -1]
    elif name == "dates":
        model = models["dates"]
        p = model.prepare(text)
        with torch.no_grad():
            logits = model.net(torch.tensor([p.inputs["source"]]), torch.tensor([p.inputs["target"]]))[0][0, step]
    else:
        model, original, tokenizer = checkpoints[name]
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            if name == "t5":
                logits = original(**enc, decoder_input_ids=model.prepare(text).inputs["decoder_ids"]).logits[0, step]
            else:
                logits = original(**enc).logits[0, -1]
    answer = attribute(model, text, a, w, step)
    return (logits[answer["answer"]["id"]] - logits[answer["wrong"]["id"]]).item(), answer


@pytest.mark.parametrize("name", ["induction", "dates", "gpt2", "llama", "t5"])
def test_the_parts_add_up_to_the_models_own_logit_difference(models, checkpoints, name):
    text, a, w, step = {"induction": (TEXT, "b", "Y", None), "dates": ("25/11/2026", "2", "1", 0)}.get(
        name, ("The cat sat on the mat and", None, None, 1 if name == "t5" else None))
    if a is None:
        a, w = one_tokens(checkpoints[name][0])[:2]
    own, answer = own_difference(name, models, checkpoints, text, a, w, step)
    assert answer["total"] == pytest.approx(own, abs=1e-5)
    assert answer["tolerance"] == pytest.approx(1e-5 * max(1, abs(own)))
    assert abs(answer["sum"] - own) <= answer["tolerance"]
    assert answer["error"] == pytest.approx(answer["sum"] - answer["total"], abs=1e-12)
    values = [c["value"] for c in answer["components"]]
    assert sum(values) == pytest.approx(answer["sum"], abs=1e-9)
    assert max(abs(v) for v in values) > 10 * answer["tolerance"]  # leaving any large part out would show
    types = {c["type"] for c in answer["components"]}
    assert {"head", "mlp", "embed"} <= types
    heads = [c for c in answer["components"] if c["type"] == "head"]  # layers x 4 heads, decoder (and cross) kinds
    assert len(heads) == {"induction": 8, "dates": 24, "gpt2": 8, "llama": 8, "t5": 16}[name]
    assert answer["norm"]["frozen"] and "held fixed" in answer["norm"]["about"]


def test_t5s_scale_between_norm_and_unembedding_is_measured(checkpoints):
    model = checkpoints["t5"][0]
    answer = attribute(model, "The cat sat on the mat and", *one_tokens(model)[:2], step=1)
    assert answer["norm"]["form"] == "RMSNorm"
    assert answer["norm"]["readout_scale"] == pytest.approx(model.net.config.d_model ** -0.5, rel=1e-5)


def recorded(places: dict, run) -> dict:
    """Plain torch hooks: name -> the module's input ("in") or output ("out") in run()."""
    seen, hooks = {}, []
    for name, (module, where) in places.items():
        def pre(m, args, name=name):
            seen[name] = args[0]

        def post(m, args, out, name=name):
            seen[name] = out

        hooks.append(module.register_forward_pre_hook(pre) if where == "in" else module.register_forward_hook(post))
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def by_name(answer: dict) -> dict[str, float]:
    return {c["name"]: c["value"] for c in answer["components"]}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_each_component_equals_a_hand_computation_from_the_familys_modules(checkpoints, family):
    model, original, tokenizer = checkpoints[family]
    text = "The cat sat on the mat and"
    a, w = one_tokens(model)[:2]
    answer = attribute(model, text, a, w)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    if family == "gpt2":
        base, blocks, norm = original.transformer, original.transformer.h, original.transformer.ln_f
        w_o = [(b.attn.c_proj.weight.T, b.attn.c_proj.bias) for b in blocks]  # Conv1D: (in, out) -> (out, in)
        mlps = {f"mlp{i}": (b.mlp.c_proj, "out") for i, b in enumerate(blocks)}
        zs = {f"z{i}": (b.attn.c_proj, "in") for i, b in enumerate(blocks)}
        mlp_bias = [b.mlp.c_proj.bias for b in blocks]
    else:
        base, blocks, norm = original.model, original.model.layers, original.model.norm
        w_o = [(b.self_attn.o_proj.weight, b.self_attn.o_proj.bias) for b in blocks]
        mlps = {f"mlp{i}": (b.mlp.down_proj, "out") for i, b in enumerate(blocks)}
        zs = {f"z{i}": (b.self_attn.o_proj, "in") for i, b in enumerate(blocks)}
        mlp_bias = [b.mlp.down_proj.bias for b in blocks]
    seen = recorded({**zs, **mlps, "x": (norm, "in"), "embed": (blocks[0], "in")}, lambda: original(input_ids=ids))
    x = seen["x"][0, -1].double()
    if family == "gpt2":
        s = 1 / torch.sqrt(x.var(unbiased=False) + norm.eps)
        centre = lambda v: v - v.mean()  # noqa: E731
    else:
        s = 1 / torch.sqrt((x * x).mean() + norm.variance_epsilon)
        centre = lambda v: v  # noqa: E731
    unembed = original.get_output_embeddings().weight.double()
    a_id, w_id = model.output_ids(a)[0][0], model.output_ids(w)[0][0]
    direction = s * (unembed[a_id] - unembed[w_id]) * norm.weight.double()  # (C,)
    got = by_name(answer)
    H, D = model.info.heads, original.config.hidden_size // model.info.heads
    for layer, (weight, bias) in enumerate(w_o):
        z = seen[f"z{layer}"][0, -1].double()  # (H·D,)
        for h in range(H):
            part = weight.double()[:, h * D:(h + 1) * D] @ z[h * D:(h + 1) * D]
            assert got[f"L{layer}H{h}"] == pytest.approx((direction @ centre(part)).item(), abs=TOL)
        if bias is not None:
            assert got[f"L{layer} attention bias b_O"] == pytest.approx((direction @ centre(bias.double())).item(), abs=TOL)
        mlp = seen[f"mlp{layer}"][0, -1].double() - (0 if mlp_bias[layer] is None else mlp_bias[layer].double())
        assert got[f"L{layer} MLP"] == pytest.approx((direction @ centre(mlp)).item(), abs=TOL)
    embed = seen["embed"][0, -1].double()
    if family == "gpt2":
        assert torch.allclose(embed, (base.wte.weight[ids[0, -1]] + base.wpe.weight[ids.shape[1] - 1]).double(), atol=1e-6)
        assert got["final norm bias β"] == pytest.approx(((unembed[a_id] - unembed[w_id]) @ norm.bias.double()).item(),
                                                         abs=TOL)
    assert got["embed"] == pytest.approx((direction @ centre(embed)).item(), abs=TOL)


def test_induction_components_equal_a_hand_computation(models):
    model = models["induction"]
    net = model.net
    ids = torch.tensor([[256, *TEXT.encode()]])
    seen = recorded({**{f"z{i}": (b.attn.out_proj, "in") for i, b in enumerate(net.blocks)}, "x": (net.ln_f, "in")},
                    lambda: net(ids))
    answer = attribute(model, TEXT, "b", "Y")
    x = seen["x"][0, -1].double()
    s = 1 / torch.sqrt(x.var(unbiased=False) + net.ln_f.eps)
    E = net.token_emb.weight.double()
    direction = s * (E[ord("b")] - E[ord("Y")]) * net.ln_f.weight.double()
    got = by_name(answer)
    D = net.config.width // net.config.heads
    for layer, block in enumerate(net.blocks):
        z = seen[f"z{layer}"][0, -1].double()
        for h in range(net.config.heads):
            part = block.attn.out_proj.weight.double()[:, h * D:(h + 1) * D] @ z[h * D:(h + 1) * D]
            assert got[f"L{layer}H{h}"] == pytest.approx((direction @ (part - part.mean())).item(), abs=TOL)
    embed = (net.token_emb.weight[ids[0, -1]] + net.pos_emb.weight[ids.shape[1] - 1]).double()
    assert got["embed"] == pytest.approx((direction @ (embed - embed.mean())).item(), abs=TOL)
    top = max(answer["components"], key=lambda c: c["value"])
    assert top["type"] == "head" and top["layer"] == 1  # layer 1's heads write the copied token


@pytest.mark.parametrize("name, words", [
    ("bert", "is an encoder: it has no unembedding"),
    ("bart", "no final norm that reads its residual stream"),
])
def test_where_attribution_has_no_meaning_it_says_why(checkpoints, name, words):
    model = checkpoints[name][0]
    with pytest.raises(CannotPatch) as e:
        attribute(model, "The cat sat", "the", "cat")
    assert e.value.code == "not_attributable" and words in str(e.value)


@pytest.mark.parametrize("text, a, w, step, code, words", [
    (TEXT, "bY", "Y", None, "not_one_token", "answer 'bY' is 2 tokens"),
    (TEXT, "b", "Y", 2, "not_attributable", "step is for encoder-decoder"),
])
def test_bad_requests_say_what_is_wrong(models, text, a, w, step, code, words):
    with pytest.raises(CannotPatch) as e:
        attribute(models["induction"], text, a, w, step)
    assert e.value.code == code and words in str(e.value)


def test_minilm_is_not_attributable(minilm):
    with pytest.raises(CannotPatch, match="minilm has no unembedding"):
        attribute(minilm, "The cat sat.", "a", "b")


def test_smollm2s_parts_add_up_and_its_name_mover_writes_the_name(smollm2):
    text = "When Mary and John went to the store, John gave a drink to"
    answer = attribute(smollm2, text, " Mary", " John")
    ids = torch.tensor([smollm2.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        logits = smollm2.net(input_ids=ids).logits[0, -1]
    own = (logits[answer["answer"]["id"]] - logits[answer["wrong"]["id"]]).item()
    assert answer["norm"]["form"] == "RMSNorm" and answer["total"] == pytest.approx(own, abs=1e-5)
    assert abs(answer["sum"] - own) <= answer["tolerance"]
    top = max(answer["components"], key=lambda c: c["value"])
    assert (top["type"], top["layer"], top["head"]) == ("head", 23, 3)
