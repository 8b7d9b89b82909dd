"""A shard costs the hub work in proportion to what its uploader sent: a small shard naming a few fresh
chunks over and over is refused from its sizes alone, before any file is rebuilt or hashed."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest
from tests.xet_hub.conftest import XetHub

from weightyard.xet import FileTerm, Shard, file_entry, hash_to_string, serialize_shard, serialize_xorb

CHUNK = 128 * 1024
# The default allowance is 256 MiB plus 32 times the bytes sent: one fresh 128 KiB chunk named 4096 times
# (512 MiB) is far past it, while the shard itself is under 200 kB.
OVER_BUDGET_REPEATS = 4096


@pytest.fixture(scope="module")
def cas(xet_hub: XetHub) -> tuple[httpx.Client, str]:
    httpx.post(
        f"{xet_hub.url}/api/repos/create", headers=xet_hub.headers("alice"), json={"name": "alice/budget"}
    ).raise_for_status()
    token, url = xet_hub.xet_token("alice", "alice/budget")
    return httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120), url


def _repeated_file_shard(cas: tuple[httpx.Client, str], repeats: int, honest: bool) -> httpx.Response:
    client, url = cas
    chunk = os.urandom(CHUNK)
    body, info = serialize_xorb([chunk])
    response = client.post(f"{url}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body)
    assert response.status_code == 200, response.text
    terms = tuple(FileTerm(info.hash, CHUNK, 0, 1) for _ in range(repeats))
    digest = hashlib.sha256(chunk * repeats).digest() if honest else os.urandom(32)
    entry = file_entry(terms, {info.hash: info}.get, digest)
    return client.post(f"{url}/v1/shards", content=serialize_shard(Shard((entry,), ())))


def test_a_small_shard_naming_far_more_content_than_was_sent_is_refused_before_rebuilding(
    cas: tuple[httpx.Client, str],
) -> None:
    # The claimed sha256 is false: had the hub rebuilt the 512 MiB to check it, the answer would be a 400.
    response = _repeated_file_shard(cas, OVER_BUDGET_REPEATS, honest=False)
    assert (response.status_code, response.json()["code"]) == (413, "XetShardOverBudget")


def test_a_shard_within_the_budget_is_verified_and_registered(cas: tuple[httpx.Client, str]) -> None:
    response = _repeated_file_shard(cas, 64, honest=True)
    assert response.status_code == 200, response.text
