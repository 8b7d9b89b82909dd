"""Helpers for the operations tests: raw uploads over HTTP, a real `kill -9`, the data folder's state."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.support import Server, database_url, start_server, stop_server, weightyard_cli

MIB = 1024 * 1024
# Multipart in 1 MiB parts, so a few MiB make a multipart upload. No whole copies of Xet-stored content:
# these tests damage and count stored files, which a copy written in the background after a download would
# race (test_whole_copy_claims.py and tests/xet_hub/test_xet_whole_copies.py test the copies).
LFS_ENV = {"WEIGHTYARD_MULTIPART_CHUNK_SIZE": str(MIB), "WEIGHTYARD_WHOLE_COPY_BUDGET": "0"}


@dataclass
class Hub:
    """A server process on a data folder, restartable after a kill."""

    data: Path
    env: dict[str, str]
    server: Server

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.token}"}

    def kill(self) -> None:
        """`kill -9`: no clean-up of any kind."""
        self.server.process.kill()
        self.server.process.wait(timeout=30)

    def restart(self, **env: str) -> None:
        stop_server(self.server)
        self.server = start_server(self.data, env={**self.env, **env})

    def cli(self, *args: str) -> tuple[int, str]:
        result = weightyard_cli(*args, "--data", str(self.data))
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, result.stdout + result.stderr

    def cli_json(self, *args: str, expect: int = 0) -> Any:
        result = weightyard_cli(*args, "--json", "--data", str(self.data))
        assert result.returncode == expect, result.stdout + result.stderr
        return json.loads(result.stdout)

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        """`query` with `?` placeholders on the hub's database (SQLite, or PostgreSQL in that run)."""
        numbered = iter(range(len(params)))
        statement = sa.text(re.sub(r"\?", lambda _: f":p{next(numbered)}", query))
        engine = sa.create_engine(database_url(self.data))
        try:
            with engine.begin() as conn:
                result = conn.execute(statement, {f"p{index}": value for index, value in enumerate(params)})
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def create_repo(self, name: str) -> None:
        response = httpx.post(
            f"{self.url}/api/repos/create", headers=self.headers, json={"name": name, "organization": "admin"}
        )
        response.raise_for_status()

    def lfs_batch(self, repo: str, data: bytes) -> dict[str, Any]:
        oid = hashlib.sha256(data).hexdigest()
        response = httpx.post(
            f"{self.url}/{repo}.git/info/lfs/objects/batch",
            headers=self.headers,
            json={
                "operation": "upload",
                "transfers": ["basic", "multipart"],
                "objects": [{"oid": oid, "size": len(data)}],
            },
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()["objects"][0]
        return answer

    def lfs_upload(self, repo: str, data: bytes) -> str:
        """Upload `data` through the LFS batch API (one basic PUT); returns its sha256."""
        action = self.lfs_batch(repo, data)
        oid = hashlib.sha256(data).hexdigest()
        if "actions" not in action:
            return oid
        upload = action["actions"]["upload"]
        if "chunk_size" not in upload["header"]:
            httpx.put(upload["href"], content=data, timeout=60).raise_for_status()
            return oid
        size = int(upload["header"]["chunk_size"])
        parts = sorted((int(key), url) for key, url in upload["header"].items() if key.isdigit())
        for number, url in parts:
            part = data[(number - 1) * size : number * size]
            httpx.put(url, content=part, timeout=60).raise_for_status()
        httpx.post(upload["href"], json={"oid": oid, "parts": []}, timeout=60).raise_for_status()
        return oid

    def commit(self, repo: str, files: dict[str, bytes]) -> str:
        """Commit files: small ones inline, others as LFS pointers to content uploaded first."""
        lines = [{"key": "header", "value": {"summary": "add files"}}]
        for path, data in files.items():
            if len(data) < 4096 and b"\0" not in data:
                content = base64.b64encode(data).decode()
                lines.append(
                    {"key": "file", "value": {"path": path, "content": content, "encoding": "base64"}}
                )
            else:
                oid = self.lfs_upload(repo, data)
                lines.append(
                    {
                        "key": "lfsFile",
                        "value": {"path": path, "algo": "sha256", "oid": oid, "size": len(data)},
                    }
                )
        response = httpx.post(
            f"{self.url}/api/models/{repo}/commit/main",
            headers={**self.headers, "Content-Type": "application/x-ndjson"},
            content="\n".join(json.dumps(line) for line in lines).encode(),
            timeout=120,
        )
        response.raise_for_status()
        return str(response.json()["commitOid"])

    def blob_path(self, sha256: str) -> Path:
        return self.data / "blobs" / sha256[:2] / sha256[2:4] / sha256

    def files_under(self, folder: str) -> set[Path]:
        root = self.data / folder
        return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    data = tmp_path / "data"
    instance = Hub(data, dict(LFS_ENV), start_server(data, env=LFS_ENV))
    yield instance
    stop_server(instance.server)


def binary(size: int, seed: int) -> bytes:
    """Reproducible binary content that the scanner accepts."""
    import random

    prefix = b"weightyard ops test\n\0"
    return prefix + random.Random(seed).randbytes(size - len(prefix))
