"""The notebook's ablate() and importance(): the API's own answers, with the same metric choice, and clear errors."""

import pytest

from headscope.models.interventions import BadAblation
from headscope.models.metric_choice import BadMetric
from headscope.notebook import ablate, importance

TEXT = "k#9Qz.m>Ab k#9Qz.m>A"
TOL = 1e-6  # the same forward passes in the same process


@pytest.mark.parametrize("heads", [["decoder:1:1"], [("decoder", 1, 1)]])
@pytest.mark.parametrize("metric", [{}, {"metric": "loss", "span": [12, 20]},
                                    {"metric": "logit_diff", "answer": "b", "wrong": "Y"}])
def test_ablate_is_the_apis_effect(client, models, heads, metric):
    got = ablate(TEXT, heads, model=models["induction"], **metric)
    want = client.post("/api/attention", json={"text": TEXT, "model": "induction", **metric,
                                               "ablate": [{"kind": "decoder", "layer": 1, "head": 1}]}).json()["effect"]
    assert set(got["measures"]) == set(want["measures"])
    assert got["loss_change"] == pytest.approx(want["loss_change"], abs=TOL)
    if metric:
        for key in ("before", "after", "change"):
            assert got["metric"][key] == pytest.approx(want["metric"][key], abs=TOL)
        assert got["metric"]["where"] == want["metric"]["where"]
    else:
        assert "metric" not in got


def test_importance_with_a_metric_is_the_apis(client, models):
    choice = {"metric": "prob", "answer": "b"}
    got = importance([TEXT], model=models["induction"], progress=False, **choice)
    want = client.post("/api/importance", json={"model": "induction", "texts": [TEXT], **choice}).json()
    assert got["measure"] == want["measure"]
    assert got["importance"]["decoder"] == [pytest.approx(row, abs=TOL) for row in want["importance"]["decoder"]]


@pytest.mark.parametrize("heads, metric, error, words", [
    (["decoder:1"], {}, ValueError, "KIND:LAYER:HEAD"),
    (["decoder:9:0"], {}, BadAblation, "layer"),
    (["decoder:1:1"], {"metric": "prob", "answer": "bbb"}, BadMetric, "is 3 tokens"),
    (["decoder:1:1"], {"answer": "b"}, BadMetric, "give metric too"),
])
def test_bad_choices_raise_naming_the_problem(models, heads, metric, error, words):
    with pytest.raises(error, match=words):
        ablate(TEXT, heads, model=models["induction"], **metric)


def test_an_encoder_has_no_metric(models):
    with pytest.raises(BadMetric, match="encoder"):
        importance(model=models["minilm"], metric="prob", answer="the", progress=False)
