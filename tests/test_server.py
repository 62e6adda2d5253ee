"""The live server under hostile clients: huge declared bodies, trickled bodies, clients that do
not read, overload. Runs real uvicorn on a free port."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from app.main import create_app
from app.settings import Settings
from tests.conftest import LiveServer

LONG = " ".join(["attention"] * 500)  # 502 tokens: one of the slowest requests


def raw_request(url: str, head: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(head)
    return s


def read_status(s: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ")[1])


@pytest.fixture(scope="module")
def strict_server(models):
    """A server with a short body deadline and a short line, to provoke 408 and 503 quickly."""
    with LiveServer(create_app(Settings(body_timeout_s=1.0, max_waiting=1), models=models)) as server:
        yield server


def test_declared_oversized_body_is_refused_before_it_is_sent(live_server):
    s = raw_request(live_server.url, b"POST /api/attention HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000000000\r\n\r\n")
    started = time.monotonic()
    assert read_status(s) == 413
    assert time.monotonic() - started < 5
    s.close()


def test_trickled_body_gets_408_and_does_not_stall_others(strict_server):
    s = raw_request(strict_server.url, b"POST /api/attention HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{\"text\": ")
    started = time.monotonic()
    r = httpx.post(f"{strict_server.url}/api/attention", json={"text": "meanwhile"}, timeout=30)
    assert r.status_code == 200  # served while the slow body is still arriving
    assert time.monotonic() - started < 5
    assert read_status(s) == 408
    s.close()


def test_client_that_never_reads_does_not_stall_others(live_server):
    body = b'{"text": "' + LONG.encode() + b'", "format": "json"}'
    sockets = [raw_request(live_server.url, b"POST /api/attention HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body) for _ in range(3)]
    time.sleep(1.0)  # their large answers now sit unread
    r = httpx.post(f"{live_server.url}/api/attention", json={"text": "still serving"}, timeout=30)
    assert r.status_code == 200
    for s in sockets:
        s.close()


def test_overload_is_refused_at_once_with_503(strict_server):
    def post(i):
        started = time.monotonic()
        r = httpx.post(f"{strict_server.url}/api/attention", json={"text": f"{LONG} {i}"}, timeout=120)
        return r.status_code, r.headers.get("retry-after"), time.monotonic() - started, r.json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(8)))
    statuses = [status for status, *_ in results]
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1
    slowest_ok = max(t for status, _, t, _ in results if status == 200)
    for status, retry_after, elapsed, body in results:
        if status == 503:
            assert retry_after == "1" and body["error"] == "busy"
            assert elapsed < slowest_ok  # refused without waiting its turn
    assert httpx.post(f"{strict_server.url}/api/attention", json={"text": "after"}, timeout=30).status_code == 200


def test_identical_waiting_requests_share_one_computation(strict_server):
    """Eight identical requests in a line of one: they share one place, so nobody is refused."""
    def post(_):
        return httpx.post(f"{strict_server.url}/api/attention", json={"text": LONG}, timeout=120)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert len({r.content for r in responses}) == 1


def test_requests_batched_together_keep_their_true_weights(live_server, minilm):
    """Concurrent requests run as padded batches; each answer still equals its own single run."""
    texts = [f"Request {i} has {'a few more words ' * (i % 4)}in it." for i in range(12)]

    def post(text):
        return httpx.post(f"{live_server.url}/api/attention", json={"text": text}, timeout=60).json()

    with ThreadPoolExecutor(12) as pool:
        bodies = list(pool.map(post, texts))
    for text, body in zip(texts, bodies, strict=True):
        single = minilm.analyze(text)
        assert body["tokens"] == single.tokens
        np.testing.assert_allclose(np.asarray(body["attention"]["encoder"]), single.patterns["encoder"].numpy(),
                                   atol=1e-5, rtol=0)


def test_many_concurrent_small_requests_all_succeed(live_server):
    """The default line (16 waiting) absorbs 8 clients without refusing anyone."""
    def post(i):
        return httpx.post(f"{live_server.url}/api/attention", json={"text": f"client number {i} says hello"},
                          timeout=60).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(post, range(32))) == [200] * 32


def test_server_answers_while_a_corpus_runs(live_server):
    texts = [f"Sentence number {i} is here, with some words about heads and layers." for i in range(2000)]
    done = threading.Event()
    result = {}

    def run_corpus():
        result["r"] = httpx.post(f"{live_server.url}/api/corpus", json={"texts": texts}, timeout=120)
        done.set()

    threading.Thread(target=run_corpus).start()
    time.sleep(0.3)
    r = httpx.post(f"{live_server.url}/api/attention", json={"text": "in between"}, timeout=30)
    assert r.status_code == 200
    assert not done.is_set()  # answered between the corpus's batches, not after them
    assert done.wait(120) and result["r"].status_code == 200 and result["r"].json()["sentences"] == 2000
