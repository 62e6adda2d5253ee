"""POST /api/importance: the same numbers as headscope/analyses/importance.py, streamed like /api/corpus; 422 for bad input;
a client that goes away stops the run."""

import contextlib
import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headscope.analyses.importance import head_importance
from headscope.server.app import create_app
from headscope.server.settings import Settings
from tests.server.test_fuzz import any_text, assert_clean, json_values


@pytest.fixture(scope="module")
def induction_direct(models):
    return head_importance(models["induction"])


def test_answer_equals_the_model_function_and_describes_itself(client, induction_direct):
    r = client.post("/api/importance", json={"model": "induction"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "induction" and body["ablation"] == "zero" and body["dims"] == ["layer", "head"]
    assert body["measure"] == {**induction_direct["measure"]}
    assert body["measure"]["direction"] == "lower_is_better" and body["measure"]["units"] == "nats per token"
    assert "positive when the model is worse without the head" in body["importance_formula"]
    for key in ("baseline", "importance", "ablated_quality", "curve", "evaluations"):  # the same floats: JSON keeps them
        assert body[key] == induction_direct[key], key
    assert len(body["importance"]["decoder"]) == 2 and len(body["importance"]["decoder"][0]) == 4


def test_streams_a_progress_line_per_evaluation_then_the_result(client, induction_direct):
    with client.stream("POST", "/api/importance", json={"model": "induction", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [(line["done"], line["total"]) for line in lines[:-1]] == [(d, 17) for d in range(1, 18)]
    seconds = [line["seconds"] for line in lines[:-1]]
    assert seconds == sorted(seconds) and lines[-2]["remaining_s"] == 0  # how long so far, and how long to go
    for line in lines[:-1]:  # the estimate is the pace so far times the evaluations left
        assert line["remaining_s"] == pytest.approx(line["seconds"] / line["done"] * (17 - line["done"]), abs=0.01)  # both rounded to ms
    assert lines[-1]["result"]["curve"] == induction_direct["curve"]


def test_texts_switch_to_the_architecture_measure_and_mean_ablation(client):
    body = client.post("/api/importance", json={"model": "induction", "texts": ["abcabc abcabc", "Hello, hello."],
                                                "ablation": "mean"}).json()
    assert body["measure"]["name"] == "next_token_loss" and body["measure"]["examples"] == 2
    assert body["ablation"] == "mean" and len(body["curve"]["quality"]) == 9


@pytest.fixture(scope="module")
def small_client(models):
    app = create_app(Settings(importance_max_texts=3, importance_max_tokens=40), models=models)
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("body, code, words", [
    ({"model": "nope"}, "unknown_model", "unknown model 'nope'"),
    ({"model": "minilm", "texts": ["a", "b", "c", "d"]}, "too_many_texts", "4 texts sent; importance takes at most 3"),
    ({"model": "minilm", "texts": ["word " * 25, "word " * 25]}, "too_many_tokens", "54 tokens together"),
    ({"model": "dates", "texts": ["x" * 70]}, "too_many_tokens", "text 0 has 72 tokens but dates takes at most 64"),
    ({"model": "minilm", "texts": ["fine", " "]}, "validation_error", "texts.1: text is empty or only whitespace"),
    ({"model": "minilm", "texts": []}, "validation_error", "texts: List should have at least 1 item"),
    ({"model": "minilm", "ablation": "half"}, "validation_error", "ablation"),
    ({"model": "minilm", "extra": 1}, "validation_error", "extra"),
])
def test_bad_requests_get_422_naming_the_problem(small_client, body, code, words):
    r = small_client.post("/api/importance", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == code and words in r.json()["detail"]


def test_limits_are_published_and_the_stream_is_documented(small_client):
    limits = small_client.get("/api/models").json()["limits"]
    assert limits["importance_max_texts"] == 3 and limits["importance_max_tokens"] == 40
    openapi = small_client.get("/openapi.json").json()
    texts = openapi["components"]["schemas"]["ImportanceRequest"]["properties"]["texts"]
    assert texts["anyOf"][0]["minItems"] == 1  # a client reading the schema knows [] is refused
    spec = openapi["paths"]["/api/importance"]["post"]
    assert "application/x-ndjson" in spec["responses"]["200"]["content"]
    doc = small_client.get("/docs/importance.md")  # linked from the page's Importance tab
    assert doc.status_code == 200 and doc.text.startswith("# Head importance and the pruning curve")


def test_a_client_that_goes_away_stops_the_run(live_server, app):
    runner = app.state.runner
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{live_server.url}/api/importance", json={"model": "minilm", "stream": True}) as r:
            lines = r.iter_lines()
            first = json.loads(next(lines))
            assert (first["done"], first["total"]) == (1, 145)
        # closed after the first of 145 steps
    deadline = time.monotonic() + 30
    while runner.admitted_count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runner.admitted_count == 0  # the run left the line instead of spending the model on 144 more steps
    assert httpx.get(f"{live_server.url}/api/models", timeout=10).status_code == 200


def test_one_client_runs_at_most_its_long_jobs_and_others_are_served_meanwhile(live_server, app):
    """From outside: a client holding long_jobs_per_client long jobs gets 429 for one more (importance, corpus or
    probe), naming the limit; a short request is answered while they run; once they end, the address may start
    again."""
    runner, url = app.state.runner, live_server.url
    with httpx.Client(timeout=120) as http, contextlib.ExitStack() as held:
        limit = http.get(f"{url}/api/models").json()["limits"]["long_jobs_per_client"]
        assert limit >= 1
        streams = []
        for _ in range(limit):
            r = held.enter_context(http.stream("POST", f"{url}/api/importance", json={"model": "minilm", "stream": True}))
            lines = r.iter_lines()
            assert json.loads(next(lines))["done"] == 1
            streams.append(lines)
        for path, body in [("importance", {"model": "minilm"}), ("corpus", {"texts": ["A short one."]}),
                           ("probe", {"model": "minilm", "pairs": '{"sentence": "The cat sat.", "from": "cat", '
                                      '"to": "The"}'})]:
            r = http.post(f"{url}/api/{path}", json=body)
            assert r.status_code == 429, (path, r.text)
            assert r.json()["error"] == "too_many_requests" and r.json()["limit"] == limit
            assert "long_jobs_per_client" in r.json()["detail"] and r.headers["retry-after"]
        assert http.post(f"{url}/api/attention", json={"text": "In between.", "model": "minilm"}).status_code == 200
        for lines in streams:  # the long jobs were still running when the short request was answered
            progress = json.loads(next(lines))
            assert progress["done"] < progress["total"]
    deadline = time.monotonic() + 30
    while runner.long_jobs and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runner.long_jobs == {}  # the closed streams gave their jobs back
    r = httpx.post(f"{url}/api/corpus", json={"texts": ["A short one."]}, timeout=60)
    assert r.status_code == 200 and r.json()["sentences"] == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({"texts": st.lists(any_text | json_values, max_size=4) | json_values}, optional={
    "model": st.sampled_from(["induction", "nope", ""]) | json_values,
    "ablation": st.sampled_from(["zero", "mean", "half"]) | json_values,
    "stream": st.booleans() | json_values,
}))
def test_random_requests_never_get_a_5xx(small_client, body):
    """Random fields; `texts` always present and `model` never the default (MiniLM), so that a valid request is a
    small one: at most 4 short texts on the induction model, 17 evaluations (the models' own sets run for minutes)."""
    if body.get("model") is None:
        body["model"] = "induction"
    r = small_client.post("/api/importance", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert_clean(r)


def test_a_model_whose_heads_cannot_be_reached_is_a_422_that_says_so(models):
    import copy

    unreachable = copy.copy(models["induction"])

    def attention_modules():
        raise NotImplementedError("its attention modules do not run through an interface Headscope can reach")

    unreachable.attention_modules = attention_modules
    app = create_app(Settings(), models={"induction": unreachable})
    with TestClient(app) as c:
        r = c.post("/api/importance", json={"model": "induction"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "not_ablatable" and "heads one by one" in r.json()["detail"]


def test_a_chosen_metric_reaches_importance_and_equals_the_model_function(client, models):
    from headscope.models.metric_choice import choose_metric

    texts = ["abcdefabcdef", "xyzuvwxyzuvw"]
    body = {"model": "induction", "texts": texts, "metric": "loss", "span": [8, 13]}
    r = client.post("/api/importance", json=body)
    assert r.status_code == 200, r.text
    direct = head_importance(models["induction"], texts=texts, metric=choose_metric(models["induction"], "loss", [8, 13]))
    assert r.json()["measure"]["name"] == "loss" and r.json()["importance"] == direct["importance"]
    r = client.post("/api/importance", json={"model": "induction", "texts": texts, "metric": "logit_diff",
                                             "answer": "a", "wrong": "x"})
    assert r.status_code == 200 and r.json()["measure"]["units"] == "logits"


@pytest.mark.parametrize("extra, code, words", [
    ({"metric": "loss", "span": [5, 40]}, "out_of_range", "1 <= start < end <= 13"),
    ({"metric": "logit_diff", "answer": "a"}, "validation_error", "wrong is required"),
    ({"metric": "prob", "answer": "ab"}, "not_one_token", "is 2 tokens"),
    ({"span": [1, 3]}, "validation_error", "give metric too"),
])
def test_bad_metric_choices_are_422_naming_the_problem(client, extra, code, words):
    r = client.post("/api/importance", json={"model": "induction", "texts": ["abcdefabcdef"], **extra})
    assert r.status_code == 422 and r.json()["error"] == code and words in r.json()["detail"], r.text


def test_an_encoder_says_why_a_metric_has_no_meaning(client):
    r = client.post("/api/importance", json={"model": "minilm", "texts": ["a b"], "metric": "loss"})
    assert r.status_code == 422 and r.json()["error"] == "no_metric" and "encoder" in r.json()["detail"]
