"""Multipart LFS uploads whose parts are written in place: any order, sent again, wrong sizes, bad digests.

The hub writes each part at its offset in one staging file and hashes the parts in order as they become
contiguous; these tests pin that what becomes visible is exactly the bytes last sent for each part, checked
against the announced sha256, and that nothing else ever does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi
from tests.proxy import RewritingProxy
from tests.support import Server, start_server, stop_server, weightyard_cli

pytestmark = pytest.mark.client

PART = 1024 * 1024  # the lfs_server fixture's part size
DATA_SIZE = 3 * PART + 5  # four parts, the last one short


def _start(server: Server, repo: str, data: bytes, oid: str | None = None) -> dict[str, Any]:
    """A multipart upload of `data` announced as `oid` (its own sha256 by default): the upload action."""
    oid = oid or hashlib.sha256(data).hexdigest()
    response = httpx.post(
        f"{server.url}/{repo}.git/info/lfs/objects/batch",
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/vnd.git-lfs+json"},
        json={
            "operation": "upload",
            "transfers": ["multipart"],
            "objects": [{"oid": oid, "size": len(data)}],
        },
    )
    response.raise_for_status()
    (obj,) = response.json()["objects"]
    upload: dict[str, Any] = obj["actions"]["upload"]
    assert int(upload["header"]["chunk_size"]) == PART
    return upload


def _put_part(upload: dict[str, Any], number: int, content: bytes) -> httpx.Response:
    return httpx.put(upload["header"][str(number)], content=content)


def _part(data: bytes, number: int) -> bytes:
    return data[(number - 1) * PART : number * PART]


def _complete(upload: dict[str, Any], oid: str) -> httpx.Response:
    return httpx.post(upload["href"], json={"oid": oid, "parts": []})


def _stored(server: Server, sha256: str) -> bytes | None:
    path = server.data / "blobs" / sha256[:2] / sha256[2:4] / sha256
    return path.read_bytes() if path.is_file() else None


def _staging(server: Server) -> list[Path]:
    return list((server.data / "blobs" / ".tmp" / "parts").rglob("*"))


@pytest.fixture
def repo(lfs_server: Server, repo_name: str) -> str:
    HfApi(endpoint=lfs_server.url, token=lfs_server.token).create_repo(repo_name)
    return repo_name


def test_parts_sent_out_of_order_become_the_announced_blob(lfs_server: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    oid = hashlib.sha256(data).hexdigest()
    upload = _start(lfs_server, repo, data)
    for number in (3, 1, 4, 2):
        _put_part(upload, number, _part(data, number)).raise_for_status()
    assert _stored(lfs_server, oid) is None, "nothing is visible before completion"
    _complete(upload, oid).raise_for_status()
    assert _stored(lfs_server, oid) == data
    assert _staging(lfs_server) == []


def test_a_part_sent_again_counts_with_the_bytes_sent_last(lfs_server: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    oid = hashlib.sha256(data).hexdigest()
    upload = _start(lfs_server, repo, data)
    # Part 1 first arrives wrong (and is hashed that way, being first), then right after the others.
    _put_part(upload, 1, os.urandom(PART)).raise_for_status()
    for number in (2, 3, 4, 1):
        _put_part(upload, number, _part(data, number)).raise_for_status()
    _complete(upload, oid).raise_for_status()
    assert _stored(lfs_server, oid) == data


def test_a_part_replaced_by_other_bytes_after_hashing_fails_completion(lfs_server: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    oid = hashlib.sha256(data).hexdigest()
    upload = _start(lfs_server, repo, data)
    for number in (1, 2, 3, 4):
        _put_part(upload, number, _part(data, number)).raise_for_status()
    _put_part(upload, 2, os.urandom(PART)).raise_for_status()
    done = _complete(upload, oid)
    assert (done.status_code, done.headers["x-error-code"]) == (422, "ContentMismatch")
    assert _stored(lfs_server, oid) is None
    assert _staging(lfs_server) == []


def test_a_part_of_the_wrong_size_is_refused_and_the_upload_cannot_complete_without_it(
    lfs_server: Server, repo: str
) -> None:
    data = os.urandom(DATA_SIZE)
    oid = hashlib.sha256(data).hexdigest()
    upload = _start(lfs_server, repo, data)
    short = _put_part(upload, 2, _part(data, 2)[:-1])
    assert (short.status_code, short.headers["x-error-code"]) == (422, "ContentMismatch")
    long = _put_part(upload, 4, _part(data, 4) + b"x")
    assert (long.status_code, long.headers["x-error-code"]) == (422, "ContentMismatch")
    for number in (1, 3, 4):
        _put_part(upload, number, _part(data, number)).raise_for_status()
    done = _complete(upload, oid)
    assert (done.status_code, done.headers["x-error-code"]) == (422, "ContentMismatch")
    assert "part 2" in done.json()["error"]
    assert _stored(lfs_server, oid) is None
    assert _staging(lfs_server) == []


def test_completion_with_a_wrong_sha256_leaves_nothing_visible(lfs_server: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    claimed = hashlib.sha256(b"other content").hexdigest()
    upload = _start(lfs_server, repo, data, oid=claimed)
    for number in (1, 2, 3, 4):
        _put_part(upload, number, _part(data, number)).raise_for_status()
    done = _complete(upload, claimed)
    assert (done.status_code, done.headers["x-error-code"]) == (422, "ContentMismatch")
    assert _stored(lfs_server, claimed) is None
    assert _stored(lfs_server, hashlib.sha256(data).hexdigest()) is None
    assert _staging(lfs_server) == []
    again = _put_part(upload, 1, _part(data, 1))
    assert again.status_code == 404, "a failed completion ends the upload"


def test_push_sends_a_many_part_file_in_parallel_and_it_arrives_whole(
    lfs_server: Server, repo_name: str, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    data = os.urandom(12 * PART + 5)  # 13 parts, several in flight at once
    (folder / "weights.bin").write_bytes(data)
    env = {"HF_TOKEN": lfs_server.token, "WEIGHTYARD_ENDPOINT": lfs_server.url}
    pushed = weightyard_cli("push", str(folder), repo_name, env=env)
    assert pushed.returncode == 0, pushed.stderr
    downloaded = httpx.get(f"{lfs_server.url}/{repo_name}/resolve/main/weights.bin")
    assert downloaded.content == data
    assert _staging(lfs_server) == []


def test_push_sends_again_each_part_the_hub_failed_to_take_and_the_file_arrives_whole(
    lfs_server: Server, repo_name: str, tmp_path: Path
) -> None:
    # An unreliable network in front of the hub: the first PUT of every part answers 503, and part 2 also
    # fails a second time. The stock client retried its parts; push's own sender must too.
    proxy = RewritingProxy(lfs_server.url)
    failures: dict[str, int] = {}

    def fail(method: str, path: str) -> int | None:
        if method != "PUT" or "/api/lfs/uploads/" not in path:
            return None
        failures[path] = failures.get(path, 0) + 1
        allowed = 2 if "/parts/2?" in path else 1
        return 503 if failures[path] <= allowed else None

    proxy.fail = fail
    try:
        folder = tmp_path / "model"
        folder.mkdir()
        data = os.urandom(12 * PART + 5)
        (folder / "weights.bin").write_bytes(data)
        env = {"HF_TOKEN": lfs_server.token, "WEIGHTYARD_ENDPOINT": proxy.url}
        pushed = weightyard_cli("push", str(folder), repo_name, env=env)
        assert pushed.returncode == 0, pushed.stderr
    finally:
        proxy.close()
    assert len(failures) == 13, failures  # every part was refused once, and then sent again
    assert sum(failures.values()) == 2 * 13 + 1, failures  # part 2 was refused twice
    downloaded = httpx.get(f"{lfs_server.url}/{repo_name}/resolve/main/weights.bin")
    assert downloaded.content == data
    assert _staging(lfs_server) == []


def test_push_of_a_file_over_the_hubs_size_limit_is_one_error_line(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"WEIGHTYARD_MAX_FILE_SIZE": str(5 * PART)})
    try:
        folder = tmp_path / "model"
        folder.mkdir()
        (folder / "weights.bin").write_bytes(os.urandom(10 * PART))
        env = {"HF_TOKEN": server.token, "WEIGHTYARD_ENDPOINT": server.url}
        pushed = weightyard_cli("push", str(folder), "admin/too-big", env=env)
        assert pushed.returncode == 1, pushed.stderr
        lines = [line for line in pushed.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "the hub refused weights.bin" in lines[0], pushed.stderr
        assert "exceed the file size limit" in lines[0]
        assert "Traceback" not in pushed.stderr
    finally:
        stop_server(server)
