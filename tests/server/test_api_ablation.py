"""POST /api/attention with `ablate`: the effect in every format, the ablated patterns, 422s that name the
problem, batching that never mixes ablations, and `headscope ablate`. The effect numbers themselves are
checked against independent computations in tests/models/test_effect.py; here the API must carry exactly them."""

import asyncio
import copy
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from headscope.models.interventions import Ablation
from headscope.server.app import create_app
from headscope.server.encoding import read_safetensors
from headscope.server.runner import ModelRunner, Pending
from headscope.server.schemas.attention import AttentionResponse
from headscope.server.settings import Settings

ROOT = Path(__file__).parents[2]
# The API's answer against the model run here: the same computation, on the worker thread, whose thread
# count may differ, so float32 sums may be added in a different order.
TOL = 1e-5
TEXT = "The keys to the cabinet are on the table."
HEADS = {
    "minilm": [{"kind": "encoder", "layer": 2, "head": 5}, {"kind": "encoder", "layer": 0, "head": 1}],
    "dates": [{"kind": "cross", "layer": 0, "head": 1}, {"kind": "decoder", "layer": 1, "head": 2}],
    "induction": [{"kind": "decoder", "layer": 1, "head": 1}],
}
TEXTS = {"minilm": TEXT, "dates": "25 May 2001", "induction": "k#9Qz.m>Ab k#9Qz.m>Ab"}


def post(client, **body):
    return client.post("/api/attention", json=body)


def as_ablation(heads, mode="zero"):
    return Ablation(tuple((h["kind"], h["layer"], h["head"]) for h in heads), mode)


@pytest.mark.parametrize("name", list(HEADS))
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_every_format_carries_the_models_effect_and_the_ablated_patterns(client, models, name, mode):
    body = dict(text=TEXTS[name], model=name, ablate=HEADS[name], ablation=mode)
    answer = post(client, **body)
    assert answer.status_code == 200, answer.text
    AttentionResponse.model_validate_json(answer.content)
    answer = answer.json()
    expected = models[name].analyze(TEXTS[name], ablation=as_ablation(HEADS[name], mode))
    assert answer["ablate"] == HEADS[name] and answer["ablation"] == mode
    effect = answer["effect"]
    for measure, description in effect["measures"].items():  # every measure present is described, and only they
        assert effect[measure] is not None and description["meaning"]
        if description["axis"] is not None:
            assert len(effect[measure]) <= len(answer[description["axis"]])
    assert {k for k, v in effect.items() if v is not None} == {*effect["measures"], "measures"}
    for measure in effect["measures"]:
        value, want = effect[measure], expected.effect[measure]
        if isinstance(want, list) and want and isinstance(want[0], float):
            torch.testing.assert_close(torch.tensor(value), torch.tensor(want), atol=TOL, rtol=0)
        elif isinstance(want, float):
            assert value == pytest.approx(want, abs=TOL)
        else:
            assert value == want
    for kind, pattern in expected.patterns.items():  # the ablated run's weights
        torch.testing.assert_close(torch.tensor(answer["attention"][kind]), pattern, atol=TOL, rtol=0)
    for fmt in ("compact", "safetensors"):
        binary = read_safetensors(post(client, **body, format=fmt).content)
        assert binary["effect"] == effect and binary["ablate"] == HEADS[name] and binary["ablation"] == mode


def test_without_ablate_the_answer_says_so(client):
    answer = post(client, text=TEXT, model="minilm").json()
    assert answer["ablate"] == [] and answer["ablation"] is None and answer["effect"] is None


def test_later_layers_change_and_the_ablated_layer_does_not(client):
    plain = post(client, text=TEXT, model="minilm").json()["attention"]["encoder"]
    ablated = post(client, text=TEXT, model="minilm", ablate=HEADS["minilm"][:1]).json()["attention"]["encoder"]
    torch.testing.assert_close(torch.tensor(ablated[:3]), torch.tensor(plain[:3]), atol=TOL, rtol=0)  # layers 0..2
    assert (torch.tensor(ablated[3:]) - torch.tensor(plain[3:])).abs().max() > 1e-4


@pytest.mark.parametrize("ablate, status, code, words", [
    ([{"kind": "cross", "layer": 0, "head": 0}], 422, "bad_ablation", "kind 'cross' is not one of this model's kinds (encoder)"),
    ([{"kind": "encoder", "layer": 6, "head": 0}], 422, "bad_ablation", "layer 6 of encoder is out of range 0..5"),
    ([{"kind": "encoder", "layer": 0, "head": 12}], 422, "bad_ablation", "head 12 is out of range 0..11"),
    ([{"kind": "encoder", "layer": 1, "head": 2}] * 2, 422, "bad_ablation", "names encoder layer 1 head 2 twice"),
    ([{"kind": "encoder", "layer": 0, "head": 0}] * 73, 422, "too_many_heads", "lists 73 heads but minilm has 72"),
    ([{"kind": "encoder", "layer": -1, "head": 0}], 422, "validation_error", "greater than or equal to 0"),
    ([{"kind": "encoder", "layer": 0}], 422, "validation_error", "body.ablate.0.head: Field required"),
])
def test_bad_ablations_get_422_naming_the_problem(client, ablate, status, code, words):
    r = post(client, text=TEXT, model="minilm", ablate=ablate)
    assert r.status_code == status and r.json()["error"] == code and words in r.json()["detail"], r.text


def test_the_limit_is_the_models_own_head_count(client):
    r = post(client, text="1 May 2001", model="dates", ablate=[{"kind": "encoder", "layer": 0, "head": 0}] * 37)
    assert r.status_code == 422 and r.json()["limit"] == 36  # 3 kinds x 3 layers x 4 heads
    every = [{"kind": k, "layer": l, "head": h} for k in ("encoder", "decoder", "cross") for l in range(3) for h in range(4)]
    assert post(client, text="1 May 2001", model="dates", ablate=every).status_code == 200


def test_an_unknown_mode_is_refused(client):
    r = post(client, text=TEXT, model="minilm", ablate=HEADS["minilm"], ablation="half")
    assert r.status_code == 422 and "body.ablation: Input should be 'zero' or 'mean'" in r.json()["detail"]


def test_a_checkpoint_whose_heads_cannot_be_reached_gets_422(tmp_path):
    from headscope.models.hf.model import HFModel
    from tests.checkpoints import build

    tokenizer, net = build("bert")
    net.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = HFModel.load("opaque", tmp_path)
    model.modules = None  # a family that does not run through transformers' attention interface
    with TestClient(create_app(Settings(), models={"opaque": model})) as client:
        r = post(client, text="The cat sat.", ablate=[{"kind": "encoder", "layer": 0, "head": 0}])
        assert r.status_code == 422 and r.json()["error"] == "not_ablatable", r.text
        assert "cannot be reached one by one" in r.json()["detail"]
        assert post(client, text="The cat sat.").status_code == 200


def test_waiting_requests_with_different_ablations_never_share_a_batch(minilm):
    runner = ModelRunner(max_waiting=16, max_batch_tokens=1024)
    one, other = Ablation((("encoder", 2, 5),)), Ablation((("encoder", 2, 5),), "mean")
    calls = []
    original = minilm.analyze_batch

    def counting(texts, truncate=False, new_tokens=None, ablation=None):
        calls.append((list(texts), ablation))
        return original(texts, truncate, new_tokens, ablation)

    def pending(text, ablation):
        return Pending(minilm, text, False, None, build=lambda a: [a.effect], ablation=ablation)

    async def main():
        async with runner.turns.turn():  # the model is busy: all four wait together
            tasks = [asyncio.create_task(runner.analyze((t, a), pending(t, a)))
                     for t, a in [("one text", one), ("two texts", other), ("three", one), ("four", None)]]
            await asyncio.sleep(0.05)
        return await asyncio.gather(*tasks)

    minilm.analyze_batch = counting
    try:
        with ThreadPoolExecutor(1) as pool:
            results = pool.submit(asyncio.run, main()).result()
    finally:
        del minilm.analyze_batch
    assert sorted(calls, key=str) == sorted([(["one text", "three"], one), (["two texts"], other), (["four"], None)], key=str)
    assert results[3] == [None] and all(r[0] is not None for r in results[:3])


def test_identical_texts_with_different_ablations_get_their_own_answers(client):
    bodies = [dict(text=TEXT, model="minilm", ablate=HEADS["minilm"], ablation=mode) for mode in ("zero", "mean")] * 2
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda b: post(client, **b).json(), bodies))
    for body, answer in zip(bodies, answers, strict=True):
        assert answer["ablation"] == body["ablation"]
    assert answers[0]["effect"] == answers[2]["effect"] != answers[1]["effect"] == answers[3]["effect"]


# --- headscope ablate ------------------------------------------------------------------------------------------

def headscope(*args):
    return subprocess.run([sys.executable, "-m", "headscope", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_prints_the_effect_as_json_equal_to_the_api(client):
    done = headscope("ablate", "25 May 2001", "--model", "dates", "--head", "cross:0:1", "--head", "decoder:1:2",
                     "--ablation", "mean", "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    api = post(client, text="25 May 2001", model="dates", ablate=HEADS["dates"], ablation="mean").json()
    assert printed["ablate"] == api["ablate"] and printed["ablation"] == "mean"
    assert printed["effect"]["output_text"] == api["effect"]["output_text"]
    torch.testing.assert_close(torch.tensor(printed["effect"]["logprob_after"]), torch.tensor(api["effect"]["logprob_after"]),
                               atol=TOL, rtol=0)


def test_cli_table_names_each_measure_and_token(minilm):
    done = headscope("ablate", TEXT, "--model", "minilm", "--head", "encoder:2:5")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "minilm: encoder L2H5 ablated (zero); effect against the same text un-ablated:"
    assert lines[1].startswith("embedding_cosine: 0.99")
    assert lines[2].split("\t") == ["position", "token", "token_cosine"]
    assert lines[3].split("\t")[:2] == ["0", "'[CLS]'"] and len(lines) == 3 + len(minilm.analyze(TEXT).tokens)


@pytest.mark.parametrize("args, message", [
    (["--head", "encoder:2"], "--head 'encoder:2' is not KIND:LAYER:HEAD"),
    (["--head", "encoder:9:0"], "ablate: layer 9 of encoder is out of range 0..5"),
    (["--head", "cross:0:0"], "kind 'cross' is not one of this model's kinds"),
])
def test_cli_errors_are_one_line_and_exit_2(args, message):
    done = headscope("ablate", TEXT, "--model", "minilm", *args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_copy_of_a_model_is_not_ablated_after_a_request(client, minilm):
    post(client, text=TEXT, model="minilm", ablate=HEADS["minilm"], ablation="mean")
    assert all(m.edits == () for m in minilm.attention_modules().values())
    assert copy.copy(minilm).analyze(TEXT).effect is None


@pytest.mark.parametrize("metric", [{"metric": "loss", "span": [12, 22]}, {"metric": "logit_diff", "answer": "b",
                                                                           "wrong": "Y"}, {"metric": "prob", "answer": "b"}])
def test_a_chosen_metric_comes_back_in_the_effect_equal_to_the_model_function(client, models, metric):
    from headscope.models.metric_choice import choose_metric

    model = models["induction"]
    r = post(client, text=TEXTS["induction"], model="induction", ablate=HEADS["induction"], **metric)
    assert r.status_code == 200, r.text
    got = r.json()["effect"]["metric"]
    choice = choose_metric(model, metric["metric"], metric.get("span"), metric.get("answer"), metric.get("wrong"))
    ablation = Ablation(as_ablation(HEADS["induction"]).heads, "zero", choice)
    want = model.analyze(TEXTS["induction"], ablation=ablation).effect["metric"]
    assert got["name"] == metric["metric"] and got["units"] == want["units"] and got["where"] == want["where"]
    for key in ("before", "after", "change"):
        assert got[key] == pytest.approx(want[key], abs=TOL)
    assert r.json()["effect"]["measures"]["metric"]["meaning"]


@pytest.mark.parametrize("name, metric, code, words", [
    ("induction", {"metric": "loss", "span": [3, 99]}, "out_of_range", "1 <= start < end <= 22"),
    ("induction", {"metric": "logit_diff", "answer": "b"}, "validation_error", "wrong is required"),
    ("minilm", {"metric": "prob", "answer": "b"}, "no_metric", "encoder"),
    ("dates", {"metric": "loss"}, "no_metric", "encoder-decoder"),
])
def test_bad_metric_choices_with_ablate_are_422(client, name, metric, code, words):
    r = post(client, text=TEXTS[name], model=name, ablate=HEADS[name], **metric)
    assert r.status_code == 422 and r.json()["error"] == code and words in r.json()["detail"], r.text
