"""headscope/analyses/importance.py: head importance and the pruning curve, against independent computations.

Zero-ablating a head equals zeroing the columns of the output projection that read that head's slice
of the concatenated z (tests/models/test_interventions.py checks this for every model); here every reference copies
the network, zeroes those columns, and recomputes the measure with plain torch (or with
headscope/training/dates.py's own exact_match, or with transformers' model for MiniLM and checkpoints). Small
data keep the runs short. Tolerance 1e-5 for losses and cosines: the same arithmetic in another order.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from headscope.analyses.importance import (
    BadTexts,
    check_texts,
    choose_measure,
    embedding_cosine,
    exact_match,
    head_importance,
    span_loss,
)
from headscope.models.induction import induction_scores, repeated_random
from headscope.models.interventions import Ablation, ablating
from tests.checkpoints import build
from tests.models.test_interventions import output_projection

TOL = 1e-5


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on the shared 2-core machine two spinning threads made these runs 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def induction(models):
    return models["induction"]


@pytest.fixture(scope="module")
def induction_result(induction):
    return head_importance(induction, "zero", measure=lambda: span_loss(induction, induction.own_task(20)))


def zero_heads(net, modules_of_copy, heads, width):
    """Zero, in a copy's attention modules, the out_proj columns of each (kind, layer, head)."""
    with torch.no_grad():
        for kind, layer, head in heads:
            modules_of_copy[(kind, layer)].out_proj.weight[:, head * width:(head + 1) * width] = 0
    return net


def induction_copy(induction, heads):
    net = copy.deepcopy(induction.net)
    modules = {("decoder", i): block.attn for i, block in enumerate(net.blocks)}
    return zero_heads(net, modules, heads, net.config.width // net.config.heads)


def second_half_loss(net, n=20, length=20) -> float:
    """Plain torch: mean -log softmax of every second-half token, predicted from the position before it."""
    ids = repeated_random(n, length, seed=0)  # (n, 1 + 2 * length)
    with torch.no_grad():
        logits, _ = net(ids)  # (n, T, V)
    logp = logits.log_softmax(-1)[:, length:-1]  # (n, length, V): positions length .. 2 length - 1
    return -logp.gather(2, ids[:, length + 1:, None]).mean().item()


def test_induction_importance_of_every_head_is_the_loss_increase_with_its_output_projection_columns_zeroed(
        induction, induction_result):
    r = induction_result
    assert r["measure"]["name"] == "repeated_half_loss" and r["measure"]["direction"] == "lower_is_better"
    baseline = second_half_loss(induction.net)
    assert r["baseline"] == pytest.approx(baseline, abs=TOL)
    assert r["baseline"] == pytest.approx(induction_scores(induction.net, n=20)["loss_second_half"], abs=TOL)
    for layer in range(2):
        for head in range(4):
            ablated = second_half_loss(induction_copy(induction, [("decoder", layer, head)]))
            assert r["importance"]["decoder"][layer][head] == pytest.approx(ablated - baseline, abs=TOL)
            assert r["ablated_quality"]["decoder"][layer][head] == pytest.approx(ablated, abs=TOL)
    # the circuit of docs/induction.md: its previous-token head L0H1 and induction head L1H1 matter most
    flat = {(layer, head): v for layer, row in enumerate(r["importance"]["decoder"]) for head, v in enumerate(row)}
    assert sorted(flat, key=flat.get)[-2:] in ([(1, 1), (0, 1)], [(0, 1), (1, 1)])


def test_the_pruning_curve_removes_heads_by_ascending_importance_from_baseline_to_all_removed(induction,
                                                                                               induction_result):
    r = induction_result
    curve = r["curve"]
    importance = [r["importance"][h["kind"]][h["layer"]][h["head"]] for h in curve["removed"]]
    assert importance == sorted(importance)
    assert sorted((h["layer"], h["head"]) for h in curve["removed"]) == [(la, h) for la in range(2) for h in range(4)]
    assert all(h["name"] == f"L{h['layer']}H{h['head']}" for h in curve["removed"])
    assert len(curve["quality"]) == 9 and curve["quality"][0] == r["baseline"]
    for k in (3, 8):  # a point in the middle, and every head removed
        heads = [(h["kind"], h["layer"], h["head"]) for h in curve["removed"][:k]]
        assert curve["quality"][k] == pytest.approx(second_half_loss(induction_copy(induction, heads)), abs=TOL)
    assert r["evaluations"] == 17 and r["dims"] == ["layer", "head"]


def test_mean_ablation_gives_other_numbers_with_the_same_bookkeeping(induction, induction_result):
    r = head_importance(induction, "mean", measure=lambda: span_loss(induction, induction.own_task(20)))
    assert r["ablation"] == "mean" and r["baseline"] == induction_result["baseline"]
    assert r["importance"] != induction_result["importance"]
    importance = [r["importance"]["decoder"][h["layer"]][h["head"]] for h in r["curve"]["removed"]]
    assert importance == sorted(importance)


def test_progress_counts_every_evaluation(induction):
    seen = []
    head_importance(induction, measure=lambda: span_loss(induction, induction.own_task(4)), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(d, 17) for d in range(1, 18)]


def test_dates_exact_match_with_a_head_ablated_equals_exact_match_with_its_output_projection_columns_zeroed(dates):
    """The measure alone (a full run is 73 generations of the set: the bookkeeping is tested on induction above)."""
    from headscope.data.calendar import heldout_examples
    from headscope.training.dates import (
        exact_match as trained_exact_match,  # the training script's own count
    )

    pairs = heldout_examples(40, 1234)
    measure = exact_match(dates, dates.own_task(40))
    assert measure.name == "exact_match" and measure.direction == "higher_is_better" and measure.examples == 40
    net = copy.deepcopy(dates.net)
    baseline = trained_exact_match(net, pairs)
    assert measure.evaluate() == baseline
    for head in (("encoder", 0, 3), ("decoder", 0, 3), ("cross", 0, 2)):
        with ablating(dates.attention_modules(), Ablation((head,), "zero")):
            ours = measure.evaluate()
        reference = copy.deepcopy(net)
        modules = {**{("encoder", i): b.self_attn for i, b in enumerate(reference.encoder)},
                   **{("decoder", i): b.self_attn for i, b in enumerate(reference.decoder)},
                   **{("cross", i): b.cross_attn for i, b in enumerate(reference.decoder)}}
        zero_heads(reference, modules, [head], reference.config.width // reference.config.heads)
        assert ours == trained_exact_match(reference, pairs), head
        assert ours < baseline, head  # the head matters: the comparison can fail


MINILM_TEXTS = ["The keys to the cabinet are on the table.", "Dogs bark.", "Where did you put it?"]


def test_minilm_embedding_cosine_with_a_head_ablated_equals_transformers_with_its_columns_zeroed(minilm, hf_bert):
    """The measure alone (a full run is 145 evaluations: the bookkeeping is tested on induction above)."""
    measure = embedding_cosine(minilm, MINILM_TEXTS)
    assert measure.name == "embedding_cosine" and measure.evaluate() == pytest.approx(1.0, abs=1e-6)
    reference_model, tokenizer = hf_bert

    def embeddings(model):
        out = []
        with torch.no_grad():
            for text in MINILM_TEXTS:
                hidden = model(input_ids=torch.tensor([tokenizer(text)["input_ids"]])).last_hidden_state[0]  # (T, C)
                out.append(hidden.mean(0))  # mean pooling over every token, [CLS] and [SEP] included
        return torch.stack(out)

    unablated = embeddings(reference_model)
    D = reference_model.config.hidden_size // reference_model.config.num_attention_heads
    for layer, head in ((0, 3), (5, 11)):
        with ablating(minilm.attention_modules(), Ablation((("encoder", layer, head),), "zero")):
            ours = measure.evaluate()
        ablated = copy.deepcopy(reference_model)
        with torch.no_grad():
            ablated.encoder.layer[layer].attention.output.dense.weight[:, head * D:(head + 1) * D] = 0
        cosine = F.cosine_similarity(embeddings(ablated), unablated, dim=-1).mean().item()
        assert ours == pytest.approx(cosine, abs=TOL)
        assert 1 - cosine > 1e-4  # the head moved the embeddings: the comparison can fail


@pytest.mark.parametrize("family, measure", [("bert", "embedding_cosine"), ("gpt2", "next_token_loss"),
                                             ("bart", "output_logprob")])
def test_checkpoint_measures_follow_the_architecture_and_match_zeroed_output_projections(family, measure, tmp_path):
    from headscope.models.hf.model import HFModel

    tokenizer, original = build(family)
    original.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    served = HFModel.load(f"tiny-{family}", tmp_path)
    texts = ["The cat sat on the mat.", "A dog barked at night."]
    r = head_importance(served, texts=texts)
    assert r["measure"]["name"] == measure
    kind = list(served.info.kinds)[-1]  # cross for BART
    layer, head, D = 1, 2, 8  # width 32 / 4 heads
    reference = copy.deepcopy(served.net)
    reference.set_attn_implementation("eager")
    projection, transposed = output_projection(reference, family, kind, layer)
    with torch.no_grad():
        if transposed:
            projection.weight[head * D:(head + 1) * D, :] = 0
        else:
            projection.weight[:, head * D:(head + 1) * D] = 0
    quality = {"bert": embedding_quality, "gpt2": loss_quality, "bart": logprob_quality}[family]
    base, ablated = quality(served.net, served.net, tokenizer, texts), quality(reference, served.net, tokenizer, texts)
    expected = ablated - base if measure == "next_token_loss" else base - ablated
    assert r["baseline"] == pytest.approx(base, abs=TOL)
    assert r["importance"][kind][layer][head] == pytest.approx(expected, abs=TOL)
    assert abs(expected) > 1e-5  # the head made a difference: the comparison can fail
    if measure == "next_token_loss":
        with pytest.raises(BadTexts, match="every text is a single token") as e:
            choose_measure(served, ["a"])
        assert e.value.code == "nothing_to_predict"


def embedding_quality(net, unablated, tokenizer, texts):
    with torch.no_grad():
        cos = [F.cosine_similarity(net(**tokenizer(t, return_tensors="pt")).last_hidden_state[0].mean(0),
                                   unablated(**tokenizer(t, return_tensors="pt")).last_hidden_state[0].mean(0), dim=0)
               for t in texts]
    return torch.stack(cos).mean().item()


def loss_quality(net, unablated, tokenizer, texts):
    total, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = tokenizer(t, return_tensors="pt")["input_ids"]  # (1, T)
            logp = net(input_ids=ids).logits[0, :-1].log_softmax(-1)  # (T-1, V)
            total -= logp.gather(1, ids[0, 1:, None]).sum().item()
            count += ids.shape[1] - 1
    return total / count


def logprob_quality(net, unablated, tokenizer, texts):
    """Greedy output of the un-ablated model, written by hand step by step, then its teacher-forced log-prob."""
    total, count = 0.0, 0
    start, end = unablated.config.decoder_start_token_id, unablated.generation_config.eos_token_id
    with torch.no_grad():
        for t in texts:
            ids = tokenizer(t, return_tensors="pt")["input_ids"]
            out = [start]
            while len(out) <= 32 and (len(out) == 1 or out[-1] != end):
                out.append(int(unablated(input_ids=ids, decoder_input_ids=torch.tensor([out])).logits[0, -1].argmax()))
            seq = torch.tensor([out])
            logp = net(input_ids=ids, decoder_input_ids=seq[:, :-1]).logits[0].log_softmax(-1)  # (n, V)
            total += logp.gather(1, seq[0, 1:, None]).sum().item()
            count += seq.shape[1] - 1
    return total / count


def test_the_measure_follows_the_architecture_when_texts_are_given(models):
    texts = ["25 May 1950", "k#9Qz k#9Qz"]
    assert choose_measure(models["dates"], None).name == "exact_match"
    assert choose_measure(models["dates"], texts).name == "output_logprob"
    assert choose_measure(models["induction"], None).name == "repeated_half_loss"
    assert choose_measure(models["induction"], texts).name == "next_token_loss"
    assert choose_measure(models["minilm"], texts).name == "embedding_cosine"


def test_dates_output_logprob_on_given_texts_is_the_teacher_forced_log_probability(dates):
    from headscope.models.dates import BOS_ID, EOS_ID, encode_source

    texts = ["25 May 1950", "Wednesday, the 25th of November 2026"]
    measure = choose_measure(dates, texts)
    total, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            source = torch.tensor([encode_source(t)])
            out = dates.net.generate(source, BOS_ID, EOS_ID)[0].tolist()
            logits, _ = dates.net(source, torch.tensor([out[:-1]]))
            total += logits[0].log_softmax(-1).gather(1, torch.tensor(out[1:])[:, None]).sum().item()
            count += len(out) - 1
    assert measure.evaluate() == pytest.approx(total / count, abs=TOL)


@pytest.mark.parametrize("texts, code, words", [
    ([], "no_texts", "no texts given"),
    (["fine"] * 5, "too_many_texts", "5 texts given; importance takes at most 4"),
    (["fine", "  "], "empty_text", "text 1 is empty"),
    (["fine", "\ud800"], "invalid_unicode", "text 1 is not valid Unicode: lone surrogate at character 0"),
    (["fine", "x " * 600], "too_many_tokens", "text 1 has 602 tokens but minilm takes at most 512"),
    (["word " * 30, "word " * 30], "too_many_tokens", "the texts have 64 tokens together; importance takes at most 50"),
    (["fine", "x" * 20000], "too_many_characters", "text 1: text has 20000 characters"),
])
def test_texts_beyond_the_limits_are_refused_with_the_limit_named(minilm, texts, code, words):
    with pytest.raises(BadTexts, match=words) as e:
        check_texts(minilm, texts, max_texts=4, max_tokens=50)
    assert e.value.code == code


def test_the_default_sample_keeps_big_models_at_about_minilms_cost(minilm, smollm2):
    from headscope.analyses.importance import DEFAULT_TEXT_EVALUATIONS, default_texts
    from headscope.data.varied_texts import VARIED_TEXTS

    assert default_texts(minilm) == list(VARIED_TEXTS)  # 145 evaluations x 48 texts: the budget itself
    texts = default_texts(smollm2)  # 541 evaluations
    assert texts == list(VARIED_TEXTS[:12]) and len(texts) * 541 <= DEFAULT_TEXT_EVALUATIONS
