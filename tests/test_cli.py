"""The `headscope` command: `heads` writes corpus averages; `serve` (and `python -m app`) starts the app."""

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from model.heads import CorpusAverage

LINES = ["The cat sat on the mat.", "", "Dogs bark at night, loudly!", "word " * 600, "Birds sing."]


def test_heads_writes_csv_and_json_with_corpus_averages(tmp_path, minilm):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES))
    out_csv, out_json = tmp_path / "heads.csv", tmp_path / "heads.json"
    for out in (out_csv, out_json):
        done = subprocess.run(["headscope", "heads", str(corpus), "--out", str(out)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert "skipped line 4" in done.stderr and "602 tokens" in done.stderr
        assert "3 sentences averaged" in done.stderr
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 72 and rows[2]["name"] == "L0H2" and "previous_token" in rows[2]["roles"].split()
    average = CorpusAverage()
    average.add_batch(minilm, [LINES[0], LINES[2], LINES[4]])
    expected = average.summary()["encoder"]
    assert float(rows[2]["previous_token"]) == pytest.approx(expected[2]["metrics"]["previous_token"], rel=1e-5)
    data = json.loads(out_json.read_text())
    assert data["sentences"] == 3 and data["heads"]["encoder"][2]["metrics"] == pytest.approx(expected[2]["metrics"], rel=1e-5)


@pytest.mark.parametrize("command", [["headscope", "serve"], [sys.executable, "-m", "app", "serve"]])
def test_serve_starts_the_app(command, unused_port):
    proc = subprocess.Popen(command + ["--port", str(unused_port), "--model", "minilm"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        assert "loaded" in first and f"http://127.0.0.1:{unused_port}/" in first
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{unused_port}/api/models", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        assert r.json()["default"] == "minilm"
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


ROOT = Path(__file__).resolve().parents[1]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_serve_answers_the_hosts_named_with_allow_host(unused_port):
    proc = start(["serve", "--port", str(unused_port), "--model", "dates", "--allow-host", "my.box",
                  "--log-level", "warning"])
    try:
        assert "loaded" in proc.stdout.readline()
        url = f"http://127.0.0.1:{unused_port}/api/models"
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(url, headers={"Host": "my.box"}, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        assert r.status_code == 200
        assert httpx.get(url, headers={"Host": "other.box"}, timeout=5).status_code == 421
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()


def test_a_busy_port_is_one_clear_line_before_anything_loads(unused_port):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", unused_port))
        taken.listen()
        proc = start(["serve", "--port", str(unused_port)])
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and out == ""  # no "open http://..." for a server that never ran
    assert err == f"headscope: error: port {unused_port} is in use; stop the server that holds it or choose " \
                  "another with --port\n"


def test_serve_makes_openmp_threads_sleep_unless_told_otherwise():
    """OMP_WAIT_POLICY is read when torch loads: `main` sets it first, and importing the CLI loads no torch."""
    script = ("import os, sys; import app.cli as cli; assert 'torch' not in sys.modules; "
              "cli.serve = lambda args: print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules); "
              "cli.main(['serve'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout == "PASSIVE True\n", done.stderr
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout == "ACTIVE True\n", done.stderr


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
