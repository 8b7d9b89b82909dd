"""bench/rebuild_bound.py, the bound of bench/transfer.py's first plain download of a Xet-uploaded file: it
rebuilds the file from the hub's own xorbs, and its check is real (a damaged chunk is never sent)."""

from __future__ import annotations

import hashlib
import http.client
import importlib
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from huggingface_hub import HfApi
from tests.support import Server

from weightyard.xet.xorb import CHUNK_HEADER_LEN, CompressionScheme

BENCH = Path(__file__).resolve().parents[2] / "bench"
REPO = f"admin/rebuild-bound-{os.getpid()}"
WORDS = [b"tensor", b"weight", b"layer", b"bias", b"attention", b"norm", b"embedding", b"head"]


@dataclass
class Bound:
    url: str
    log: Path


@dataclass
class Stored:
    data: bytes
    sha256: str
    bounds: dict[bool, Bound]  # by `verify`


def payload() -> bytes:
    """Random bytes around a part of text that LZ4 shrinks, so the client stores some chunks compressed; the
    text line in front keeps the scanner from sniffing the random bytes as a header."""
    words = random.Random(13).choices(WORDS, k=200_000)
    return b"weightyard rebuild bound test\n" + os.urandom(2 << 20) + b" ".join(words) + os.urandom(1 << 20)


@pytest.fixture(scope="module")
def rebuild_bound() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        yield importlib.import_module("rebuild_bound")


def start_bound(data: Path, sha256: str, log: Path, verify: bool) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(BENCH / "rebuild_bound.py"), "--data", str(data), "--sha256", sha256]
    with open(log, "w") as stderr:
        return subprocess.Popen(
            [*cmd, "--port", "0", *([] if verify else ["--no-verify"])],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )


@pytest.fixture(scope="module")
def stored(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    data = payload()
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=data, path_in_repo="model.bin", repo_id=REPO)
    sha256 = hashlib.sha256(data).hexdigest()
    logs = tmp_path_factory.mktemp("rebuild-bound")
    processes = {
        verify: start_bound(server.data, sha256, logs / f"verify-{verify}.log", verify)
        for verify in (True, False)
    }
    try:
        bounds = {}
        for verify, process in processes.items():
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith("listening on http://127.0.0.1:"), line
            bounds[verify] = Bound(line.removeprefix("listening on "), logs / f"verify-{verify}.log")
        yield Stored(data, sha256, bounds)
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(timeout=10)


def fetch(url: str, path: str = "/") -> tuple[int, int, bytes]:
    """GET `url + path`: the status, the declared Content-Length and the body bytes that arrived."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        try:
            body = answer.read()
        except http.client.IncompleteRead as short:
            body = short.partial
        return answer.status, int(answer.headers["Content-Length"]), body
    finally:
        connection.close()


def test_both_servers_send_exactly_the_stored_file_rebuilt_from_its_xorbs(
    stored: Stored, server: Server, rebuild_bound: ModuleType
) -> None:
    size, windows = rebuild_bound.load_windows(server.data, stored.sha256)
    schemes = {chunk.scheme for window in windows for chunk in window.chunks}
    assert size == len(stored.data)
    assert CompressionScheme.NONE in schemes and len(schemes) > 1  # both ways of sending are exercised
    for verify in (True, False):
        status, length, body = fetch(stored.bounds[verify].url)
        assert (status, length) == (200, len(stored.data))
        assert hashlib.sha256(body).hexdigest() == stored.sha256
        assert fetch(stored.bounds[verify].url, "/other")[0] == 404


def test_a_damaged_chunk_is_never_sent_by_the_verifying_server_but_is_without_the_check(
    stored: Stored, server: Server, rebuild_bound: ModuleType
) -> None:
    _, windows = rebuild_bound.load_windows(server.data, stored.sha256)
    position, target = 0, None
    for window in windows:
        for chunk in window.chunks:
            if chunk.scheme is CompressionScheme.NONE and position > 1 << 20:
                target = window.xorb, chunk, position
                break
            position += chunk.length
        if target is not None:
            break
    assert target is not None
    xorb, chunk, position = target
    offset_in_chunk = chunk.length // 2
    path = server.data / "xorbs" / xorb[:2] / xorb
    with open(path, "r+b") as handle:  # in place: the servers' mappings see it
        handle.seek(chunk.start + CHUNK_HEADER_LEN + offset_in_chunk)
        original = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([original[0] ^ 0x01]))
    try:
        status, length, body = fetch(stored.bounds[True].url)
        assert (status, length) == (200, len(stored.data))
        assert len(body) <= position  # closed before the damaged chunk
        assert body == stored.data[: len(body)]  # and every byte it did send is right
        assert "do not hash to the chunk table's hash" in stored.bounds[True].log.read_text()

        status, length, body = fetch(stored.bounds[False].url)
        damaged = bytearray(stored.data)
        damaged[position + offset_in_chunk] ^= 0x01
        assert (status, length) == (200, len(stored.data))
        assert body == damaged  # the check is what kept the damage out
    finally:
        with open(path, "r+b") as handle:
            handle.seek(chunk.start + CHUNK_HEADER_LEN + offset_in_chunk)
            handle.write(original)


def test_the_report_prints_the_first_download_and_the_anchor_over_each_bound(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        transfer = importlib.import_module("transfer")
    first = transfer.Row("curl first download", "nginx → /dev/null", 0.80)
    first.subject, first.anchor = [0.40, 0.30, 0.35], [0.12, 0.11, 0.13]
    bench = transfer.Bench(256 << 20, tmp_path, {}, None, None, None)
    assert transfer.rebuild_table(bench, first) == [] and transfer.rebuild_json(bench, first) is None
    bench.rebuild = transfer.RebuildTimings(
        verified=[0.20, 0.15, 0.25], unverified=[0.10, 0.12, 0.14], anchor=[0.12, 0.10, 0.11, 0.13]
    )
    lines = transfer.rebuild_table(bench, first)
    rehash, plain = lines[-2:]
    # first download / bound, best against best: 0.30 / 0.15 = 2.00×, median against median 0.35 / 0.20 =
    # 1.75×; anchor / bound: 0.10 / 0.15 = 0.67× (median 0.115 / 0.20 = 0.57×), below the 0.80× goal
    assert "| 0.150 s (1790 MB/s) | 0.200 s | 2.00× (1.75×) | 0.67× (0.57×) | ≥ 0.80× |" in rehash
    assert rehash.endswith("reached here: goal above it |")
    assert "| 0.100 s (2684 MB/s) | 0.120 s | 3.00× (2.92×) | 1.00× (0.96×) | ≥ 0.80× |" in plain
    figures = transfer.rebuild_json(bench, first)
    assert figures["best_ratio"] == pytest.approx(0.10 / 0.15) and figures["goal_above_bound"] is True
    assert figures["best_ratio_without_rehash"] == pytest.approx(1.0)
    first.goal = 0.60
    assert transfer.rebuild_table(bench, first)[-2].endswith("reached here: goal within it |")
