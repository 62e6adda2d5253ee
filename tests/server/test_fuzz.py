"""No input of any kind produces a 5xx: random JSON values, random text, random bytes."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# any code point, with lone surrogates, NUL and markup characters made frequent
any_text = st.text(st.characters(codec=None, categories=None) | st.characters(categories=["Cs"])
                   | st.sampled_from("<>&\"'\x00\n#"), max_size=60)
fields = st.fixed_dictionaries({}, optional={
    "text": any_text | json_values,
    "model": st.sampled_from(["minilm", "dates", "", "MINILM", "x" * 300]) | json_values,
    "truncate": st.booleans() | json_values,
    "format": st.sampled_from(["json", "compact", "binary"]) | json_values,
    "similarity": st.booleans() | json_values,
    "ablate": st.lists(st.fixed_dictionaries({"kind": st.sampled_from(["encoder", "cross", "decoder", ""]),
                                              "layer": st.integers(-1, 7), "head": st.integers(-1, 13)}),
                       max_size=4) | json_values,
    "ablation": st.sampled_from(["zero", "mean", "half"]) | json_values,
})

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_clean(r):
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        body = r.json()
        assert isinstance(body["error"], str) and body["detail"]


@FUZZ
@given(body=fields)
def test_random_attention_requests(client, body):
    r = client.post("/api/attention", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert_clean(r)


@FUZZ
@given(body=json_values)
def test_random_json_bodies(client, body):
    for path in ("/api/attention", "/api/corpus"):
        assert_clean(client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"}))


@FUZZ
@given(raw=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_random_bytes(client, raw, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/api/attention", "/api/corpus"):
        assert_clean(client.post(path, content=raw, headers=headers))


@FUZZ
@given(texts=st.lists(any_text | json_values, min_size=0, max_size=6), model=st.sampled_from(["minilm", "dates", "?"]))
def test_random_corpus_requests(client, texts, model):
    assert_clean(client.post("/api/corpus", content=json.dumps({"texts": texts, "model": model}),
                             headers={"Content-Type": "application/json"}))
