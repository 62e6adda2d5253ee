"""The `headscope` command: `heads` writes corpus averages; `serve` (and `python -m app`) starts the app."""

import csv
import json
import subprocess
import sys
import time

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


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
