"""The server's resident memory under 16 concurrent heavy requests, and once idle again, against its size at start.

    python -m bench.memory

A `headscope serve --model minilm` process, as a user starts it. For each load: 16 clients at once (from this
machine, so one address: long jobs beyond long_jobs_per_client get 429, which the table counts), the process's
resident set sampled every 20 ms (peak), then 3 s of idleness (idle).
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.common import ServerProcess, report, text_of

TEXT = text_of(512)
ALL_HEADS = ",".join(f"encoder:{layer}:{head}" for layer in range(6) for head in range(12))

LOADS = {
    "value norms, 512 tokens": ("POST", "/api/attention", {"text": TEXT, "weights": "value_norm", "format": "compact"}),
    "72 heads ablated + value norms + rollout": (
        "GET", f"/api/attention?text={TEXT.replace(' ', '+')}&weights=value_norm&rollout=1&ablate={ALL_HEADS}"
               "&format=compact", None),
    "importance, 48 texts": ("POST", "/api/importance", {"model": "minilm"}),
    "corpus, 32 texts of 510 tokens": ("POST", "/api/corpus", {"texts": [text_of(510)] * 32}),
}


def under_load(server: ServerProcess, method: str, path: str, body: dict | None) -> dict:
    peak, stop = [server.rss_mb()], threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(server.rss_mb())
            time.sleep(0.02)

    def ask(_):
        with httpx.Client(timeout=600) as http:
            return http.request(method, server.url + path, json=body).status_code

    sampler = threading.Thread(target=sample)
    sampler.start()
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(ask, range(16)))
    stop.set()
    sampler.join()
    time.sleep(3)
    return {"answered": statuses.count(200), "refused 429": statuses.count(429), "peak MB": max(peak),
            "idle MB": server.rss_mb()}


def main() -> None:
    with ServerProcess(("minilm",)) as server:
        httpx.post(server.url + "/api/attention", json={"text": "warm up"}, timeout=60)
        start = server.rss_mb()
        rows = []
        for name, (method, path, body) in LOADS.items():
            rows.append({"load (16 clients)": name, "start MB": start, **under_load(server, method, path, body)})
    report("Resident memory of `headscope serve --model minilm`", rows)


if __name__ == "__main__":
    main()
