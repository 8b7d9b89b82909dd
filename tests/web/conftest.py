"""Fixtures for the web pages: an in-process app over a fresh hub, and helpers to fill it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from weightyard.api import create_app
from weightyard.auth import LOCAL_ADMIN, Principal
from weightyard.config import Settings
from weightyard.hub import Hub
from weightyard.repos import AddFile, DeleteFile, Operation, Repo


@dataclass
class LocalHub:
    """A hub in this process: `client` speaks HTTP to its app, the helpers write through the domain API."""

    hub: Hub
    client: TestClient
    token: str
    admin: Principal

    def create(self, repo_id: str, private: bool = False) -> Repo:
        """Create `repo_id`, and its organisation first when the namespace is no user or organisation yet."""
        namespace, name = repo_id.split("/")
        users = {user.name for user in self.hub.accounts.list_users(LOCAL_ADMIN)}
        if namespace not in users and not self.hub.accounts.is_org(namespace):
            self.hub.accounts.create_org(LOCAL_ADMIN, namespace)
        return self.hub.repos.create_repo(self.admin, "model", namespace, name, private)

    def commit(
        self,
        repo: Repo,
        files: dict[str, bytes],
        deletions: tuple[str, ...] = (),
        title: str = "Update files",
        revision: str = "main",
    ) -> str:
        operations: list[Operation] = []
        for path, data in files.items():
            ingest = self.hub.repos.start_ingest()
            ingest.write(data)
            add = self.hub.repos.record_content(self.admin, ingest.finish())
            operations.append(AddFile(path, add.sha256, add.size, add.lfs))
        operations += [DeleteFile(path) for path in deletions]
        return self.hub.repos.commit(self.admin, repo, revision, operations, title).commit.oid

    def publish(self, repo_id: str, files: dict[str, bytes], private: bool = False) -> Repo:
        repo = self.create(repo_id, private)
        self.commit(repo, files, title=f"Add {repo_id}")
        return repo

    def user_token(self, name: str, scope: str = "read") -> str:
        """A token for a new, ordinary user `name`."""
        self.hub.accounts.create_user(LOCAL_ADMIN, name)
        return self.hub.accounts.create_token(LOCAL_ADMIN, name, "laptop", scope=scope)

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalHub]:
    # These pages must describe deliberately broken files, which the default policy would refuse at commit.
    hub = Hub.open(Settings(data=tmp_path / "data", scan_policy="warn"))
    token = hub.admin_token()
    with TestClient(create_app(hub), base_url="http://testserver") as client:
        yield LocalHub(hub=hub, client=client, token=token, admin=hub.accounts.authenticate(token))


def card(front_matter: str, body: str) -> bytes:
    """A README.md with a YAML block."""
    return f"---\n{front_matter.strip()}\n---\n\n{body}".encode()
