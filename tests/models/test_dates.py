"""headscope/models/dates.py and headscope/data/calendar.py: the trained dates model behind the AttentionModel protocol."""

import datetime
import random
import re

import pytest
import torch

from headscope.data.calendar import (
    FIRST,
    LAST,
    MONTHS,
    WEEKDAYS,
    examples,
    heldout_examples,
    is_heldout,
    ordinal,
    random_date,
    training_stream,
    write_date,
)
from headscope.models.analysis import Analysis, TooManyTokens
from headscope.models.dates import BOS_ID, EOS_ID, DatesModel, decode_ids, encode_source, pad_batch

# Real dates written by hand, one or more per form.
HAND_WRITTEN = [
    ("Wednesday, the 25th of November 2026", "2026-11-25"),
    ("25 November 2026", "2026-11-25"),
    ("November 25, 2026", "2026-11-25"),
    ("November 25 2026", "2026-11-25"),
    ("the 1st of january 1900", "1900-01-01"),
    ("2nd of February, 2000", "2000-02-02"),
    ("NOV. 1st, 1900", "1900-11-01"),
    ("Sept. 3rd, 1999", "1999-09-03"),
    ("sept 11 2001", "2001-09-11"),
    ("3 Sep 1987", "1987-09-03"),
    ("Dec. 31st, 2099", "2099-12-31"),
    ("12th AUGUST 1961", "1961-08-12"),
    ("tHe 22nD oF mArCh 2043", "2043-03-22"),
    ("Fri, 13 March 2026", "2026-03-13"),
    ("Mon 29 February 2016", "2016-02-29"),
    ("Saturday January the 23rd, 2021", "2021-01-23"),
    ("25/11/2026", "2026-11-25"),
    ("5.3.1999", "1999-03-05"),
    ("05-03-1999", "1999-03-05"),
    ("31/12/1900", "1900-12-31"),
    ("1-1-2050", "2050-01-01"),
    ("2099-12-31", "2099-12-31"),
    ("1900-01-01", "1900-01-01"),
]


@pytest.fixture(scope="module")
def model() -> DatesModel:
    return DatesModel.load()


def check_patterns(analysis: Analysis, model: DatesModel):
    tin, tout = len(analysis.tokens), len(analysis.output_tokens)
    config = model.net.config
    shapes = {
        "encoder": (config.encoder_layers, config.heads, tin, tin),
        "decoder": (config.decoder_layers, config.heads, tout, tout),
        "cross": (config.decoder_layers, config.heads, tout, tin),
    }
    assert {k: tuple(p.shape) for k, p in analysis.patterns.items()} == shapes
    for pattern in analysis.patterns.values():
        assert pattern.dtype == torch.float32
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]), atol=1e-5, rtol=0)
    above = torch.ones(tout, tout, dtype=torch.bool).triu(1)
    assert (analysis.patterns["decoder"][..., above] == 0).all()


def test_info(model):
    info = model.info
    assert info.name == "dates"
    assert list(info.kinds) == ["encoder", "decoder", "cross"]
    assert [(k.rows, k.columns, k.causal) for k in info.kinds.values()] == [
        ("tokens", "tokens", False), ("output_tokens", "output_tokens", True), ("output_tokens", "tokens", False)]
    assert info.max_tokens == model.net.config.max_source
    assert info.heads == model.net.config.heads
    assert info.layers == max(model.net.config.encoder_layers, model.net.config.decoder_layers)


@pytest.mark.parametrize(("text", "iso"), HAND_WRITTEN)
def test_hand_written_dates(model, text, iso):
    assert model.analyze(text).output_text == iso


def greedy_outputs(model: DatesModel, texts: list[str]) -> list[str]:
    """Batched greedy decoding, the output up to </s>."""
    source, source_pad_mask = pad_batch([encode_source(text) for text in texts])  # (B, S), (B, S)
    generated = model.net.generate(source, BOS_ID, EOS_ID, source_pad_mask).tolist()  # (B, 1 + n)
    return [decode_ids(row[1 : row.index(EOS_ID)] if EOS_ID in row else row[1:]) for row in generated]


def test_heldout_accuracy(model):
    pairs = heldout_examples(400, seed=777)
    outputs = greedy_outputs(model, [text for text, _ in pairs])
    wrong = [(text, iso, out) for (text, iso), out in zip(pairs, outputs, strict=True) if out != iso]
    assert 1 - len(wrong) / len(pairs) >= 0.99, wrong


LONG_FORMS = {
    "weekday, the Nth of Month, year": lambda d: f"{WEEKDAYS[d.weekday()]}, the {ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}",
    "weekday the Nth of Month year": lambda d: f"{WEEKDAYS[d.weekday()]} the {ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    "weekday, Month the Nth, year": lambda d: f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} the {ordinal(d.day)}, {d.year}",
    "WEEKDAY, DD.MM.YYYY": lambda d: f"{WEEKDAYS[d.weekday()].upper()}, {d.day:02d}.{d.month:02d}.{d.year}",
}


@pytest.mark.parametrize("form", LONG_FORMS)
def test_heldout_accuracy_of_the_longest_forms(model, form):
    """The longest texts are the rarest in the random mix: check them on their own."""
    rng = random.Random(form)
    dates = [random_date(rng, heldout=True) for _ in range(100)]
    outputs = greedy_outputs(model, [LONG_FORMS[form](d) for d in dates])
    wrong = [(d.isoformat(), out) for d, out in zip(dates, outputs, strict=True) if out != d.isoformat()]
    assert len(wrong) <= 1, wrong


def test_tokens_offsets_and_specials(model):
    text = "5 Mär 1999"  # ä is not in the vocabulary: one <unk> in its own position
    analysis = model.analyze(text)
    assert analysis.model == "dates"
    assert analysis.tokens == ["<s>", "5", " ", "M", "<unk>", "r", " ", "1", "9", "9", "9", "</s>"]
    assert analysis.offsets == [None] + [(i, i + 1) for i in range(len(text))] + [None]
    assert analysis.special == [True] + [False] * len(text) + [True]
    assert all(text[a:b] == t for t, span in zip(analysis.tokens, analysis.offsets, strict=True) if span and t != "<unk>" for a, b in [span])
    assert analysis.truncated is False
    check_patterns(analysis, model)


def test_output_tokens_are_the_decoder_rows(model):
    analysis = model.analyze("Wednesday, the 25th of November 2026")
    assert analysis.stopped == "end"
    assert analysis.output_tokens == ["<s>", *analysis.output_text]  # row i produced character i, the last row </s>
    check_patterns(analysis, model)


@torch.no_grad()
def test_greedy_decoding_step_by_step_equals_rerun(model):
    text = "the 3rd of Sept. 1987"
    analysis = model.analyze(text)
    source = torch.tensor([encode_source(text)])  # (1, S)
    ids = [BOS_ID]
    while len(ids) <= model.net.config.max_target:
        logits, _ = model.net(source, torch.tensor([ids[-model.net.config.max_target :]]))  # (1, t, V)
        ids.append(int(logits[0, -1].argmax()))
        if ids[-1] == EOS_ID:
            break
    assert decode_ids(ids) == analysis.output_text
    rows = torch.tensor([ids[:-1]])  # (1, T): the positions that made each prediction
    logits, patterns = model.net(source, rows)
    assert logits[0].argmax(-1).tolist() == ids[1:]
    for kind, pattern in patterns.items():
        torch.testing.assert_close(analysis.patterns[kind], pattern[:, 0], atol=1e-6, rtol=0)


def test_too_many_tokens(model):
    limit = model.info.max_tokens
    model.analyze("1" * (limit - 2))  # fits exactly
    with pytest.raises(TooManyTokens) as caught:
        model.analyze("1" * (limit - 1))
    assert (caught.value.count, caught.value.limit, caught.value.model) == (limit + 1, limit, "dates")


def test_truncate(model):
    limit = model.info.max_tokens
    text = "25 November 2026 " * 10
    analysis = model.analyze(text, truncate=True)
    assert analysis.truncated is True
    assert len(analysis.tokens) == limit
    assert analysis.tokens[1:-1] == list(text[: limit - 2])
    assert analysis.offsets[-2] == (limit - 3, limit - 2)
    check_patterns(analysis, model)


@pytest.mark.parametrize("text", ["hello", "", "????????", "12345678901234567890"])
def test_untrained_input_still_returns_output_and_attention(model, text):
    analysis = model.analyze(text)
    assert isinstance(analysis.output_text, str)
    assert analysis.output_tokens[0] == "<s>"
    assert 2 <= len(analysis.output_tokens) <= model.net.config.max_target
    check_patterns(analysis, model)


def test_analyze_batch_equals_analyze(model):
    texts = ["25/11/2026", "hello", "Nov. 1st, 1900"]
    for one, batched in zip([model.analyze(t) for t in texts], model.analyze_batch(texts), strict=True):
        assert (one.tokens, one.output_text, one.output_tokens) == (batched.tokens, batched.output_text, batched.output_tokens)
        for kind in one.patterns:
            assert torch.equal(one.patterns[kind], batched.patterns[kind])


# --- the data generator -------------------------------------------------------------------------


def test_ordinal():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 30, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "30th", "31st"]


def test_generated_pairs_are_true_dates():
    """Every generated text names its ISO date: numbers, month and weekday all agree."""
    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    for text, iso in examples(3000, seed=5):
        date = datetime.date.fromisoformat(iso)
        assert FIRST <= date <= LAST
        lower = text.lower()
        assert str(date.year) in text
        named = [i + 1 for i, m in enumerate(months) if re.search(rf"\b{m}", lower)]
        if named:
            assert named == [date.month], text
        else:
            numbers = [int(n) for n in re.findall(r"\d+", text)]
            expected = [date.year, date.month, date.day] if text[:4].isdigit() else [date.day, date.month, date.year]
            assert numbers == expected, text
        for weekday in WEEKDAYS:
            if re.match(weekday[:3].lower(), lower):
                assert weekday == WEEKDAYS[date.weekday()], text


def test_every_form_occurs():
    texts = [t for t, _ in examples(3000, seed=6)]
    patterns = {
        "iso": r"^\d{4}-\d\d-\d\d$",
        "numeric /": r"\d/\d+/\d{4}$",
        "numeric .": r"\d\.\d+\.\d{4}$",
        "numeric - unpadded": r"(^|\s)\d-\d-\d{4}$",
        "day first": r"^(\w+,? )?(the )?\d+\w* (of )?[a-z]",
        "month first": r"^(\w+,? )?[a-z]{3}[a-z]*\.? (the )?\d",
        "of": r"\d\w* of ",
        "weekday": r"^(mon|tue|wed|thu|fri|sat|sun)",
        "sept.": r"\bsept\.",
        "ordinal": r"\d(st|nd|rd|th)\b",
        "UPPER": r"^[^a-z]*[A-Z]{3}[^a-z]*$",
    }
    for name, pattern in patterns.items():
        flags = 0 if name == "UPPER" else re.IGNORECASE
        assert any(re.search(pattern, t, flags) for t in texts), name


def test_heldout_dates_never_reach_training():
    assert all(is_heldout(datetime.date.fromisoformat(iso)) for _, iso in heldout_examples(500))
    stream = training_stream(seed=3, batch_size=256)
    for _ in range(4):
        assert not any(is_heldout(datetime.date.fromisoformat(iso)) for _, iso in next(stream))
    days = [FIRST + datetime.timedelta(days=i) for i in range(0, (LAST - FIRST).days, 7)]
    share = sum(map(is_heldout, days)) / len(days)
    assert 0.08 < share < 0.12


def test_generation_is_seeded():
    assert examples(50, seed=9) == examples(50, seed=9)
    assert examples(50, seed=9) != examples(50, seed=10)
    rng_a, rng_b = random.Random(1), random.Random(1)
    assert write_date(FIRST, rng_a, "numeric") == write_date(FIRST, rng_b, "numeric")


def test_output_probs_are_the_models_own_softmax(model):
    """Recomputed from a teacher-forced pass here: row i's softmax at the token it produced."""
    import torch

    from headscope.models.dates import BOS_ID, EOS_ID, VOCAB, encode_source

    analysis = model.analyze("1 May 2000")
    ids = [VOCAB.index(t) for t in analysis.output_tokens]
    produced = [*ids[1:], EOS_ID] if analysis.stopped == "end" else ids[1:]
    with torch.no_grad():
        logits, _ = model.net(torch.tensor([encode_source("1 May 2000")]), torch.tensor([ids]))
    expected = logits[0].softmax(-1)[torch.arange(len(produced)), torch.tensor(produced)]
    assert ids[0] == BOS_ID
    torch.testing.assert_close(torch.tensor(analysis.output_probs), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("text", "valid"), [("2024-02-29", True), ("2023-02-29", False), ("1899-12-31", False),
                                             ("2099-12-31", True), ("2100-01-01", False), ("0-07-07-00", False)])
def test_is_valid_date(text, valid):
    from headscope.models.dates import is_valid_date

    assert is_valid_date(text) is valid
