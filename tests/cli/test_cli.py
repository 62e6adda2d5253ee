"""The `headscope` command: `heads` writes corpus averages; `serve` (and `python -m app`) starts the app."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from headscope.analyses.heads import corpus_sums
from headscope.cli.main import main

LINES = ["The cat sat on the mat.", "", "Dogs bark at night, loudly!", "word " * 600, "Birds sing."]
ROOT = Path(__file__).resolve().parents[2]


def headscope(*args: str, **options) -> subprocess.CompletedProcess:
    """`python -m headscope ...` from this checkout, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "headscope", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **options)


def test_heads_writes_csv_and_json_with_corpus_averages(tmp_path, minilm):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES))
    out_csv, out_json = tmp_path / "heads.csv", tmp_path / "heads.json"
    for out in (out_csv, out_json):
        done = headscope("heads", corpus, "--out", out)
        assert done.returncode == 0, done.stderr
        assert "skipped line 4: text has 602 tokens" in done.stderr and "skipped line 2" not in done.stderr
        assert "3 sentences averaged" in done.stderr
        assert "5/5" in done.stderr  # tqdm's progress reached every line
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 72 and rows[2]["name"] == "L0H2" and "previous_token" in rows[2]["roles"].split()
    expected = corpus_sums(minilm, [LINES[0], LINES[2], LINES[4]]).summary()["encoder"]
    assert float(rows[2]["previous_token"]) == pytest.approx(expected[2]["metrics"]["previous_token"], rel=1e-5)
    assert float(rows[2]["std_sink"]) == pytest.approx(expected[2]["std"]["sink"], rel=1e-5, abs=1e-6)
    assert int(rows[2]["n_duplicate_token"]) == expected[2]["n"]["duplicate_token"]
    assert float(rows[2]["share_previous_token"]) == 1.0
    data = json.loads(out_json.read_text())
    assert data["sentences"] == 3 and data["heads"]["encoder"][2]["metrics"] == pytest.approx(expected[2]["metrics"], rel=1e-5)
    assert data["heads"]["encoder"][2]["role_share"] == pytest.approx(expected[2]["role_share"])
    assert data["roles_of"] == "corpus means" and len(data["similarity"]["encoder"]["distance"]) == 72
    assert data["skipped"] == [{"line": 4, "error": "text has 602 tokens but minilm takes at most 512"}]


def run_main(capsys, *args) -> tuple[int, str]:
    """headscope.cli.main.main in this process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    return exited.value.code, capsys.readouterr().err


def one_error_line(capsys, *args) -> str:
    code, err = run_main(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("headscope: error: "), err
    return lines[0]


def test_heads_on_an_unreadable_corpus_says_so_in_one_line(tmp_path, capsys):
    out = tmp_path / "heads.csv"
    assert "No such file or directory" in one_error_line(capsys, "heads", tmp_path / "missing.txt", "--out", out)
    assert "Is a directory" in one_error_line(capsys, "heads", tmp_path, "--out", out)
    (tmp_path / "latin1.txt").write_bytes("Café au lait.\n".encode("latin-1"))
    assert "not UTF-8" in one_error_line(capsys, "heads", tmp_path / "latin1.txt", "--out", out)
    (tmp_path / "ok.txt").write_text("Fine.\n")
    assert "no folder" in one_error_line(capsys, "heads", tmp_path / "ok.txt", "--out", tmp_path / "no" / "h.csv")
    (tmp_path / "blank.txt").write_text("\n  \n")
    assert "has no sentences" in one_error_line(capsys, "heads", tmp_path / "blank.txt", "--out", out)
    (tmp_path / "long.txt").write_text("word " * 600 + "\n")  # every line too long, and no --truncate
    code, err = run_main(capsys, "heads", tmp_path / "long.txt", "--out", out)
    assert code == 2 and "skipped line 1: text has 602 tokens" in err
    assert err.strip().splitlines()[-1].startswith(f"headscope: error: no line of {tmp_path / 'long.txt'}"), err
    assert not out.exists()


def test_heads_refuses_bad_options_before_running(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Fine.\n")
    code, err = run_main(capsys, "heads", corpus, "--out", tmp_path / "heads.txt")
    assert code == 2 and "must end in .csv or .json" in err and not (tmp_path / "heads.txt").exists()
    for options, words in [(["--model", "nope"], "unknown model 'nope'"), (["--model", "=x"], "has no name"),
                           (["--model", "minilm", "--model", "dates"], "give --model once"),
                           (["--batch-size", "0"], "'0' is not a whole number"),
                           (["--address", "127.0.0.1:6379"], "are for --engine ray")]:
        code, err = run_main(capsys, "heads", corpus, "--out", tmp_path / "heads.csv", *options)
        assert code == 2 and words in err, (options, err)
    assert not (tmp_path / "heads.csv").exists()


def served_url(proc: subprocess.Popen) -> str:
    """The address `serve --port 0` prints once its models are loaded: the port the system chose, already
    listening (no race for a free port between choosing one and binding it)."""
    first = proc.stdout.readline()
    assert "loaded" in first, first
    url = first.split("open ")[1].strip().rstrip("/")
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0"), first
    return url


SCRIPT = str(Path(sys.executable).parent / "headscope")  # the console script of the environment running the tests


@pytest.mark.parametrize("command", [[SCRIPT, "serve"], [sys.executable, "-m", "headscope", "serve"]])
def test_serve_starts_the_app(command):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the `headscope` script runs this checkout's code too
    proc = subprocess.Popen(command + ["--port", "0", "--model", "minilm"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = served_url(proc)
        r = httpx.get(f"{url}/api/models", timeout=60)  # waits in the listening socket's backlog if need be
        assert r.json()["default"] == "minilm"
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "headscope", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_serve_answers_the_hosts_named_with_allow_host():
    proc = start(["serve", "--port", "0", "--model", "dates", "--allow-host", "my.box", "--log-level", "warning"])
    try:
        url = f"{served_url(proc)}/api/models"
        assert httpx.get(url, headers={"Host": "my.box"}, timeout=60).status_code == 200
        assert httpx.get(url, headers={"Host": "other.box"}, timeout=60).status_code == 421
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()


def test_a_busy_port_is_one_clear_line_before_anything_loads():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # a port this test holds, so nothing can race for it
        taken.listen()
        port = taken.getsockname()[1]
        proc = start(["serve", "--port", str(port)])
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and out == ""  # no "open http://..." for a server that never ran
    assert err == f"headscope: error: port {port} is in use; stop the server that holds it or choose " \
                  "another with --port\n"


def test_serve_makes_openmp_threads_sleep_unless_told_otherwise():
    """OMP_WAIT_POLICY is read when torch loads: `main` sets it first, and importing the CLI loads no torch."""
    script = ("import os, sys; import headscope.cli.main as cli, headscope.cli.serve as serve; "
              "assert 'torch' not in sys.modules; "
              "serve.serve = lambda args: print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules); "
              "cli.main(['serve'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout == "PASSIVE True\n", done.stderr
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout == "ACTIVE True\n", done.stderr


@pytest.mark.parametrize("value", ["99999", "-1", "http"])
def test_a_port_that_is_not_one_is_said_in_one_line(capsys, value):
    with pytest.raises(SystemExit) as done:
        main(["serve", "--port", value])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"headscope serve: error: argument --port: {value!r} is not a port: give a "
                                            "whole number from 0 to 65535 (0: any free one)")
