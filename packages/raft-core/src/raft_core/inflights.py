"""``Inflights``: the sliding window of AppendEntries a leader has sent to one follower and not seen acked.

The window is bounded both in messages and in bytes, so a single huge batch cannot defeat the count limit.
"""

from __future__ import annotations

from collections import deque


class Inflights:
    """Unacknowledged appends to one follower, as (last index, bytes) pairs in send order."""

    __slots__ = ("_bytes", "_queue", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        """An empty window of at most ``max_count`` messages and ``max_bytes`` bytes."""
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._queue: deque[tuple[int, int]] = deque()
        self._bytes = 0

    def add(self, last_index: int, size: int) -> None:
        """Record an append whose last entry is ``last_index``, carrying ``size`` bytes."""
        self._queue.append((last_index, size))
        self._bytes += size

    def free_le(self, index: int) -> None:
        """Forget every append whose last entry is at or below ``index`` (acknowledged)."""
        queue = self._queue
        while queue and queue[0][0] <= index:
            self._bytes -= queue.popleft()[1]

    def free_first_one(self) -> None:
        """Forget the oldest append in flight (its ack is presumed lost), making room for one more."""
        if self._queue:
            self._bytes -= self._queue.popleft()[1]

    def reset(self) -> None:
        """Forget everything."""
        self._queue.clear()
        self._bytes = 0

    def full(self) -> bool:
        """Whether no further append may be sent until some are acknowledged."""
        return len(self._queue) >= self.max_count or self._bytes >= self.max_bytes

    def count(self) -> int:
        """How many appends are in flight."""
        return len(self._queue)

    @property
    def bytes(self) -> int:
        """How many bytes are in flight."""
        return self._bytes
