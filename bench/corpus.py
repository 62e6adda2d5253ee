"""Corpus statistics, batched, against sending the same sentences one by one to /api/attention.

    python -m bench.corpus
Targets: /api/corpus >= 3x the throughput of one-by-one requests; 2,000 short sentences in
under a minute with progress throughout.
"""

import json
import time

import httpx

from bench.common import ServerProcess, report

SUBJECTS = ["The cat", "A dog", "My neighbour", "The old model", "Every head", "This sentence"]
VERBS = ["sat on", "looked at", "reads from", "ignored", "attends to", "points to"]
OBJECTS = ["the mat.", "a red ball!", "the previous token.", "its own position?", "the separator, again.", "them all."]


def sentences(n: int) -> list[str]:
    return [f"{SUBJECTS[i % 6]} {VERBS[(i // 6) % 6]} {OBJECTS[(i // 36) % 6]} ({i})" for i in range(n)]


def main() -> None:
    with ServerProcess() as server, httpx.Client(timeout=600) as client:
        texts = sentences(300)
        client.post(f"{server.url}/api/corpus", json={"texts": texts[:40]}).raise_for_status()  # warm up
        started = time.perf_counter()
        for t in texts:
            client.post(f"{server.url}/api/attention", json={"text": t}).raise_for_status()
        one_by_one = time.perf_counter() - started
        started = time.perf_counter()
        client.post(f"{server.url}/api/corpus", json={"texts": texts}).raise_for_status()
        batched = time.perf_counter() - started
        report("Corpus of 300 short sentences (target: ratio >= 3)", [
            {"how": "one by one, /api/attention", "s": one_by_one, "sentences/s": 300 / one_by_one, "ratio": 1.0},
            {"how": "batched, /api/corpus", "s": batched, "sentences/s": 300 / batched, "ratio": one_by_one / batched},
        ])

        texts = sentences(2000)
        started = time.perf_counter()
        progress = []
        with client.stream("POST", f"{server.url}/api/corpus", json={"texts": texts, "stream": True}) as r:
            for line in r.iter_lines():
                event = json.loads(line)
                if "done" in event:
                    progress.append((time.perf_counter() - started, event["done"]))
                else:
                    result = event["result"]
        total = time.perf_counter() - started
        gaps = [b[0] - a[0] for a, b in zip([(0.0, 0)] + progress, progress)]
        report("2,000 short sentences through /api/corpus, streamed (target: < 60 s, progress throughout)", [
            {"sentences": result["sentences"], "total s": total, "progress lines": len(progress),
             "longest wait between lines s": max(gaps)},
        ])


if __name__ == "__main__":
    main()
