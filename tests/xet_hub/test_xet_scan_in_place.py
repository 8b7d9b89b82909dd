"""The scan a commit runs reads Xet-stored content in place: committing a registered file of hundreds of MiB
made of one chunk repeated costs the server no copy of it (it used to be spooled to a temporary file)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.auth.gate_support import commit_lfs_pointer
from tests.support import loopback_client, loopback_request, stop_server
from tests.xet_hub.conftest import XetHub, start_xet_hub

from weightyard.xet import FileTerm, Shard, file_entry, hash_to_string, serialize_shard, serialize_xorb

CHUNK = 128 * 1024
# 225 MiB, within the default shard verification allowance (256 MiB with 8 KiB per chunk reference).
REPEATS = 1800


def _written_bytes(pid: int) -> int:
    """Bytes the process has handed to write() so far: a spool to any file or folder counts."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no wchar in /proc/{pid}/io")


@pytest.fixture
def xet_hub(tmp_path: Path) -> Iterator[XetHub]:
    """A hub of this test's own: what it writes while the commit is scanned is counted, and on the session's
    hub a whole copy queued by an earlier test's plain download could be written meanwhile."""
    hub = start_xet_hub(tmp_path / "data")
    yield hub
    stop_server(hub.server)


def test_committing_a_huge_xet_file_of_one_repeated_chunk_scans_it_without_copying_it(
    xet_hub: XetHub,
) -> None:
    repo = "alice/repeated-zeros"
    headers = xet_hub.headers("alice")
    loopback_request(
        "POST", f"{xet_hub.url}/api/repos/create", headers=headers, json={"name": repo}
    ).raise_for_status()
    token, cas = xet_hub.xet_token("alice", repo)
    client = loopback_client(token=token, timeout=120)
    chunk = b"\x00" * CHUNK
    body, info = serialize_xorb([chunk])
    client.post(f"{cas}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body).raise_for_status()
    digest = hashlib.sha256()
    for _ in range(REPEATS):
        digest.update(chunk)
    terms = tuple(FileTerm(info.hash, CHUNK, 0, 1) for _ in range(REPEATS))
    entry = file_entry(terms, {info.hash: info}.get, digest.digest())
    shard = client.post(f"{cas}/v1/shards", content=serialize_shard(Shard((entry,), ())))
    assert shard.status_code == 200, shard.text

    size = REPEATS * CHUNK
    written = _written_bytes(xet_hub.server.pid)
    committed = commit_lfs_pointer(
        xet_hub.server, xet_hub.tokens["alice"], repo, "zeros.bin", digest.hexdigest(), size
    )
    assert committed.status_code == 200, committed.text
    assert _written_bytes(xet_hub.server.pid) - written < 16 << 20, "the server copied the content somewhere"

    # The commit's scan ran on the whole file and stored its report: zeros are no model format.
    tree = loopback_request(
        "GET", f"{xet_hub.url}/api/models/{repo}/tree/main?expand=true", headers=headers
    ).json()
    status = next(item for item in tree if item["path"] == "zeros.bin")["securityFileStatus"]
    assert (status["scanState"], status["status"], status["format"]) == ("current", "unscannable", "unknown")
