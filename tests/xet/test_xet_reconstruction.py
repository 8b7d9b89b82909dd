from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from xorb_memory import reader_over

from weightyard.xet import (
    CorruptXorb,
    FetchRange,
    FileTerm,
    InvalidRange,
    RangeNotSatisfiable,
    ReadAhead,
    UnknownXorb,
    UrlSigner,
    XorbInfo,
    hash_to_string,
    iter_file_bytes,
    parse_range_header,
    plan_reconstruction,
    reconstruction,
    serialize_xorb,
    string_to_hash,
)
from weightyard.xet.xorb import CompressionScheme, XorbChunk

XORB_A = string_to_hash("92f17a16b7da20270a7953111b9f9c6d1fa3f5701fd26dd8a04084d1f3dfe8d9")
XORB_C = string_to_hash("c12d238cbf50e9f0b6ab87303d39a25d84e1d73a8b02dd1af999ec00b7f287f5")


def _spread(anchors: dict[int, int], count: int, default: int) -> list[int]:
    """Per-index sizes such that the cumulative sum hits `anchors` (index -> cumulative value) exactly."""
    sizes = [default] * count
    points = sorted(anchors.items())
    for (i0, v0), (i1, v1) in itertools.pairwise(points):
        base, extra = divmod(v1 - v0, i1 - i0)
        for k in range(i0, i1):
            sizes[k] = base + (1 if k - i0 < extra else 0)
    return sizes


def _xorb(
    xorb_hash: bytes, count: int, raw_segments: Sequence[dict[int, int]], serialized: dict[int, int]
) -> XorbInfo:
    lengths = [65_536] * count
    for anchors in raw_segments:
        first, last = min(anchors), max(anchors)
        lengths[first:last] = _spread(anchors, count, 65_536)[first:last]
    ends = _spread(serialized, count, 0)
    chunks, start, raw = [], 0, 0
    for index in range(count):
        end = start + ends[index]
        chunks.append(
            XorbChunk(
                bytes([index % 256, index // 256]) * 16,
                lengths[index],
                raw,
                start,
                end,
                CompressionScheme.NONE,
            )
        )
        start, raw = end, raw + lengths[index]
    return XorbInfo(xorb_hash, tuple(chunks))


def captured_tables() -> dict[bytes, XorbInfo]:
    """Chunk tables consistent with every number in the captured reconstructions (tests/xet/data).

    Raw anchors are cumulative sizes within the runs of chunks the file uses; serialized anchors are the chunk
    start offsets that the captured byte ranges reveal. Chunks between anchors share the remainder evenly.
    """
    a_raw = [
        {0: 0, 43: 2_982_293, 44: 3_046_191, 61: 4_161_364},
        {115: 0, 143: 1_541_256, 144: 1_612_343, 238: 7_513_526, 239: 7_627_691, 249: 8_297_287},
        {274: 0, 337: 4_159_888},
    ]
    a_serialized = {
        0: 0, 43: 2_982_637, 44: 3_046_543, 61: 4_161_852, 115: 7_399_186, 143: 8_940_666, 144: 9_011_761,
        238: 14_754_668, 239: 14_862_735, 249: 15_497_305, 274: 16_555_133, 337: 20_487_559,
    }  # fmt: skip
    c_raw = [{0: 0, 50: 3_236_902, 72: 4_352_981}]
    c_serialized = {0: 0, 50: 3_237_302, 72: 4_331_667}
    return {XORB_A: _xorb(XORB_A, 337, a_raw, a_serialized), XORB_C: _xorb(XORB_C, 72, c_raw, c_serialized)}


CAPTURED_TERMS = (
    FileTerm(XORB_A, 4_161_364, 0, 61),
    FileTerm(XORB_C, 3_236_902, 0, 50),
    FileTerm(XORB_A, 8_297_287, 115, 249),
    FileTerm(XORB_C, 1_116_079, 50, 72),
    FileTerm(XORB_A, 4_159_888, 274, 337),
)


def signer(port: int) -> UrlSigner:
    def sign(xorb: bytes, ranges: Sequence[FetchRange]) -> str:
        return f"http://127.0.0.1:{port}/cas/fetch/{hash_to_string(xorb)}"

    return sign


def test_full_file_v2_answer_matches_the_capture(examples: dict[str, Any]) -> None:
    captured = examples["recon_v2_full_file"]
    tables = captured_tables()
    start, end = parse_range_header(captured["range"], 20_971_520)
    plan = plan_reconstruction(CAPTURED_TERMS, tables.get, start, end)
    assert plan.to_v2(signer(8767)) == captured["body"]


def test_each_ranged_v1_answer_matches_the_capture(examples: dict[str, Any]) -> None:
    tables = captured_tables()
    assert len(examples["recon_v1_range"]) == 4
    for captured in examples["recon_v1_range"]:
        start, end = parse_range_header(captured["range"], 20_971_520)
        plan = plan_reconstruction(CAPTURED_TERMS, tables.get, start, end)
        assert plan.to_v1(signer(8768)) == captured["body"], captured["range"]


def test_v2_lists_every_range_of_a_xorb_under_one_url() -> None:
    plan = plan_reconstruction(CAPTURED_TERMS, captured_tables().get)
    calls: list[tuple[bytes, int]] = []

    def sign(xorb: bytes, ranges: Sequence[FetchRange]) -> str:
        calls.append((xorb, len(ranges)))
        return "u"

    plan.to_v2(sign)
    assert calls == [(XORB_A, 3), (XORB_C, 1)]


def _table(lengths: list[int]) -> XorbInfo:
    chunks, start, raw = [], 0, 0
    for index, length in enumerate(lengths):
        chunks.append(
            XorbChunk(bytes([index]) * 32, length, raw, start, start + 8 + length, CompressionScheme.NONE)
        )
        start, raw = start + 8 + length, raw + length
    return XorbInfo(b"\x01" * 32, tuple(chunks))


def test_adjacent_and_overlapping_chunk_ranges_of_a_xorb_are_merged() -> None:
    table = _table([10] * 6)
    terms = [FileTerm(table.hash, 20, 0, 2), FileTerm(table.hash, 20, 2, 4), FileTerm(table.hash, 30, 1, 4)]
    plan = plan_reconstruction(terms, {table.hash: table}.get)
    assert plan.fetch[table.hash] == (FetchRange(0, 4, 0, 4 * 18 - 1),)
    assert [(t.chunk_start, t.chunk_end) for t in plan.terms] == [(0, 2), (2, 4), (1, 4)]


def test_range_inside_one_chunk_keeps_that_chunk_with_an_offset() -> None:
    table = _table([10, 10, 10])
    plan = plan_reconstruction([FileTerm(table.hash, 30, 0, 3)], {table.hash: table}.get, 13, 15)
    assert plan.offset_into_first_range == 3
    assert [(t.chunk_start, t.chunk_end, t.unpacked_len) for t in plan.terms] == [(1, 2, 10)]


def test_empty_file_has_an_empty_plan() -> None:
    assert parse_range_header("bytes=0-", 0) == (0, 0)
    plan = plan_reconstruction([], {}.get)
    assert plan.terms == ()
    assert plan.fetch == {}
    assert plan.offset_into_first_range == 0


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, (0, 100)), ("bytes=0-99", (0, 100)), ("bytes=10-", (10, 100)), ("bytes=-5", (95, 100)),
     ("bytes=90-1000", (90, 100))],
)  # fmt: skip
def test_range_header_is_read_end_inclusive(header: str | None, expected: tuple[int, int]) -> None:
    assert parse_range_header(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_range_selecting_nothing_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range_header(header, 100)
    assert caught.value.status == 416


@pytest.mark.parametrize("header", ["bytes=5-1", "items=0-1", "bytes=0-1,5-6", "bytes=-"])
def test_unsupported_range_header_is_rejected(header: str) -> None:
    with pytest.raises(InvalidRange):
        parse_range_header(header, 100)


def test_term_naming_a_missing_xorb_is_rejected() -> None:
    with pytest.raises(UnknownXorb):
        plan_reconstruction([FileTerm(b"\x09" * 32, 10, 0, 1)], {}.get)


def _stored_file() -> tuple[bytes, list[FileTerm], dict[bytes, XorbInfo], dict[bytes, bytes]]:
    rng = random.Random(8)
    chunks = [rng.randbytes(rng.randint(1, 3000)) for _ in range(40)]
    body, info = serialize_xorb(chunks)
    # A file made of two runs of the xorb, the second overlapping the first.
    terms = [
        FileTerm(info.hash, sum(map(len, chunks[0:25])), 0, 25),
        FileTerm(info.hash, sum(map(len, chunks[10:40])), 10, 40),
    ]
    data = b"".join(chunks[0:25] + chunks[10:40])
    return data, terms, {info.hash: info}, {info.hash: body}


def test_streamed_bytes_equal_the_file_for_every_range() -> None:
    data, terms, tables, bodies = _stored_file()

    read = reader_over(bodies)
    rng = random.Random(9)
    cases = [(0, len(data)), (0, 1), (len(data) - 1, len(data))]
    cases += [tuple(sorted(rng.sample(range(len(data) + 1), 2))) for _ in range(30)]  # type: ignore[misc]
    for start, end in cases:
        assert b"".join(iter_file_bytes(terms, tables.get, read, start, end)) == data[start:end], (start, end)


def test_streaming_a_damaged_xorb_fails_instead_of_serving_wrong_bytes() -> None:
    _, terms, tables, bodies = _stored_file()
    (xorb,) = bodies
    damaged = bytearray(bodies[xorb])
    damaged[-1] ^= 0xFF

    read = reader_over({xorb: damaged})
    with pytest.raises(CorruptXorb) as caught:
        b"".join(iter_file_bytes(terms, tables.get, read))
    assert caught.value.status == 500


def test_streaming_a_xorb_with_a_damaged_chunk_header_fails() -> None:
    # The payloads are intact; only the second chunk's header claims another compression scheme.
    _, terms, tables, bodies = _stored_file()
    (xorb,) = bodies
    damaged = bytearray(bodies[xorb])
    damaged[tables[xorb].chunks[1].start + 4] ^= 0x01
    with pytest.raises(CorruptXorb, match="chunk headers"):
        b"".join(iter_file_bytes(terms, tables.get, reader_over({xorb: damaged})))


def test_streaming_a_truncated_xorb_fails() -> None:
    _, terms, tables, bodies = _stored_file()
    (xorb,) = bodies
    with pytest.raises(CorruptXorb, match="shorter"):
        b"".join(iter_file_bytes(terms, tables.get, reader_over({xorb: bodies[xorb][:-10]})))


def test_streamed_bytes_mix_compressed_and_plain_chunks_across_read_windows(monkeypatch: Any) -> None:
    # Repetitive chunks are stored LZ4-compressed, random ones as they are; a small window makes every term
    # span several reads, so pieces start and end at window edges as well as mid-chunk.
    monkeypatch.setattr(reconstruction, "READ_WINDOW", 5000)
    rng = random.Random(11)
    chunks = [rng.randbytes(1500) if i % 2 else bytes([i]) * 2000 for i in range(30)]
    body, info = serialize_xorb(chunks)
    assert {c.scheme for c in info.chunks} == {CompressionScheme.NONE, CompressionScheme.LZ4}
    terms = [FileTerm(info.hash, sum(map(len, chunks[3:27])), 3, 27)]
    data = b"".join(chunks[3:27])
    read = reader_over({info.hash: body})
    for start, end in [(0, len(data)), (1, len(data) - 1), (4999, 5001), (1999, 12_345)]:
        pieces = list(iter_file_bytes(terms, {info.hash: info}.get, read, start, end))
        assert b"".join(pieces) == data[start:end]
        assert max(map(len, pieces)) <= 5000
    assert len(list(iter_file_bytes(terms, {info.hash: info}.get, read))) > len(data) // 5000


def test_streamed_bytes_read_ahead_by_threads_equal_the_file_while_every_piece_is_still_held(
    monkeypatch: Any,
) -> None:
    # Small windows, so a file is many of them: every piece is kept until the end, so a window buffer
    # handed out again while a piece of it was still held would show as wrong bytes.
    monkeypatch.setattr(reconstruction, "READ_WINDOW", 5000)
    rng = random.Random(12)
    chunks = [rng.randbytes(1500) if i % 3 else bytes([i]) * 2000 for i in range(60)]
    body, info = serialize_xorb(chunks)
    terms = [FileTerm(info.hash, sum(map(len, chunks[2:58])), 2, 58)]
    data = b"".join(chunks[2:58])
    read = reader_over({info.hash: body})
    ahead = ReadAhead(threads=2, windows=3, depth=2)
    for start, end in [(0, len(data)), (1, len(data) - 1), (4999, 5001), (1999, 50_000)]:
        pieces = list(iter_file_bytes(terms, {info.hash: info}.get, read, start, end, ahead=ahead))
        assert b"".join(pieces) == data[start:end], (start, end)
        assert max(map(len, pieces)) <= 5000
    # Streamed one piece at a time (each dropped before the next), the kept buffers serve again and again.
    for _ in range(3):
        assert (
            b"".join(bytes(p) for p in iter_file_bytes(terms, {info.hash: info}.get, read, ahead=ahead))
            == data
        )


def test_streaming_a_damaged_xorb_through_read_ahead_fails_and_gives_its_windows_back() -> None:
    _, terms, tables, bodies = _stored_file()
    (xorb,) = bodies
    damaged = bytearray(bodies[xorb])
    damaged[-1] ^= 0xFF
    ahead = ReadAhead(threads=1, windows=2, depth=2)
    with pytest.raises(CorruptXorb):
        b"".join(iter_file_bytes(terms, tables.get, reader_over({xorb: damaged}), ahead=ahead))
    wait_until(lambda: ahead.free_windows == 2)  # the failed stream's windows are free again
    assert ahead_threads_ran(ahead, 2)


def windows_of(
    count: int, log: list[str], gate: threading.Event | None = None
) -> Iterator[Callable[[], memoryview]]:
    """`count` synthetic windows: each notes which thread computed it, then answers its number."""

    def window(number: int) -> memoryview:
        if gate is not None:
            gate.wait(10)
        log.append(threading.current_thread().name)
        return memoryview(bytes([number]))

    return (lambda n=n: window(n) for n in range(count))  # type: ignore[misc]


def wait_until(check: Callable[[], bool]) -> None:
    """Poll `check` (bounded): a window dropped by a closed stream is given back when its thread is done."""
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def ahead_threads_ran(ahead: ReadAhead, at_least: int) -> bool:
    """Whether a fresh stream of ten windows has at least `at_least` of them computed ahead by its threads
    (a stream whose windows were all taken reads every window itself)."""
    log: list[str] = []
    stream = ahead.run(windows_of(10, log))
    assert [bytes(piece)[0] for piece in stream] == list(range(10))
    return sum(name.startswith("read-ahead") for name in log) >= at_least


def test_read_ahead_keeps_results_in_order_and_its_windows_are_shared_by_all_streams() -> None:
    ahead = ReadAhead(threads=2, windows=2, depth=2)
    first_log: list[str] = []
    second_log: list[str] = []
    first = ahead.run(windows_of(6, first_log))
    second = ahead.run(windows_of(6, second_log))
    received: list[tuple[int, int]] = []
    for _ in range(6):  # the two downloads take turns
        received.append((bytes(next(first))[0], bytes(next(second))[0]))
    assert received == [(n, n) for n in range(6)]
    assert next(first, None) is None and next(second, None) is None
    assert first_log[0].startswith("read-ahead"), "the first stream took both windows ahead"
    assert second_log[0] == threading.current_thread().name, (
        "two windows in all, both taken: the second stream read its first window itself"
    )
    assert ahead.free_windows == 2, "both streams gave their windows back"
    assert ahead_threads_ran(ahead, 2)


def test_a_stream_closed_early_gives_its_windows_back() -> None:
    ahead = ReadAhead(threads=1, windows=2, depth=2)
    log: list[str] = []
    stream = ahead.run(windows_of(10, log))
    assert bytes(next(stream))[0] == 0
    stream.close()  # the client went away
    wait_until(lambda: ahead.free_windows == 2)
    assert ahead_threads_ran(ahead, 2)


def test_a_window_buffer_is_handed_out_again_only_once_no_view_of_it_is_left() -> None:
    ahead = ReadAhead(threads=1, windows=2, depth=1)
    first = ahead.buffer(100)
    address = first.obj
    piece = first[10:20]  # e.g. a slice waiting in a socket's send queue
    del first
    second = ahead.buffer(100)
    assert second.obj is not address, "a slice of the first buffer is still held"
    del piece
    third = ahead.buffer(100)
    assert third.obj is address, "no view of the first buffer is left: it serves again"
    assert len(third) >= 100 and len(second) >= 100
    assert len(ahead.buffer(reconstruction.READ_WINDOW + 1)) == reconstruction.READ_WINDOW + 1


def test_every_range_of_a_small_file_gets_the_minimal_covering_chunks() -> None:
    chunks = [b"a" * 3, b"b" * 5, b"c" * 2, b"d" * 7]
    body, table = serialize_xorb(chunks, CompressionScheme.NONE)
    terms = [FileTerm(table.hash, 14, 1, 4), FileTerm(table.hash, 8, 0, 2)]
    data = b"".join(chunks[1:4] + chunks[0:2])
    lengths = {index: len(chunk) for index, chunk in enumerate(chunks)}

    read = reader_over({table.hash: body})
    for start in range(len(data)):
        for end in range(start + 1, len(data) + 1):
            plan = plan_reconstruction(terms, {table.hash: table}.get, start, end)
            first, last = plan.terms[0], plan.terms[-1]
            covered = sum(t.unpacked_len for t in plan.terms)
            assert 0 <= plan.offset_into_first_range < lengths[first.chunk_start]
            assert covered - plan.offset_into_first_range >= end - start
            assert covered - plan.offset_into_first_range - lengths[last.chunk_end - 1] < end - start
            streamed = b"".join(iter_file_bytes(terms, {table.hash: table}.get, read, start, end))
            assert streamed == data[start:end]
