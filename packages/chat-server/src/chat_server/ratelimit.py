"""``RateLimiter``: a token bucket per user, checked on this node before anything is proposed.

Limits are per node (a client that spreads its calls over several nodes gets up to that many times the rate);
that bounds the load a user can put on the log without a replicated counter. Buckets idle long enough to be
full again are forgotten, so memory follows active users, not all users.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimited(Exception):
    """The caller is over its rate; ``retry_after`` seconds until one more call fits."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many requests; retry in {retry_after:.2f}s")


class RateLimiter:
    """Up to ``burst`` calls at once, refilled at ``rate`` per second, per key."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._last_sweep = clock()

    def check(self, key: str, cost: float = 1.0) -> None:
        """Take ``cost`` from ``key``'s bucket or raise ``RateLimited``."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            raise RateLimited((cost - tokens) / self.rate)
        self._buckets[key] = (tokens - cost, now)
        if now - self._last_sweep > self.burst / self.rate:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        self._last_sweep = now

    def __len__(self) -> int:
        return len(self._buckets)
