"""The server against the bare model, same machine, same run.

    python -m bench.server
Targets: /api/attention in the compact encoding at 128 tokens <= 1.3x the bare forward (JSON path
reported too); 16-token requests from 8 concurrent clients >= 70% of the bare model's throughput
in a loop; memory flat over 2,000 requests. Also the page data's size on the wire.
"""

import asyncio
import os
import statistics
import time

# The reference forward runs as the server's does: `headscope serve` makes OpenMP threads sleep when idle
# (headscope/cli/main.py); spinning ones slow the bare forward while the server process works (set before torch loads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx  # noqa: E402
import torch  # noqa: E402

from bench.common import ServerProcess, report, text_of  # noqa: E402
from headscope.models.minilm import MiniLM  # noqa: E402


def bare_forward(model: MiniLM, text: str):
    ids = torch.tensor([model.tokenize(text)["ids"]])

    def run():
        with torch.inference_mode():
            model.encoder(ids)

    return run


def latency(server: ServerProcess, model: MiniLM, rounds: int = 8, per_round: int = 10) -> None:
    """Blocks of bare forwards and of requests, in turns: interleaving single calls would let each
    process's busy-waiting OpenMP threads slow the other's next call."""
    text = text_of(128)
    bare = bare_forward(model, text)
    paths = {f"{fmt}, {enc or 'uncompressed'}": (fmt, enc) for fmt in ("compact", "json") for enc in (None, "zstd")}
    clients = {enc: httpx.Client(headers={"Accept-Encoding": enc or "identity"}, timeout=120) for enc in (None, "zstd")}
    times = {"bare forward": [], **{name: [] for name in paths}}
    server_times = {name: [] for name in paths}
    wire = {}
    for _ in range(rounds):
        for name in times:
            time.sleep(0.2)
            for _ in range(per_round):
                started = time.perf_counter()
                if name == "bare forward":
                    bare()
                else:
                    fmt, enc = paths[name]
                    r = clients[enc].post(f"{server.url}/api/attention", json={"text": text, "format": fmt})
                    r.raise_for_status()
                    server_times[name].append(float(r.headers["server-timing"].split("dur=")[1]) / 1e3)
                    wire[name] = r.num_bytes_downloaded
                times[name].append(time.perf_counter() - started)
    ref = statistics.median(times["bare forward"])
    rows = [{"path": "bare forward (reference)", "server ms": ref * 1e3, "server / forward": 1.0,
             "client ms": ref * 1e3, "client / forward": 1.0, "bytes on the wire": 0}]
    for name in paths:
        server_ms, client_ms = statistics.median(server_times[name]), statistics.median(times[name])
        rows.append({"path": name, "server ms": server_ms * 1e3, "server / forward": server_ms / ref,
                     "client ms": client_ms * 1e3, "client / forward": client_ms / ref, "bytes on the wire": wire[name]})
    report("/api/attention at 128 tokens: server time (Server-Timing) and one Python client's latency "
           "(target: compact <= 1.3x the bare forward; page data <= 1 MB)", rows)


async def clients(url: str, n_clients: int, seconds: float) -> int:
    done = 0
    stop = time.perf_counter() + seconds

    async def client(k):
        nonlocal done
        async with httpx.AsyncClient(timeout=60) as c:
            i = 0
            while time.perf_counter() < stop:
                r = await c.post(f"{url}/api/attention", json={"text": f"client {k} asks request {i} : the model reads sixteen short tokens ok"})
                r.raise_for_status()
                done += 1
                i += 1

    await asyncio.gather(*(client(k) for k in range(n_clients)))
    return done


def throughput(server: ServerProcess, model: MiniLM, seconds: float = 10.0) -> None:
    text = "client 0 asks request 0 : the model reads sixteen short tokens ok"
    assert len(model.tokenize(text)["ids"]) == 16, len(model.tokenize(text)["ids"])
    run = bare_forward(model, text)
    run()
    rows = []
    for _ in range(2):  # alternate, to share the machine's noise
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            run()
            n += 1
        bare = n / (time.perf_counter() - started)
        served = asyncio.run(clients(server.url, 8, seconds)) / seconds
        rows.append({"bare model /s": bare, "8 clients, server /s": served, "ratio": served / bare})
    report("Throughput, 16-token requests, JSON answers (target: ratio >= 0.7)", rows)


def memory(server: ServerProcess, requests: int = 2000) -> None:
    texts = [text_of(n) for n in (16, 64, 128)]
    rows = []
    with httpx.Client(timeout=60) as c:
        for i in range(200):
            c.post(f"{server.url}/api/attention", json={"text": texts[i % 3], "format": "compact"}).raise_for_status()
        start = server.rss_mb()
        for i in range(requests):
            c.post(f"{server.url}/api/attention", json={"text": texts[i % 3] + f" {i}", "format": "compact"})
            if (i + 1) % 500 == 0:
                rows.append({"requests": i + 1, "RSS MB": server.rss_mb(), "growth MB": server.rss_mb() - start})
    report(f"Server memory over {requests} requests after 200 warm-up (target: flat)", rows)


def main() -> None:
    model = MiniLM.load()
    with ServerProcess() as server:
        latency(server, model)
        throughput(server, model)
        memory(server)


if __name__ == "__main__":
    main()
