"""Per-head metrics computed after the answer that left them out was sent.

The page asks /api/attention for the weights alone (`metrics: false`), paints them, then asks
POST /api/heads for the metrics and roles. The model's thread computes those metrics right after it
has released the weights (app/runner.py: `Pending.later`) and keeps them here, so /api/heads finds
them without running the model again. At 512 tokens the metrics cost about half a forward pass:
this takes them off the path to the painted grid.

Only the model's thread reads or writes it (POST /api/heads looks it up as a model job, so a lookup
comes after any batch that is still computing the entry), so it needs no lock.
"""

from collections import OrderedDict
from collections.abc import Hashable

RECENT_HEADS = 32  # answers' metrics kept: a few pages' worth; each is ~10 KB


class RecentHeads:
    """The last RECENT_HEADS /api/heads answers computed ahead of the request, by request key."""

    def __init__(self, size: int = RECENT_HEADS):
        self.size = size
        self.entries: OrderedDict[Hashable, dict] = OrderedDict()

    def put(self, key: Hashable, answer: dict) -> None:
        self.entries[key] = answer
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def get(self, key: Hashable) -> dict | None:
        return self.entries.get(key)
