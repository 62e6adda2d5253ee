"""Our BertEncoder running all-MiniLM-L6-v2 equals Hugging Face transformers, tokens and every
layer's and head's attention weights (to 1e-5), and tokenization agrees with the pure-Python
BertTokenizer. transformers is a test-only dependency: the independent reference."""

import unicodedata

import pytest
import torch

from headscope.models.analysis import TooManyTokens
from tests.conftest import hf_attention

TOL = 1e-5

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Wait... what?! She said: \"no\"; he said, (maybe) [yes] -- 3.14% of $1,000 & 42 #hashtags @you.",
    "Crème brûlée, naïve façade, Ångström, São Paulo, Zürich, résumé.",
    "東京は日本の首都です。北京和上海也是大城市。",
    "I love 🍕 and 🚀 launches 🎉🎉 — emoji and symbols ™ © ½.",
    "antidisestablishmentarianism unbelievably tokenization",
    "repeat repeat repeat the the the 1 1 1",
]


WORDS = "attention heads read from earlier words while the model builds meaning".split()  # one piece each


def long_text(pieces: int = 510) -> str:
    """A text of exactly `pieces` word pieces: 510 make 512 tokens with [CLS] and [SEP]."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(pieces))


@pytest.mark.parametrize("text", SENTENCES + [long_text()])
def test_tokens_and_weights_equal_transformers(minilm, hf_bert, text):
    tokens, reference = hf_attention(hf_bert, text)  # (L, H, T, T)
    analysis = minilm.analyze(text)
    assert analysis.tokens == tokens
    pattern = analysis.patterns["encoder"]
    assert pattern.shape == (6, 12, len(tokens), len(tokens))
    torch.testing.assert_close(pattern, reference, atol=TOL, rtol=0)


def test_hidden_state_equals_transformers(minilm, hf_bert):
    model, tokenizer = hf_bert
    ids = torch.tensor([tokenizer(SENTENCES[1])["input_ids"]])
    with torch.no_grad():
        ours, _ = minilm.encoder(ids)
        reference = model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=0)


def test_512_token_text_is_accepted_and_513_refused(minilm):
    assert len(minilm.analyze(long_text(510)).tokens) == 512
    with pytest.raises(TooManyTokens) as info:
        minilm.analyze(long_text(511))
    assert (info.value.count, info.value.limit) == (513, 512)
    assert "513" in str(info.value) and "512" in str(info.value)


def test_truncate_cuts_to_fit_and_says_so(minilm):
    analysis = minilm.analyze(long_text(700), truncate=True)
    assert analysis.truncated
    assert len(analysis.tokens) == 512
    assert analysis.tokens[0] == "[CLS]" and analysis.tokens[-1] == "[SEP]"
    assert analysis.patterns["encoder"].shape[-1] == 512
    assert analysis.tokens[1:511] == [WORDS[i % len(WORDS)] for i in range(510)]  # the text's start is kept
    assert not minilm.analyze("short", truncate=True).truncated


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


@pytest.mark.parametrize("text", SENTENCES)
def test_offsets_point_at_each_token_in_the_text(minilm, text):
    analysis = minilm.analyze(text)
    assert analysis.offsets[0] is None and analysis.offsets[-1] is None  # [CLS], [SEP]
    assert analysis.special[0] and analysis.special[-1] and not any(analysis.special[1:-1])
    for token, span in zip(analysis.tokens[1:-1], analysis.offsets[1:-1], strict=True):
        start, end = span
        piece = text[start:end]
        assert piece, (token, span)
        if token != "[UNK]":
            assert strip_accents(piece).lower() == token.removeprefix("##"), (token, piece)


def test_batch_with_padding_equals_single_runs(minilm):
    texts = SENTENCES[:4]
    batch = minilm.analyze_batch(texts)
    for text, analysis in zip(texts, batch, strict=True):
        single = minilm.analyze(text)
        assert analysis.tokens == single.tokens
        torch.testing.assert_close(analysis.patterns["encoder"], single.patterns["encoder"], atol=TOL, rtol=0)


def test_literal_special_token_text_is_not_padding(minilm):
    """A user typing "[PAD]" gets a real token, attended to like any other, even in a batch."""
    short, padded = minilm.analyze_batch(["a [PAD] b", "a much longer sentence than the first one"])
    assert "[PAD]" in short.tokens
    j = short.tokens.index("[PAD]")
    assert short.offsets[j] is not None
    assert short.patterns["encoder"][..., j].sum() > 0
