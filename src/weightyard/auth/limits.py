"""Request rate limits: a fixed-window counter per caller and minute, kept in the hub's database.

The counters live in the database rather than in each process so that a limit holds however many server
processes share the data folder (or the PostgreSQL database): two processes never hand out the same
allowance twice. Each request bumps its counter with one atomic upsert (`INSERT … ON CONFLICT DO UPDATE …
RETURNING`, which SQLite and PostgreSQL both run as a single statement), so concurrent requests can
neither lose an increment nor both see the last free slot.

Why not the `limits` library: its 5.x storage backends are memory (per process), Redis, Memcached and
MongoDB. None is the SQL database a Weightyard hub already has, and requiring a Redis server for a limit to
hold across processes would break "one command on one laptop". A fixed window is the simplest counter that
an upsert keeps exact; its known cost is that a caller may get up to twice the limit in the seconds around
a window boundary.
"""

from __future__ import annotations

import math
import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from weightyard.db import tables, transaction
from weightyard.errors import RateLimited

WINDOW_SECONDS = 60


class RateLimiter:
    """Allows `per_minute` requests per key in each clock minute, across every process on the database."""

    def __init__(self, engine: sa.Engine, per_minute: int) -> None:
        self._engine = engine
        self._limit = per_minute
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def check(self, key: str, now: float | None = None) -> None:
        """Count one request for `key`; raise `RateLimited` (with the wait in seconds) past the limit."""
        moment = time.time() if now is None else now
        window = int(moment // WINDOW_SECONDS)
        counters = tables.rate_limit_windows
        bump = (
            self._insert(counters)
            .values(key=key[:128], window=window, count=1)
            .on_conflict_do_update(
                index_elements=[counters.c.key, counters.c.window], set_={"count": counters.c.count + 1}
            )
            .returning(counters.c.count)
        )
        with transaction(self._engine) as conn:
            count = int(conn.execute(bump).scalar_one())
            if count == 1:
                # A caller's first request in a window: the moment to drop windows no request can count
                # against any more, so the table holds only the callers of this minute and the last.
                conn.execute(sa.delete(counters).where(counters.c.window < window - 1))
        if count > self._limit:
            wait = max(1, math.ceil((window + 1) * WINDOW_SECONDS - moment))
            raise RateLimited(f"Too many requests; retry in {wait} s", retry_after=wait)
