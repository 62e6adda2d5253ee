"""headscope/analyses/detect.py: heads found the standard way, checked against transformers' own attentions scored
by a plain numpy reference, and against what the real SmolLM2 is known to hold (issue: L18H6, L17H3, L17H4 induction;
L16H0, L11H1 previous-token)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from headscope.analyses.detect import DETECTORS, THRESHOLD, detect_heads, natural_texts, repeated_texts
from headscope.models.registry import ModelSpec, load_model
from tests.checkpoints import build, save

ROOT = Path(__file__).parents[2]


def reference_scores(tokenizer, net, repeated: list[str], natural: list[str], most: int) -> dict[str, np.ndarray]:
    """Each detector's (L, H) scores from transformers' output_attentions, one text at a time (its first `most`
    tokens), with numpy loops."""
    def attentions(text):
        ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=most)["input_ids"]
        with torch.no_grad():
            out = net(input_ids=ids, output_attentions=True)
        return ids[0].tolist(), np.stack([a[0].numpy() for a in out.attentions])  # (L, H, T, T)

    totals = {name: [] for name in DETECTORS}
    for text in repeated:
        ids, a = attentions(text)
        special = set(tokenizer.all_special_ids)
        body = [i for i, t in enumerate(ids) if t not in special]
        n = len(body) // 2
        if len(body) % 2 or ids[body[0]:body[0] + n] != ids[body[0] + n:body[0] + 2 * n]:
            continue
        start = body[0]
        dup = np.zeros(a.shape[:2])
        ind = np.zeros(a.shape[:2])
        for i in range(start + n, start + 2 * n):
            dup += a[:, :, i, i - n]
            ind += a[:, :, i, i - n + 1]
        totals["duplicate_token"].append(dup / n)
        totals["induction"].append(ind / n)
    for text in natural:
        ids, a = attentions(text)
        special = set(tokenizer.all_special_ids)
        rows = [i for i in range(1, len(ids)) if ids[i] not in special and ids[i - 1] not in special]
        totals["previous_token"].append(sum(a[:, :, i, i - 1] for i in rows) / len(rows))
    return {name: np.mean(values, axis=0) for name, values in totals.items()}


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    tokenizer, net = build("gpt2")
    path = save(tmp_path_factory.mktemp("gpt2") / "gpt2", tokenizer, net)
    return load_model(ModelSpec("tiny-gpt2", str(path))), tokenizer, net


def test_scores_equal_a_numpy_reference_on_transformers_attentions(tiny_gpt2):
    model, tokenizer, net = tiny_gpt2
    answer = detect_heads(model, seed=3, sequences=4, words=6, natural=5)
    assert answer["inputs"] == {"repeated": repeated_texts(model, 3, 4, 6), "natural": natural_texts(3, 5)}
    expected = reference_scores(tokenizer, net, answer["inputs"]["repeated"], answer["inputs"]["natural"],
                                model.info.max_tokens)
    assert answer["used"]["repeated"] > 0 and answer["dims"] == ["layer", "head"]
    for name in DETECTORS:
        actual = np.array(answer["scores"]["decoder"][name])
        assert actual.shape == (2, 4)
        np.testing.assert_allclose(actual, expected[name], atol=1e-6, err_msg=name)
        above = sorted(((actual[layer, head], f"L{layer}H{head}") for layer, head in zip(*np.nonzero(actual >= THRESHOLD))),
                       reverse=True)
        assert [h["name"] for h in answer["found"]["decoder"][name]] == [name for _, name in above]


def test_the_seed_fixes_the_inputs(minilm):
    assert repeated_texts(minilm, 7, 3, 5) == repeated_texts(minilm, 7, 3, 5) != repeated_texts(minilm, 8, 3, 5)
    assert detect_heads(minilm, seed=7, sequences=3)["scores"] == detect_heads(minilm, seed=7, sequences=3)["scores"]


def test_an_encoder_decoder_is_scored_on_its_encoder_self_attention(dates):
    answer = detect_heads(dates, sequences=2, natural=2)
    assert answer["kinds"] == ["encoder"]  # decoder rows are output positions, cross attention crosses sequences


def test_smollm2_names_its_induction_and_previous_token_heads(smollm2):
    found = detect_heads(smollm2)["found"]["decoder"]
    induction = [h["name"] for h in found["induction"]]
    assert {"L18H6", "L17H3", "L17H4"} <= set(induction[:5]), induction
    previous = [h["name"] for h in found["previous_token"]]
    assert {"L16H0", "L11H1"} <= set(previous[:4]), previous
    # the composition of Olsson et al.: the previous-token heads sit below the induction heads
    assert min(h["layer"] for h in found["induction"][:3]) > min(h["layer"] for h in found["previous_token"][:2])


def test_the_api_and_the_command_line_give_the_same_answer(client, minilm):
    r = client.post("/api/detect", json={"model": "minilm", "seed": 1, "sequences": 3})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["scores"] == json.loads(json.dumps(detect_heads(minilm, seed=1, sequences=3)["scores"]))
    limit = client.get("/api/models").json()["limits"]["detect_max_sequences"]
    r = client.post("/api/detect", json={"model": "minilm", "sequences": limit + 1})
    assert r.status_code == 422 and r.json()["error"] == "too_many_texts" and str(limit) in r.json()["detail"]
    r = client.post("/api/detect", json={"model": "minilm", "sequences": 2477642966200934727680})  # found by Schemathesis
    assert r.status_code == 422 and r.json()["error"] == "too_many_texts"
    done = subprocess.run([sys.executable, "-m", "headscope", "detect", "--model", "minilm", "--seed", "1",
                           "--sequences", "3", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scores"] == answer["scores"]
