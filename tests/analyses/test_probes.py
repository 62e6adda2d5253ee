"""headscope/analyses/probes.py, POST /api/probe and `headscope probe`: each head as a classifier of a relation between words
(Clark et al. 2019), checked against an independent numpy computation on handmade attention patterns, on MiniLM
(transformers' BertModel attentions and the pure-Python BERT tokenizer's words) and on Hugging Face checkpoints."""

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from headscope.analyses.heads import padded_batches as batches
from headscope.analyses.probes import (
    NotProbeable,
    PairsError,
    best_offset,
    occurrences,
    parse_pairs,
    probe,
    probe_kinds,
    tally_analysis,
    word_spans,
)
from headscope.data import PROBE_SETS
from headscope.models.analysis import CROSS, DECODER_SELF, SELF, Analysis, ModelInfo
from headscope.server.app import create_app
from headscope.server.settings import Settings
from tests.conftest import hf_attention

ROOT = Path(__file__).resolve().parents[2]
DET_NOUN = PROBE_SETS / "det_noun.jsonl"
OBJ_VERB = PROBE_SETS / "obj_verb.jsonl"


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


# ---- the independent reference -------------------------------------------------------------------------------


def reference_correct(pattern: np.ndarray, token_words: list, pairs: list[tuple[int, int]]) -> np.ndarray:
    """(L, H) pairs right, by loops: for each head and pair, the from-word's tokens' rows averaged, each word's
    weight the sum of its tokens' columns, the first largest word (tokens of no word left out)."""
    L, H = pattern.shape[:2]
    words = sorted({w for w in token_words if w is not None})
    correct = np.zeros((L, H), dtype=np.int64)
    for layer in range(L):
        for head in range(H):
            for source, target in pairs:
                rows = [t for t, w in enumerate(token_words) if w == source]
                row = pattern[layer, head, rows].astype(np.float64).mean(axis=0)
                scores = [row[[t for t, w in enumerate(token_words) if w == v]].sum() for v in words]
                correct[layer, head] += words[int(np.argmax(scores))] == target
    return correct


def handmade(pattern: np.ndarray, tokens: list[str], words: list, text: str, offsets: list) -> Analysis:
    return Analysis(model="handmade", tokens=tokens, offsets=offsets, special=[w is None for w in words], words=words,
                    patterns={"encoder": torch.tensor(pattern, dtype=torch.float32)}, layout={"encoder": SELF})


# "[CLS] the big dog bark ##s . [SEP]": words the=0 big=1 dog=2 barks=3 .=4
TEXT = "the big dog barks."
TOKENS = ["[CLS]", "the", "big", "dog", "bark", "##s", ".", "[SEP]"]
WORDS = [None, 0, 1, 2, 3, 3, 4, None]
OFFSETS = [None, (0, 3), (4, 7), (8, 11), (12, 16), (16, 17), (17, 18), None]


def planted() -> np.ndarray:
    """Two layers, two heads. L0H0: every token's largest weight on [CLS], then on the next word; L0H1: on
    itself; L1H0: from "the", 0.3 on "big" but 0.2 + 0.2 on "bark" + "##s" (the sum makes "barks" win), else
    uniform; L1H1: uniform (so "barks", with two tokens, gets the most), but from "dog" a tie of "the", "big" and
    "barks" (the earliest wins)."""
    T = len(TOKENS)
    pattern = np.zeros((2, 2, T, T))
    nxt = {1: 2, 2: 3, 3: 4, 4: 6, 5: 6, 6: 7, 0: 1, 7: 7}
    for t in range(T):
        pattern[0, 0, t, 0] = 0.6
        pattern[0, 0, t, nxt[t]] += 0.3
        pattern[0, 0, t, 7] += 0.1
        pattern[0, 1, t, t] = 1.0
        pattern[1, 0, t, :] = 1.0 / T
        pattern[1, 1, t, :] = 1.0 / T
    pattern[1, 0, 1] = [0.1, 0.0, 0.3, 0.1, 0.2, 0.2, 0.0, 0.1]
    pattern[1, 1, 3] = [0.0, 0.25, 0.25, 0.0, 0.25, 0.0, 0.0, 0.25]
    return pattern


def test_planted_heads_predict_as_designed_and_equal_the_reference():
    pattern = planted()
    analysis = handmade(pattern, TOKENS, WORDS, TEXT, OFFSETS)
    pairs = parse_pairs(jsonl({"sentence": TEXT, "from": "the", "to": "big"},
                              {"sentence": TEXT, "from": "the", "to": "barks"},
                              {"sentence": TEXT, "from": "dog", "to": "barks"},
                              {"sentence": TEXT, "from": "barks", "to": "dog"}))
    tally = tally_analysis(analysis, pairs, ["encoder"])
    assert tally.pairs == 4 and tally.skipped == []
    correct = tally.correct["encoder"]
    # L0H0 next word: the->big, dog->barks right; L0H1 itself: never; L1H0: "barks" from every word: the->barks,
    # dog->barks; L1H1: "barks" from "the", but "the" from "dog" (the tie), "barks" from "barks"
    assert correct.tolist() == [[2, 0], [2, 1]]
    np.testing.assert_array_equal(correct, reference_correct(pattern, WORDS, [(0, 1), (0, 3), (2, 3), (3, 2)]))
    assert tally.offsets == Counter({1: 2, 3: 1, -1: 1})


def test_random_patterns_equal_the_reference():
    rng = np.random.default_rng(0)
    pattern = rng.dirichlet(np.ones(len(TOKENS)), size=(3, 4, len(TOKENS)))  # (L, H, T, T), rows sum to 1
    analysis = handmade(pattern, TOKENS, WORDS, TEXT, OFFSETS)
    names = ["the", "big", "dog", "barks", "."]
    records = [{"sentence": TEXT, "from": a, "to": b} for a in names for b in names if a != b]
    tally = tally_analysis(analysis, parse_pairs(jsonl(*records)), ["encoder"])
    expected = reference_correct(pattern, WORDS, [(names.index(r["from"]), names.index(r["to"])) for r in records])
    assert tally.pairs == 20
    np.testing.assert_array_equal(tally.correct["encoder"], expected)


def test_word_spans_number_words_in_order_and_span_their_tokens():
    analysis = handmade(planted(), TOKENS, WORDS, TEXT, OFFSETS)
    positions, spans = word_spans(analysis)
    assert positions == [-1, 0, 1, 2, 3, 3, 4, -1]
    assert [TEXT[s:e] for s, e in spans] == ["the", "big", "dog", "barks", "."]


# ---- the baseline ----------------------------------------------------------------------------------------------


def test_best_offset_is_the_commonest_ties_to_nearer_then_left():
    assert best_offset(Counter({1: 3, 2: 5, -1: 1})) == 2
    assert best_offset(Counter({1: 3, -1: 3})) == -1
    assert best_offset(Counter({2: 3, -1: 3, -3: 3})) == -1
    assert best_offset(Counter({4: 1})) == 4


def test_baseline_on_handmade_pairs(minilm):
    pairs = parse_pairs(jsonl(
        {"sentence": "The cat sat on the mat.", "from": "The", "to": "cat"},  # +1
        {"sentence": "The cat sat on the mat.", "from": "the", "to": "mat"},  # +1
        {"sentence": "A big red ball.", "from": "A", "to": "ball"},  # +3
        {"sentence": "A big red ball.", "from": "ball", "to": "A"},  # -3
        {"sentence": "A big red ball.", "from": "ball", "to": "."},  # +1: the tokenizer's "." is a word
    ))
    result = probe(minilm, pairs)
    assert result["baseline"]["offset"] == 1 and result["baseline"]["correct"] == 3
    assert result["baseline"]["accuracy"] == pytest.approx(3 / 5)
    assert result["baseline"]["offsets"] == [{"offset": -3, "pairs": 1, "accuracy": 0.2},
                                             {"offset": 1, "pairs": 3, "accuracy": 0.6},
                                             {"offset": 3, "pairs": 1, "accuracy": 0.2}]


# ---- parsing ---------------------------------------------------------------------------------------------------


def test_occurrences_are_whole_words():
    s = "The theme of the other, the end's."
    assert occurrences(s, "the") == [(13, 16), (24, 27)]
    assert occurrences(s, "The") == [(0, 3)]
    assert occurrences(s, "'s") == [(31, 33)]
    assert occurrences(s, ".") == [(33, 34)]
    assert occurrences(s, "he") == []


def test_occurrence_numbers_pick_the_word():
    pairs = parse_pairs(jsonl({"sentence": "the dog saw the cat", "from": "the", "from_occurrence": 2, "to": "cat"},
                              {"sentence": "the dog saw the cat", "from": "dog", "to": "the", "to_occurrence": 1}))
    assert (pairs[0].source.start, pairs[0].source.occurrence) == (12, 2)
    assert (pairs[1].target.start, pairs[1].line) == (0, 2)


@pytest.mark.parametrize("line, words", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"sentence": "a b", "from": "a"}', "missing to"),
    ('{"sentence": "a b", "from": "a", "to": "b", "label": "x"}', 'unknown field "label"'),
    ('{"sentence": "", "from": "a", "to": "b"}', "sentence must be a non-empty string"),
    ('{"sentence": 3, "from": "a", "to": "b"}', "sentence must be a non-empty string"),
    ('{"sentence": "a b", "from": 1, "to": "b"}', "from must be a word"),
    ('{"sentence": "a b", "from": " a", "to": "b"}', "spaces at its ends"),
    ('{"sentence": "a b", "from": "c", "to": "b"}', 'from "c" is not a whole word of the sentence'),
    ('{"sentence": "a b", "from": "a", "to": "ab"}', 'to "ab" is not a whole word'),
    ('{"sentence": "the a the", "from": "the", "to": "a"}', "occurs 2 times in the sentence: say which with "
     "from_occurrence (1 to 2)"),
    ('{"sentence": "the a the", "from": "the", "from_occurrence": 3, "to": "a"}', "from_occurrence is 3 but"),
    ('{"sentence": "a b", "from": "a", "from_occurrence": 0, "to": "b"}', "from_occurrence must be a whole number"),
    ('{"sentence": "a b", "from": "a", "from_occurrence": true, "to": "b"}', "from_occurrence must be a whole"),
    ('{"sentence": "a b", "from": "a", "to": "a"}', "from and to are the same word"),
    ('{"sentence": "a \\ud800 b", "from": "a", "to": "b"}', "lone surrogate"),
])
def test_a_bad_line_is_an_error_naming_it(line, words):
    good = json.dumps({"sentence": "a b", "from": "a", "to": "b"})
    with pytest.raises(PairsError) as e:
        parse_pairs(f"{good}\n\n{line}\n{good}\n")
    assert e.value.problems[0][0] == 3 and words in e.value.problems[0][1]
    assert str(e.value).startswith("line 3: ")


def test_every_bad_line_is_reported_and_an_empty_file_too():
    with pytest.raises(PairsError) as e:
        parse_pairs("x\n" * 25)
    assert [line for line, _ in e.value.problems] == list(range(1, 26))
    assert "and 5 more bad lines" in str(e.value)
    with pytest.raises(PairsError, match="no pairs"):
        parse_pairs("\n  \n")


def test_batches_bound_sentences_and_padded_tokens():
    sentences = [("a", 3), ("b", 4), ("c", 5), ("d", 10), ("e", 600)]
    assert batches(sentences, 2, 1024) == [["a", "b"], ["c", "d"], ["e"]]
    assert batches(sentences, 32, 15) == [["a", "b", "c"], ["d"], ["e"]]  # 3 x 5 = 15; 4 x 10 > 15; 600 alone
    assert batches([], 32, 1024) == []


def test_examples_parse():
    assert len(parse_pairs(DET_NOUN.read_text())) == 45
    assert len(parse_pairs(OBJ_VERB.read_text())) == 45


# ---- kinds, words and skipping ---------------------------------------------------------------------------------


def test_only_kinds_over_the_input_tokens_are_probed():
    info = ModelInfo("x", "", 1, 1, 8, {"a": SELF, "b": DECODER_SELF, "c": CROSS})
    assert probe_kinds(info) == ["a"]
    with pytest.raises(NotProbeable, match="no attention kind"):
        probe_kinds(ModelInfo("x", "", 1, 1, 8, {"b": DECODER_SELF, "c": CROSS}))


def test_pairs_the_model_cannot_use_are_skipped_with_reasons(minilm):
    pairs = parse_pairs(jsonl(
        {"sentence": "I don't know.", "from": "don't", "to": "know"},
        {"sentence": "The cat sat.", "from": "The", "to": "cat"},
        {"sentence": "word " * 600, "from": "word", "from_occurrence": 1, "to": "word", "to_occurrence": 2},
    ))
    result = probe(minilm, pairs)
    assert result["pairs"] == 1 and result["sentences"] == 2  # the long one never ran
    assert result["skipped"] == [
        {"line": 1, "reason": 'minilm splits "don\'t" into 3 words: "don", "\'", "t"'},
        {"line": 3, "reason": "sentence has 602 tokens but minilm takes at most 512"},
    ]


# ---- MiniLM against transformers -------------------------------------------------------------------------------


def bert_words(tokens: list[str]) -> list:
    """Word index of each WordPiece token: ## pieces continue a word; [CLS], [SEP] belong to none."""
    words, count = [], -1
    for token in tokens:
        if token in ("[CLS]", "[SEP]"):
            words.append(None)
            continue
        if not token.startswith("##"):
            count += 1
        words.append(count)
    return words


def word_index(tokens: list[str], words: list, sentence: str, text: str, occurrence: int) -> int:
    """The word whose pieces spell `text` (lowercased, as the tokenizer does), at the occurrence-th place where
    `text` stands in the sentence as it is written (a regex with \\b: which of the lowercased matches it is)."""
    exact = [m.start() for m in re.finditer(rf"\b{re.escape(text)}\b", sentence)]
    lowered = [m.start() for m in re.finditer(rf"\b{re.escape(text)}\b", sentence, re.IGNORECASE)]
    spelled = {}
    for token, w in zip(tokens, words, strict=True):
        if w is not None:
            spelled[w] = spelled.get(w, "") + token.removeprefix("##")
    hits = [w for w in sorted(spelled) if spelled[w] == text.lower()]
    assert len(hits) == len(lowered)
    return hits[lowered.index(exact[occurrence - 1])]


@pytest.mark.parametrize("path", [DET_NOUN, OBJ_VERB], ids=lambda p: p.stem)
def test_minilm_accuracy_and_baseline_equal_transformers(minilm, hf_bert, path):
    pairs = parse_pairs(path.read_text())
    result = probe(minilm, pairs, batch_size=8)
    assert result["pairs"] == 45 and result["skipped"] == []
    correct = np.zeros((6, 12), dtype=np.int64)
    offsets = Counter()
    for sentence in dict.fromkeys(p.sentence for p in pairs):
        tokens, attention = hf_attention(hf_bert, sentence)  # (L, H, T, T) from transformers' BertModel
        words = bert_words(tokens)
        indexed = [(word_index(tokens, words, sentence, p.source.text, p.source.occurrence),
                    word_index(tokens, words, sentence, p.target.text, p.target.occurrence))
                   for p in pairs if p.sentence == sentence]
        correct += reference_correct(attention.double().numpy(), words, indexed)
        offsets.update(t - s for s, t in indexed)
    np.testing.assert_array_equal(np.array(result["kinds"]["encoder"]["correct"]), correct)
    np.testing.assert_allclose(result["kinds"]["encoder"]["accuracy"], correct / 45, rtol=1e-12)
    k = max(offsets.values())
    assert result["baseline"]["correct"] == k and offsets[result["baseline"]["offset"]] == k
    best = result["best"][0]
    assert best["correct"] == correct.max() and correct[best["layer"], best["head"]] == correct.max()


def test_the_examples_have_minilm_heads_well_above_the_baseline(minilm):
    """What the README reports: on both sets one head beats the best offset by at least 0.2."""
    for path in (DET_NOUN, OBJ_VERB):
        result = probe(minilm, parse_pairs(path.read_text()))
        assert result["best"][0]["above_baseline"] >= 0.2, (path.stem, result["best"][0], result["baseline"])


# ---- every served model ---------------------------------------------------------------------------------------


def reference_for(analysis: Analysis, kind: str, pairs) -> np.ndarray:
    """reference_correct on an analysis, with word positions by the model's word ids in order of first token."""
    order = list(dict.fromkeys(w for w in analysis.words if w is not None))
    token_words = [None if w is None else order.index(w) for w in analysis.words]
    positions, spans = word_spans(analysis)
    hit = lambda ref: next(p for p, (s, e) in enumerate(spans) if s < ref.end and e > ref.start)  # noqa: E731
    return reference_correct(analysis.patterns[kind].numpy(), token_words, [(hit(p.source), hit(p.target)) for p in pairs])


@pytest.mark.parametrize("name", ["dates", "induction"])
def test_builtin_character_models_probe_their_input_kind(models, name):
    model = models[name]
    text = "On the 25th of November 2026 the cat sat on the mat"
    pairs = parse_pairs(jsonl({"sentence": text, "from": "the", "from_occurrence": 1, "to": "November"},
                              {"sentence": text, "from": "cat", "to": "sat"},
                              {"sentence": text, "from": "mat", "to": "cat"}))
    result = probe(model, pairs)
    kinds = [k for k, layout in model.info.kinds.items() if layout.rows == layout.columns == "tokens"]
    assert list(result["kinds"]) == kinds and result["pairs"] == 3
    analysis = model.analyze(text, new_tokens=1 if model.info.generation == "output" else None)
    for kind in kinds:
        np.testing.assert_array_equal(result["kinds"][kind]["correct"], reference_for(analysis, kind, pairs))


def test_a_causal_kind_says_which_pairs_no_head_can_predict(models):
    """On a causal kind a word sees only earlier words: pairs whose to-word comes later count as unreachable, no
    head gets more than the reachable ones right, and the answer says so in words; an encoder's kinds do not."""
    text = "On the 25th of November 2026 the cat sat on the mat"
    pairs = parse_pairs(jsonl({"sentence": text, "from": "the", "from_occurrence": 1, "to": "November"},  # later
                              {"sentence": text, "from": "cat", "to": "sat"},  # later
                              {"sentence": text, "from": "mat", "to": "cat"}))  # earlier
    causal = probe(models["induction"], pairs)["kinds"]
    (kind, data), = causal.items()
    assert models["induction"].info.kinds[kind].causal
    assert data["reachable"] == 1 and np.max(data["correct"]) <= 1
    assert "2 of 3 pairs" in data["note"] and "0.333" in data["note"]
    for data in probe(models["dates"], pairs)["kinds"].values():  # the encoder's self-attention sees every word
        assert data["reachable"] == 3 and data["note"] is None


def test_cli_says_why_a_causal_model_scores_low(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(DET_NOUN.read_text())
    r = headscope("probe", path, "--model", "induction")
    assert r.returncode == 0 and "note: " in r.stderr and "is causal" in r.stderr, r.stderr


@pytest.mark.parametrize("family", ["gpt2", "t5", "roberta"])
def test_hugging_face_checkpoints_equal_transformers(family, tmp_path):
    from headscope.models.registry import ModelSpec, load_model
    from tests.checkpoints import build, save

    torch.set_num_threads(1)
    tokenizer, reference = build(family)
    model = load_model(ModelSpec(f"tiny-{family}", str(save(tmp_path / family, tokenizer, reference))))
    text = "The cat sat on the mat because it was warm."
    pairs = parse_pairs(jsonl({"sentence": text, "from": "The", "to": "cat"},
                              {"sentence": text, "from": "it", "to": "cat"},
                              {"sentence": text, "from": "mat", "to": "sat"},
                              {"sentence": text, "from": "was", "to": "it"}))
    result = probe(model, pairs)
    assert result["pairs"] == 4, result["skipped"]
    kind = next(iter(result["kinds"]))
    encoding = tokenizer(text, return_offsets_mapping=False)
    ids = torch.tensor([encoding["input_ids"]])
    with torch.no_grad():
        if reference.config.is_encoder_decoder:
            out = reference(input_ids=ids, decoder_input_ids=torch.tensor([[reference.config.decoder_start_token_id]]),
                            output_attentions=True)
            attentions = out.encoder_attentions
        else:
            attentions = reference(input_ids=ids, output_attentions=True).attentions
    pattern = torch.stack(attentions)[:, 0].double().numpy()  # (L, H, T, T) from transformers itself
    analysis = model.analyze(text, new_tokens=1 if model.info.generation == "output" else None)
    assert analysis.tokens == tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    order = list(dict.fromkeys(w for w in analysis.words if w is not None))
    token_words = [None if w is None else order.index(w) for w in analysis.words]
    positions, spans = word_spans(analysis)
    hit = lambda ref: next(p for p, (s, e) in enumerate(spans) if s < ref.end and e > ref.start)  # noqa: E731
    expected = reference_correct(pattern, token_words, [(hit(p.source), hit(p.target)) for p in pairs])
    np.testing.assert_array_equal(result["kinds"][kind]["correct"], expected)


# ---- the API ---------------------------------------------------------------------------------------------------


def test_api_answers_accuracy_baseline_and_best_heads(client, minilm):
    pairs = DET_NOUN.read_text()
    r = client.post("/api/probe", json={"pairs": pairs})
    assert r.status_code == 200
    body = r.json()
    assert body == json.loads(json.dumps(probe(minilm, parse_pairs(pairs))))
    assert body["model"] == "minilm" and body["dims"] == ["layer", "head"] and body["pairs"] == 45
    assert body["kinds"]["encoder"]["layout"] == {"rows": "tokens", "columns": "tokens", "causal": False}
    assert len(body["best"]) == 10 and body["best"][0]["accuracy"] == max(map(max, body["kinds"]["encoder"]["accuracy"]))
    assert set(body["definitions"]) == {"prediction", "accuracy", "baseline"}


def test_api_describes_the_format_limits_and_examples(client):
    body = client.get("/api/probe/info").json()
    assert body["limits"] == {"probe_max_chars": 1_000_000, "probe_max_pairs": 2000, "probe_max_tokens": 100_000}
    assert [e["name"] for e in body["examples"]] == ["det_noun", "obj_verb"]
    assert body["examples"][0]["pairs"] == DET_NOUN.read_text() and body["examples"][0]["file"] == "headscope/data/probe_sets/det_noun.jsonl"
    assert "from_occurrence" in body["format"]
    assert client.get("/docs/probes.md").text.startswith("# Probes")


def test_api_bad_lines_are_422_naming_each(client):
    text = jsonl({"sentence": "a b", "from": "a", "to": "b"}) + "oops\n" + jsonl({"sentence": "a b", "from": "c", "to": "b"})
    r = client.post("/api/probe", json={"pairs": text})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_pairs" and body["detail"].startswith("line 2: not valid JSON")
    assert [e["line"] for e in body["lines"]] == [2, 3] and '"c" is not a whole word' in body["lines"][1]["error"]


@pytest.fixture(scope="module")
def small_client(models):
    settings = Settings(probe_max_chars=400, probe_max_pairs=3, probe_max_tokens=30)
    with TestClient(create_app(settings, models=models)) as c:
        yield c


def test_api_limits_are_422_naming_them(small_client):
    line = jsonl({"sentence": "The cat sat on the mat.", "from": "The", "to": "cat"})
    r = small_client.post("/api/probe", json={"pairs": line * 4})
    assert r.status_code == 422 and r.json()["error"] == "too_many_pairs" and r.json()["limit"] == 3
    assert "probe_max_pairs" in r.json()["detail"]
    r = small_client.post("/api/probe", json={"pairs": line * 7})
    assert r.status_code == 422 and r.json()["error"] == "too_many_characters" and r.json()["limit"] == 400
    long = jsonl({"sentence": "The cat sat on the mat " + "and the dog slept " * 5, "from": "The", "to": "cat"})
    r = small_client.post("/api/probe", json={"pairs": long + line})
    assert r.status_code == 422 and r.json()["error"] == "too_many_tokens" and r.json()["limit"] == 30
    assert small_client.post("/api/probe", json={"pairs": line * 3}).status_code == 200


def test_api_lone_surrogates_are_named_not_a_500(client):
    for line in ('{"sentence": "a b", "from": "\\ud800", "to": "b"}', '{"sentence": "a b", "\\udc00": 1}',
                 '{"sentence": "a \\ud800", "from": "a", "to": "b"}'):
        r = client.post("/api/probe", json={"pairs": line})
        assert r.status_code == 422 and r.json()["error"] == "invalid_pairs", (line, r.text)
        assert r.json()["detail"].startswith("line 1: ")


def test_api_other_422s(client):
    line = jsonl({"sentence": "I don't know.", "from": "don't", "to": "know"})
    r = client.post("/api/probe", json={"pairs": line})
    assert r.status_code == 422 and r.json()["error"] == "no_usable_pairs"
    assert r.json()["skipped"] == [{"line": 1, "reason": 'minilm splits "don\'t" into 3 words: "don", "\'", "t"'}]
    r = client.post("/api/probe", json={"pairs": line, "model": "nope"})
    assert r.status_code == 422 and r.json()["error"] == "unknown_model"
    r = client.post("/api/probe", json={"pairs": ""})
    assert r.status_code == 422 and r.json()["error"] == "invalid_pairs" and "no pairs" in r.json()["detail"]
    r = client.post("/api/probe", json={"pairs": ["not", "a", "string"]})
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


def test_api_works_for_every_builtin(client):
    for name in ("dates", "induction"):
        r = client.post("/api/probe", json={"pairs": OBJ_VERB.read_text(), "model": name})
        assert r.status_code == 200 and r.json()["model"] == name and r.json()["pairs"] > 0


# ---- the command line ------------------------------------------------------------------------------------------


def headscope(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "headscope", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_prints_best_heads_beside_the_baseline_and_json(minilm, tmp_path):
    expected = probe(minilm, parse_pairs(OBJ_VERB.read_text()))
    done = headscope("probe", OBJ_VERB, "--model", "minilm")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "minilm: 45 pairs in 45 sentences"
    base = expected["baseline"]
    assert lines[1] == f"baseline: the word at offset {base['offset']:+d}, right on {base['correct']}/45 = {base['accuracy']:.3f}"
    best = expected["best"][0]
    assert lines[4].split() == [best["name"], "encoder", str(best["correct"]), f"{best['accuracy']:.3f}",
                                f"{best['above_baseline']:+.3f}"]
    assert len(lines) == 4 + 10
    done = headscope("probe", OBJ_VERB, "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == json.loads(json.dumps(expected))


def test_cli_lists_skipped_pairs_on_stderr(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(jsonl({"sentence": "I don't know.", "from": "don't", "to": "know"},
                           {"sentence": "The cat sat.", "from": "The", "to": "cat"}))
    done = headscope("probe", pairs)
    assert done.returncode == 0 and "(1 skipped)" in done.stdout
    assert done.stderr.strip() == 'skipped line 1: minilm splits "don\'t" into 3 words: "don", "\'", "t"'


def test_cli_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl({"sentence": "a b", "from": "a", "to": "b"}) + "{nope\n")
    unusable = tmp_path / "unusable.jsonl"
    unusable.write_text(jsonl({"sentence": "I don't know.", "from": "don't", "to": "know"}))
    for args, words in [((bad,), f"{bad}: line 2: not valid JSON"),
                        ((tmp_path / "missing.jsonl",), "No such file or directory"),
                        ((unusable,), "no pair could be used with minilm"),
                        ((bad, "--model", "minilm", "--model", "dates"), "give --model once")]:
        done = headscope("probe", *args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and words in lines[-1] and "Traceback" not in done.stderr, (args, done.stderr)
        if "give --model once" not in words:  # argparse's own errors print the usage line first
            assert len(lines) == 1 and lines[0].startswith("headscope: error: ")
