"""A retry storm: many clients that retry 50 ms after each 503, against a few polite ones.

    python -m bench.storm [--seconds 10] [--storm 128] [--fresh-connections]
Targets: useful throughput (200 answers per second) under 128 hammering clients >= 0.8x that of 8
clients; a fresh client's short request answered (retries included) within 2 s. With --fresh-connections
every storm client opens a new connection for each request (so each request is a new connection to the
server). Each fresh client asks from a loopback address of its own (127.0.1.N), as a newcomer from elsewhere would.
"""

import argparse
import asyncio
import math
import ssl
import statistics
import time

import httpx

from bench.common import ServerProcess, report

TEXT = "client {k} asks request {i} : the model reads sixteen short tokens ok"  # 16 tokens, each one unique


def newcomer_address(n: int) -> str:
    """The n-th fresh client's own address: Linux routes all of 127.0.0.0/8 to the loopback."""
    return f"127.0.1.{n % 250 + 1}"


async def run_clients(url: str, n_clients: int, seconds: float, probe_every: float | None = None,
                      fresh_connections: bool = False) -> dict:
    """n_clients loop short requests, each retrying 50 ms after a 503. With probe_every: once every
    client has been answered (the storm's opening burst, where all are newcomers, is over), the storm
    goes on for `seconds`, and every probe_every seconds a fresh client asks once and times its
    answer, retrying the same way."""
    done = refused = 0
    waits: list[float] = []
    server_waits: list[float] = []  # the server's own time for the fresh clients' answers (Server-Timing)
    answered: set[int] = set()  # storm clients answered at least once
    stop = time.perf_counter() + seconds if probe_every is None else math.inf  # set once the storm is up
    limits = httpx.Limits(max_connections=1)
    tls = ssl.create_default_context()  # made once: each client making its own takes ~0.1 s of this loop

    async def ask(c: httpx.AsyncClient, text: str) -> httpx.Response:
        nonlocal done, refused
        while True:
            r = await c.post(f"{url}/api/attention", json={"text": text})
            if r.status_code != 503:
                r.raise_for_status()
                done += 1
                return r
            refused += 1
            await asyncio.sleep(0.05)

    async def client(k: int) -> None:
        i = 0
        if fresh_connections:
            while time.perf_counter() < stop:
                async with httpx.AsyncClient(timeout=120, limits=limits, verify=tls) as c:  # a new connection
                    await ask(c, TEXT.format(k=k, i=i))
                answered.add(k)
                i += 1
            return
        async with httpx.AsyncClient(timeout=120, limits=limits, verify=tls) as c:
            while time.perf_counter() < stop:
                await ask(c, TEXT.format(k=k, i=i))
                answered.add(k)
                i += 1

    async def probes() -> None:
        nonlocal stop
        n = 0
        while len(answered) < n_clients:  # let the storm build up
            await asyncio.sleep(0.05)
        stop = time.perf_counter() + seconds
        while n == 0 or time.perf_counter() < stop - probe_every:
            elsewhere = httpx.AsyncHTTPTransport(local_address=newcomer_address(n), limits=limits, verify=tls)
            async with httpx.AsyncClient(timeout=120, transport=elsewhere) as c:
                started = time.perf_counter()
                r = await ask(c, TEXT.format(k="fresh", i=n))
                waits.append(time.perf_counter() - started)
                server_waits.append(float(r.headers["server-timing"].split("dur=")[1]) / 1000)
            n += 1
            await asyncio.sleep(probe_every)

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(n_clients)), *([probes()] if probe_every else []))
    elapsed = time.perf_counter() - started
    return {"answers/s": done / elapsed, "503/s": refused / elapsed, "waits": waits, "server_waits": server_waits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--storm", type=int, default=128)
    parser.add_argument("--fresh-connections", action="store_true", help="each storm request on a new connection")
    args = parser.parse_args()
    rows = []
    with ServerProcess() as server:
        asyncio.run(run_clients(server.url, 8, 2.0))  # warm up
        polite = asyncio.run(run_clients(server.url, 8, args.seconds))
        storm = asyncio.run(run_clients(server.url, args.storm, args.seconds, probe_every=0.5,
                                        fresh_connections=args.fresh_connections))
    waits = storm["waits"]
    print("fresh clients, s:", " ".join(f"{w:.2f}" for w in waits))
    rows.append({"clients": 8, "answers/s": polite["answers/s"], "503/s": polite["503/s"], "ratio": 1.0,
                 "fresh client: median s": "", "max s": "", "of which in the server: median s": ""})
    rows.append({"clients": args.storm, "answers/s": storm["answers/s"], "503/s": storm["503/s"],
                 "ratio": storm["answers/s"] / polite["answers/s"],
                 "fresh client: median s": statistics.median(waits), "max s": max(waits),
                 "of which in the server: median s": statistics.median(storm["server_waits"])})
    how = ", each on a new connection" if args.fresh_connections else ""
    report(f"Retry storm{how}: 16-token requests, retried 50 ms after a 503 (targets: ratio >= 0.8; a fresh "
           f"client answered within 2 s; {len(waits)} fresh clients)", rows)


if __name__ == "__main__":
    main()
