"""The layout contract: every consumer reads which tokens index an attention kind's rows and columns,
and whether it is causal, from the kind's Layout — never from the kind's name."""

import dataclasses
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from headscope.analyses.heads import summarize_heads
from headscope.models.analysis import CAUSAL_SELF, CROSS, DECODER_SELF, SELF
from headscope.models.registry import BUILTINS, IMAGE_BUILTINS, OPTIONAL, ModelSpec, parse_specs
from headscope.server.app import create_app
from headscope.server.encoding import read_safetensors
from headscope.server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_follow_the_layout_not_the_kind_name(dates):
    """The same patterns under other kind names give the same per-head numbers."""
    analysis = dates.analyze("25 November 2026")
    renamed = {"encoder": "source", "decoder": "writing", "cross": "reading"}
    other = dataclasses.replace(
        analysis,
        patterns={renamed[k]: p for k, p in analysis.patterns.items()},
        layout={renamed[k]: layout for k, layout in analysis.layout.items()},
    )
    expected, got = summarize_heads(analysis), summarize_heads(other)
    for kind, new in renamed.items():
        assert got[new] == expected[kind]


def test_a_causal_layout_changes_the_metrics_of_the_same_weights(minilm):
    """Reading the same square pattern as causal instead of bidirectional changes a metric that
    depends on it (distance is normalised by how far a query *could* look)."""
    analysis = minilm.analyze("The cat sat on the mat because it was warm.")
    causal = dataclasses.replace(analysis, layout={"encoder": CAUSAL_SELF})
    a = summarize_heads(analysis)["encoder"]
    b = summarize_heads(causal)["encoder"]
    assert any(x["metrics"] != y["metrics"] for x, y in zip(a, b, strict=True))


def test_builtin_layouts():
    assert (SELF.rows, SELF.columns, SELF.causal) == ("tokens", "tokens", False)
    assert (CAUSAL_SELF.rows, CAUSAL_SELF.columns, CAUSAL_SELF.causal) == ("tokens", "tokens", True)
    assert (DECODER_SELF.rows, DECODER_SELF.columns, DECODER_SELF.causal) == ("output_tokens", "output_tokens", True)
    assert (CROSS.rows, CROSS.columns, CROSS.causal) == ("output_tokens", "tokens", False)


KIND_NAME_TEST = re.compile(r"""(===|!==|==|!=)\s*['"](encoder|decoder|cross)['"]|['"](encoder|decoder|cross)['"]\s*(===|!==|==|!=)""")


def test_no_code_decides_by_a_kinds_name():
    """grep: no comparison of a kind with a literal kind name in the page's scripts, the web layer or
    the per-head statistics."""
    files = [*ROOT.glob("headscope/server/static/js/**/*.js"), *ROOT.glob("headscope/server/**/*.py"),
             *ROOT.glob("headscope/cli/*.py"), *ROOT.glob("headscope/notebook/*.py"),
             ROOT / "headscope" / "analyses" / "heads.py", ROOT / "headscope" / "analyses" / "metrics.py",
             ROOT / "headscope" / "analyses" / "roles.py"]
    offending = [f"{f.relative_to(ROOT)}:{n}: {line.strip()}" for f in files
                 for n, line in enumerate(f.read_text().splitlines(), 1) if KIND_NAME_TEST.search(line)]
    assert offending == []
    assert KIND_NAME_TEST.search("if (kd.kind === 'cross')")  # the pattern does catch such a test


# ---- the registry, from data ---------------------------------------------------------------------


def test_specs_name_builtins_or_checkpoint_directories():
    # every built-in, the image model digits among them (after the text ones: the default takes a text)
    here = [name for name in BUILTINS if name not in OPTIONAL or OPTIONAL[name]() is None]  # smollm2: if installed
    assert parse_specs(None) == tuple(ModelSpec(name) for name in here) and "digits" in here
    assert parse_specs(None)[0].name not in IMAGE_BUILTINS
    assert parse_specs(["dates", "mine=/some/dir"]) == (ModelSpec("dates"), ModelSpec("mine", "/some/dir"))
    assert str(ModelSpec.parse("mine=/some/dir")) == "mine=/some/dir"
    with pytest.raises(ValueError, match="unknown model 'gpt2'.*NAME=PATH"):
        parse_specs(["gpt2"])
    with pytest.raises(ValueError, match="given twice"):
        parse_specs(["dates", "dates"])
    with pytest.raises(ValueError, match="empty path"):
        parse_specs(["mine="])


@pytest.fixture(scope="module")
def dates_only(dates):
    """A server started as `headscope serve --model dates`."""
    app = create_app(Settings(models=(ModelSpec("dates"),)), models={"dates": dates})
    with TestClient(app) as client:
        yield client


def test_a_request_without_model_uses_the_servers_default(dates_only):
    assert dates_only.get("/api/models").json()["default"] == "dates"
    r = dates_only.post("/api/attention", json={"text": "25 November 2026"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "dates" and r.json()["output_text"] == "2026-11-25"
    r = dates_only.post("/api/corpus", json={"texts": ["1 May 2000"]})
    assert r.status_code == 200 and r.json()["model"] == "dates"
    r = dates_only.post("/api/attention", json={"text": "x", "model": "minilm"})
    assert r.status_code == 422 and r.json()["available"] == ["dates"]


def test_every_answer_carries_its_layout_json_and_compact(client):
    models = [m for m in client.get("/api/models").json()["models"] if m["takes"] == "text"]  # digits: its own tests
    for info in models:
        text = "25 November 2026"
        body = client.post("/api/attention", json={"text": text, "model": info["name"]}).json()
        assert body["layout"] == info["kinds"]
        for kind, layout in body["layout"].items():
            rows, cols = body[layout["rows"]], body[layout["columns"]]
            assert len(body["attention"][kind][0][0]) == len(rows)
            assert len(body["attention"][kind][0][0][0]) == len(cols)
        compact = client.post("/api/attention", json={"text": text, "model": info["name"], "format": "compact"},
                              headers={"Accept-Encoding": "identity"})
        header = read_safetensors(compact.content)
        assert header["layout"] == info["kinds"]
        for kind, layout in header["layout"].items():
            shape = header["attention"][kind].shape
            assert shape[2:] == (len(header[layout["rows"]]), len(header[layout["columns"]]))


def test_generation_fields_go_only_to_models_that_generate(client):
    r = client.post("/api/attention", json={"text": "hi", "model": "minilm", "max_new_tokens": 3})
    assert r.status_code == 422 and "max_new_tokens" in r.json()["detail"]
    r = client.post("/api/attention", json={"text": "hi", "model": "minilm", "generate": 3})
    assert r.status_code == 422 and "generate" in r.json()["detail"]
    r = client.post("/api/attention", json={"text": "1 May 2000", "model": "dates", "max_new_tokens": 4})
    assert r.status_code == 200 and r.json()["output_text"] == "2000" and r.json()["stopped"] == "length"
    r = client.post("/api/attention", json={"text": "1 May 2000", "model": "dates", "max_new_tokens": 100})
    assert r.status_code == 422 and r.json()["limit"] == 12
    r = client.post("/api/attention", json={"text": "1 May 2000", "model": "dates", "max_new_tokens": 129})
    assert r.status_code == 422


def test_word_ids_come_from_the_tokenizer(client):
    body = client.post("/api/attention", json={"text": "Unbelievably, it's playing."}).json()
    tokens, words = body["tokens"], body["words"]
    assert words[0] is None and words[-1] is None  # [CLS], [SEP]
    pieces = [t for t, w in zip(tokens, words, strict=True) if w == words[1]]
    assert len(pieces) > 1 and "".join(p.removeprefix("##") for p in pieces) == "unbelievably"
    dates = client.post("/api/attention", json={"text": "25th May", "model": "dates"}).json()
    assert dates["words"] == [None, 0, 0, 0, 0, None, 1, 1, 1, None]  # <s> 2 5 t h ␣ M a y </s>
