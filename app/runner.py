"""Runs model work off the event loop, one job at a time, batching requests that wait together.

A forward pass already uses every CPU core, so model jobs run one after another on one
dedicated worker thread. Models are loaded on that thread too: PyTorch runs about 25% slower
on a thread other than the one that loaded the weights (measured: 22 vs 28 ms at 128 tokens). Requests for /api/attention that arrive while the model is busy wait in `pending`;
whoever gets the model next runs every pending request of the same model as one padded batch,
which is several times cheaper than running them one by one, then builds each one's answer.
Identical requests waiting at the same time share one computation, so they get identical bodies.

At most `max_waiting` requests may wait; beyond that the server answers 503 at once instead of
queueing without bound. A text is tokenized only once it has its place in the line: tokenizing
holds the GIL, so a flood of texts is refused by the line's bound instead of all tokenizing at
once. The event loop never runs the model, so slow clients and waiting requests never stall
each other.
"""

import asyncio
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from model.ablation import Ablation
from model.analysis import Analysis, AttentionModel, TooManyTokens


class Busy(Exception):
    """Too many requests are waiting for the model."""


@dataclass(eq=False)
class Pending:
    """One text waiting for the model, and what to make of its Analysis once it has run."""

    model: AttentionModel
    text: str
    truncate: bool
    new_tokens: int | None  # for models that generate: how many tokens (None: the model's default)
    build: Callable[[Analysis], Any]  # runs on the worker thread, right after the forward pass
    ablation: Ablation | None = None  # heads to knock out (model/ablation.py): set on the modules, so one per batch
    tokens: int = 0  # positions it needs after truncation (its share of a padded batch): counted once admitted
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


class ModelRunner:
    def __init__(self, max_waiting: int, max_batch_tokens: int):
        self.max_waiting = max_waiting
        self.max_batch_tokens = max_batch_tokens  # padded tokens per batch: bounds memory and latency
        self.lock = anyio.Lock()  # the model runs one job at a time...
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")  # ...on this one thread
        self.pending: list[Pending] = []  # /api/attention texts not yet run
        self.shared: dict[Hashable, Pending] = {}  # identical requests, waiting or running, by key
        self.admitted_count = 0  # requests in line: running or waiting

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

    async def call(self, fn: Callable[..., Any], *args) -> Any:
        """Run fn(*args) on the model's worker thread, after the jobs before it."""
        async with self.lock:
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
                        self.pending.append(item)
                        async with self.lock:
                            if not item.done.is_set():  # nobody took it into a batch yet: run one now
                                batch = self.take_batch(item)
                                try:
                                    await self.on_thread(run_batch, batch)
                                finally:
                                    for done in batch:
                                        if done.result is None and done.error is None:
                                            done.error = RuntimeError("the batch was cancelled")
                                        done.done.set()
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

    def take_batch(self, first: Pending) -> list[Pending]:
        """`first` and, in arrival order, other pending texts of the same model that fit in the batch."""
        batch, width = [first], first.tokens
        for other in self.pending:
            if other is first or (other.model, other.truncate, other.new_tokens, other.ablation) != (
                first.model, first.truncate, first.new_tokens, first.ablation):
                continue
            new_width = max(width, other.tokens)
            if new_width * (len(batch) + 1) > self.max_batch_tokens:
                continue
            batch.append(other)
            width = new_width
        self.pending = [p for p in self.pending if p not in batch]
        return batch


def positions(item: Pending) -> int:
    """How many positions the text takes after truncation; TooManyTokens when it does not fit."""
    count = item.model.count_tokens(item.text)
    limit = item.model.info.max_tokens
    if count > limit and not item.truncate:
        raise TooManyTokens(count, limit, item.model.info.name)
    return min(count, limit)


def run_batch(batch: list[Pending]) -> None:
    """The forward pass for a batch, then each request's answer; errors stay with their request.

    Runs on the worker thread, so it only fills in results: events are set on the event loop.
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
