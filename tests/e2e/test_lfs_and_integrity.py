"""LFS batch uploads (basic and multipart) and the integrity rules: atomic blobs and commits, bad input."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError
from tests.support import Server, run_python

pytestmark = pytest.mark.client

CLIENT_WITHOUT_XET = {"HF_HUB_DISABLE_XET": "1"}


def blob_files(server: Server) -> set[str]:
    root = server.data / "blobs"
    return {p.name for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts}


def temporary_files(server: Server) -> set[Path]:
    return {p for p in (server.data / "blobs" / ".tmp").rglob("*") if p.is_file()}


def wait_for_no_new_temporary_files(server: Server, before: set[Path]) -> None:
    """Wait until no temporary file but those in `before` is left. The session's hub is shared: an upload
    session another test left open keeps its staging folder until it is completed, abandoned or expires
    (a push cut off midway, as in test_cli_behaviour.py, leaves one when its abandon does not get through)."""
    deadline = time.monotonic() + 20
    while temporary_files(server) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert temporary_files(server) - before == set()


@pytest.mark.parametrize("size", [512 * 1024 + 7, 3 * 1024 * 1024 + 5], ids=["basic", "multipart"])
def test_stock_client_without_xet_uploads_through_lfs_batch(
    lfs_server: Server, repo_name: str, size: int, tmp_path: Path
) -> None:
    data = os.urandom(size)
    (tmp_path / "weights.bin").write_bytes(data)
    code = f"""
from huggingface_hub import HfApi
api = HfApi(endpoint={lfs_server.url!r}, token={lfs_server.token!r})
api.create_repo({repo_name!r})
api.upload_file(
    path_or_fileobj={str(tmp_path / "weights.bin")!r}, path_in_repo="weights.bin", repo_id={repo_name!r}
)
"""
    result = run_python(code, CLIENT_WITHOUT_XET)
    assert result.returncode == 0, result.stderr
    api = HfApi(endpoint=lfs_server.url, token=lfs_server.token)
    _, entry = api.list_repo_tree(repo_name)
    assert entry.lfs is not None and entry.lfs.sha256 == hashlib.sha256(data).hexdigest()
    downloaded = httpx.get(f"{lfs_server.url}/{repo_name}/resolve/main/weights.bin").content
    assert downloaded == data


def _batch(server: Server, repo: str, oid: str, size: int) -> dict[str, object]:
    response = httpx.post(
        f"{server.url}/{repo}.git/info/lfs/objects/batch",
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/vnd.git-lfs+json"},
        json={
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": [{"oid": oid, "size": size}],
        },
    )
    response.raise_for_status()
    body: dict[str, object] = response.json()
    return body


def test_lfs_upload_with_wrong_sha256_or_size_is_rejected_and_leaves_nothing(
    server: Server, repo_name: str
) -> None:
    HfApi(endpoint=server.url, token=server.token).create_repo(repo_name)
    data = os.urandom(1000)
    claimed = hashlib.sha256(b"something else").hexdigest()
    before, temporary = blob_files(server), temporary_files(server)
    (obj,) = _batch(server, repo_name, claimed, len(data))["objects"]  # type: ignore[misc]
    href = obj["actions"]["upload"]["href"]
    wrong_hash = httpx.put(href, content=data)
    assert (wrong_hash.status_code, wrong_hash.headers["x-error-code"]) == (422, "ContentMismatch")
    real = hashlib.sha256(data).hexdigest()
    (obj,) = _batch(server, repo_name, real, len(data) + 1)["objects"]  # type: ignore[misc]
    short = httpx.put(obj["actions"]["upload"]["href"], content=data)
    assert (short.status_code, short.headers["x-error-code"]) == (422, "ContentMismatch")
    (obj,) = _batch(server, repo_name, real, len(data) - 1)["objects"]  # type: ignore[misc]
    long = httpx.put(obj["actions"]["upload"]["href"], content=data)
    assert (long.status_code, long.headers["x-error-code"]) == (422, "ContentMismatch")
    assert blob_files(server) == before
    wait_for_no_new_temporary_files(server, temporary)
    forged = httpx.put(href.replace("sig=", "sig=0"), content=data)
    assert forged.status_code == 403


def test_client_killed_mid_upload_leaves_no_partial_blob(server: Server, repo_name: str) -> None:
    HfApi(endpoint=server.url, token=server.token).create_repo(repo_name)
    data = os.urandom(4 * 1024 * 1024)
    oid = hashlib.sha256(data).hexdigest()
    (obj,) = _batch(server, repo_name, oid, len(data))["objects"]  # type: ignore[misc]
    url = httpx.URL(obj["actions"]["upload"]["href"])
    before, temporary = blob_files(server), temporary_files(server)
    with socket.create_connection(("127.0.0.1", url.port or 80)) as sock:
        head = (
            f"PUT {url.raw_path.decode()} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        sock.sendall(head.encode() + data[: len(data) // 2])
        time.sleep(0.5)
    wait_for_no_new_temporary_files(server, temporary)
    assert blob_files(server) == before
    assert oid not in blob_files(server)


def _raw_commit(
    server: Server, repo: str, lines: list[object] | bytes, revision: str = "main"
) -> httpx.Response:
    body = (
        lines if isinstance(lines, bytes) else b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    )
    return httpx.post(
        f"{server.url}/api/models/{repo}/commit/{revision}",
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/x-ndjson"},
        content=body,
    )


def _file_line(path: str, content: bytes) -> dict[str, object]:
    return {
        "key": "file",
        "value": {"content": base64.b64encode(content).decode(), "path": path, "encoding": "base64"},
    }


HEADER = {"key": "header", "value": {"summary": "test", "description": ""}}


@pytest.mark.parametrize(
    "path",
    ["../x", "/abs", "a//b", "a\\b", "a/\x00b", "a/\x07b", "./a", "a/..", "a/./b", "x" * 1025, ""],
    ids=[
        "dotdot",
        "absolute",
        "empty-segment",
        "backslash",
        "nul",
        "control",
        "dot",
        "trailing-dotdot",
        "mid-dot",
        "long",
        "empty",
    ],
)
def test_malformed_paths_are_rejected_and_nothing_is_committed(
    server: Server, repo_name: str, path: str
) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    head = api.model_info(repo_name).sha
    response = _raw_commit(
        server, repo_name, [HEADER, _file_line("ok.txt", b"fine"), _file_line(path, b"bad")]
    )
    assert (response.status_code, response.headers["x-error-code"]) == (422, "InvalidPath")
    assert api.model_info(repo_name).sha == head


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"key": "header", "value": {"summary": "x"}}\n{"key": "file", "value": {', "MalformedCommit"),
        (b"not json at all\n", "MalformedCommit"),
        (
            b'{"key": "header", "value": {"summary": "x"}}\n'
            b'{"key": "file", "value": {"content": "@@@=", "path": "a"}}\n',
            "MalformedCommit",
        ),
        (
            b'{"key": "header", "value": {"summary": "x"}}\n{"key": "rename", "value": {"path": "a"}}\n',
            "MalformedCommit",
        ),
        (b'{"key": "file", "value": {"content": "", "path": "a"}}\n', "MalformedCommit"),
        (b"", "MalformedCommit"),
    ],
    ids=["truncated", "not-json", "bad-base64", "unknown-key", "no-header", "empty"],
)
def test_malformed_commit_bodies_are_rejected(server: Server, repo_name: str, body: bytes, code: str) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    head = api.model_info(repo_name).sha
    response = _raw_commit(server, repo_name, body)
    assert (response.status_code, response.headers["x-error-code"]) == (400, code)
    assert response.json()["code"] == code
    assert api.model_info(repo_name).sha == head


def test_commit_is_all_or_nothing(server: Server, repo_name: str) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    head = api.model_info(repo_name).sha
    response = _raw_commit(
        server,
        repo_name,
        [HEADER, _file_line("new.txt", b"new"), {"key": "deletedFile", "value": {"path": "not-there.txt"}}],
    )
    assert (response.status_code, response.headers["x-error-code"]) == (404, "EntryNotFound")
    assert api.model_info(repo_name).sha == head
    assert api.list_repo_files(repo_name) == [".gitattributes"]


def test_commit_to_missing_revision_and_invalid_refs_are_rejected(server: Server, repo_name: str) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    missing = _raw_commit(server, repo_name, [HEADER, _file_line("a", b"a")], revision="no-such-branch")
    assert (missing.status_code, missing.headers["x-error-code"]) == (404, "RevisionNotFound")
    for name in ("bad..name", "-dash", "a b", "x.lock", "ends/", "a~b", "a:b", "@"):
        response = httpx.post(
            f"{server.url}/api/models/{repo_name}/branch/{name}",
            headers={"Authorization": f"Bearer {server.token}"},
            json={},
        )
        assert (response.status_code, response.headers["x-error-code"]) == (400, "InvalidRefName"), name
        tag = httpx.post(
            f"{server.url}/api/models/{repo_name}/tag/main",
            headers={"Authorization": f"Bearer {server.token}"},
            json={"tag": name},
        )
        assert (tag.status_code, tag.headers["x-error-code"]) == (400, "InvalidRefName"), name
    lfs_unknown = _raw_commit(
        server,
        repo_name,
        [
            HEADER,
            {"key": "lfsFile", "value": {"path": "x.bin", "algo": "sha256", "oid": "ab" * 32, "size": 3}},
        ],
    )
    assert (lfs_unknown.status_code, lfs_unknown.headers["x-error-code"]) == (422, "BlobNotFound")


@pytest.mark.parametrize("repo_id", ["a/../b", "a/b--c", "-a/b", "a/" + "x" * 97, "a/b c", "a/b.git"])
def test_invalid_repo_ids_are_rejected(server: Server, repo_id: str) -> None:
    namespace, name = repo_id.split("/", 1)
    response = httpx.post(
        f"{server.url}/api/repos/create",
        headers={"Authorization": f"Bearer {server.token}"},
        json={"name": name, "organization": namespace},
    )
    assert (response.status_code, response.headers["x-error-code"]) == (400, "InvalidRepoId")


def test_concurrent_commits_with_the_same_parent_one_wins_the_other_gets_412(
    server: Server, repo_name: str
) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    parent = api.model_info(repo_name).sha
    results: list[int] = []

    def attempt(index: int) -> None:
        try:
            api.create_commit(
                repo_name,
                operations=[CommitOperationAdd(f"f{index}.txt", str(index).encode())],
                commit_message=f"commit {index}",
                parent_commit=parent,
            )
            results.append(200)
        except HfHubHTTPError as exc:
            results.append(exc.response.status_code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 412, 412, 412]
    assert len(api.list_repo_files(repo_name)) == 2, "the .gitattributes and the one winner's file"


def test_concurrent_commits_without_parent_all_apply(server: Server, repo_name: str) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    errors: list[BaseException] = []

    def attempt(index: int) -> None:
        try:
            api.upload_file(
                path_or_fileobj=str(index).encode(), path_in_repo=f"f{index}.txt", repo_id=repo_name
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(api.list_repo_files(repo_name)) == [".gitattributes"] + [f"f{i}.txt" for i in range(6)]
    assert len(api.list_repo_commits(repo_name)) == 7


def test_client_killed_mid_commit_leaves_no_commit(server: Server, repo_name: str) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    head = api.model_info(repo_name).sha
    temporary = temporary_files(server)
    line = json.dumps(_file_line("big.bin", os.urandom(6 * 1024 * 1024))).encode()
    body = json.dumps(HEADER).encode() + b"\n" + line + b"\n"
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as sock:
        head_lines = (
            f"POST /api/models/{repo_name}/commit/main HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {server.token}\r\nContent-Type: application/x-ndjson\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head_lines.encode() + body[: len(body) // 2])
        time.sleep(0.5)
    wait_for_no_new_temporary_files(server, temporary)
    assert api.model_info(repo_name).sha == head


def test_default_hub_sends_clients_that_ask_for_it_through_lfs(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    data = os.urandom(12 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(data)
    code = f"""
from huggingface_hub import HfApi
api = HfApi(endpoint={server.url!r}, token={server.token!r})
api.create_repo({repo_name!r})
api.upload_file(path_or_fileobj={str(tmp_path / "big.bin")!r}, path_in_repo="big.bin", repo_id={repo_name!r})
"""
    result = run_python(code, {**CLIENT_WITHOUT_XET, "HF_HUB_USER_AGENT_ORIGIN": "weightyard-lfs"})
    assert result.returncode == 0, result.stderr
    _, entry = HfApi(endpoint=server.url, token=server.token).list_repo_tree(repo_name)
    assert entry.lfs is not None and entry.lfs.sha256 == hashlib.sha256(data).hexdigest()

    def mode(user_agent: str) -> str:
        answer = httpx.post(
            f"{server.url}/api/models/{repo_name}/preupload/main",
            headers={"Authorization": f"Bearer {server.token}", "User-Agent": user_agent},
            json={"files": [{"path": "other.bin", "size": len(data), "sample": ""}]},
        )
        return str(answer.json()["files"][0]["uploadMode"])

    stock = "unknown/None; hf_hub/2.4.0; python/3.11.7"
    # With Xet storage on (the default), every client gets "lfs" as on the Hub: hf_xet clients upload
    # through Xet, the others through LFS batch.
    assert mode(stock) == "lfs"
    assert mode(stock + "; origin/weightyard-lfs") == "lfs"
