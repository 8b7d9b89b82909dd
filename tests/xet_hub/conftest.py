"""A hub in its default configuration with two users, and the stock client run as it is installed.

Clients run in subprocesses with their own empty caches (`HF_HOME`, `HF_XET_CACHE`), like a fresh machine,
and without `HF_HUB_DISABLE_XET`: what is tested is the client's default path.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support import Server, loopback_request, run_python, start_server, stop_server

from weightyard.db import create_engine, migrate
from weightyard.repos.content import ContentStore
from weightyard.storage import LocalObjectStore

USERS = ("alice", "bob")


@pytest.fixture
def content_store(tmp_path: Path) -> ContentStore:
    """A Xet content store of its own, no server: a fresh SQLite database, xorbs in `tmp_path / "xorbs"`."""
    engine = create_engine(f"sqlite:///{tmp_path / 'weightyard.db'}")
    migrate(engine)
    return ContentStore(LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs"), engine, xet=True)


@dataclass
class XetHub:
    server: Server
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def xorb_files(self) -> dict[str, int]:
        root = self.server.data / "xorbs"
        return {p.name: p.stat().st_size for p in root.rglob("*") if p.is_file()}

    def stored_xorb_bytes(self) -> int:
        return sum(self.xorb_files().values())

    def blob_files(self) -> set[str]:
        root = self.server.data / "blobs"
        return {p.name for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts}

    def xet_token(self, user: str, repo: str, scope: str = "write", rev: str = "main") -> tuple[str, str]:
        """(access token, CAS URL) as the hub hands them to the client."""
        response = loopback_request(
            "GET", f"{self.url}/api/models/{repo}/xet-{scope}-token/{rev}", headers=self.headers(user)
        )
        response.raise_for_status()
        body = response.json()
        return body["accessToken"], body["casUrl"]

    def run_client(self, user: str, code: str, home: Path, **env: str) -> str:
        """Run `code` with `api` (an HfApi for `user`) defined, in a fresh interpreter; returns its stdout."""
        assert "HF_HUB_DISABLE_XET" not in os.environ, "the default-path tests need the client's default"
        home.mkdir(parents=True, exist_ok=True)
        prelude = (
            "from huggingface_hub import HfApi\n"
            f"api = HfApi(endpoint={self.url!r}, token={self.tokens[user]!r})\n"
        )
        environment = {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": self.tokens[user],
            "HF_HOME": str(home / "hf"),
            "HF_XET_CACHE": str(home / "xet"),
            **env,
        }
        result = run_python(prelude + code, environment, timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]
        return result.stdout


# Random bytes start with a fixed text line: otherwise about one payload in 256 sniffs as a safetensors
# header with an absurd length, and the hub's scanner rightly refuses the commit.
_PAYLOAD_PREFIX = b"weightyard xet test payload\n"


def payload(size: int, seed: int | None = None) -> bytes:
    """`size` incompressible bytes that the scanner accepts (reproducible when `seed` is given)."""
    rest = size - len(_PAYLOAD_PREFIX)
    return _PAYLOAD_PREFIX + (random.Random(seed).randbytes(rest) if seed is not None else os.urandom(rest))


def upload_line(path: Path, path_in_repo: str, repo: str) -> str:
    """The client code that uploads one local file."""
    return (
        f"api.upload_file(path_or_fileobj={str(path)!r}, path_in_repo={path_in_repo!r}, repo_id={repo!r})\n"
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def start_xet_hub(data: Path, env: dict[str, str] | None = None) -> XetHub:
    """A hub on `data` (settings from `env`) with the users of `USERS`, each holding a write token."""
    server = start_server(data, env=env)
    admin = {"Authorization": f"Bearer {server.token}"}
    tokens = {"admin": server.token}
    for user in USERS:
        loopback_request(
            "POST", f"{server.url}/api/admin/users", headers=admin, json={"name": user}
        ).raise_for_status()
        response = loopback_request(
            "POST",
            f"{server.url}/api/admin/users/{user}/tokens",
            headers=admin,
            json={"name": "main", "scope": "write"},
        )
        response.raise_for_status()
        tokens[user] = response.json()["token"]
    return XetHub(server, tokens)


@pytest.fixture(scope="session")
def xet_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XetHub]:
    hub = start_xet_hub(tmp_path_factory.mktemp("xet-hub") / "data")
    yield hub
    stop_server(hub.server)


def cli_json(hub: XetHub, *args: str) -> dict[str, object]:
    from tests.support import weightyard_cli

    result = weightyard_cli(*args, "--json", "--data", str(hub.server.data))
    assert result.returncode == 0, result.stderr
    value: dict[str, object] = json.loads(result.stdout)
    return value
