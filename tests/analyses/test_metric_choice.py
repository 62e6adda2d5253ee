"""headscope/models/metric_choice.py: the metric ablation, importance and patching share (loss on a span, logit_diff,
prob), against an independent computation.

The reference runs transformers' GPT-2 (a tiny checkpoint, tests/checkpoints.py) or our induction net directly, with a
plain torch forward pre-hook on the output projection that zeroes one head's slice of its input (the heads' z
concatenated), and computes the span loss, logit difference or probability by hand from the logits. Tolerance 1e-5.
The issue's example: on induction, the loss on the second half of random strings written twice ranks the induction
head (the head with the highest measured induction score) first.
"""

import pytest
import torch

from headscope.analyses.importance import head_importance
from headscope.models.induction import encode, induction_scores, random_strings
from headscope.models.interventions import Ablation
from headscope.models.metric_choice import BadMetric, choose_metric
from tests.checkpoints import build

TOL = 1e-5
TEXTS = ["The cat sat on the mat.", "A dog barked at the cat."]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    from headscope.models.hf.model import HFModel

    path = tmp_path_factory.mktemp("gpt2")
    tokenizer, net = build("gpt2")
    net.save_pretrained(path)
    tokenizer.save_pretrained(path)
    served = HFModel.load("tiny-gpt2", path)
    return served, tokenizer


def zeroed(projection, head: int | None, D: int):
    """A forward pre-hook zeroing one head's D columns of the output projection's input (None: no hook)."""
    if head is None:
        return None

    def hook(module, args):
        x = args[0].clone()
        x[..., head * D:(head + 1) * D] = 0
        return (x, *args[1:])

    return projection.register_forward_pre_hook(hook)


def reference(run, projection, head, D, ids: list[int], name: str, span=None, answer=None, wrong=None) -> float:
    """The metric by hand: run(ids) -> (T, V) logits, with the head's slice zeroed."""
    hook = zeroed(projection, head, D)
    try:
        with torch.no_grad():
            logits = run(ids).float()  # (T, V)
    finally:
        if hook is not None:
            hook.remove()
    if name == "loss":
        start, end = span or (1, len(ids))
        logp = logits.log_softmax(-1)
        return -sum(logp[j - 1, ids[j]].item() for j in range(start, end)) / (end - start)
    last = logits[-1]
    return last.softmax(-1)[answer].item() if name == "prob" else (last[answer] - last[wrong]).item()


def gpt2_run(served):
    net = served.net
    return lambda ids: net(input_ids=torch.tensor([ids])).logits[0]


def induction_run(induction):
    return lambda ids: induction.net(torch.tensor([ids]))[0][0]


@pytest.mark.parametrize("name, span, answer, wrong", [("loss", [3, 6], None, None), ("loss", None, None, None),
                                                       ("logit_diff", None, "cat", "dog"), ("prob", None, " the", None)])
def test_gpt2_importance_under_each_metric_equals_a_hooked_transformers_run(gpt2, name, span, answer, wrong):
    served, tokenizer = gpt2
    metric = choose_metric(served, name, span, answer, wrong)
    r = head_importance(served, texts=TEXTS, metric=metric)
    assert r["measure"]["name"] == name
    layer, D = 1, 8  # width 32 / 4 heads
    projection = served.net.transformer.h[layer].attn.c_proj
    ids = [tokenizer(t)["input_ids"] for t in TEXTS]
    a = metric.answer.id if metric.answer else None
    w = metric.wrong.id if metric.wrong else None

    def quality(head):
        values = [reference(gpt2_run(served), projection, head, D, i, name, span, a, w) for i in ids]
        if name == "loss":  # token-weighted over the texts' spans
            counts = [(span or (1, len(i)))[1] - (span or (1, len(i)))[0] for i in ids]
            return sum(v * c for v, c in zip(values, counts)) / sum(counts)
        return sum(values) / len(values)

    base = quality(None)
    assert r["baseline"] == pytest.approx(base, abs=TOL)
    moved = 0.0
    for head in range(4):
        expected = quality(head) - base if name == "loss" else base - quality(head)  # positive: worse without it
        assert r["importance"]["decoder"][layer][head] == pytest.approx(expected, abs=TOL)
        moved = max(moved, abs(expected))
    assert moved > 1e-5  # some head made a difference: the comparison can fail


@pytest.mark.parametrize("name, span, answer, wrong", [("loss", [2, 7], None, None), ("logit_diff", None, "cat", "dog"),
                                                       ("prob", None, "a", None)])
def test_gpt2_ablation_effect_metric_equals_a_hooked_transformers_run(gpt2, name, span, answer, wrong):
    served, tokenizer = gpt2
    metric = choose_metric(served, name, span, answer, wrong)
    layer, head, D = 0, 2, 8
    analysis = served.analyze(TEXTS[0], ablation=Ablation((("decoder", layer, head),), "zero", metric))
    effect = analysis.effect["metric"]
    ids = tokenizer(TEXTS[0])["input_ids"]
    assert len(analysis.tokens) == len(ids)
    projection = served.net.transformer.h[layer].attn.c_proj
    a = metric.answer.id if metric.answer else None
    w = metric.wrong.id if metric.wrong else None
    before = reference(gpt2_run(served), projection, None, D, ids, name, span, a, w)
    after = reference(gpt2_run(served), projection, head, D, ids, name, span, a, w)
    assert effect["name"] == name and effect["before"] == pytest.approx(before, abs=TOL)
    assert effect["after"] == pytest.approx(after, abs=TOL)
    assert effect["change"] == pytest.approx(after - before, abs=TOL)
    assert abs(after - before) > 1e-6
    assert effect["span"] == (span if name == "loss" else None)
    assert "metric" in analysis.effect["measures"]


@pytest.fixture(scope="module")
def induction(models):
    return models["induction"]


def test_induction_ablation_effect_loss_on_the_second_half_equals_a_hooked_run(induction):
    text = random_strings(1, 20, seed=3)[0] * 2
    ids = encode(text)  # <s> and the bytes
    span = [21, len(ids)]
    metric = choose_metric(induction, "loss", span)
    effect = induction.analyze(text, ablation=Ablation((("decoder", 1, 1),), "zero", metric)).effect["metric"]
    attn = induction.net.blocks[1].attn
    D = induction.net.config.width // induction.net.config.heads
    before = reference(induction_run(induction), attn.out_proj, None, D, ids, "loss", span)
    after = reference(induction_run(induction), attn.out_proj, 1, D, ids, "loss", span)
    assert effect["before"] == pytest.approx(before, abs=TOL) and effect["after"] == pytest.approx(after, abs=TOL)
    assert effect["after"] - effect["before"] > 0.1  # knocking out the induction head hurts the copy


def test_induction_second_half_loss_ranks_the_induction_circuit_first(induction):
    """The issue expected the induction head first; measured, the previous-token head it reads through ranks first
    and the induction head second (docs/importance.md gives the numbers). Both heads are found by their measured
    attention scores, not by name."""
    texts = [s + s for s in random_strings(32, 20, seed=5)]  # <s> + 40 bytes: the second half is tokens 21 .. 40
    span = [22, 41]  # the second half after its first byte: every token there is predictable by copying
    scores = induction_scores(induction.net)
    circuit = [tuple(scores["previous_token_head"]), tuple(scores["induction_head"])]

    def ranked(metric):
        importance = head_importance(induction, texts=texts, metric=metric)["importance"]["decoder"]
        return [(layer, h) for v, layer, h in sorted(((v, layer, h) for layer, row in enumerate(importance)
                                                       for h, v in enumerate(row)), reverse=True)]

    assert ranked(choose_metric(induction, "loss", span))[:2] == circuit
    assert ranked(choose_metric(induction, "loss"))[:2] != circuit  # over every token the first half drowns it


@pytest.mark.parametrize("fields, code, words", [
    (("loss", [0, 5], None, None), "out_of_range", "1 <= start < end <= "),
    (("loss", [3, 99], None, None), "out_of_range", "the text has"),
    (("logit_diff", None, "cat", None), "validation_error", "wrong is required"),
    (("logit_diff", None, "mat", "dog"), "not_one_token", "is 2 tokens"),
    (("prob", [1, 3], "cat", None), "validation_error", "span is for metric loss"),
    ((None, [1, 3], None, None), "validation_error", "give metric too"),
])
def test_bad_choices_are_refused_naming_the_problem(gpt2, fields, code, words):
    served, _ = gpt2
    with pytest.raises(BadMetric, match=words) as e:
        metric = choose_metric(served, *fields)
        metric.span_of(len(served.prepare(TEXTS[0]).fields["tokens"]))
    assert e.value.code == code


def test_encoders_and_encoder_decoders_say_why_the_metric_has_no_meaning(models):
    with pytest.raises(BadMetric, match="encoder: it predicts no token") as e:
        choose_metric(models["minilm"], "loss")
    assert e.value.code == "no_metric"
    with pytest.raises(BadMetric, match="encoder-decoder") as e:
        choose_metric(models["dates"], "logit_diff", None, "1", "2")
    assert e.value.code == "no_metric"
