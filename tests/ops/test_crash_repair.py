"""A `kill -9` right after a commit lands never leaves it unattested, whatever the upload path."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from tests.support import run_python, start_server, stop_server, weightyard_cli

# What each upload path sends: an inline commit (small text, no Xet), the LFS batch API (`weightyard push`
# of a binary file) and Xet (the stock client's default for a binary file).
_BINARY = b"\x00\x01weightyard crash test\x00" + os.urandom(64 * 1024)


def _upload(path: str, url: str, token: str, folder: Path, home: Path) -> int:
    """Upload through `path` to admin/crashed; returns the client's exit status."""
    env = {
        "HF_ENDPOINT": url,
        "HF_TOKEN": token,
        "HF_HOME": str(home / "hf"),
        "HF_XET_CACHE": str(home / "x"),
    }
    if path == "lfs":
        (folder / "weights.bin").write_bytes(_BINARY)
        return weightyard_cli(
            "push", str(folder), "admin/crashed", "--endpoint", url, "--token", token
        ).returncode
    if path == "inline":
        code = (
            'api.upload_file(path_or_fileobj=b"hello\\n", path_in_repo="README.md", repo_id="admin/crashed")'
        )
        env["HF_HUB_DISABLE_XET"] = "1"
    else:
        (folder / "weights.bin").write_bytes(_BINARY)
        local = str(folder / "weights.bin")
        code = (
            f'api.upload_file(path_or_fileobj={local!r}, path_in_repo="weights.bin", repo_id="admin/crashed")'
        )
    prelude = f"from huggingface_hub import HfApi\napi = HfApi(endpoint={url!r}, token={token!r})\n"
    return run_python(prelude + code, env, timeout=300).returncode


@pytest.mark.parametrize("path", ["inline", "lfs", "xet"])
def test_commit_killed_right_after_its_ref_moved_keeps_its_attestation_and_pulls(
    path: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    folder = tmp_path / "model"
    folder.mkdir()
    server = start_server(data, env={"WEIGHTYARD_CRASH_AT": "commit.landed"})
    headers = {"Authorization": f"Bearer {server.token}"}
    httpx.post(
        f"{server.url}/api/repos/create", headers=headers, json={"name": "crashed", "organization": "admin"}
    )
    try:
        assert _upload(path, server.url, server.token, folder, tmp_path / "client") != 0
        assert server.process.wait(timeout=60) == -9, "the server died by SIGKILL at the crash point"
    finally:
        stop_server(server)
    server = start_server(data)
    try:
        commits = httpx.get(f"{server.url}/api/models/admin/crashed/commits/main", headers=headers).json()
        assert len(commits) == 2, "the commit landed before the kill"
        head = commits[0]["id"]
        status = httpx.get(f"{server.url}/api/models/admin/crashed/signatures/{head}", headers=headers).json()
        assert status["hub"] is not None
        pulled = weightyard_cli(
            "pull",
            "admin/crashed",
            "--to",
            str(tmp_path / "copy"),
            "--endpoint",
            server.url,
            "--token",
            server.token,
        )
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        uploaded = "README.md" if path == "inline" else "weights.bin"
        expected = b"hello\n" if path == "inline" else _BINARY
        assert (tmp_path / "copy" / uploaded).read_bytes() == expected
    finally:
        stop_server(server)


def test_a_commit_an_older_version_left_unattested_is_attested_when_the_hub_starts(tmp_path: Path) -> None:
    import sqlite3

    data = tmp_path / "data"
    server = start_server(data)
    headers = {"Authorization": f"Bearer {server.token}"}
    try:
        httpx.post(
            f"{server.url}/api/repos/create", headers=headers, json={"name": "old", "organization": "admin"}
        ).raise_for_status()
        head = httpx.get(f"{server.url}/api/models/admin/old/commits/main", headers=headers).json()[0]["id"]
    finally:
        stop_server(server)
    with sqlite3.connect(data / "weightyard.db") as conn:
        conn.execute("DELETE FROM commit_signatures WHERE commit_oid = ?", (head,))
    server = start_server(data)
    try:
        status = httpx.get(f"{server.url}/api/models/admin/old/signatures/{head}", headers=headers).json()
        assert status["hub"] is not None
    finally:
        stop_server(server)
