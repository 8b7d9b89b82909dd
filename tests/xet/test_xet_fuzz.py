"""Damaged inputs of every kind fail with a XetError (clear code and status), never another exception."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from weightyard.xet import (
    XetError,
    build_xorb_footer,
    dedup_shard,
    file_entry,
    parse_shard,
    parse_xorb,
    parse_xorb_footer,
    serialize_shard,
    serialize_xorb,
    shard_xorb,
    verify_shard,
)
from weightyard.xet.shard import FileTerm, Shard
from weightyard.xet.xorb import iter_chunk_data

RNG = random.Random(51)
CHUNKS = [RNG.randbytes(300), b"abc" * 400, bytes(1000), RNG.randbytes(50)]
XORB_BODY, XORB = serialize_xorb(CHUNKS)
STORED_XORB = XORB_BODY + build_xorb_footer(XORB)
TERMS = [FileTerm(XORB.hash, sum(c.length for c in XORB.chunks[0:3]), 0, 3)]
UPLOAD_SHARD = serialize_shard(
    Shard((file_entry(TERMS, {XORB.hash: XORB}.get, b"\x01" * 32),), (shard_xorb(XORB),))
)
DEDUP_SHARD = dedup_shard([XORB], hmac_key=b"\x02" * 32, created=1, expiry=2)


def damaged(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 1:
        return bytes(data[: rng.randrange(len(data))])
    if kind == 2:
        cut = rng.randrange(len(data))
        return bytes(data[:cut] + rng.randbytes(rng.randint(1, 64)) + data[cut:])
    start = rng.randrange(len(data))
    return bytes(data[:start] + data[start + rng.randint(1, 64) :])


def _verify(body: bytes) -> None:
    verify_shard(parse_shard(body), {XORB.hash: XORB}.get)


CASES: list[tuple[str, bytes, Callable[[bytes], object]]] = [
    ("xorb upload", XORB_BODY, lambda b: parse_xorb(b, XORB.hash)),
    ("stored xorb footer", STORED_XORB, parse_xorb_footer),
    ("fetched chunk range", XORB_BODY, lambda b: list(iter_chunk_data(b))),
    ("upload shard", UPLOAD_SHARD, _verify),
    ("dedup shard", DEDUP_SHARD, parse_shard),
]


@pytest.mark.parametrize(("name", "body", "parse"), CASES, ids=[c[0] for c in CASES])
def test_damaged_input_fails_only_with_a_xet_error(
    name: str, body: bytes, parse: Callable[[bytes], object]
) -> None:
    rng = random.Random(name)
    parse(body)
    failures: list[XetError] = []
    for _ in range(400):
        try:
            parse(damaged(body, rng))
        except XetError as exc:
            failures.append(exc)
    assert len(failures) > 200
    assert all(exc.code.startswith("Xet") and 400 <= exc.status < 500 for exc in failures)
