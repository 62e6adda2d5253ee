"""headscope/models/induction.py and headscope/training/induction.py: the trained byte-level causal LM behind the
AttentionModel protocol, its induction circuit, and the recipe's determinism."""

import random

import pytest
import torch

from headscope.analyses.heads import kind_metrics
from headscope.models.analysis import CAUSAL_SELF, MAX_NEW_TOKENS, TooManyTokens
from headscope.models.induction import (
    BOS_ID,
    DEFAULT_WEIGHTS,
    RANDOM_SYMBOLS,
    InductionModel,
    encode,
    induction_scores,
    repeated_random,
)
from headscope.models.registry import BUILTINS, DEFAULT_SPECS
from headscope.training.induction import THREADS, example, train_net


@pytest.fixture(scope="module")
def model() -> InductionModel:
    return InductionModel.load()


@pytest.fixture(scope="module")
def scores(model) -> dict:
    return induction_scores(model.net, n=100, length=20, seed=0)


def check_patterns(analysis, model: InductionModel):
    T = len(analysis.tokens)
    pattern = analysis.patterns["decoder"]
    assert set(analysis.patterns) == {"decoder"}
    assert pattern.shape == (model.info.layers, model.info.heads, T, T)  # (L, H, T, T)
    assert pattern.dtype == torch.float32
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]), atol=1e-5, rtol=0)
    above = torch.ones(T, T, dtype=torch.bool).triu(1)
    assert (pattern[..., above] == 0).all()


def random_string(length: int, seed: int) -> str:
    return "".join(random.Random(seed).sample(RANDOM_SYMBOLS, length))


def test_info_and_registry(model):
    info = model.info
    assert info.name == "induction"
    assert info.kinds == {"decoder": CAUSAL_SELF}
    assert (info.layers, info.heads, info.max_tokens) == (2, 4, model.net.config.max_positions)
    assert info.generation == "continuation" and info.default_new_tokens == 0
    assert info.max_new_tokens == min(MAX_NEW_TOKENS, info.max_tokens - 1)
    assert list(BUILTINS)[0] == "minilm" and "induction" in BUILTINS
    assert "induction" in [spec.name for spec in DEFAULT_SPECS]


def test_weights_file_is_small():
    assert DEFAULT_WEIGHTS.stat().st_size <= 5_000_000


# The circuit, measured on 100 random strings of 20 distinct symbols, each written twice.


def test_layer_1_has_an_induction_head(scores):
    layer, head = scores["induction_head"]
    assert layer == 1
    assert scores["induction"][layer][head] >= 0.5
    assert max(scores["induction"][0]) < 0.2  # layer 0 cannot do it: it sees no earlier layer


def test_the_second_half_is_predicted(scores):
    assert scores["loss_second_half"] <= 0.3 * scores["loss_first_half"]
    assert scores["loss_first_half"] > 3.0  # random symbols are unpredictable the first time (ln 94 = 4.5)


def test_layer_0_has_a_previous_token_head(scores):
    layer, head = scores["previous_token_head"]
    assert layer == 0
    assert scores["previous_token"][0][head] >= 0.9


def test_scores_agree_with_the_head_metrics_of_an_analysis(model, scores):
    """headscope/analyses/metrics.py's `induction` and `previous_token`, computed independently from the Analysis of
    one repeated random string, find the same heads."""
    text = random_string(20, seed=5) * 2
    metrics = kind_metrics(model.analyze(text), "decoder")
    layer, head = scores["induction_head"]
    assert metrics["induction"][layer, head] >= 0.5
    assert int(metrics["induction"].flatten().argmax()) == layer * model.info.heads + head
    assert metrics["previous_token"][0, scores["previous_token_head"][1]] >= 0.9


def test_it_continues_a_repeated_random_string_by_copying(model):
    text = random_string(24, seed=11)
    analysis = model.analyze(text + text[:4], new_tokens=10)
    continuation = "".join(analysis.tokens[-10:])
    assert continuation == text[4:14]


# Tokens, offsets, words.


def test_tokens_offsets_special_words_for_ascii(model):
    text = "def f(x2): pass"
    a = model.analyze(text)
    assert a.model == "induction"
    assert a.tokens == ["<s>", *text]
    assert a.special == [True] + [False] * len(text)
    assert a.offsets == [None, *((i, i + 1) for i in range(len(text)))]
    assert a.words == [None, 0, 0, 0, None, 1, None, 2, 2, None, None, None, 3, 3, 3, 3]
    assert a.generated is None and a.stopped is None and a.truncated is False
    check_patterns(a, model)


def test_multibyte_characters_are_bytes_with_their_characters_span(model):
    text = "café €5"  # é is 2 bytes, € is 3
    a = model.analyze(text)
    assert len(a.tokens) == 1 + len(text.encode("utf-8")) == model.count_tokens(text)
    assert a.tokens == ["<s>", "c", "a", "f", "<0xC3>", "<0xA9>", " ", "<0xE2>", "<0x82>", "<0xAC>", "5"]
    assert a.offsets == [None, (0, 1), (1, 2), (2, 3), (3, 4), (3, 4), (4, 5), (5, 6), (5, 6), (5, 6), (6, 7)]
    assert a.words == [None, 0, 0, 0, 0, 0, None, None, None, None, 1]  # é belongs to "café"
    for token, span in zip(a.tokens[1:], a.offsets[1:], strict=True):
        assert text[span[0]:span[1]].encode("utf-8").startswith(token.encode()) or token.startswith("<0x")
    check_patterns(a, model)


def test_the_empty_text_is_the_start_token(model):
    a = model.analyze("")
    assert a.tokens == ["<s>"] and a.special == [True]
    check_patterns(a, model)


def test_patterns_are_the_networks(model):
    text = "Return the sum of a and b."
    a = model.analyze(text)
    with torch.no_grad():
        _, patterns = model.net(torch.tensor([encode(text)]))  # (L, 1, H, T, T)
    assert torch.equal(a.patterns["decoder"], patterns[:, 0])


# Generation.


def test_new_tokens_continue_greedily_and_are_marked(model):
    text = "Return the"
    n = 7
    a = model.analyze(text, new_tokens=n)
    ids = torch.tensor([encode(text)])  # (1, P)
    with torch.no_grad():
        for _ in range(n):  # the greedy loop, written out
            logits, _ = model.net(ids)
            ids = torch.cat([ids, logits[:, -1:].argmax(-1)], dim=1)
        _, patterns = model.net(ids)
    P = 1 + len(text)
    assert a.generated == [False] * P + [True] * n
    assert a.tokens[P:] == [chr(b) if b < 128 else f"<0x{b:02X}>" for b in ids[0, P:].tolist()]
    assert a.offsets[P:] == [None] * n and a.special[P:] == [False] * n
    assert a.stopped == "length"
    torch.testing.assert_close(a.patterns["decoder"], patterns[:, 0], atol=1e-6, rtol=0)
    check_patterns(a, model)


def test_zero_or_default_new_tokens_generate_nothing(model):
    for n in (None, 0):
        a = model.analyze("abc", new_tokens=n)
        assert a.generated is None and a.stopped is None and len(a.tokens) == 4


# Limits.


def test_too_many_tokens(model):
    limit = model.info.max_tokens
    text = "x" * limit  # with <s>: one token too many
    with pytest.raises(TooManyTokens) as e:
        model.analyze(text)
    assert (e.value.count, e.value.limit) == (limit + 1, limit)
    with pytest.raises(TooManyTokens):
        model.analyze("x" * (limit - 5), new_tokens=5)  # fits alone, not with its continuation
    model.analyze("x" * (limit - 6), new_tokens=5)  # exactly fits


def test_truncate_keeps_the_start_and_leaves_room_for_new_tokens(model):
    limit = model.info.max_tokens
    text = "abcdefghij" * 20
    a = model.analyze(text, truncate=True)
    assert a.truncated and len(a.tokens) == limit and "".join(a.tokens[1:]) == text[: limit - 1]
    a = model.analyze(text, truncate=True, new_tokens=8)
    assert a.truncated and len(a.tokens) == limit and a.generated.count(True) == 8
    assert "".join(a.tokens[1 : limit - 8]) == text[: limit - 9]


def test_truncate_never_splits_a_character(model):
    limit = model.info.max_tokens
    text = "é" * limit  # 2 bytes each
    a = model.analyze(text, truncate=True)
    assert a.truncated and len(a.tokens) == 1 + 2 * ((limit - 1) // 2)
    assert a.offsets[-1] == ((limit - 1) // 2 - 1, (limit - 1) // 2)


def test_analyze_batch_equals_analyze(model):
    texts = ["abc abc", "", "The first line.\nThe second line.", "naïve"]
    for n in (None, 3):
        batch = model.analyze_batch(texts, new_tokens=n)
        assert len(batch) == len(texts)
        for text, b in zip(texts, batch, strict=True):
            a = model.analyze(text, new_tokens=n)
            assert (b.tokens, b.offsets, b.words, b.generated) == (a.tokens, a.offsets, a.words, a.generated)
            torch.testing.assert_close(b.patterns["decoder"], a.patterns["decoder"], atol=1e-5, rtol=0)


# The recipe.


def test_training_data_repeat_random_strings_at_random_offsets_and_lengths():
    from headscope.training.induction import docstring_corpus

    corpus = docstring_corpus()
    rng = random.Random(3)
    examples = [example(rng, corpus, 127) for _ in range(200)]
    assert all(len(e) == 128 and e[0] == BOS_ID for e in examples)
    assert b"Return" in corpus and len(corpus) > 100_000
    periods = set()
    for e in examples:
        body = e[1:]
        for p in range(2, 21):  # the shortest period whose repeat fills the end of the example
            if body[-2 * p:-p] == body[-p:] and all(chr(b) in RANDOM_SYMBOLS for b in body[-2 * p:]):
                periods.add(p)
                break
    assert len(periods) >= 10  # many different lengths, so no fixed distance to copy from


def test_training_is_deterministic_and_seeded():
    threads = torch.get_num_threads()
    a = train_net(steps=3, seed=0).state_dict()
    b = train_net(steps=3, seed=0).state_dict()
    c = train_net(steps=3, seed=1).state_dict()
    assert torch.get_num_threads() == threads  # the recipe's THREADS setting does not leak
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert THREADS >= 1


def test_repeated_random_sequences_are_what_the_scores_measure():
    ids = repeated_random(5, 20, seed=0)
    assert ids.shape == (5, 41)
    assert (ids[:, 0] == BOS_ID).all()
    assert torch.equal(ids[:, 1:21], ids[:, 21:])
    assert all(len(set(row[1:21])) == 20 for row in ids.tolist())  # distinct symbols


def test_its_example_shows_the_induction_head(models):
    """The page's "Try an example" for this model is a random string typed twice, on which L1H1 reads the
    token after the earlier occurrence."""
    model = models["induction"]
    text = model.info.example
    half = len(text) // 2
    assert text[:half] == text[half + 1:]
    pattern = model.analyze(text).patterns["decoder"][1, 1]  # (T, T); position p + 1 is character p
    second = range(half + 2, len(text) + 1)  # second copy, after its first character
    mean = sum(float(pattern[q, q - half]) for q in second) / len(second)
    assert mean > 0.5
