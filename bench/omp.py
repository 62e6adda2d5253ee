"""What OMP_WAIT_POLICY=PASSIVE (set by `headscope serve`) buys: the cores PyTorch's OpenMP threads
leave to other programs (the browser) between requests, and what it costs the requests.

    python -m bench.omp [--seconds 10]
A client asks for 128-token answers with a 50 ms pause after each (a page drawing what it got),
while another process counts in a busy loop, standing in for the browser. Reported per policy: the
busy loop's rate (higher: more CPU left to the browser) and the requests' median latency.
"""

import argparse
import statistics
import subprocess
import sys
import threading
import time

import httpx

from bench.common import ServerProcess, report, text_of

COUNTER = """
import sys, time
stop, n = time.perf_counter() + float(sys.argv[1]), 0
while time.perf_counter() < stop:
    for _ in range(10_000):
        n += 1
print(n / float(sys.argv[1]))
"""


def measure(policy: str, seconds: float) -> dict:
    # "" leaves libgomp at its default (it spins a while after each parallel region, then sleeps);
    # libgomp says once that "" is not a valid value
    with ServerProcess(env={"OMP_WAIT_POLICY": policy}) as server, httpx.Client(timeout=60) as c:
        text = text_of(128)
        for _ in range(5):
            c.post(f"{server.url}/api/attention", json={"text": text, "format": "compact"}).raise_for_status()
        latencies, stop = [], threading.Event()

        def ask():
            while not stop.is_set():
                started = time.perf_counter()
                c.post(f"{server.url}/api/attention", json={"text": text, "format": "compact"}).raise_for_status()
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)

        asker = threading.Thread(target=ask)
        asker.start()
        counted = subprocess.run([sys.executable, "-c", COUNTER, str(seconds)], capture_output=True, text=True,
                                 check=True)
        stop.set()
        asker.join()
    return {"busy loop /s": float(counted.stdout), "request ms": statistics.median(latencies) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for _ in range(args.rounds):  # alternate, to share the machine's noise
        for policy in ("", "PASSIVE"):
            rows.append({"OMP_WAIT_POLICY": policy or "(libgomp default)", **measure(policy, args.seconds)})
    report("OpenMP wait policy: a busy loop beside a server answering 128-token requests every 50 ms", rows)


if __name__ == "__main__":
    main()
