"""Rate limits hold: per token however its header is spelt, per address for anonymous callers and made-up
tokens, and across several server processes sharing one database."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.auth.conftest import cli
from tests.support import Server, database_url, loopback_request, start_server, stop_server

from weightyard.auth import RateLimiter
from weightyard.config import Settings
from weightyard.db import create_engine, tables
from weightyard.errors import RateLimited
from weightyard.hub import Hub

LIMIT = 20
# A moment 10 s into a clock minute, so the in-process tests are independent of the real clock.
T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60 + 10


def _engine(data: Path) -> sa.Engine:
    Hub.open(Settings(data=data))  # creates and migrates the database
    return create_engine(f"sqlite:///{data / 'weightyard.db'}")


def test_the_limit_is_shared_by_limiters_on_one_database(tmp_path: Path) -> None:
    # Two engines on one SQLite file, as two server processes have.
    first, second = RateLimiter(_engine(tmp_path), LIMIT), RateLimiter(_engine(tmp_path), LIMIT)
    for index in range(LIMIT):
        (first if index % 2 else second).check("token:1:laptop", now=T0)
    for limiter in (first, second):
        with pytest.raises(RateLimited) as refused:
            limiter.check("token:1:laptop", now=T0 + 0.5)
        assert refused.value.retry_after == 50  # the rest of the minute, rounded up
    first.check("token:2:other", now=T0)  # another caller has its own count
    second.check("token:1:laptop", now=T0 + 60)  # and the next minute starts afresh


def test_counters_of_past_minutes_are_evicted(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    limiter = RateLimiter(engine, LIMIT)
    for key in ("addr:127.0.0.1", "token:1:a", "token:1:b"):
        limiter.check(key, now=T0)
    limiter.check("token:1:a", now=T0 + 60)
    limiter.check("token:1:c", now=T0 + 120)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tables.rate_limit_windows.c.key, tables.rate_limit_windows.c.window))
        windows = {(key, int(window - T0 // 60)) for key, window in rows}
    assert windows == {("token:1:a", 1), ("token:1:c", 2)}


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """Two `weightyard serve` processes on one data folder, each with a limit of 20 requests a minute."""
    data = tmp_path_factory.mktemp("rate") / "data"
    env = {"WEIGHTYARD_RATE_LIMIT_PER_MINUTE": str(LIMIT)}
    first = start_server(data, env=env)
    second = start_server(data, env=env)
    yield first, second
    stop_server(first)
    stop_server(second)


def _counts_of(data: Path, key: str) -> dict[int, int]:
    """The request count of each minute (window) stored for `key`."""
    counters = tables.rate_limit_windows
    engine = create_engine(database_url(data))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(counters.c.window, counters.c.count).where(counters.c.key == key)).all()
    engine.dispose()
    return {int(window): int(count) for window, count in rows}


_attempts = itertools.count()


def _burst(servers: tuple[Server, Server], headers: list[dict[str, str]]) -> list[httpx.Response]:
    """2 x LIMIT requests, alternating between the two processes and the given header spellings."""
    return [
        loopback_request(
            "GET", f"{servers[index % 2].url}/api/whoami-v2", headers=headers[index % len(headers)]
        )
        for index in range(2 * LIMIT)
    ]


def test_a_token_gets_its_limit_across_processes_however_the_header_is_spelt(
    two_servers: tuple[Server, Server],
) -> None:
    # A burst that straddles a clock minute may legitimately get more; such a run is repeated with a fresh
    # token (a burst takes far less than a minute, so two in a row cannot both straddle one).
    for _ in range(3):
        name = f"rl{next(_attempts)}"
        secret = cli(two_servers[0], "token", "create", "--name", name)
        spellings = [f"Bearer {secret}", f"bearer {secret}", f"BEARER {secret}", f"Bearer    {secret}"]
        responses = _burst(two_servers, [{"Authorization": spelling} for spelling in spellings])
        if len(_counts_of(two_servers[0].data, f"token:1:{name}")) == 1:
            break
    else:
        pytest.fail("three bursts in a row straddled a minute")
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * LIMIT + [429] * LIMIT
    refused = responses[-1]
    assert refused.headers["x-error-code"] == "RateLimited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_anonymous_callers_and_made_up_tokens_share_their_address_limit(
    two_servers: tuple[Server, Server],
) -> None:
    guesses = [{"Authorization": f"Bearer wy_guess{index}"} for index in range(2 * LIMIT)]
    key = "addr:127.0.0.1"
    for _ in range(3):
        before = _counts_of(two_servers[0].data, key)
        responses = _burst(two_servers, [{}, *guesses])
        after = _counts_of(two_servers[0].data, key)
        if after.keys() == before.keys():
            break  # no new minute began during the burst
    else:
        pytest.fail("three bursts in a row straddled a minute")
    # Every request, whichever process took it and whatever token it made up, counted once in one bucket.
    (window,) = [w for w in after if after[w] != before.get(w)]
    assert after[window] - before[window] == 2 * LIMIT
    statuses = [response.status_code for response in responses]
    answered = LIMIT - min(LIMIT, before[window])  # the servers' start-up probes count against it too
    assert set(statuses[:answered]) <= {401, 404}
    assert statuses[answered:] == [429] * (2 * LIMIT - answered)
