"""`headscope attention`: one text's answer written as the API gives it, value norms and rollout included,
and one clear line for what it cannot do."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson

from headscope.analyses.rollout import rollouts
from headscope.analyses.value_norm import value_norms
from headscope.server.encoding import read_safetensors

ROOT = Path(__file__).parents[2]
TEXT = "The keys to the cabinet are on the table."


def run(*args):
    return subprocess.run([sys.executable, "-m", "headscope", "attention", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_value_norms_and_rollout_to_json_and_safetensors(tmp_path, minilm):
    analysis, norms = value_norms(minilm, TEXT)
    expected_rollout = rollouts(analysis.patterns, analysis.layout)["encoder"].numpy()
    out = tmp_path / "a.json"
    r = run(TEXT, "--model", "minilm", "--weights", "value_norm", "--rollout", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}: minilm, {len(analysis.tokens)} tokens, value_norm, rollout" in r.stderr
    a = orjson.loads(out.read_bytes())
    assert a["weights"]["name"] == "value_norm" and a["tokens"] == analysis.tokens
    np.testing.assert_allclose(a["attention"]["encoder"], norms["encoder"].numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(a["rollout"]["encoder"], expected_rollout, atol=1e-6, rtol=0)
    out = tmp_path / "a.safetensors"
    assert run(TEXT, "--model", "minilm", "--out", str(out)).returncode == 0
    b = read_safetensors(out.read_bytes())
    assert b["weights"]["name"] == "attention"
    np.testing.assert_array_equal(b["attention"]["encoder"], analysis.patterns["encoder"].numpy())


def test_what_it_cannot_do_is_one_line(tmp_path):
    r = run("word " * 600, "--model", "minilm", "--out", str(tmp_path / "a.json"))
    assert r.returncode == 2 and r.stderr.startswith("headscope: error: text has") and len(r.stderr.splitlines()) == 1
    r = run("   ", "--model", "minilm", "--out", str(tmp_path / "a.json"))
    assert r.returncode == 2 and "text is empty" in r.stderr
    r = run(TEXT, "--out", str(tmp_path / "a.csv"))
    assert r.returncode == 2 and "must end in .json or .safetensors" in r.stderr


def test_value_norms_of_a_model_without_reachable_projections_is_one_line(tmp_path, monkeypatch, capsys):
    import pytest

    import headscope.server.answers
    from headscope.analyses.value_norm import NoValueNorms
    from headscope.cli.main import main

    def unreachable(model):
        raise NoValueNorms(f"{model.info.name}: its output projections cannot be found")

    monkeypatch.setattr(headscope.server.answers, "check_value_norms", unreachable)
    with pytest.raises(SystemExit) as stop:
        main(["attention", TEXT, "--model", "induction", "--weights", "value_norm", "--out", str(tmp_path / "a.json")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "headscope: error: weights: value_norm is not available for induction: induction: its output projections "
        "cannot be found"]
    assert not (tmp_path / "a.json").exists()
