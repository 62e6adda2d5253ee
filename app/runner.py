"""Runs model work off the event loop, one job at a time, and refuses work it cannot start soon.

The model uses every CPU core for one forward pass, so jobs run one after another on a worker
thread. At most `max_waiting` requests may wait for their turn; beyond that the server answers
503 at once instead of queueing without bound. The event loop itself never runs the model, so
slow clients and waiting requests never stall each other.
"""

from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class Busy(Exception):
    """Too many requests are waiting for the model."""


class ModelRunner:
    def __init__(self, max_waiting: int):
        self.max_waiting = max_waiting
        self.limiter = anyio.CapacityLimiter(1)
        self.pending = 0  # admitted requests: running or waiting

    @asynccontextmanager
    async def admitted(self):
        """Hold a place in the line for one request, which may then `call` the model many times."""
        if self.pending > self.max_waiting:  # one running plus max_waiting queued
            raise Busy(f"the server is busy: {self.pending} requests are already in line; try again shortly")
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    async def call(self, fn: Callable[..., T], *args) -> T:
        """Run fn(*args) on the model's worker thread, after the jobs before it."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def run(self, fn: Callable[..., T], *args) -> T:
        async with self.admitted():
            return await self.call(fn, *args)
