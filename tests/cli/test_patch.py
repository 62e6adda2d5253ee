"""`headscope patch` and `headscope attribute`: the analyses' own answers (headscope/analyses/patching.py,
attribution.py) as JSON or tables, a progress bar, one-line errors."""

import json

import pytest

from headscope.analyses.attribution import attribute
from headscope.analyses.patching import PatchSpec, activation_patching
from headscope.cli.main import main
from tests.cli.test_cli import headscope, one_error_line

CLEAN, CORRUPTED = "k#9Qz.m>Ab k#9Qz.m>A", "xY7!pw@3Rq k#9Qz.m>A"


def run(capsys, *args) -> tuple[str, str]:
    main([*map(str, args)])
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_json_is_the_analysis_answer_and_the_bar_counts_cells(capsys, models):
    out, err = run(capsys, "patch", CLEAN, CORRUPTED, "--model", "induction", "--answer", "b", "--wrong", "Y",
                   "--patch", "residual", "--direction", "noise", "--json")
    expected = activation_patching(models["induction"], PatchSpec(CLEAN, CORRUPTED, "b", "Y", None, "residual", "noise"))
    assert json.loads(out) == json.loads(json.dumps(expected))
    assert "42/42" in err  # 2 layers x 21 positions, on stderr


def test_tables_show_every_layer_and_head(capsys):
    out, _ = run(capsys, "patch", CLEAN, CORRUPTED, "--model", "induction", "--answer", "b", "--wrong", "Y")
    lines = out.splitlines()
    assert lines[0].startswith("induction: heads, denoise; metric logit_diff") and "answer 'b', wrong 'Y'" in lines[0]
    at = lines.index("decoder.z: recovery, layer x head")
    assert lines[at + 1].split() == ["H0", "H1", "H2", "H3"]
    assert [line.split()[0] for line in lines[at + 2: at + 4]] == ["L0", "L1"]
    assert all(len(line.split()) == 5 for line in lines[at + 2: at + 4])
    assert lines[-1] == "8 cells in 3 forward passes"


def test_attribute_prints_the_components_largest_first_and_json_is_the_analysis_answer(capsys, models):
    out, _ = run(capsys, "attribute", CLEAN, "--model", "induction", "--answer", "b", "--wrong", "Y", "--top", "3")
    lines = out.splitlines()
    expected = attribute(models["induction"], CLEAN, "b", "Y")
    assert lines[0].startswith("induction: logit('b') - logit('Y') at position 20 ('A') = ")
    ranked = sorted(expected["components"], key=lambda c: -abs(c["value"]))
    assert [line[:28].strip() for line in lines[3:]] == [c["name"] for c in ranked[:3]]
    out, _ = run(capsys, "attribute", CLEAN, "--model", "induction", "--answer", "b", "--wrong", "Y", "--json")
    assert json.loads(out) == json.loads(json.dumps(expected))


def test_the_installed_command_runs():
    done = headscope("patch", "25/11/2026", "24/11/2026", "--model", "dates", "--answer", "5", "--wrong", "4")
    assert done.returncode == 0, done.stderr
    assert "cross.z: recovery, layer x head" in done.stdout and "at output step 9" in done.stdout


@pytest.mark.parametrize("args, words", [
    (["patch", "abc", "abcd", "--answer", "d", "--wrong", "e"],
     "clean is 4 tokens and corrupted 5 for induction; patching needs the same number, so that position i means the "
     "same in both: clean ['<s>', 'a', 'b', 'c'], corrupted ['<s>', 'a', 'b', 'c', 'd']"),
    (["patch", "abc", "abd", "--answer", "de", "--wrong", "e"], "answer 'de' is 2 tokens for induction (d | e)"),
    (["patch", " ", "abd", "--answer", "d"], "the clean prompt is empty"),
    (["patch", "a" * 127, "b" * 127, "--answer", "d", "--wrong", "e", "--patch", "head_positions"],
     "the limit is 100000"),
    (["attribute", "abc", "--answer", "d", "--wrong", "e", "--step", "1"], "step is for encoder-decoder"),
])
def test_errors_are_one_line_with_exit_status_2(capsys, args, words):
    line = one_error_line(capsys, *args, "--model", "induction")
    assert words in line


def test_attribute_on_an_encoder_says_why(capsys):
    line = one_error_line(capsys, "attribute", "The cat sat.", "--answer", "a", "--wrong", "b", "--model", "minilm")
    assert "direct logit attribution has no meaning for minilm" in line
