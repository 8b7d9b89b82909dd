"""The verifying-hub floor of bench/transfer.py: the CPU that any hub which verifies every byte and fsyncs
every blob must spend on an upload, measured piece by piece on the uploaded file, and the ratio it allows; and
how the benchmark's timings alternate."""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from weightyard.xet.chunking import chunk_file

BENCH = Path(__file__).resolve().parents[2] / "bench"
SIZE = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def transfer() -> Iterator[ModuleType]:
    # bench/transfer.py imports its helpers (bench/download_bound.py) as top-level modules, as when run.
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        yield importlib.import_module("transfer")


def test_every_piece_of_the_floor_is_measured_on_the_real_file(transfer: ModuleType, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    path = tmp_path / "file.bin"
    path.write_bytes(data)

    refs, blake3_cpu = transfer.chunk_hashes_with_cpu(path)
    assert refs == chunk_file([data]).chunk_refs()  # the client's chunks, each hashed as the hub hashes it
    assert blake3_cpu > 0
    digest, sha256_cpu = transfer.sha256_with_cpu(path)
    assert digest == hashlib.sha256(data).hexdigest()
    assert sha256_cpu > 0

    xet, lfs = transfer.verification(path, SIZE, xet=True), transfer.verification(path, SIZE, xet=False)
    assert xet.sha256 > 0 and xet.blake3 is not None and xet.blake3 > 0
    assert lfs.sha256 > 0 and lfs.blake3 is None  # push: the hub verifies the sha256 only
    with pytest.raises(transfer.BenchError, match="cover 4194304 bytes of 4194305"):
        transfer.verification(path, SIZE + 1, xet=True)

    copy = tmp_path / "copy.bin"
    anchor = transfer.cp_sync(path, copy, timeout=60)
    assert anchor.seconds > 0 and anchor.client_cpu > 0  # the CPU of cp + sync: the hub's write and fsync
    assert not copy.exists()

    row = transfer.Row("upload_file, new content (Xet)", "cp + sync", 0.30)
    row.anchor, row.anchor_cpu = [anchor.seconds], [anchor.client_cpu]
    row.sink_cpu, row.verification = [transfer.Timing(1.0, 0.5, 0.1)], [xet]
    floor = transfer.floor_of(row, cores=2)
    assert floor.total == pytest.approx(0.5 + 0.1 + xet.sha256 + xet.blake3 + anchor.client_cpu)


def test_the_floor_is_the_median_sum_of_its_pieces_and_the_report_prints_it(transfer: ModuleType) -> None:
    Timing, Verification = transfer.Timing, transfer.Verification
    xet = transfer.Row("upload_file, new content (Xet)", "cp + sync", 0.30)
    xet.subject, xet.anchor, xet.anchor_cpu = [4.0, 5.0, 6.0], [0.5, 0.7, 0.6], [0.2, 0.1, 0.3]
    xet.sink_cpu = [Timing(2.0, 1.1, 0.05), Timing(2.1, 1.3, 0.07), Timing(2.2, 1.2, 0.06)]
    xet.verification = [Verification(0.40, 0.10), Verification(0.38, 0.12), Verification(0.42, 0.11)]
    push = transfer.Row("weightyard push (upload session)", "cp + sync", 0.50)
    push.subject, push.anchor, push.anchor_cpu = [1.5, 1.6], [0.6, 0.6], [0.2, 0.2]
    push.sink_cpu = [Timing(1.0, 0.8, 0.1), Timing(1.0, 0.8, 0.1)]
    push.verification = [Verification(0.4), Verification(0.4)]
    download = transfer.Row("hf_hub_download (Xet)", "nginx → curl -o FILE", 0.60)
    download.subject, download.anchor = [1.0], [0.5]

    floor = transfer.floor_of(xet, cores=2)
    # medians of each piece: client 1.2, sink 0.06, sha256 0.40, BLAKE3 0.11, write 0.2
    assert floor.total == pytest.approx(1.2 + 0.06 + 0.40 + 0.11 + 0.2)
    assert floor.cpu_ratio == pytest.approx(0.6 / (1.97 / 2))
    # nor can a hub beat the client's own median time against the sink (2.1 s): the lower ratio binds
    assert floor.alone_ratio == pytest.approx(0.6 / 2.1)
    assert floor.ratio == pytest.approx(0.6 / 2.1)
    assert transfer.floor_of(push, cores=2).total == pytest.approx(0.8 + 0.1 + 0.4 + 0.2)  # no BLAKE3
    assert transfer.floor_of(download, cores=2) is None

    lines = transfer.floor_table([xet, push, download], cores=2)
    assert "on 2 cores" in lines[1]
    xet_line, push_line = lines[4:]
    # the CPU allows 0.61×, the client alone 0.29×: below the 0.30× goal; the hub's median 0.6 / 5.0 = 0.12×
    # is 42 % of it
    pieces = "| 1.20 s | 0.06 s | 0.40 s | 0.11 s | 0.20 s | 1.97 s | 0.61× | 0.29× | 0.29× | ≥ 0.30× |"
    assert f"{pieces} 0.12×: 42% |" in xet_line
    assert xet_line.endswith("| goal out of reach of any verifying hub here |")
    # push: the CPU allows 0.6 / (1.5 / 2) = 0.80×, the client alone 0.6 / 1.0 = 0.60×: the 0.50× goal is
    # within reach; a 0.70× goal would be out of every hub's reach
    assert "| 0.80 s | 0.10 s | 0.40 s | – | 0.20 s | 1.50 s | 0.80× | 0.60× | 0.60× | ≥ 0.50× |" in push_line
    assert push_line.endswith("| goal within the floor |")
    push.goal = 0.70
    assert transfer.floor_table([push], cores=2)[-1].endswith(
        "| goal out of reach of any verifying hub here |"
    )
    assert transfer.floor_json(push, 2)["goal_out_of_reach"] is True
    assert transfer.floor_json(xet, 2)["total_cpu"] == pytest.approx(floor.total)


def test_every_timing_reads_the_files_it_will_read_again_first(
    transfer: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This machine's kernel reclaims the page cache of files left untouched for seconds: a file read once
    # before a phase would be partly on the disk by its last timing, so each timing reads its files first.
    files = [tmp_path / "served.bin", tmp_path / "stored.bin"]
    for path in files:
        path.write_bytes(b"x")
    events: list[str] = []
    monkeypatch.setattr(transfer, "warm_cache", lambda path: events.append(f"read {path.name}"))
    for index in (0, 1):
        transfer.alternate(index, lambda: events.append("row"), lambda: events.append("anchor"), files)
    read = ["read served.bin", "read stored.bin"]
    assert events == [*read, "row", *read, "anchor", *read, "anchor", *read, "row"]
    events.clear()  # three sides (anchor, sink, hub): repetition 4 begins with the second
    sides = [functools.partial(events.append, side) for side in ("anchor", "sink", "hub")]
    transfer.in_turn(4, sides, files[:1])
    assert events == ["read served.bin", "sink", "read served.bin", "hub", "read served.bin", "anchor"]


def test_a_ratio_that_would_print_as_its_goal_is_printed_with_three_decimals(transfer: ModuleType) -> None:
    # Run 34 printed "0.30×" beside "NOT MET" for 0.2970 against a goal of 0.30×.
    assert transfer.ratio_text(0.29695, 0.3) == "0.297×"
    assert transfer.ratio_text(0.59932, 0.6) == "0.599×"
    assert transfer.ratio_text(1.004, 1.0) == "1.004×"
    assert transfer.ratio_text(0.3, 0.3) == "0.30×"
    assert transfer.ratio_text(0.3127, 0.3) == "0.31×"
    assert transfer.ratio_text(0.5, 0.8) == "0.50×"


def test_the_whole_blob_control_prints_a_second_nginx_against_the_first_and_the_hub(
    transfer: ModuleType,
) -> None:
    whole = transfer.Row("curl -o /dev/null, LFS-uploaded (whole blob)", "nginx → /dev/null", 1.00)
    whole.subject, whole.anchor, whole.twin = [0.25, 0.30, 0.27], [0.24, 0.29, 0.31], [0.26, 0.28, 0.30]
    download = transfer.Row("hf_hub_download (Xet)", "nginx → curl -o FILE", 0.60)
    download.subject, download.anchor = [1.0], [0.5]
    assert transfer.twin_table([download]) == []  # no row timed from the second nginx: no table

    lines = transfer.twin_table([download, whole])
    assert len(lines) == 4  # the title, the header, its rule and the one row timed from the second nginx
    # the second nginx against the first: 0.24 / 0.26 by best, 0.29 / 0.28 by median; the hub against the
    # second: 0.26 / 0.25 and 0.28 / 0.27
    assert lines[3] == (
        "| curl -o /dev/null, LFS-uploaded (whole blob) | 0.260 s | 0.280 s | 0.92× (1.04×) | ≥ 1.00× | "
        "1.040× (1.037×) |"
    )
