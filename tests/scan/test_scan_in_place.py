"""Stored content is scanned in place: a whole blob is mapped, content rebuilt from xorbs is read through a
`RangeView` that fetches only the ranges the parsers touch. Nothing is spooled to disk, memory stays
bounded whatever the file's size, and the report is the same whichever way the bytes come."""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import struct
import tempfile
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.scan.corpus_reports import ScannedCorpus
from tests.scan.test_scan_fuzz import LIMITS, MUTATED_SEEDS

from weightyard.db import create_engine, migrate
from weightyard.repos.content import ContentStore
from weightyard.repos.scanning import ScanService
from weightyard.scan import Report, buffer, keras_scan, scan_file
from weightyard.scan.buffer import RangeView, unpack_at
from weightyard.scan.limits import Budget, LimitExceeded, Limits
from weightyard.storage import LocalObjectStore
from weightyard.xet import CorruptXorb, FileTerm, file_entry, serialize_xorb

CHUNK = 128 * 1024


def _engine(tmp_path: Path) -> sa.Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'weightyard.db'}")
    migrate(engine)
    return engine


def _xet_store(tmp_path: Path, *, pack: bool) -> tuple[ContentStore, ScanService]:
    engine = _engine(tmp_path)
    store = ContentStore(
        LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs"), engine, xet=True, pack=pack
    )
    return store, ScanService(engine, store)


def _report(report: Report) -> dict[str, object]:
    return report.to_dict()


@contextlib.contextmanager
def _tiny_blocks() -> Iterator[None]:
    """Blocks and search windows of a few dozen bytes, so that every read crosses their boundaries."""
    saved = buffer.BLOCK, buffer.BLOCKS, keras_scan._WINDOW
    buffer.BLOCK, buffer.BLOCKS, keras_scan._WINDOW = 61, 4, 97
    try:
        yield
    finally:
        buffer.BLOCK, buffer.BLOCKS, keras_scan._WINDOW = saved


def _corpus_files(corpus: ScannedCorpus) -> list[tuple[str, bytes]]:
    return [(Path(s.path).name, (corpus.root / s.path).read_bytes()) for s in corpus.samples]


# -- the same report whichever way the bytes come -------------------------------------------------------
def test_every_corpus_sample_reports_the_same_from_bytes_and_from_xet_storage(
    scanned_corpus: ScannedCorpus, tmp_path: Path
) -> None:
    store, _ = _xet_store(tmp_path, pack=True)
    stored = []
    for name, data in _corpus_files(scanned_corpus):
        writer = store.writer()
        writer.write(data)
        stored.append((name, data, writer.commit().sha256))
    differing = []
    for name, data, sha256 in stored:
        assert not store.has_whole_blob(sha256), "no whole blob: the content is rebuilt from xorbs"
        with _tiny_blocks(), store.open(sha256) as handle:  # a view even of small files
            in_place = scan_file(handle, name)
        if _report(in_place) != _report(scan_file(data, name)):
            differing.append(name)
    assert len(stored) > 200
    assert differing == []


def test_every_corpus_sample_reports_the_same_when_reads_cross_block_boundaries(
    scanned_corpus: ScannedCorpus,
) -> None:
    differing = []
    with _tiny_blocks():
        for name, data in _corpus_files(scanned_corpus):
            if _report(scan_file(io.BytesIO(data), name)) != _report(scan_file(data, name)):
                differing.append(name)
    assert differing == []


@settings(
    max_examples=150,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(data=MUTATED_SEEDS)
def test_mutated_model_files_report_the_same_from_bytes_and_read_in_place(data: bytes) -> None:
    with _tiny_blocks():
        in_place = scan_file(io.BytesIO(data), "fuzz.bin", limits=LIMITS)
    assert _report(in_place) == _report(scan_file(data, "fuzz.bin", limits=LIMITS))


# -- the view behaves as bytes --------------------------------------------------------------------------
def _view(data: bytes) -> RangeView:
    def read_at(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    return RangeView(read_at, len(data))


_OFFSETS = st.one_of(st.none(), st.integers(min_value=-450, max_value=450))


@settings(max_examples=400, derandomize=True)
@given(
    data=st.binary(max_size=400),
    sub=st.one_of(st.binary(max_size=3), st.tuples(st.integers(0, 400), st.integers(0, 150))),
    start=_OFFSETS,
    end=_OFFSETS,
)
def test_range_view_searches_and_slices_as_bytes_do(
    data: bytes, sub: bytes | tuple[int, int], start: int | None, end: int | None
) -> None:
    if isinstance(sub, tuple):  # a piece of the data itself, often longer than a block
        sub = data[sub[0] : sub[0] + sub[1]]
    with _tiny_blocks():
        view = _view(data)
        assert view.find(sub, start, end) == data.find(sub, start, end)
        assert view.rfind(sub, start, end) == data.rfind(sub, start, end)
        assert view[start:end] == data[start:end]
        every = range(-len(data), len(data))
        assert [view[i] for i in every] == [data[i] for i in every]


@settings(max_examples=200, derandomize=True)
@given(
    data=st.binary(max_size=40),
    fmt=st.sampled_from(["<I", "<HH", "<Q8xQQ", "<H"]),
    offset=st.integers(min_value=-50, max_value=50),
)
def test_unpack_at_answers_and_fails_as_unpack_from_does(data: bytes, fmt: str, offset: int) -> None:
    try:
        expected: object = struct.unpack_from(fmt, data, offset)
    except struct.error as exc:
        expected = str(exc)
    try:
        actual: object = unpack_at(fmt, _view(data), offset)
    except struct.error as exc:
        actual = str(exc)
    assert actual == expected


def test_a_search_through_content_read_in_place_stops_at_the_scan_time_budget() -> None:
    spent = Budget(Limits(seconds=-1))
    view = RangeView(lambda offset, length: bytes(length), 64 << 20, before_read=spent.check_time)
    with pytest.raises(LimitExceeded) as raised:
        view.find(b"FRHP")
    assert raised.value.rule == "limit.time"


# -- the attack: a huge file of repeated chunks ---------------------------------------------------------
REPEATS = 4096  # 512 MiB of content from one stored 128 KiB chunk


def _written_bytes() -> int:
    """Bytes this process has handed to write() so far (a spool to any file or folder counts)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_a_huge_xet_file_of_repeated_chunks_is_scanned_without_spooling_or_reading_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, scans = _xet_store(tmp_path, pack=False)
    chunk = b"\x00" * CHUNK
    body, info = serialize_xorb([chunk])
    store.add_xorb(body, info, None)
    digest = hashlib.sha256()
    for _ in range(REPEATS):
        digest.update(chunk)
    terms = tuple(FileTerm(info.hash, CHUNK, 0, 1) for _ in range(REPEATS))
    entry = file_entry(terms, store.xorb_info, digest.digest())
    with store.connect() as conn:
        store.register_file(conn, entry, digest.hexdigest())
    size = REPEATS * CHUNK
    # A temporary folder of this test's own: the system one changes under the other test workers.
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    assert Path(tempfile.gettempdir()) == temporary
    before = _entries(temporary), list(store.objects.list_scratch())
    written = _written_bytes()
    tracemalloc.start()
    try:
        report = scans.scan(digest.hexdigest(), "model.bin")  # what a commit of this file runs
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _written_bytes() - written < 4 << 20, "the content was copied somewhere"
    assert (_entries(temporary), list(store.objects.list_scratch())) == before
    assert peak < 48 << 20, f"{peak} bytes held while scanning {size}"
    assert report.size == size
    assert report.verdict.value == "unscannable"  # zeros are no model format


def test_damaged_xet_storage_fails_the_scan_instead_of_becoming_a_verdict(tmp_path: Path) -> None:
    store, scans = _xet_store(tmp_path, pack=True)
    data = random.Random(5).randbytes(3 * CHUNK)
    writer = store.writer()
    writer.write(b"\x80\x04" + data)
    sha256 = writer.commit().sha256
    xorb = next(p for p in (tmp_path / "xorbs").rglob("*") if p.is_file())
    damaged = bytearray(xorb.read_bytes())
    damaged[-100] ^= 0xFF
    xorb.write_bytes(bytes(damaged))
    with pytest.raises(CorruptXorb):
        scans.scan(sha256, "model.pkl")
    assert scans.reports_of({"model.pkl": sha256})["model.pkl"].format == "pending", "no verdict is stored"
