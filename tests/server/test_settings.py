"""Every limit the server enforces is written once, in Settings, and published from there."""

from dataclasses import fields

from fastapi.testclient import TestClient

from headscope.server.app import create_app
from headscope.server.settings import LIMITS, Settings


def test_every_limit_is_published_with_its_value_and_words(models):
    settings = Settings(corpus_max_texts=7, probe_max_pairs=9, send_timeout_s=4.5)
    with TestClient(create_app(settings, models=models)) as client:
        published = client.get("/api/models").json()["limits"]
        schema = client.get("/openapi.json").json()["components"]["schemas"]["Limits"]["properties"]
        probe = client.get("/api/probe/info").json()["limits"]
    limits = [f.name for f in fields(Settings) if "about" in f.metadata]
    assert set(limits) <= set(published) and set(published) == set(LIMITS)
    assert {name: published[name] for name in limits} == {name: getattr(settings, name) for name in limits}
    assert published["corpus_max_texts"] == 7 and published["send_timeout_s"] == 4.5
    assert all(schema[name]["description"] == LIMITS[name][1] for name in LIMITS)
    assert probe == {name: published[name] for name in published if name.startswith("probe_")} and probe["probe_max_pairs"] == 9


def test_every_metric_says_what_it_is_computed_on(client):
    from headscope.analyses.metrics import METRICS, RENORMALISED

    about = client.get("/api/models").json()["metrics"]
    assert list(about) == list(METRICS)
    assert about["entropy"]["basis"] == "renormalised" and about["confidence"]["basis"] == "raw"
    assert {name for name, m in about.items() if m["basis"] == "renormalised"} == set(RENORMALISED)
