"""Per-token request rate limits: a token bucket per caller, kept in this process."""

from __future__ import annotations

import math
import threading
import time

from weightyard.errors import RateLimited


class RateLimiter:
    """Allows `per_minute` requests a minute per key, with bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one request from `key`'s bucket; raise `RateLimited` (with the wait in seconds) when empty."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - last) * self._rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1 - tokens) / self._rate)
                raise RateLimited(f"Too many requests; retry in {wait} s", retry_after=wait)
            self._buckets[key] = (tokens - 1, now)
