"""headscope/models/effect.py through every adapter's analyze(..., ablation): each effect number against an independent
computation. Zero-ablating head h equals zeroing the columns of the output projection that read head h's slice
of the concatenated z; mean-ablating it equals that plus the head's mean output added to the projection's bias.
The references do that to a copy of the network (ours for dates and induction, transformers' BertModel for
MiniLM, the served transformers class for the checkpoint families) and compute cosines, log-probabilities and
greedy output from it directly. Tolerance 1e-5: the same arithmetic in a different order."""

import copy

import pytest
import torch

from headscope.models.analysis import SELF, ModelInfo
from headscope.models.dates import BOS_ID, CHAR_ID, EOS_ID, decode_ids, encode_source
from headscope.models.effect import effect_type
from headscope.models.hf.model import HFModel
from headscope.models.interventions import Ablation, BadAblation, capturing
from headscope.models.registry import load_model
from tests.checkpoints import build
from tests.models.test_interventions import output_projection

TOL = dict(atol=1e-5, rtol=0)
TEXT = "The keys to the cabinet are on the table."


@pytest.fixture(scope="module")
def induction():
    return load_model("induction")


def cosine(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def next_logprobs(logits, targets):
    """logits (N, V), targets (N,) -> (N,) log-probabilities of the targets."""
    return logits.log_softmax(-1).gather(1, torch.as_tensor(targets)[:, None])[:, 0]


def zero_heads(linear, heads, D):
    """Zero the columns of an (out, in) output projection that read the given heads."""
    with torch.no_grad():
        for h in heads:
            linear.weight[:, h * D:(h + 1) * D] = 0


def test_the_effect_type_comes_from_generation_not_names():
    info = ModelInfo(name="x", description="", layers=1, heads=1, max_tokens=4, kinds={"decoder": SELF})
    assert effect_type(info) == "encoder"  # a kind called "decoder" does not make it one
    assert effect_type(ModelInfo(**{**info.__dict__, "generation": "continuation"})) == "decoder"
    assert effect_type(ModelInfo(**{**info.__dict__, "generation": "output"})) == "encoder-decoder"


# --- MiniLM: encoder-only ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("heads", [(("encoder", 2, 5),), (("encoder", 0, 1), ("encoder", 0, 7), ("encoder", 4, 3))])
def test_minilm_effect_equals_transformers_bert_with_zeroed_output_projection_columns(minilm, hf_bert, heads):
    analysis = minilm.analyze(TEXT, ablation=Ablation(heads, "zero"))
    ids = torch.tensor([minilm.tokenizer.encode(TEXT).ids])
    model = hf_bert[0]
    reference = copy.deepcopy(model)
    D = model.config.hidden_size // model.config.num_attention_heads
    for _, layer, head in heads:
        zero_heads(reference.encoder.layer[layer].attention.output.dense, [head], D)
    with torch.no_grad():
        before = model(input_ids=ids).last_hidden_state[0]  # (T, C)
        out = reference(input_ids=ids, output_attentions=True)
    after = out.last_hidden_state[0]
    effect = analysis.effect
    torch.testing.assert_close(torch.tensor(effect["embedding_cosine"]), cosine(before.mean(0), after.mean(0)), **TOL)
    torch.testing.assert_close(torch.tensor(effect["token_cosine"]), cosine(before, after), **TOL)
    assert min(effect["token_cosine"]) < 1 - 1e-4  # the heads mattered: the comparison can fail
    torch.testing.assert_close(analysis.patterns["encoder"], torch.stack(out.attentions)[:, 0], **TOL)
    assert effect["measures"]["token_cosine"]["axis"] == "tokens" and effect["measures"]["embedding_cosine"]["axis"] is None


def test_minilm_batch_with_an_ablation_equals_one_text_at_a_time(minilm):
    texts = ["A short one.", TEXT]
    ablation = Ablation((("encoder", 1, 9), ("encoder", 3, 0)), "mean")
    batch = minilm.analyze_batch(texts, ablation=ablation)
    for text, together in zip(texts, batch, strict=True):
        alone = minilm.analyze(text, ablation=ablation)
        torch.testing.assert_close(torch.tensor(together.effect["token_cosine"]), torch.tensor(alone.effect["token_cosine"]), **TOL)
        torch.testing.assert_close(together.patterns["encoder"], alone.patterns["encoder"], **TOL)


# --- induction: decoder-only ------------------------------------------------------------------------------------

def test_induction_effect_equals_a_copy_with_zeroed_output_projection_columns_on_the_same_tokens(induction):
    text, n = "k#9Qz.m>Ab k#9Qz", 4
    analysis = induction.analyze(text, new_tokens=n, ablation=Ablation((("decoder", 1, 1),), "zero"))
    plain = induction.analyze(text, new_tokens=n)
    assert analysis.tokens == plain.tokens  # the continuation is the un-ablated model's
    net = induction.net
    reference = copy.deepcopy(net)
    zero_heads(reference.blocks[1].attn.out_proj, [1], net.config.width // net.config.heads)
    ids = torch.tensor([[256, *text.encode()]])
    with torch.no_grad():
        ids = net.generate(ids, n)  # (1, T)
        before, _ = net(ids)
        after, patterns = reference(ids)
    targets = ids[0, 1:]
    effect = analysis.effect
    torch.testing.assert_close(torch.tensor(effect["logprob_before"]), next_logprobs(before[0, :-1], targets), **TOL)
    torch.testing.assert_close(torch.tensor(effect["logprob_after"]), next_logprobs(after[0, :-1], targets), **TOL)
    loss = lambda logits: torch.nn.functional.cross_entropy(logits[0, :-1], targets)  # noqa: E731
    assert effect["loss_change"] == pytest.approx((loss(after) - loss(before)).item(), abs=1e-5)
    assert effect["loss_change"] > 0.1  # the induction head helps predict the repeat
    assert effect["targets"] == plain.tokens[1:] and len(effect["logprob_after"]) == len(plain.tokens) - 1
    torch.testing.assert_close(analysis.patterns["decoder"], patterns[:, 0], **TOL)


# --- dates: encoder–decoder -------------------------------------------------------------------------------------

def test_dates_zero_effect_equals_a_copy_with_zeroed_columns_output_and_logprobs(dates):
    text = "Wednesday, the 25th of November 2026"
    heads = (("cross", 0, 0), ("cross", 0, 1), ("cross", 0, 2), ("cross", 0, 3), ("decoder", 1, 2), ("encoder", 2, 0))
    analysis = dates.analyze(text, ablation=Ablation(heads, "zero"))
    plain = dates.analyze(text)
    net = dates.net
    reference = copy.deepcopy(net)
    ref_modules = {"encoder": lambda i: reference.encoder[i].self_attn, "decoder": lambda i: reference.decoder[i].self_attn,
                   "cross": lambda i: reference.decoder[i].cross_attn}
    D = net.config.width // net.config.heads
    for kind, layer, head in heads:
        zero_heads(ref_modules[kind](layer).out_proj, [head], D)
    source = torch.tensor([encode_source(text)])
    with torch.no_grad():
        made = net.generate(source, BOS_ID, EOS_ID)[0, 1:].tolist()
        made = made[: made.index(EOS_ID) + 1] if EOS_ID in made else made
        target = torch.tensor([[BOS_ID, *made[:-1]]])
        before, _ = net(source, target)
        after, patterns = reference(source, target)
        again = reference.generate(source, BOS_ID, EOS_ID)[0, 1:].tolist()
    again = again[: again.index(EOS_ID)] if EOS_ID in again else again
    effect = analysis.effect
    assert effect["output_text"] == decode_ids(again) and analysis.output_text == plain.output_text
    assert effect["output_text"] != plain.output_text  # these heads matter: the comparison can fail
    torch.testing.assert_close(torch.tensor(effect["logprob_before"]), next_logprobs(before[0], made), **TOL)
    torch.testing.assert_close(torch.tensor(effect["logprob_after"]), next_logprobs(after[0], made), **TOL)
    assert len(effect["targets"]) == len(plain.output_tokens) and effect["measures"]["targets"]["axis"] == "output_tokens"
    for kind in ("encoder", "decoder", "cross"):
        torch.testing.assert_close(analysis.patterns[kind], patterns[kind][:, 0], **TOL)


def test_dates_mean_effect_adds_the_head_mean_to_the_projection_bias(dates):
    """Mean ablation of one cross head, teacher-forced: the head's mean output over the decoder positions (taken
    from the un-ablated run: nothing before the head changes) enters the output projection as a constant."""
    text, (kind, layer, head) = "25/11/2026", ("cross", 1, 1)
    analysis = dates.analyze(text, ablation=Ablation(((kind, layer, head),), "mean"))
    net = dates.net
    source = torch.tensor([encode_source(text)])
    D = net.config.width // net.config.heads
    made = [EOS_ID if t == "</s>" else CHAR_ID[t] for t in analysis.effect["targets"]]
    target = torch.tensor([[BOS_ID, *made[:-1]]])
    with torch.no_grad(), capturing(dates.attention_modules()) as records:
        before, _ = net(source, target)
    z_mean = records[(kind, layer)][0]["z"][0, head].mean(0)  # (D,) mean over the decoder positions
    reference = copy.deepcopy(net)
    projection = reference.decoder[layer].cross_attn.out_proj
    with torch.no_grad():
        projection.bias += projection.weight[:, head * D:(head + 1) * D] @ z_mean
        projection.weight[:, head * D:(head + 1) * D] = 0
        after, _ = reference(source, target)
    torch.testing.assert_close(torch.tensor(analysis.effect["logprob_after"]), next_logprobs(after[0], made), **TOL)
    torch.testing.assert_close(torch.tensor(analysis.effect["logprob_before"]), next_logprobs(before[0], made), **TOL)


# --- transformers checkpoints: one encoder, one decoder, two encoder–decoders -----------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """family -> a tiny checkpoint served by headscope/models/hf/model.py (tests/models/test_hf.py builds them)."""
    out = {}
    for family in ("bert", "gpt2", "bart", "t5"):
        tokenizer, original = build(family)
        path = tmp_path_factory.mktemp(family)
        original.save_pretrained(path)
        tokenizer.save_pretrained(path)
        out[family] = HFModel.load(f"tiny-{family}", path)
    return out


def reference_with_zeroed(served, family, heads):
    reference = copy.deepcopy(served.net)
    reference.set_attn_implementation("eager")
    for kind, layer, head in heads:
        projection, transposed = output_projection(reference, family, kind, layer)
        D = 8  # width 32 / 4 heads
        with torch.no_grad():
            if transposed:
                projection.weight[head * D:(head + 1) * D, :] = 0
            else:
                projection.weight[:, head * D:(head + 1) * D] = 0
    return reference


def test_hf_encoder_effect(tiny):
    served, heads = tiny["bert"], (("encoder", 1, 1), ("encoder", 0, 2))
    text = "The cat sat on the mat."
    analysis = served.analyze(text, ablation=Ablation(heads))
    reference = reference_with_zeroed(served, "bert", heads)
    enc = served.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        before = served.net(**enc).last_hidden_state[0]
        out = reference(**enc, output_attentions=True)
    after = out.last_hidden_state[0]
    torch.testing.assert_close(torch.tensor(analysis.effect["embedding_cosine"]), cosine(before.mean(0), after.mean(0)), **TOL)
    torch.testing.assert_close(torch.tensor(analysis.effect["token_cosine"]), cosine(before, after), **TOL)
    assert min(analysis.effect["token_cosine"]) < 1 - 1e-4
    torch.testing.assert_close(analysis.patterns["encoder"], torch.stack(out.attentions)[:, 0], **TOL)


def test_hf_decoder_effect_on_text_and_continuation(tiny):
    served, heads = tiny["gpt2"], (("decoder", 1, 1),)
    text, n = "The cat sat on the mat.", 3
    analysis = served.analyze(text, new_tokens=n, ablation=Ablation(heads))
    plain = served.analyze(text, new_tokens=n)
    assert analysis.tokens == plain.tokens
    ids = torch.tensor([served.tokenizer.convert_tokens_to_ids(plain.tokens)])
    reference = reference_with_zeroed(served, "gpt2", heads)
    with torch.no_grad():
        before = served.net(input_ids=ids).logits[0]
        after = reference(input_ids=ids).logits[0]
    targets = ids[0, 1:]
    torch.testing.assert_close(torch.tensor(analysis.effect["logprob_before"]), next_logprobs(before[:-1], targets), **TOL)
    torch.testing.assert_close(torch.tensor(analysis.effect["logprob_after"]), next_logprobs(after[:-1], targets), **TOL)
    expected = (next_logprobs(before[:-1], targets) - next_logprobs(after[:-1], targets)).mean().item()
    assert analysis.effect["loss_change"] == pytest.approx(expected, abs=1e-5) and abs(expected) > 1e-4


@pytest.mark.parametrize("family", ["bart", "t5"])
def test_hf_encoder_decoder_effect_output_and_logprobs(tiny, family):
    served = tiny[family]
    heads = (("cross", 1, 1), ("decoder", 0, 2), ("encoder", 1, 0))
    text, n = "The cat sat on the mat.", 6
    analysis = served.analyze(text, new_tokens=n, ablation=Ablation(heads))
    reference = reference_with_zeroed(served, family, heads)
    inputs = served.inputs(served.tokenizer(text))
    with torch.no_grad():
        sequence = served.net.generate(**inputs, generation_config=served.greedy(n))[0].tolist()
        positions, made = sequence[:-1], sequence[1:]
        before = served.net(**inputs, decoder_input_ids=torch.tensor([positions])).logits[0]
        after = reference(**inputs, decoder_input_ids=torch.tensor([positions])).logits[0]
        again = reference.generate(**inputs, generation_config=served.greedy(n))[0, 1:].tolist()
    effect = analysis.effect
    assert effect["output_text"] == served.tokenizer.decode(again, skip_special_tokens=True)
    torch.testing.assert_close(torch.tensor(effect["logprob_before"]), next_logprobs(before, made), **TOL)
    torch.testing.assert_close(torch.tensor(effect["logprob_after"]), next_logprobs(after, made), **TOL)
    assert (torch.tensor(effect["logprob_after"]) - torch.tensor(effect["logprob_before"])).abs().max() > 1e-4


def test_hf_generation_with_mean_ablation_runs_without_a_cache(tiny):
    """Mean over the queries of a cached step would be the mean of one token, i.e. no ablation at all: the
    regenerated output must come from full-prefix steps. Check against a step-by-step greedy loop, each step a
    full forward pass of the prefix under the same ablation."""
    from headscope.models.interventions import ablating

    served, heads = tiny["t5"], tuple(("decoder", 1, h) for h in range(4))
    text, n = "Dogs bark at night, loudly!", 6
    analysis = served.analyze(text, new_tokens=n, ablation=Ablation(heads, "mean"))
    assert analysis.effect["output_text"] != analysis.output_text  # what a cache would give: no ablation at all
    inputs = served.inputs(served.tokenizer(text))
    start = served.net.generation_config.decoder_start_token_id
    prefix = [start]
    with torch.no_grad(), ablating(served.attention_modules(), Ablation(heads, "mean")):
        for _ in range(n):
            logits = served.net(**inputs, decoder_input_ids=torch.tensor([prefix]), use_cache=False).logits[0, -1]
            prefix.append(int(logits.argmax()))
            if prefix[-1] in served.eos_ids:
                break
    assert analysis.effect["output_text"] == served.tokenizer.decode(prefix[1:], skip_special_tokens=True)


def test_a_model_whose_heads_cannot_be_reached_says_so(tiny):
    served = copy.copy(tiny["bert"])
    served.modules = None
    with pytest.raises(BadAblation, match="cannot be reached one by one; ablation is not available"):
        served.analyze("The cat.", ablation=Ablation((("encoder", 0, 0),)))
    assert served.analyze("The cat.").effect is None
