"""Shared by the benchmarks: interleaved timing, sample texts, a live server in this process."""

import statistics
import time

WORDS = ("the model reads every token and each head looks somewhere else in the sentence "
         "while layers build meaning from attention").split()  # one WordPiece each


def text_of(tokens: int) -> str:
    """A text that MiniLM reads as exactly `tokens` tokens, [CLS] and [SEP] included."""
    return " ".join(WORDS[i % len(WORDS)] for i in range(tokens - 2))


def interleaved(fns: dict, seconds: float = 3.0, min_rounds: int = 5) -> dict[str, float]:
    """Median seconds per call of each function, run in turns so that machine noise hits all alike."""
    for fn in fns.values():
        fn()  # warm up
    times = {name: [] for name in fns}
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times[next(iter(fns))]) < min_rounds:
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(title: str, rows: list[dict]) -> None:
    """Print rows as a Markdown table (the README quotes these)."""
    print(f"\n### {title}\n")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


class ServerProcess:
    """`python -m app serve` on a free port, as a user would start it; stopped on exit."""

    def __init__(self, models: tuple[str, ...] = ("minilm",), env: dict | None = None):
        self.models = models
        self.env = env

    def __enter__(self):
        import socket
        import subprocess
        import sys

        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        import os

        self.proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port),
                                      *(a for m in self.models for a in ("--model", m)), "--log-level", "warning"], env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{self.url}/api/models", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the server did not start")
                time.sleep(0.2)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(30)
