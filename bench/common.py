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
    """`python -m headscope serve` on a free port, as a user would start it; stopped on exit."""

    def __init__(self, models: tuple[str, ...] = ("minilm",), env: dict | None = None):
        self.models = models
        self.env = env

    def __enter__(self):
        import os
        import subprocess
        import sys
        import threading

        import httpx

        # --port 0: the server binds a free port and prints it (no race for a port chosen beforehand)
        self.proc = subprocess.Popen([sys.executable, "-m", "headscope", "serve", "--port", "0",
                                      *(a for m in self.models for a in ("--model", m)), "--log-level", "warning"],
                                     env={**os.environ, **(self.env or {})}, stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        if "open http://" not in first:
            raise RuntimeError(f"the server did not start: {first!r}")
        self.url = first.split("open ")[1].strip().rstrip("/")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # drain whatever else it prints
        httpx.get(f"{self.url}/api/models", timeout=120).raise_for_status()  # already listening: waits, if need be
        return self

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(30)
