"""headscope/notebook/patching.py: patch() and attribute() give the analyses' own answers, with numpy views and
HTML tables shaded around 0."""

import re

import numpy as np
import pytest

from headscope.analyses.attribution import attribute as analysis_attribute
from headscope.analyses.patching import PatchSpec, activation_patching
from headscope.notebook import attribute, patch

CLEAN, CORRUPTED = "k#9Qz.m>Ab k#9Qz.m>A", "xY7!pw@3Rq k#9Qz.m>A"


def test_patch_is_the_analysis_answer_with_numpy_views_and_tables(models):
    model = models["induction"]
    p = patch(CLEAN, CORRUPTED, "b", "Y", model=model, patch="head_positions")
    assert p.answer == activation_patching(model, PatchSpec(CLEAN, CORRUPTED, "b", "Y", patch="head_positions"))
    assert p.names() == ["decoder.z"] and p.recovery().shape == (2, 4, 21) and p.patched("decoder.z").shape == (2, 4, 21)
    assert np.allclose(p.recovery(), (p.patched() - p.answer["corrupted_metric"]) /
                       (p.answer["clean_metric"] - p.answer["corrupted_metric"]))
    html = p._repr_html_()
    assert html.count("<table") == 2  # one per layer: heads down, positions across
    assert html.count("<td") == 2 * 4 * 21
    assert "rgb(255," in html  # shaded around 0: red for positive recovery...
    assert (p.recovery() < 0).any() and ",255)" in html  # ...blue for negative
    with pytest.raises(KeyError, match="no map 'x'; the maps are decoder.z"):
        p.recovery("x")


def test_patch_takes_a_model_by_name_and_refuses_what_the_analysis_refuses():
    p = patch(CLEAN, CORRUPTED, "b", "Y", model="induction")
    assert "Patching('induction', heads, denoise, logit_diff" in repr(p)
    assert len(re.findall(r"<td ", p._repr_html_())) == 8
    with pytest.raises(ValueError, match="clean is 4 tokens and corrupted 5"):
        patch("abc", "abcd", "d", "e", model="induction")


def test_attribute_is_the_analysis_answer(models):
    a = attribute(CLEAN, "b", "Y", model=models["induction"])
    assert a.answer == analysis_attribute(models["induction"], CLEAN, "b", "Y")
    assert sum(c["value"] for c in a.components) == pytest.approx(a.answer["total"], abs=a.answer["tolerance"])
    html = a._repr_html_()
    assert html.count("<tr>") == 1 + len(a.components) and "held fixed" in html
