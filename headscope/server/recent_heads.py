"""Per-head metrics of an answer that was sent without them, computed when they are asked for.

The page asks /api/attention for the weights alone (`metrics: false`), paints them, then asks
POST /api/heads for the metrics and roles. Right after the weights are released the model's thread
keeps that forward pass here (headscope/server/runner.py: `Pending.later`), and /api/heads computes the metrics
from it instead of running the model again. At 512 tokens the metrics cost about half a forward
pass: this takes them off the path to the painted grid, and they are not computed while the page
paints (two cores: they would compete).

A kept forward pass holds its attention weights (MiniLM at 512 tokens: 75 MB), so only the last
KEPT_FORWARDS are kept; computed answers (~10 KB) are kept for the last RECENT_HEADS requests. Only
the model's thread reads or writes this (POST /api/heads looks it up as a model job, after any
batch in progress), so it needs no lock.
"""

from collections import OrderedDict
from collections.abc import Callable, Hashable

KEPT_FORWARDS = 2  # forward passes kept for their metrics: one page, and one more tab or client
RECENT_HEADS = 32  # computed answers kept


class RecentHeads:
    """Per request key, the /api/heads answer, or a function that computes it from a kept forward pass."""

    def __init__(self, kept: int = KEPT_FORWARDS, size: int = RECENT_HEADS):
        self.kept, self.size = kept, size
        self.entries: OrderedDict[Hashable, dict | Callable[[], dict]] = OrderedDict()

    def keep(self, key: Hashable, compute: Callable[[], dict]) -> None:
        """Remember how to compute key's answer; forget the oldest kept forward passes beyond `kept`."""
        self.put(key, compute)
        waiting = [k for k, entry in self.entries.items() if callable(entry)]
        for old in waiting[: len(waiting) - self.kept]:
            del self.entries[old]

    def put(self, key: Hashable, answer: dict | Callable[[], dict]) -> None:
        self.entries[key] = answer
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def get(self, key: Hashable) -> dict | None:
        """key's answer, computed now if only its forward pass was kept; None if neither is here."""
        entry = self.entries.get(key)
        if callable(entry):
            entry = entry()
            self.entries[key] = entry  # the forward pass is freed
        return entry
