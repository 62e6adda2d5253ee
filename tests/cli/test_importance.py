"""`headscope importance`: tables or JSON with headscope/analyses/importance.py's numbers, a progress bar, one-line errors."""

import json

import pytest

from headscope.analyses.importance import head_importance
from headscope.cli.main import main
from tests.cli.test_cli import headscope, one_error_line


def run(capsys, *args) -> tuple[str, str]:
    main(["importance", *map(str, args)])
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_json_is_the_model_functions_answer_and_the_bar_counts_evaluations(capsys, models):
    out, err = run(capsys, "--model", "induction", "--json")
    expected = head_importance(models["induction"])
    got = json.loads(out)
    assert got["measure"] == expected["measure"] and got["curve"]["removed"] == expected["curve"]["removed"]
    assert got["importance"]["decoder"] == [pytest.approx(row, abs=1e-6) for row in expected["importance"]["decoder"]]
    assert got["curve"]["quality"] == pytest.approx(expected["curve"]["quality"], abs=1e-6)
    assert "17/17" in err  # tqdm on stderr


def test_tables_show_every_head_and_every_point_of_the_curve(capsys, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("abcabc abcabc\n\nHello, hello.\n")
    out, _ = run(capsys, "--model", "induction", "--texts", texts, "--ablation", "mean")
    lines = out.splitlines()
    assert lines[0] == "induction: next_token_loss (lower is better, nats per token), ablation mean"
    assert "mean cross-entropy of every next token of 2 texts" in lines[1]  # the blank line is skipped
    at = lines.index("importance, decoder (layer x head):")
    assert lines[at + 1].split() == ["H0", "H1", "H2", "H3"]
    assert [line.split()[0] for line in lines[at + 2: at + 4]] == ["L0", "L1"]
    assert all(len(line.split()) == 5 for line in lines[at + 2: at + 4])
    curve = lines[lines.index("pruning curve (heads ablated together, least important first):") + 2:]
    assert [line.split()[0] for line in curve[:9]] == [str(k) for k in range(9)]
    assert curve[-1].startswith("17 evaluations in ")


def test_the_installed_command_runs(tmp_path):
    done = headscope("importance", "--model", "induction")
    assert done.returncode == 0, done.stderr
    assert "importance, decoder (layer x head):" in done.stdout and "evaluations/s" in done.stderr


@pytest.mark.parametrize("args, words", [
    (["--texts", "/nonexistent/texts.txt"], "cannot read /nonexistent/texts.txt"),
    (["--texts", "TOO_LONG"], "text 0 has 201 tokens but induction takes at most 128"),
    (["--texts", "TOO_MANY"], "65 texts given; importance takes at most 64"),
])
def test_errors_are_one_line_with_exit_status_2(capsys, tmp_path, args, words):
    (tmp_path / "long.txt").write_text("x" * 200 + "\n")
    (tmp_path / "many.txt").write_text("a line\n" * 65)
    args = [{"TOO_LONG": tmp_path / "long.txt", "TOO_MANY": tmp_path / "many.txt"}.get(a, a) for a in args]
    line = one_error_line(capsys, "importance", "--model", "induction", *args)
    assert words in line


def test_a_checkpoint_that_cannot_be_loaded_is_one_line(capsys, tmp_path):
    assert "does not exist" in one_error_line(capsys, "importance", "--model", f"mine={tmp_path / 'none'}")


def test_a_metric_scores_every_head_as_the_model_function_does(capsys, models, tmp_path):
    from headscope.models.metric_choice import choose_metric

    text = "k#9Qz.m>Ab k#9Qz.m>Ab"
    texts = tmp_path / "texts.txt"
    texts.write_text(text + "\n")
    out, err = run(capsys, "--model", "induction", "--metric", "loss", "--span", 12, 22, "--json", "--texts", texts)
    got = json.loads(out)
    expected = head_importance(models["induction"], texts=[text],
                               metric=choose_metric(models["induction"], "loss", [12, 22]))
    assert got["measure"] == expected["measure"] and "12" in json.dumps(got["measure"])
    assert got["importance"]["decoder"] == [pytest.approx(row, abs=1e-6) for row in expected["importance"]["decoder"]]
    assert "17/17" in err


@pytest.mark.parametrize("args, words", [
    (["--metric", "nonsense"], "metric must be one of loss, logit_diff, prob"),
    (["--metric", "logit_diff", "--answer", "b"], "wrong is required"),
    (["--metric", "prob", "--answer", "bbbbbb"], "is 6 tokens"),
    (["--answer", "b"], "answer belongs to a metric"),
])
def test_bad_metric_choices_are_one_line_with_exit_status_2(capsys, args, words):
    assert words in one_error_line(capsys, "importance", "--model", "induction", *args)


def test_a_metric_an_encoder_cannot_have_is_one_line(capsys):
    assert "encoder" in one_error_line(capsys, "importance", "--model", "minilm", "--metric", "prob", "--answer", "the")
