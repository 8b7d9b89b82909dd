"""A shard costs the hub work in proportion to what its uploader sent: a small shard naming a few fresh
chunks over and over is refused from its sizes alone, before any file is rebuilt or hashed. Distinct stored
content the uploader may name is not charged: an honest derived model reuses most of its bytes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest
from tests.support import loopback_client, loopback_request, stop_server
from tests.xet_hub.conftest import XetHub, start_xet_hub

from weightyard.xet import (
    FileTerm,
    Shard,
    XorbInfo,
    file_entry,
    hash_to_string,
    serialize_shard,
    serialize_xorb,
)

CHUNK = 128 * 1024
# The default allowance is 256 MiB plus 32 times the bytes sent: one fresh 128 KiB chunk named 4096 times
# (512 MiB) is far past it, while the shard itself is under 200 kB.
OVER_BUDGET_REPEATS = 4096


@pytest.fixture(scope="module")
def cas(xet_hub: XetHub) -> tuple[httpx.Client, str]:
    loopback_request(
        "POST",
        f"{xet_hub.url}/api/repos/create",
        headers=xet_hub.headers("alice"),
        json={"name": "alice/budget"},
    ).raise_for_status()
    token, url = xet_hub.xet_token("alice", "alice/budget")
    return loopback_client(token=token, timeout=120), url


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


# A hub whose budget is small enough that a few MiB of reused content would exceed it if it were charged.
TIGHT_ALLOWANCE = 1024 * 1024


@pytest.fixture(scope="module")
def tight_cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    hub = start_xet_hub(
        tmp_path_factory.mktemp("tight-hub") / "data",
        env={"WEIGHTYARD_XET_VERIFY_ALLOWANCE": str(TIGHT_ALLOWANCE), "WEIGHTYARD_XET_VERIFY_RATIO": "1"},
    )
    loopback_request(
        "POST", f"{hub.url}/api/repos/create", headers=hub.headers("alice"), json={"name": "alice/derived"}
    )
    token, url = hub.xet_token("alice", "alice/derived")
    with loopback_client(token=token, timeout=120) as client:
        yield client, url
    stop_server(hub.server)


def _upload_xorb(cas: tuple[httpx.Client, str], chunks: list[bytes]) -> XorbInfo:
    client, url = cas
    body, info = serialize_xorb(chunks)
    response = client.post(f"{url}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body)
    assert response.status_code == 200, response.text
    return info


def _register(
    cas: tuple[httpx.Client, str], terms: tuple[FileTerm, ...], tables: dict[bytes, XorbInfo], content: bytes
) -> httpx.Response:
    client, url = cas
    entry = file_entry(terms, tables.get, hashlib.sha256(content).digest())
    return client.post(f"{url}/v1/shards", content=serialize_shard(Shard((entry,), ())))


def test_a_derived_file_reusing_stored_content_far_past_the_allowance_is_accepted(
    tight_cas: tuple[httpx.Client, str],
) -> None:
    # The base: 4 MiB of distinct chunks, registered as a file. The derivative: the same chunks and one
    # fresh chunk, as a fine-tune that changed one tensor. Rebuilding it reads 4 MiB + 128 KiB, four
    # times the allowance, for 128 KiB sent: charged as before, the honest upload was refused.
    base_chunks = [os.urandom(CHUNK) for _ in range(32)]
    base = _upload_xorb(tight_cas, base_chunks)
    base_terms = (FileTerm(base.hash, CHUNK * 32, 0, 32),)
    assert _register(tight_cas, base_terms, {base.hash: base}, b"".join(base_chunks)).status_code == 200
    fresh_chunk = os.urandom(CHUNK)
    fresh = _upload_xorb(tight_cas, [fresh_chunk])
    terms = (
        FileTerm(base.hash, CHUNK * 16, 0, 16),
        FileTerm(fresh.hash, CHUNK, 0, 1),
        FileTerm(base.hash, CHUNK * 16, 16, 32),
    )
    content = b"".join(base_chunks[:16]) + fresh_chunk + b"".join(base_chunks[16:])
    response = _register(tight_cas, terms, {base.hash: base, fresh.hash: fresh}, content)
    assert response.status_code == 200, response.text


def test_repeating_stored_content_is_charged_even_when_every_chunk_is_reused(
    tight_cas: tuple[httpx.Client, str],
) -> None:
    # The same 4 MiB named twelve times: 44 MiB of repetition beyond the distinct content, for nothing sent.
    chunks = [os.urandom(CHUNK) for _ in range(32)]
    stored = _upload_xorb(tight_cas, chunks)
    terms = tuple(FileTerm(stored.hash, CHUNK * 32, 0, 32) for _ in range(12))
    response = _register(tight_cas, terms, {stored.hash: stored}, b"".join(chunks) * 12)
    assert (response.status_code, response.json()["code"]) == (413, "XetShardOverBudget")
