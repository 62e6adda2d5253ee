"""The JSON API: response invariants and truth of the numbers, the compact encoding, and errors."""

import json
import math
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import numpy as np
import pytest
import zstandard

from headscope.server.encoding import read_safetensors
from tests.conftest import hf_attention

SENTENCE = "The cat sat on the mat, and the cat was happy."


def attention(client, **body):
    return client.post("/api/attention", json={"text": SENTENCE, **body})


# ---- models -------------------------------------------------------------------------------------


def test_models_lists_minilm_first_with_its_shape(client):
    body = client.get("/api/models").json()
    assert body["default"] == "minilm"
    minilm = body["models"][0]
    assert minilm == {
        "name": "minilm", "description": minilm["description"], "layers": 6, "heads": 12,
        "max_tokens": 512, "kinds": {"encoder": {"rows": "tokens", "columns": "tokens", "causal": False}},
        "generation": None, "max_new_tokens": 0, "default_new_tokens": 0, "kv_heads": None, "max_chars": 512 * 32,
        "example": minilm["example"], "takes": "text", "image": None,
    }
    assert body["limits"]["max_new_tokens"] == 128 and body["limits"]["corpus_max_texts"] == 2000
    assert "MiniLM" in minilm["description"]


# ---- /api/attention: invariants and truth ---------------------------------------------------------


def test_attention_json_has_the_documented_shape_and_invariants(client):
    r = attention(client)
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "minilm" and body["format"] == "json" and body["truncated"] is False
    assert body["dims"] == ["layer", "head", "query_pos", "key_pos"]
    tokens = body["tokens"]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    a = np.asarray(body["attention"]["encoder"])
    assert a.shape == (6, 12, len(tokens), len(tokens))
    assert np.isfinite(a).all() and (a >= 0).all()
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
    assert body["offsets"][0] is None and body["offsets"][-1] is None
    for token, (start, end) in zip(tokens[1:-1], body["offsets"][1:-1], strict=True):
        assert SENTENCE[start:end].lower() == token.removeprefix("##")
    assert body["output_text"] is None and body["output_tokens"] is None


@pytest.mark.parametrize("text", [SENTENCE, "Zürich's café, 東京 and 🍕! Numbers: 1 1 2 3 5 8."])
def test_attention_weights_equal_transformers(client, hf_bert, text):
    body = client.post("/api/attention", json={"text": text}).json()
    tokens, reference = hf_attention(hf_bert, text)
    assert body["tokens"] == tokens
    np.testing.assert_allclose(np.asarray(body["attention"]["encoder"]), reference.numpy(), atol=1e-5, rtol=0)


def read_safetensors_by_hand(body: bytes):
    """The documented layout, decoded independently of headscope.server.encoding: the safetensors library reads the
    tensors; the header's __metadata__ holds the other fields as JSON strings."""
    from safetensors.numpy import load

    n = int.from_bytes(body[:8], "little")
    header = json.loads(body[8 : 8 + n].decode("utf-8"))
    fields = {k: json.loads(v) for k, v in header["__metadata__"].items()}
    return fields, load(body)


def test_compact_encoding_decodes_to_the_weights_within_its_stated_error(client):
    full = attention(client).json()
    exact = np.asarray(full["attention"]["encoder"])
    r = attention(client, format="compact")
    assert r.headers["content-type"] == "application/octet-stream"
    fields, tensors = read_safetensors_by_hand(r.content)
    entry = fields["attention"]["encoder"]
    assert entry == {"dtype": "uint8", "shape": list(exact.shape), "tensor": "attention.encoder", "scale": "scale.encoder",
                     "scale_rows": entry["scale_rows"], "overflow": None}  # an encoder: every row has a choice
    assert "causal" in entry["scale_rows"]
    data, scale = tensors["attention.encoder"], tensors["scale.encoder"]
    assert data.dtype == np.uint8 and data.shape == exact.shape and scale.shape == exact.shape[:2]
    np.testing.assert_allclose(scale, exact.max(axis=(-2, -1)), atol=1e-6)
    err = np.abs(data / 255.0 * scale[..., None, None] - exact)
    assert (err <= scale[..., None, None] / 510 + 1e-7).all()
    assert {k: v for k, v in fields.items() if k not in ("attention", "format")} == \
        {k: v for k, v in full.items() if k not in ("attention", "format")}
    np.testing.assert_allclose(read_safetensors(r.content)["attention"]["encoder"], data / 255.0 * scale[..., None, None],
                               atol=1e-7)


@pytest.mark.parametrize("pool_to", [None, 8])
def test_a_causal_kinds_compact_scale_leaves_out_the_first_row_and_its_weight_travels_exactly(client, pool_to):
    # The first row of causal attention sees key 0 only: its weight 1 would be every head's scale, and a head whose
    # other weights are small would round them to 0 (SmolLM2's L18H6: ~45% of its non-zero weights).
    text = "k#9Qz.m>Ab k#9Qz.m>Ab"
    exact = np.asarray(client.post("/api/attention", json={"text": text, "model": "induction"}).json()["attention"]["decoder"])
    body = {"text": text, "model": "induction", "format": "compact", **({"pool_to": pool_to} if pool_to else {})}
    r = client.post("/api/attention", json=body)
    fields, tensors = read_safetensors_by_hand(r.content)
    entry = fields["attention"]["decoder"]
    data, scale = tensors["attention.decoder"], tensors["scale.decoder"]
    block = fields["pool"]["decoder"]
    # by hand: the max over rows 1.. of the full pattern; the pooled cells are the max of each block
    np.testing.assert_allclose(scale, exact[:, :, 1:, :].max(axis=(-2, -1)), atol=1e-7)
    assert (scale < 1).all()
    L, H, T, _ = exact.shape
    rows, cols = -(-T // block[0]), -(-T // block[1])
    padded = np.zeros((L, H, rows * block[0], cols * block[1]), np.float32)
    padded[:, :, :T, :T] = exact
    pooled = padded.reshape(L, H, rows, block[0], cols, block[1]).max(axis=(3, 5))
    over = pooled > scale[..., None, None]
    index, value = tensors[entry["overflow"]["index"]], tensors[entry["overflow"]["value"]]
    assert index.dtype == np.int32 and sorted(map(tuple, index.tolist())) == sorted(map(tuple, np.argwhere(over).tolist()))
    np.testing.assert_allclose(value, pooled[tuple(index.T)], atol=0)
    assert (index[:, 2] == 0).all() and (index[:, 3] == 0).all()  # only the first row's one key (the cell holding it)
    assert (data[over] == 255).all()
    err = np.abs(data / 255.0 * scale[..., None, None] - pooled)
    assert (err[~over] <= np.broadcast_to(scale[..., None, None], err.shape)[~over] / 510 + 1e-7).all()
    np.testing.assert_allclose(read_safetensors(r.content)["attention"]["decoder"][over], pooled[over], atol=0)


def test_safetensors_format_is_exact_float32(client, hf_bert):
    r = attention(client, format="safetensors")
    fields, tensors = read_safetensors_by_hand(r.content)
    assert fields["attention"]["encoder"]["dtype"] == "float32" and fields["pool"] == {"encoder": [1, 1]}
    weights = tensors["attention.encoder"]
    assert weights.dtype == np.float32 and list(weights.shape) == fields["attention"]["encoder"]["shape"]
    np.testing.assert_array_equal(weights, np.asarray(attention(client).json()["attention"]["encoder"], np.float32))
    _, reference = hf_attention(hf_bert, SENTENCE)
    np.testing.assert_allclose(weights, reference.numpy(), atol=1e-5, rtol=0)


def test_pool_to_max_pools_every_head_and_says_by_how_much(client):
    text = " ".join(["heads read every word"] * 30)  # 122 tokens
    exact = read_safetensors(client.post("/api/attention", json={"text": text, "format": "safetensors"}).content)
    pooled = read_safetensors(client.post("/api/attention", json={"text": text, "format": "safetensors",
                                                                  "pool_to": 50}).content)
    T = len(exact["tokens"])
    block = -(-T // 50)  # ceil
    assert pooled["pool"] == {"encoder": [block, block]}
    a = exact["attention"]["encoder"]
    cells = -(-T // block)
    assert pooled["attention"]["encoder"].shape == (6, 12, cells, cells)
    for i, j in [(0, 0), (cells - 1, cells - 1), (3, 7)]:
        expected = a[:, :, i * block : (i + 1) * block, j * block : (j + 1) * block].max(axis=(-2, -1))
        np.testing.assert_array_equal(pooled["attention"]["encoder"][:, :, i, j], expected)


def test_one_head_at_full_resolution(client):
    full = attention(client).json()
    r = attention(client, head={"kind": "encoder", "layer": 4, "head": 7}, format="safetensors")
    one = read_safetensors(r.content)
    assert one["selection"] == {"kind": "encoder", "layer": 4, "head": 7}
    np.testing.assert_array_equal(one["attention"]["encoder"][0, 0],
                                  np.asarray(full["attention"]["encoder"][4][7], np.float32))
    for head, detail in [({"kind": "cross", "layer": 0, "head": 0}, "no attention kind 'cross'"),
                         ({"kind": "encoder", "layer": 6, "head": 0}, "layers 0..5"),
                         ({"kind": "encoder", "layer": 0, "head": 12}, "heads 0..11")]:
        r = attention(client, head=head)
        assert r.status_code == 422 and detail in r.json()["detail"], r.text


@pytest.mark.parametrize("accept,encoding", [("gzip, deflate, br, zstd", "zstd"), ("gzip", "gzip"),
                                             ("zstd;q=0, gzip", "gzip"), ("identity", None), ("", None)])
def test_answers_are_compressed_as_the_client_accepts(client, accept, encoding):
    words = "the model reads every token and each head looks somewhere else".split()
    text = " ".join(words[i % len(words)] for i in range(126))
    r = client.post("/api/attention", json={"text": text, "format": "compact"}, headers={"Accept-Encoding": accept})
    assert r.headers.get("content-encoding") == encoding
    body = r.content  # the test client undoes gzip itself, but not zstd
    if encoding == "zstd":
        body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
    assert len(read_safetensors(body)["tokens"]) == 128


def test_heads_have_every_metric_and_roles(client):
    heads = attention(client).json()["heads"]["encoder"]
    assert len(heads) == 72
    assert [(h["layer"], h["head"]) for h in heads] == [(l, h) for l in range(6) for h in range(12)]
    assert heads[2]["name"] == "L0H2"
    for h in heads:
        assert set(h["metrics"]) == {"sink", "entropy", "entropy_normalized", "distance", "previous_token",
                                     "next_token", "self", "duplicate_token", "induction", "punctuation",
                                     "first_token", "last_token", "confidence"}
        assert all(v is None or math.isfinite(v) for v in h["metrics"].values())
    assert "previous_token" in heads[2]["roles"]
    assert attention(client).json()["roles_of"] == "one text"


def test_similarity_only_when_asked_and_symmetric(client):
    assert attention(client).json()["similarity"] is None
    sim = read_safetensors(attention(client, format="compact", similarity=True).content)["similarity"]["encoder"]
    d = np.asarray(sim["distance"])
    assert d.shape == (72, 72) and sim["heads"][2] == "L0H2"
    np.testing.assert_allclose(d, d.T, atol=1e-6)
    assert (np.diag(d) == 0).all() and ((d >= 0) & (d <= 1)).all()
    assert sorted(sim["order"]) == list(range(72))


def test_identical_concurrent_requests_get_identical_bodies(live_server):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def fetch(_):
        return httpx.post(f"{live_server.url}/api/attention", json={"text": SENTENCE}, timeout=60).content

    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(fetch, range(8)))
    assert len(set(bodies)) == 1 and json.loads(bodies[0])["tokens"][0] == "[CLS]"


# ---- truncation -----------------------------------------------------------------------------------


def test_too_many_tokens_names_the_count_and_the_limit(client):
    r = client.post("/api/attention", json={"text": "word " * 600})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "too_many_tokens" and body["count"] == 602 and body["limit"] == 512
    assert "602" in body["detail"] and "512" in body["detail"]


def test_truncate_cuts_to_fit_and_says_so(client):
    r = client.post("/api/attention", json={"text": "word " * 600, "truncate": True, "format": "compact"},
                    headers={"Accept-Encoding": "identity"})
    body = read_safetensors(r.content)  # not 18.9 M JSON floats
    assert body["truncated"] is True and len(body["tokens"]) == 512 and body["tokens"][-1] == "[SEP]"
    assert body["attention"]["encoder"].shape == (6, 12, 512, 512)


# ---- limits on a text and an answer ---------------------------------------------------------------


def test_a_text_over_max_chars_is_refused_without_tokenizing(client, minilm, monkeypatch):
    """Tokenizing a 1.9 MB text held the GIL for ~2 s before any limit applied."""
    calls = []
    monkeypatch.setattr(minilm, "count_tokens", lambda text: calls.append(text) or 0)
    monkeypatch.setattr(minilm, "tokenize", lambda text, truncate=False: calls.append(text) or {})
    text = "a " * 950_000
    r = client.post("/api/attention", json={"text": text})
    assert r.status_code == 422 and calls == []
    body = r.json()
    limit = client.get("/api/models").json()["models"][0]["max_chars"]
    assert body["error"] == "too_many_characters" and body["count"] == len(text) and body["limit"] == limit
    assert str(limit) in body["detail"] and "truncate" in body["detail"]


def test_truncate_cuts_characters_first_then_tokens(client, minilm):
    limit = minilm.info.max_chars
    long = "word " * (limit // 5 + 100)  # over max_chars, and over max_tokens
    body = read_safetensors(client.post("/api/attention", json={"text": long, "truncate": True, "format": "compact"}).content)
    assert body["truncated"] is True and len(body["tokens"]) == 512
    assert body["tokens"] == minilm.analyze(long[:limit], truncate=True).tokens
    # cut by characters alone: the tokens fit, and the answer still says the text was cut
    airy = "start" + " " * limit + "end"
    body = client.post("/api/attention", json={"text": airy, "truncate": True}).json()
    assert body["truncated"] is True and body["tokens"] == ["[CLS]", "start", "[SEP]"]
    assert client.post("/api/attention", json={"text": airy}).json()["error"] == "too_many_characters"


def test_a_json_answer_over_max_json_floats_is_refused_naming_the_binary_formats(client):
    limits = client.get("/api/models").json()["limits"]
    long = {"text": "word " * 510}  # 512 tokens: 6 * 12 * 512 * 512 weights, 252 MB of JSON
    r = client.post("/api/attention", json=long)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "answer_too_large" and body["limit"] == limits["max_json_floats"]
    assert body["count"] == 6 * 12 * 512 * 512 and "format: safetensors" in body["detail"] and "compact" in body["detail"]
    r = client.post("/api/attention", json={**long, "format": "compact"})
    assert r.status_code == 200 and read_safetensors(r.content)["attention"]["encoder"].shape == (6, 12, 512, 512)


def test_corpus_entries_over_max_chars_are_reported_without_tokenizing(client, minilm):
    long = "word " * (minilm.info.max_chars // 5 + 1)
    body = client.post("/api/corpus", json={"texts": ["A short one.", long]}).json()
    assert body["sentences"] == 1 and body["errors"][0]["index"] == 1
    assert "characters" in body["errors"][0]["error"] and str(minilm.info.max_chars) in body["errors"][0]["error"]
    assert client.post("/api/corpus", json={"texts": ["A short one.", long], "truncate": True}).json()["sentences"] == 2


def test_a_flood_of_texts_is_tokenized_only_within_the_line(minilm, models, monkeypatch):
    """Tokenizing waits for a place in the line, so a flood beyond the line is refused untokenized."""
    from fastapi.testclient import TestClient

    from headscope.server.app import create_app
    from headscope.server.settings import Settings

    counted, gate = [], threading.Event()
    count, analyze_batch = minilm.count_tokens, minilm.analyze_batch
    monkeypatch.setattr(minilm, "count_tokens", lambda text: counted.append(text) or count(text))
    monkeypatch.setattr(minilm, "analyze_batch", lambda *a, **k: gate.wait(60) and analyze_batch(*a, **k))
    with TestClient(create_app(Settings(max_waiting=1), models=models)) as c, ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(c.post, "/api/attention", json={"text": f"text {i}"}) for i in range(6)]
        finished = set()  # the model is held: one request runs, one waits, the rest...
        while len(finished) < 4:
            done, _ = wait([f for f in futures if f not in finished], timeout=60, return_when=FIRST_COMPLETED)
            assert done, "nobody was refused while the model was held"
            finished |= done
        assert sorted(f.result().status_code for f in finished) == [503] * 4
        gate.set()
        statuses = sorted(f.result().status_code for f in futures)
    assert statuses == [200, 200, 503, 503, 503, 503]  # ...are refused at once
    assert len(counted) == 2


# ---- errors ---------------------------------------------------------------------------------------

BAD_BODIES = [
    (b'{"text": ""}', 422, "validation_error", "empty"),
    (b'{"text": "  \\n\\t "}', 422, "validation_error", "empty"),
    (b'{"text": 5}', 422, "validation_error", "string"),
    (b'{"text": null}', 422, "validation_error", "string"),
    (b'{"text": ["a"]}', 422, "validation_error", "string"),
    (b'{}', 422, "validation_error", "text"),
    (b'{"text": "hi", "truncate": "yes"}', 422, "validation_error", "truncate"),
    (b'{"text": "hi", "format": "xml"}', 422, "validation_error", "format"),
    (b'{"text": "hi", "model": 3}', 422, "validation_error", "model"),
    (b'{"text": "hi", "model": "gpt-9"}', 422, "unknown_model", "gpt-9"),
    (b'{"text": "hi", "colour": 1}', 422, "validation_error", "colour"),
    (b'{"text": "\\ud800"}', 422, "validation_error", "surrogate"),
    (b'{"text": "hi"', 400, "invalid_json", "JSON"),
    (b'{bad json}', 400, "invalid_json", "JSON"),
    (b'', 422, "validation_error", "body"),
    (b'[]', 422, "validation_error", "object"),
    (b'"text"', 422, "validation_error", "object"),
    (b'\xff\xfe\x00garbage', 400, "invalid_json", "JSON"),
    (b'{"text": NaN}', 422, "validation_error", "string"),
]


@pytest.mark.parametrize("body,status,code,word", BAD_BODIES)
def test_bad_bodies_get_a_clear_json_4xx(client, body, status, code, word):
    r = client.post("/api/attention", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()
    assert err["error"] == code
    assert word.lower() in err["detail"].lower()


def test_non_json_bodies_are_refused_clearly_even_undecodable_bytes(client):
    """FastAPI's default handler answers 500 here: it echoes the bytes back and cannot decode them."""
    for content_type in ("text/plain", "application/octet-stream", "multipart/form-data"):
        r = client.post("/api/attention", content=b"\xff\xfe\x80 not json", headers={"Content-Type": content_type})
        assert r.status_code == 415, (content_type, r.text)
        assert "application/json" in r.json()["detail"]


def test_unknown_routes_and_methods_answer_json(client):
    r = client.get("/api/nothing")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = client.get("/api/heads")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    r = client.get("/api/attention")  # the page's JSON twin needs the page's text
    assert r.status_code == 422 and r.json()["error"] == "validation_error" and "query.text" in r.json()["detail"]


def test_body_over_the_limit_is_413(client, app):
    limit = app.state.settings.max_body_bytes
    r = client.post("/api/attention", content=b"x" * (limit + 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["limit"] == limit and str(limit) in r.json()["detail"]


def test_chunked_body_over_the_limit_is_413(client, app):
    limit = app.state.settings.max_body_bytes

    def chunks():
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    r = client.post("/api/attention", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"


def test_server_keeps_serving_after_bad_input(client):
    for body, *_ in BAD_BODIES:
        client.post("/api/attention", content=body, headers={"Content-Type": "application/json"})
    assert attention(client).status_code == 200


# ---- OpenAPI --------------------------------------------------------------------------------------


def test_openapi_documents_the_contract(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "byte / 255 *" in schemas["BinaryAttention"]["description"]
    ok = spec["paths"]["/api/attention"]["post"]["responses"]["200"]
    assert set(ok["content"]) == {"application/json", "application/octet-stream"}
    assert "8-byte little-endian header length" in ok["description"] and "__metadata__" in ok["description"]
    metrics = schemas["HeadMetrics"]["properties"]
    assert "R[i, i-1]" in metrics["previous_token"]["description"]
    assert "renormalised" in schemas["HeadMetrics"]["description"] and "sink" in metrics
    assert {"std", "n", "role_share"} <= set(schemas["CorpusHeadSummary"]["properties"])
    for status in ("413", "422", "503"):
        assert status in spec["paths"]["/api/attention"]["post"]["responses"]
    assert "application/x-ndjson" in spec["paths"]["/api/corpus"]["post"]["responses"]["200"]["content"]


def test_openapi_names_the_served_models_and_a_nonempty_text(client):
    spec = client.get("/openapi.json").json()
    served = [m["name"] for m in client.get("/api/models").json()["models"]]
    for name in ("AttentionRequest", "CorpusRequest"):
        model = spec["components"]["schemas"][name]["properties"]["model"]
        assert [o.get("enum") for o in model["anyOf"] if o.get("type") == "string"] == [served]
    assert spec["components"]["schemas"]["AttentionRequest"]["properties"]["text"]["minLength"] == 1


def test_vary_is_sent_once(client):
    for encoding in ("identity", "gzip", "zstd"):
        for fmt in ("json", "compact"):
            r = client.post("/api/attention", json={"text": SENTENCE, "format": fmt}, headers={"Accept-Encoding": encoding})
            assert r.headers.get_list("vary") == ["Accept-Encoding"], (encoding, fmt)


def test_docs_page_is_served_without_a_cdn(client):
    html = client.get("/docs").text
    assert "swagger-ui-bundle.js" in html and "cdn." not in html
    script = html.split('src="')[1].split('"')[0]
    assert client.get(script).status_code == 200
