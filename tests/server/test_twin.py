"""GET /api/attention: the page's JSON twin takes the page's own URL parameters and answers what POST does."""

from urllib.parse import urlencode

import pytest

from tests.compare import differences

TEXT = "The keys to the cabinet are on the table."


def both(client, query: dict, body: dict):
    twin = client.get(f"/api/attention?{urlencode(query)}")
    post = client.post("/api/attention", json=body)
    assert twin.status_code == post.status_code == 200, (twin.text, post.text)
    return twin.json(), post.json()


@pytest.mark.parametrize("query, body", [
    ({"text": TEXT}, {"text": TEXT}),
    ({"text": TEXT, "model": "minilm", "weights": "value_norm", "rollout": "1", "ablate": "encoder:2:5,encoder:3:0",
      "ablation": "mean"},
     {"text": TEXT, "model": "minilm", "weights": "value_norm", "rollout": True, "ablation": "mean",
      "ablate": [{"kind": "encoder", "layer": 2, "head": 5}, {"kind": "encoder", "layer": 3, "head": 0}]}),
    ({"text": "25 May 2020", "model": "dates", "gen": "4"}, {"text": "25 May 2020", "model": "dates", "max_new_tokens": 4}),
    ({"text": "k#9Qz k#9", "model": "induction", "gen": "3"}, {"text": "k#9Qz k#9", "model": "induction", "generate": 3}),
    ({"text": "25 May 2020 " * 9, "model": "dates", "truncate": "1"}, {"text": "25 May 2020 " * 9, "model": "dates", "truncate": True}),
    ({"text": "k#9Qz.m>Ab k#9Qz.m>Ab", "model": "induction", "ablate": "decoder:1:1", "ab_metric": "loss", "ab_span": "12,22"},
     {"text": "k#9Qz.m>Ab k#9Qz.m>Ab", "model": "induction", "ablate": [{"kind": "decoder", "layer": 1, "head": 1}],
      "metric": "loss", "span": [12, 22]}),
    ({"text": "k#9Qz.m>Ab k#9Qz.m>A", "model": "induction", "ablate": "decoder:1:1", "ab_metric": "logit_diff",
      "ab_answer": "b", "ab_wrong": "Y"},
     {"text": "k#9Qz.m>Ab k#9Qz.m>A", "model": "induction", "ablate": [{"kind": "decoder", "layer": 1, "head": 1}],
      "metric": "logit_diff", "answer": "b", "wrong": "Y"}),
])
def test_the_twin_answers_what_post_answers(client, query, body):
    twin, post = both(client, query, body)
    assert differences(twin, post, rel=0) == []


def test_the_pages_view_parameters_change_nothing(client):
    plain = client.get(f"/api/attention?{urlencode({'text': TEXT})}").json()
    view = {"text": TEXT, "tab": "table", "words": "1", "nospecial": "1", "kind": "encoder", "layer": "2", "head": "5",
            "step": "3"}
    viewed = client.get(f"/api/attention?{urlencode(view)}")
    assert viewed.status_code == 200 and differences(viewed.json(), plain, rel=0) == []


def test_the_twin_keeps_the_limits_and_names_the_problem(client, minilm):
    r = client.get(f"/api/attention?{urlencode({'text': 'x' * (minilm.info.max_chars + 1)})}")
    assert r.status_code == 422 and r.json()["error"] == "too_many_characters" and r.json()["limit"] == minilm.info.max_chars
    r = client.get("/api/attention?text=hi&gen=many")
    assert r.status_code == 422 and "query.gen" in r.json()["detail"]
    r = client.get("/api/attention?text=hi&ablate=encoder:two:5")
    assert r.status_code == 422 and r.json()["error"] == "bad_ablation" and r.json()["field"] == "ablate"
    r = client.get("/api/attention?text=hi&ablate=encoder:9:0")
    assert r.status_code == 422 and r.json()["error"] == "bad_ablation" and "layer 9" in r.json()["detail"]
    r = client.get("/api/attention?text=hi&gen=3")  # minilm does not generate
    assert r.status_code == 422 and r.json()["error"] == "not_generating"
    r = client.get("/api/attention?text=%20%20")
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    r = client.get("/api/attention?text=hi&model=nosuch")
    assert r.status_code == 422 and r.json()["error"] == "unknown_model"


def test_the_twins_metric_is_the_ablation_effects_and_the_patching_tabs_names_are_not_it(client):
    query = {"text": "k#9Qz.m>Ab k#9Qz.m>A", "model": "induction", "ablate": "decoder:1:1", "ab_metric": "prob",
             "ab_answer": "b"}
    scored = client.get(f"/api/attention?{urlencode(query)}").json()["effect"]
    assert scored["metric"]["name"] == "prob" and scored["metric"]["answer"]["token"] == "b"
    patching = {**query, "ab_metric": None, "ab_answer": None, "metric": "logit_diff", "answer": "b", "wrong": "Y"}
    plain = client.get(f"/api/attention?{urlencode({k: v for k, v in patching.items() if v})}").json()["effect"]
    assert plain.get("metric") is None  # the Patching tab's URL names are its own


@pytest.mark.parametrize("span", ["12", "12,", "a,b", "12;22", "-1,3"])
def test_a_malformed_ab_span_is_a_422_naming_the_form(client, span):
    query = {"text": "k#9Qz.m>Ab k#9Qz.m>Ab", "model": "induction", "ablate": "decoder:1:1", "ab_metric": "loss",
             "ab_span": span}
    r = client.get(f"/api/attention?{urlencode(query)}")
    assert r.status_code == 422 and "ab_span" in r.text and "START,END" in r.text, r.text


def test_an_ab_span_out_of_range_is_the_posts_422(client):
    query = {"text": "k#9Qz.m>Ab k#9Qz.m>Ab", "model": "induction", "ablate": "decoder:1:1", "ab_metric": "loss",
             "ab_span": "3,99"}
    r = client.get(f"/api/attention?{urlencode(query)}")
    assert r.status_code == 422 and r.json()["error"] == "out_of_range" and "1 <= start < end <= 22" in r.json()["detail"]
