"""headscope/models/interventions.py hook points (resid_pre, attn_out, mlp_out, resid_final): what every model's
places hold, checked against independent computations, and StreamEdit against plain torch hooks.

Our nets: the captured tensors equal plain torch forward hooks on the nets' own submodules (the block's input, the
attention's out_proj output, the MLP's output, ln_f's input), and for MiniLM transformers' BertModel hooked at its
own modules. Checkpoints of every family: equal transformers' model hooked at modules named per family here
(GPT-2 `h.l`, `attn.c_proj`, `mlp.c_proj`, `ln_f`; Llama `layers.l`, `o_proj`, `down_proj`, `norm`; BERT, BART, T5 ...),
so the generic finder in headscope/models/hf/hooks.py is checked against the names it does not use. 1e-5 absolute
plus 1e-6 relative: the same arithmetic (MiniLM's MLP outputs reach ~200). Texts of one shape run as one batch:
equal to one at a time.
"""

import pytest
import torch

from headscope.models.interventions import BadAblation, HeadEdit, StreamEdit, capturing, editing
from tests.checkpoints import FAMILIES, build, save
from tests.models.test_interventions import output_projection

TEXT = "The cat sat on the mat."
ATOL, RTOL = 1e-5, 1e-6  # the same arithmetic, in another order or batch: float32 rounding


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """family -> (HFModel, the original transformers model, its tokenizer)."""
    from headscope.models.hf.model import HFModel

    torch.set_num_threads(1)
    out = {}
    for family in FAMILIES:
        tokenizer, original = build(family)
        path = save(tmp_path_factory.mktemp(family), tokenizer, original)
        base = original.bert if family == "bert" else original  # served through AutoModel: the masked-LM head left out
        out[family] = (HFModel.load(f"tiny-{family}", path), base, tokenizer)
    return out


def family_places(model, family: str) -> dict:
    """(point, kind, layer) -> (module, "in" | "out"): where each hook point's tensor is in transformers' model, by
    the family's own names: a block's input, a W_O's or an MLP's last linear layer's output, the final norm's input."""
    places = {}
    if family in ("bert", "roberta", "distilbert"):
        layers = model.transformer.layer if family == "distilbert" else model.encoder.layer
        for i, block in enumerate(layers):
            mlp = block.ffn.lin2 if family == "distilbert" else block.output.dense
            places |= {("resid_pre", "encoder", i): (block, "in"), ("mlp_out", "encoder", i): (mlp, "out"),
                       ("attn_out", "encoder", i): (output_projection(model, family, "encoder", i)[0], "out")}
        return places
    if family in ("gpt2", "llama"):
        blocks = model.transformer.h if family == "gpt2" else model.model.layers
        for i, block in enumerate(blocks):
            mlp = block.mlp.c_proj if family == "gpt2" else block.mlp.down_proj
            places |= {("resid_pre", "decoder", i): (block, "in"), ("mlp_out", "decoder", i): (mlp, "out"),
                       ("attn_out", "decoder", i): (output_projection(model, family, "decoder", i)[0], "out")}
        norm = model.transformer.ln_f if family == "gpt2" else model.model.norm
        return places | {("resid_final", "decoder", len(blocks)): (norm, "in")}
    for stack in ("encoder", "decoder"):
        blocks = (model.model.encoder.layers if stack == "encoder" else model.model.decoder.layers) if family == "bart" \
            else (model.encoder.block if stack == "encoder" else model.decoder.block)
        for i, block in enumerate(blocks):
            mlp = block.fc2 if family == "bart" else block.layer[-1].DenseReluDense.wo
            places |= {("resid_pre", stack, i): (block, "in"), ("mlp_out", stack, i): (mlp, "out"),
                       ("attn_out", stack, i): (output_projection(model, family, stack, i)[0], "out")}
            if stack == "decoder":
                places[("attn_out", "cross", i)] = (output_projection(model, family, "cross", i)[0], "out")
    if family == "t5":
        places[("resid_final", "decoder", len(model.decoder.block))] = (model.decoder.final_layer_norm, "in")
    return places


def hooked(places: dict, run) -> dict:
    """Run `run()` with plain torch hooks recording each place's tensor: key -> (B, T, C)."""
    seen, hooks = {}, []
    for key, (module, where) in places.items():
        if where == "in":
            def pre(m, args, kwargs, key=key):
                seen[key] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            hooks.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def output(m, args, out, key=key):
                seen.setdefault(key, out)
            hooks.append(module.register_forward_hook(output))
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def run_original(original, tokenizer, family: str, text: str = TEXT):
    enc = tokenizer(text, return_tensors="pt")
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    if family in ("bart", "t5"):
        start = original.config.decoder_start_token_id
        return lambda: original(**inputs, decoder_input_ids=torch.tensor([[start, 5, 7, 9]]))
    return lambda: original(**inputs)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_hook_point_of_a_checkpoint_holds_what_the_familys_own_module_holds(served, family):
    model, original, tokenizer = served[family]
    expected = hooked(family_places(original, family), run_original(original, tokenizer, family))
    points = model.hook_points()
    assert set(points) == set(expected)  # every place found, and no other (BART has no final norm: no resid_final)
    net_run = run_original(model.net, tokenizer, family)
    with torch.no_grad(), capturing(points) as records:
        net_run()
    for key, value in expected.items():
        assert len(records[key]) == 1, key
        torch.testing.assert_close(records[key][0]["x"], value, atol=ATOL, rtol=RTOL, msg=str(key))


@pytest.mark.parametrize("family", ["gpt2", "llama", "t5"])
def test_a_stream_edit_equals_replacing_the_tensor_with_a_torch_hook(served, family):
    model, original, tokenizer = served[family]
    places = family_places(original, family)
    run, net_run = run_original(original, tokenizer, family), run_original(model.net, tokenizer, family)
    kind = "decoder"
    for point in ("resid_pre", "attn_out", "mlp_out"):
        key = (point, kind, 1)
        module, where = places[key]
        T, C = hooked({key: places[key]}, run)[key].shape[1:]
        value = torch.randn(1, T, C, generator=torch.Generator().manual_seed(0))
        position = T - 1

        def replace(x):
            x = x.clone()
            x[:, position] = value[:, position]
            return x

        if where == "in":
            hook = module.register_forward_pre_hook(
                lambda m, args, kwargs: ((replace(args[0]), *args[1:]), kwargs) if args else
                (args, {**kwargs, "hidden_states": replace(kwargs["hidden_states"])}), with_kwargs=True)
        else:
            hook = module.register_forward_hook(lambda m, args, out: replace(out))
        try:
            with torch.no_grad():
                expected = run().logits
        finally:
            hook.remove()
        with torch.no_grad(), editing(model.hook_points(), [StreamEdit(point, kind, 1, value, (position,))]):
            ours = net_run().logits
        with torch.no_grad():
            plain = net_run().logits
        torch.testing.assert_close(ours, expected, atol=ATOL, rtol=RTOL)
        assert (ours - plain).abs().max() > 1e-3  # the edit changed the output: the comparison can fail


def reference_places(net, kind: str) -> dict:
    """Our causal or seq2seq net's places, by its submodules (not its HookPoints): block input, the attention
    out_proj's output, the MLP's output, ln_f's input."""
    blocks = net.blocks if kind == "causal" else net.decoder
    places = {}
    for i, block in enumerate(blocks):
        attn = block.attn if kind == "causal" else block.self_attn
        places |= {("resid_pre", "decoder", i): (block, "in"), ("attn_out", "decoder", i): (attn.out_proj, "out"),
                   ("mlp_out", "decoder", i): (block.mlp, "out")}
        if kind != "causal":
            places[("attn_out", "cross", i)] = (block.cross_attn.out_proj, "out")
    if kind != "causal":
        for i, block in enumerate(net.encoder):
            places |= {("resid_pre", "encoder", i): (block, "in"),
                       ("attn_out", "encoder", i): (block.self_attn.out_proj, "out"),
                       ("mlp_out", "encoder", i): (block.mlp, "out")}
    return places | {("resid_final", "decoder", len(blocks)): (net.ln_f, "in")}


def test_our_nets_hook_points_hold_what_their_submodules_compute(models):
    induction, dates = models["induction"], models["dates"]
    ids = torch.tensor([[256, *b"k#9Qz.m>Ab k#9Qz.m>A"]])
    source, target = torch.tensor([[1, 20, 21, 15, 2]]), torch.tensor([[1, 22, 16, 20]])
    for model, kind, run in ((induction, "causal", lambda: induction.net(ids)),
                             (dates, "seq2seq", lambda: dates.net(source, target))):
        expected = hooked(reference_places(model.net, kind), run)
        assert set(model.hook_points()) == set(expected)
        with torch.no_grad(), capturing(model.hook_points()) as records:
            run()
        for key, value in expected.items():
            torch.testing.assert_close(records[key][0]["x"], value, atol=0, rtol=0, msg=str(key))


def test_minilm_hook_points_equal_transformers_bert(minilm, hf_bert):
    model = hf_bert[0]
    ids = torch.tensor([minilm.tokenizer.encode(TEXT).ids])
    places = {}
    for i, layer in enumerate(model.encoder.layer):
        places |= {("resid_pre", "encoder", i): (layer, "in"), ("attn_out", "encoder", i): (layer.attention.output.dense, "out"),
                   ("mlp_out", "encoder", i): (layer.output.dense, "out")}
    expected = hooked(places, lambda: model(input_ids=ids))
    with torch.no_grad(), capturing(minilm.hook_points()) as records:
        minilm.encoder(ids)
    assert set(records) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(records[key][0]["x"], value, atol=ATOL, rtol=RTOL, msg=str(key))


def test_texts_of_one_shape_run_as_one_batch_equal_to_one_at_a_time(served, models):
    texts = ["The cat sat on the mat.", "The mat sat on the cat."]
    for model in (served["gpt2"][0], served["t5"][0], served["bert"][0], models["dates"]):
        prepared = [model.prepare(t) for t in texts]
        if model.info.generation == "output":  # the same decoder positions: one shape
            prepared[1] = model.with_output(prepared[1], prepared[0])
        with torch.no_grad(), capturing(model.hook_points()) as records:
            together = model.forward(prepared)
        assert all(len(calls) == 1 and calls[0]["x"].shape[0] == 2 for calls in records.values())  # one pass of 2
        with torch.no_grad():
            alone = [model.forward([p])[0] for p in prepared]
        for a, b in zip(together, alone, strict=True):
            for kind in a.patterns:
                torch.testing.assert_close(a.patterns[kind], b.patterns[kind], atol=ATOL, rtol=RTOL)
            for name in ("hidden", "logits", "next_logits"):
                if getattr(b, name) is not None:
                    torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=ATOL, rtol=RTOL)


def test_edits_in_rows_make_each_row_its_own_experiment(models):
    model = models["induction"]
    p = model.prepare("abcabc")
    value = torch.zeros(1, model.info.heads, 7, 16)
    edits = [HeadEdit("decoder", 1, (1,), "replace", None, (1,), value), HeadEdit("decoder", 0, (2,), "zero", None, (2,))]
    with torch.no_grad():
        with editing(model.attention_modules(), edits):
            rows = model.forward([p, p, p])
        with editing(model.attention_modules(), [HeadEdit("decoder", 1, (1,), "zero")]):
            first = model.forward([p])[0]
        with editing(model.attention_modules(), [HeadEdit("decoder", 0, (2,), "zero")]):
            second = model.forward([p])[0]
        plain = model.forward([p])[0]
    torch.testing.assert_close(rows[0].logits, plain.logits, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(rows[1].logits, first.logits, atol=ATOL, rtol=RTOL)  # a zero value replaced = zeroed
    torch.testing.assert_close(rows[2].logits, second.logits, atol=ATOL, rtol=RTOL)
    assert (rows[1].logits - plain.logits).abs().max() > 1e-3


def test_a_stream_edit_of_the_wrong_shape_names_it(models):
    model = models["induction"]
    p = model.prepare("abc")
    with pytest.raises(BadAblation, match=r"resid_pre of decoder layer 0: a replace edit needs a value shaped"), \
            torch.no_grad(), editing(model.hook_points(), [StreamEdit("resid_pre", "decoder", 0, torch.zeros(1, 3, 64))]):
        model.forward([p])
