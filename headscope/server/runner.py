"""Runs model work off the event loop, one job at a time, batching requests that wait together.

A forward pass already uses every CPU core, so model jobs run one after another on one
dedicated worker thread. Models are loaded on that thread too: PyTorch runs about 25% slower
on a thread other than the one that loaded the weights (measured: 22 vs 28 ms at 128 tokens).
Requests for /api/attention that arrive while the model is busy wait in `pending`; a task of the
runner's own (`drive`, not any request's, so a client that goes away stops nobody else) takes the
model for one batch at a time: the request at the head of the line and others of the same model
that fit, as one padded batch, which is several times cheaper than running them one by one; then
it builds each one's answer. Other model jobs (a corpus batch, /api/explain) take their turns
between batches. Identical requests waiting at the same time share one computation, so they get
identical bodies.

The line is fair to newcomers. A retry storm (many clients, each asking again the moment it is
answered) keeps the line full, and in arrival order a newcomer would wait for all of it (measured:
2.9-7 s behind 128 such clients). So a request's place in the line (`rank`) is its arrival time,
less `newcomer_lead_s` if its connection has not been answered within that time, and less another
`newcomer_lead_s` if its address has not: a client that has just been served queues behind those who
have not, and clients that open a new connection for every request (each one a new connection) still
queue behind a newcomer from an address not served just now (measured before the address lead: such a
storm pushed a newcomer's median wait to 2.4-2.8 s). Nobody waits more than 2 x `newcomer_lead_s`
longer than in arrival order, so nobody starves. (Behind one address, as a proxy or NAT makes it, only
the connection's lead tells clients apart.) Each answer is released as soon
as it is built, and a batch takes at most `max_batch_size` requests, so a newcomer at the head of
the line waits for at most one batch before its own.

Long jobs (a corpus, importance, a probe set, patching: many model steps for one request) are fair to everyone else
in two ways. Their steps queue behind short work: the model's next turn goes to a batch of waiting texts
or a one-step request before the next step of any long job (`Turns`), so a newcomer waits for at most the
step that is running. And each client address holds at most `long_jobs_per_client` long jobs at once
(`long_job`); more get 429, so one client cannot fill the line with them.

At most `max_waiting` requests may wait; beyond that the server answers 503 at once instead of
queueing without bound. A text is tokenized only once it has its place in the line: tokenizing
holds the GIL, so a flood of texts is refused by the line's bound instead of all tokenizing at
once. The event loop never runs the model, so slow clients and waiting requests never stall
each other.
"""

import asyncio
import ctypes
import ctypes.util
import heapq
import itertools
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from headscope.models.analysis import Analysis, AttentionModel, TooManyTokens
from headscope.models.interventions import Ablation


class Busy(Exception):
    """Too many requests are waiting for the model."""


class TooManyJobs(Exception):
    """A client address already runs as many long jobs as it may."""

    def __init__(self, address: str, limit: int):
        super().__init__(f"{address} already runs {limit} long jobs (corpus, importance, probes, patching), the most one "
                         f"client may run at once (long_jobs_per_client in GET /api/models); wait for one to finish")
        self.limit = limit


class Turns:
    """The model's turns, one job at a time: a short job (a batch of waiting texts, a one-step request) goes
    before the next step of a long job; in arrival order otherwise."""

    SHORT, LONG = 0, 1

    def __init__(self, on_idle: Callable[[], None] | None = None):
        self.on_idle = on_idle  # called when the last turn ends and nobody waits
        self.busy = False
        self.waiting: list[tuple[int, int, asyncio.Future]] = []  # a heap of (SHORT or LONG, arrival, future)
        self.arrivals = itertools.count()

    @asynccontextmanager
    async def turn(self, long: bool = False):
        if self.busy or self.waiting:
            granted = asyncio.get_running_loop().create_future()
            heapq.heappush(self.waiting, (self.LONG if long else self.SHORT, next(self.arrivals), granted))
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():  # handed the turn just as it was cancelled
                    self.hand_on()
                else:
                    granted.cancel()  # hand_on skips it
                raise
        else:
            self.busy = True
        try:
            yield
        finally:
            self.hand_on()

    def hand_on(self) -> None:
        """The turn passes to the first waiting job, or the model is free."""
        while self.waiting:
            _, _, granted = heapq.heappop(self.waiting)
            if not granted.done():
                granted.set_result(None)  # busy stays True: the turn is theirs
                return
        self.busy = False
        if self.on_idle is not None:
            self.on_idle()


@dataclass(eq=False)
class Pending:
    """One text waiting for the model, and what to make of its Analysis once it has run."""

    model: AttentionModel
    text: str
    truncate: bool
    new_tokens: int | None  # for models that generate: how many tokens (None: the model's default)
    build: Callable[[Analysis], Any]  # runs on the worker thread, right after the forward pass
    client: Hashable = None  # who asks: its connection (address, port); None if unknown
    # runs on the worker thread once every answer of the batch is released: work whose result is
    # asked for later (the per-head metrics of an answer sent without them)
    later: Callable[[Analysis], None] | None = None
    rank: float = 0.0  # its place in the line, smaller first: set when admitted (see the module's docstring)
    ablation: Ablation | None = None  # heads to knock out (headscope/models/interventions.py): set on the modules, so one per batch
    tokens: int = 0  # positions it needs after truncation (its share of a padded batch): counted once admitted
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


class ModelRunner:
    def __init__(self, max_waiting: int, max_batch_tokens: int, max_batch_size: int = 8,
                 newcomer_lead_s: float = 10.0, long_jobs_per_client: int = 2):
        self.max_waiting = max_waiting
        self.max_batch_tokens = max_batch_tokens  # padded tokens per batch: bounds memory and latency
        self.max_batch_size = max_batch_size  # requests per batch: bounds the wait for the batch ahead
        self.newcomer_lead_s = newcomer_lead_s
        self.answered_at: dict[Hashable, float] = {}  # client -> when it was last answered (time.monotonic)
        self.prune_at = max_waiting  # forget clients answered over newcomer_lead_s ago once there are this many
        self.long_jobs_per_client = long_jobs_per_client
        self.long_jobs: dict[str, int] = {}  # client address -> long jobs it runs now
        self.turns = Turns(on_idle=lambda: self.thread.submit(trim_memory))  # the model runs one job at a time...
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")  # ...on this one thread
        self.pending: list[Pending] = []  # /api/attention texts not yet run
        self.shared: dict[Hashable, Pending] = {}  # identical requests, waiting or running, by key
        self.admitted_count = 0  # requests in line: running or waiting
        self.driver: asyncio.Task | None = None  # runs the pending texts' batches while there are any

    @asynccontextmanager
    async def admitted(self):
        """Hold a place in the line for one request, which may then use the model many times."""
        if self.admitted_count > self.max_waiting:  # one running plus max_waiting queued
            raise Busy(f"the server is busy: {self.admitted_count} requests are already in line; try again shortly")
        self.admitted_count += 1
        try:
            yield
        finally:
            self.admitted_count -= 1

    @asynccontextmanager
    async def long_job(self, address: str | None):
        """Hold one of the client address's long jobs (TooManyJobs if it holds all it may), and a place in line."""
        held = self.long_jobs.get(address, 0) if address is not None else 0
        if address is not None and held >= self.long_jobs_per_client:
            raise TooManyJobs(address, self.long_jobs_per_client)
        async with self.admitted():
            if address is not None:
                self.long_jobs[address] = self.long_jobs.get(address, 0) + 1
            try:
                yield
            finally:
                if address is not None:
                    self.long_jobs[address] -= 1
                    if not self.long_jobs[address]:
                        del self.long_jobs[address]

    async def call(self, fn: Callable[..., Any], *args) -> Any:
        """Run fn(*args) on the model's worker thread, after the short jobs before it."""
        async with self.turns.turn():
            return await self.on_thread(fn, *args)

    async def step(self, fn: Callable[..., Any], *args) -> Any:
        """One step of a long job: fn(*args) on the model's thread, once no short job is waiting."""
        async with self.turns.turn(long=True):
            return await self.on_thread(fn, *args)

    def run_now(self, fn: Callable[..., Any], *args) -> Any:
        """Run fn(*args) on the model's thread and wait for it here (for loading, before serving)."""
        return self.thread.submit(fn, *args).result()

    async def on_thread(self, fn: Callable[..., Any], *args) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn, *args)

    async def run(self, fn: Callable[..., Any], *args) -> Any:
        async with self.admitted():
            return await self.call(fn, *args)

    async def analyze(self, key: Hashable, item: Pending) -> Any:
        """item.build(model.analyze(item.text)), computed in a batch with whatever else is waiting.

        `key` identifies the whole request: a request equal to one still in progress shares its result.
        """
        if key in self.shared:
            item = self.shared[key]
        else:
            async with self.admitted():
                self.shared[key] = item
                try:
                    try:  # a text is tokenized only here, in the line: see the module's docstring. Not on a
                        # thread: the tokenizer holds the GIL, so a thread would only add its hop (max_chars
                        # keeps this under ~10 ms)
                        item.tokens = positions(item)
                    except Exception as e:  # noqa: BLE001 - too many tokens: the answer of all sharing it
                        item.error = e
                        item.done.set()
                    else:
                        item.rank = self.rank(item.client)
                        self.pending.append(item)
                        if self.driver is None or self.driver.done():
                            self.driver = asyncio.get_running_loop().create_task(self.drive())
                        await item.done.wait()
                finally:
                    del self.shared[key]
                    if item in self.pending:  # left the line (cancelled) before any batch took it
                        self.pending.remove(item)
                        item.error = RuntimeError("the request was cancelled before it ran")
                        item.done.set()  # releases identical requests that were sharing it
        await item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    @staticmethod
    def identities(client: Hashable) -> list[Hashable]:
        """What a client is known by in answered_at: its connection, and for an (address, port) its address too."""
        if client is None:
            return []
        return [client, ("address", client[0])] if isinstance(client, tuple) else [client]

    def rank(self, client: Hashable) -> float:
        """A request's place in the line: now, less newcomer_lead_s for each of its identities (connection, address)
        not answered within it."""
        now = time.monotonic()
        lead = 0.0
        for who in self.identities(client):
            answered = self.answered_at.get(who)
            if answered is None or now - answered > self.newcomer_lead_s:
                lead += self.newcomer_lead_s
        return now - lead

    def finish(self, item: Pending) -> None:
        """Release a request whose answer (or error) is ready; on the event loop."""
        if item.done.is_set():
            return
        if item.result is None and item.error is None:
            item.error = RuntimeError("the batch was cancelled")
        if item.client is not None:
            now = time.monotonic()
            for who in self.identities(item.client):
                self.answered_at[who] = now
            if len(self.answered_at) > self.prune_at:
                self.answered_at = {c: t for c, t in self.answered_at.items() if now - t <= self.newcomer_lead_s}
                self.prune_at = 2 * max(len(self.answered_at), self.max_waiting)
        item.done.set()

    async def drive(self) -> None:
        """Run the batch at the head of the line, one batch per turn of the model, until none is left. A task
        of its own, not a request's: a request that goes away leaves the others' batches running."""
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                async with self.turns.turn():
                    if not self.pending:  # those waiting left the line while the model was busy
                        break
                    batch = self.take_batch()
                    try:
                        await self.on_thread(run_batch, batch, lambda item: loop.call_soon_threadsafe(self.finish, item))
                    finally:
                        for item in batch:
                            self.finish(item)
        finally:  # cancelled (the server stops): nobody is left waiting for good
            for item in self.pending:
                self.finish(item)

    def take_batch(self) -> list[Pending]:
        """The first pending text in rank order and, in that order, others of the same model that fit."""
        ranked = sorted(self.pending, key=lambda p: p.rank)
        first = ranked[0]
        batch, width = [first], first.tokens
        for other in ranked[1:]:
            if len(batch) == self.max_batch_size:
                break
            if (other.model, other.truncate, other.new_tokens, other.ablation) != (
                    first.model, first.truncate, first.new_tokens, first.ablation):
                continue
            new_width = max(width, other.tokens)
            if new_width * (len(batch) + 1) > self.max_batch_tokens:
                continue
            batch.append(other)
            width = new_width
        self.pending = [p for p in self.pending if p not in batch]
        return batch


def trim_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim), on the model's thread once it has
    nothing to do: a 512-token batch leaves hundreds of MB free but held, which an idle server need not keep."""
    if LIBC is not None:
        LIBC.malloc_trim(0)


def load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None  # glibc only (not musl, not macOS)
    except OSError:
        return None


LIBC = load_libc()


def positions(item: Pending) -> int:
    """How many positions the text takes after truncation; TooManyTokens when it does not fit."""
    count = item.model.count_tokens(item.text)
    limit = item.model.info.max_tokens
    if count > limit and not item.truncate:
        raise TooManyTokens(count, limit, item.model.info.name)
    return min(count, limit)


def run_batch(batch: list[Pending], built: Callable[[Pending], None]) -> None:
    """The forward pass for a batch, then each request's answer, in the batch's order, calling
    built(item) as each is ready; errors stay with their request.

    Runs on the worker thread, so it only fills in results: `built` hands them to the event loop.
    """
    try:
        first = batch[0]
        ablation = {} if first.ablation is None else {"ablation": first.ablation}  # every batch member has it
        analyses = first.model.analyze_batch([p.text for p in batch], truncate=first.truncate, new_tokens=first.new_tokens,
                                             **ablation)
        if len(analyses) != len(batch):
            raise RuntimeError(f"the model returned {len(analyses)} analyses for {len(batch)} texts")
    except Exception as e:  # noqa: BLE001 - reported to every request of the batch
        analyses = [e] * len(batch)
    for item, analysis in zip(batch, analyses, strict=True):
        try:
            if isinstance(analysis, Exception):
                raise analysis
            item.result = item.build(analysis)
        except Exception as e:  # noqa: BLE001 - handed to the request, which turns it into its answer
            item.error = e
        built(item)
    for item, analysis in zip(batch, analyses, strict=True):
        if item.later is not None and not isinstance(analysis, Exception):
            try:
                item.later(analysis)
            except Exception:  # noqa: BLE001, S110 - nobody waits for it: whoever asks later computes it again
                pass
