"""POST /api/patch and POST /api/attribute: the analyses' own answers (headscope/analyses/patching.py,
attribution.py), streamed progress, 422s that name the problem, the limit published, never a 5xx."""

import json
import time

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headscope.analyses.attribution import attribute
from headscope.analyses.patching import PatchSpec, activation_patching
from headscope.server.app import create_app
from headscope.server.settings import Settings
from tests.server.test_fuzz import any_text, assert_clean, json_values

CLEAN, CORRUPTED = "k#9Qz.m>Ab k#9Qz.m>A", "xY7!pw@3Rq k#9Qz.m>A"
BODY = {"model": "induction", "clean": CLEAN, "corrupted": CORRUPTED, "answer": "b", "wrong": "Y"}


@pytest.mark.parametrize("patch, direction", [("heads", "denoise"), ("layers", "noise")])
def test_the_answer_is_the_analysis_answer(client, models, patch, direction):
    r = client.post("/api/patch", json={**BODY, "patch": patch, "direction": direction})
    assert r.status_code == 200, r.text
    expected = activation_patching(models["induction"], PatchSpec(CLEAN, CORRUPTED, "b", "Y", None, patch, direction))
    assert r.json() == json.loads(json.dumps(expected))
    body = r.json()
    assert body["clean"]["tokens"][:3] == ["<s>", "k", "#"] and body["corrupted"]["tokens"][1] == "x"
    for m in body["maps"]:
        sizes = {"layer": 2, "head": 4, "position": 21}
        assert [len(m["labels"][d]) for d in m["dims"]] == [sizes[d] for d in m["dims"]]
        assert len(m["patched"]) == 2 and len(m["patched"][0]) == sizes[m["dims"][1]]


def test_streams_progress_then_the_result(client):
    with client.stream("POST", "/api/patch", json={**BODY, "patch": "head_positions", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    total = 2 * 4 * 21
    assert lines[0] == {"done": 0, "total": total} and lines[-2] == {"done": total, "total": total}
    assert [line["done"] for line in lines[:-1]] == sorted(line["done"] for line in lines[:-1])
    assert lines[-1]["result"]["cells"] == total and lines[-1]["result"]["maps"][0]["dims"] == ["layer", "head", "position"]


def test_an_encoder_decoder_and_an_encoder(client):
    r = client.post("/api/patch", json={"model": "dates", "clean": "25/11/2026", "corrupted": "24/11/2026",
                                        "answer": "5", "wrong": "4", "patch": "residual"})
    body = r.json()
    assert r.status_code == 200 and body["step"] == 9 and body["metric"]["where"].startswith("output step 9")
    assert [(m["name"], m["position_axis"]) for m in body["maps"]] == [("encoder.resid_pre", "tokens"),
                                                                        ("decoder.resid_pre", "output_tokens")]
    r = client.post("/api/patch", json={"model": "minilm", "clean": "The cat sat.", "corrupted": "The dog sat."})
    assert r.status_code == 200 and r.json()["metric"]["name"] == "embedding_cosine"
    assert r.json()["clean_metric"] == pytest.approx(1, abs=1e-6)


@pytest.fixture(scope="module")
def small_client(models):
    with TestClient(create_app(Settings(patch_max_work=2000), models=models)) as c:
        yield c


@pytest.mark.parametrize("body, code, words, extra", [
    ({**BODY, "corrupted": "abc"}, "token_count_mismatch", "clean is 21 tokens and corrupted 4",
     {"corrupted_tokens": ["<s>", "a", "b", "c"]}),
    ({**BODY, "answer": "bc"}, "not_one_token", "answer 'bc' is 2 tokens for induction (b | c)",
     {"field": "answer", "tokens": ["b", "c"]}),
    ({**BODY, "wrong": None}, "validation_error", "wrong is required", {"field": "wrong"}),
    ({**BODY, "patch": "head_positions"}, "too_much_work", "the limit is 2000", {"limit": 2000, "count": 170 * 21}),
    ({**BODY, "step": 3}, "not_patchable", "step is for encoder-decoder", {"field": "step"}),
    ({**BODY, "model": "minilm"}, "not_patchable", "minilm is an encoder", {"field": "answer"}),
    ({**BODY, "model": "dates", "step": 50}, "out_of_range", "step 50 is out of range", {"field": "step"}),
    ({**BODY, "patch": "neurons"}, "validation_error", "patch", {}),
    ({**BODY, "clean": " "}, "validation_error", "text is empty", {}),
    ({**BODY, "model": "nope"}, "unknown_model", "unknown model 'nope'", {}),
    ({**BODY, "clean": "x" * 5000, "corrupted": "y" * 5000}, "too_many_characters", "5000 characters", {}),
])
def test_bad_requests_get_422_naming_the_problem(small_client, body, code, words, extra):
    r = small_client.post("/api/patch", json=body)
    assert r.status_code == 422, r.text
    got = r.json()
    assert got["error"] == code and words in got["detail"]
    assert {k: got[k] for k in extra} == extra


def test_an_out_of_range_step_names_the_range(client):
    r = client.post("/api/patch", json={"model": "dates", "clean": "25/11/2026", "corrupted": "24/11/2026",
                                        "answer": "5", "wrong": "4", "step": 40})
    assert r.status_code == 422 and r.json()["error"] == "out_of_range"
    assert r.json()["valid"] == [0, 10] and r.json()["field"] == "step"


def test_attribute_is_the_analysis_answer_and_refuses_an_encoder(client, models):
    r = client.post("/api/attribute", json={"model": "induction", "text": CLEAN, "answer": "b", "wrong": "Y"})
    assert r.status_code == 200, r.text
    assert r.json() == json.loads(json.dumps(attribute(models["induction"], CLEAN, "b", "Y")))
    assert abs(r.json()["sum"] - r.json()["total"]) <= r.json()["tolerance"]
    r = client.post("/api/attribute", json={"model": "minilm", "text": "The cat sat.", "answer": "a", "wrong": "b"})
    assert r.status_code == 422 and r.json()["error"] == "not_attributable" and "minilm" in r.json()["detail"]
    r = client.post("/api/attribute", json={"model": "induction", "text": CLEAN, "answer": "", "wrong": "b"})
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


def test_the_limit_is_published_and_the_stream_and_the_docs_are_there(small_client):
    assert small_client.get("/api/models").json()["limits"]["patch_max_work"] == 2000
    spec = small_client.get("/openapi.json").json()["paths"]
    assert "application/x-ndjson" in spec["/api/patch"]["post"]["responses"]["200"]["content"]
    assert "/api/attribute" in spec
    doc = small_client.get("/docs/patching.md")
    assert doc.status_code == 200 and doc.text.startswith("# Activation patching and direct logit attribution")


def test_a_client_that_goes_away_stops_the_run(live_server, app):
    runner = app.state.runner
    body = {"model": "minilm", "clean": "The cat sat on the warm mat today.", "patch": "head_positions",
            "corrupted": "The dog sat on the warm mat today.", "stream": True}
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{live_server.url}/api/patch", json=body) as r:
            first = json.loads(next(r.iter_lines()))
            assert first["done"] == 0 and first["total"] == 72 * 11
    deadline = time.monotonic() + 60
    while runner.admitted_count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runner.admitted_count == 0  # the run left the line after the pass it was in
    assert httpx.get(f"{live_server.url}/api/models", timeout=10).status_code == 200


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({"clean": any_text | json_values, "corrupted": any_text | json_values}, optional={
    "model": st.sampled_from(["induction", "dates", "nope"]) | json_values,
    "answer": any_text | json_values, "wrong": any_text | json_values,
    "metric": st.sampled_from(["logit_diff", "prob", "embedding_cosine", "x"]) | json_values,
    "patch": st.sampled_from(["heads", "head_positions", "residual", "layers", ""]) | json_values,
    "direction": st.sampled_from(["denoise", "noise", "up"]) | json_values,
    "step": st.integers(-2, 20) | json_values,
    "stream": st.booleans() | json_values,
}))
def test_random_requests_never_get_a_5xx(small_client, body):
    """`model` never the default (MiniLM) so that a valid request stays small."""
    if body.get("model") is None:
        body["model"] = "induction"
    for path in ("/api/patch", "/api/attribute"):
        payload = body if path == "/api/patch" else {"text": body["clean"], **{k: body[k] for k in ("model", "answer",
                                                                                                     "wrong", "step")
                                                                              if k in body}}
        r = small_client.post(path, content=json.dumps(payload), headers={"Content-Type": "application/json"})
        assert_clean(r)


def test_predict_gives_the_top_next_tokens_as_the_model_computes_them(client, models):
    model = models["induction"]
    text = "k#9Qz.m>Ab k#9Qz.m>A"
    r = client.post("/api/predict", json={"model": "induction", "text": text, "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    with torch.no_grad():  # the net by hand: <s> and the bytes, the last position's softmax
        probs = model.net(torch.tensor([[256, *text.encode()]]))[0][0, -1].softmax(-1)
    top = probs.topk(3)
    assert [p["id"] for p in body["predictions"]] == top.indices.tolist()
    assert [p["prob"] for p in body["predictions"]] == pytest.approx(top.values.tolist(), abs=1e-6)
    assert body["predictions"][0]["text"] == "b"  # induction copies what followed "A" the first time
    for p in body["predictions"]:
        if p["text"] is not None:
            assert model.output_ids(p["text"])[0] == [p["id"]]  # what answer/wrong take for that token


@pytest.mark.parametrize("body, code, words", [({"model": "minilm", "text": "a b"}, "no_metric", "not a causal LM"),
                                                ({"model": "induction", "text": "ab", "k": 999}, "validation_error",
                                                 "at most 20")])
def test_predict_refuses_what_it_cannot_do(client, body, code, words):
    r = client.post("/api/predict", json=body)
    assert r.status_code == 422 and r.json()["error"] == code and words in r.json()["detail"], r.text
