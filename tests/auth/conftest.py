"""A hub populated with a team: an organisation, its members at each role, outsiders and odd tokens."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from huggingface_hub import HfApi
from tests.support import Server, database_url, loopback_client, start_server, stop_server, weightyard_cli

ORG = "acme"
REPOS = {
    "public": f"{ORG}/public",
    "private": f"{ORG}/private",
    "gated": f"{ORG}/gated",
    # private, created by the contributor member: the one org repo a contributor may write to
    "contributed": f"{ORG}/contributed",
}
PRIVATE_KINDS = ("private", "contributed")
OTHER_REPO = f"{ORG}/other"


@dataclass
class Team:
    server: Server
    tokens: dict[str, str | None]


def cli(server: Server, *args: str) -> str:
    result = weightyard_cli(*args, "--data", str(server.data))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def expire_token(data: Path, user: str, name: str) -> None:
    # Test set-up: age a real token past its expiry, which no command can do in the past.
    engine = sa.create_engine(database_url(data))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE tokens SET expires_at = :past WHERE name = :name "
                "AND user_id = (SELECT id FROM users WHERE name = :user)"
            ),
            {"past": datetime.datetime(2000, 1, 1), "name": name, "user": user},
        )
    engine.dispose()


def _admin_call(admin: httpx.Client, method: str, path: str, payload: dict[str, object] | None = None) -> str:
    response = admin.request(method, path, json=payload)
    assert response.status_code == 200, response.text[:300]
    return str(response.json().get("token", ""))


@pytest.fixture(scope="session")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    server = start_server(tmp_path_factory.mktemp("team") / "data")
    # The organisation through the CLI (the operator, who does not become a member; it alone sets a display
    # name), everything else through the admin API: a CLI call is a fresh interpreter, seconds on a busy
    # machine, and this set-up makes thirty of them.
    cli(server, "org", "create", ORG, "--fullname", "Acme Corp")
    http = loopback_client(server.url, server.token)
    for user in ("outsider", "reader", "contributor", "writer", "orgadmin", "temp", "siteadmin"):
        _admin_call(http, "POST", "/api/admin/users", {"name": user, "admin": user == "siteadmin"})
    roles = (
        ("reader", "read"),
        ("contributor", "contributor"),
        ("writer", "write"),
        ("orgadmin", "admin"),
        ("temp", "write"),
    )
    for user, role in roles:
        _admin_call(http, "PUT", f"/api/admin/orgs/{ORG}/members/{user}", {"role": role})

    def token(user: str, name: str, scope: str = "write", **more: object) -> str:
        return _admin_call(
            http, "POST", f"/api/admin/users/{user}/tokens", {"name": name, "scope": scope, **more}
        )

    tokens: dict[str, str | None] = {"anonymous": None}
    for user in ("outsider", "reader", "contributor", "writer", "orgadmin", "siteadmin"):
        tokens[user] = token(user, "main")
    tokens["writer-read-token"] = token("writer", "ro", "read")
    tokens["revoked"] = token("writer", "gone")
    _admin_call(http, "DELETE", "/api/admin/users/writer/tokens/gone")
    tokens["expired"] = token("writer", "old", expiresInDays=1)
    expire_token(server.data, "writer", "old")
    tokens["scoped-to-other"] = token("writer", "scoped", repos=[OTHER_REPO])
    # The org admin and the site admin each hold a read token and a write token limited to one other repo:
    # neither may administer anything with them.
    for user in ("orgadmin", "siteadmin"):
        tokens[f"{user}-read"] = token(user, "ro", "read")
        tokens[f"{user}-scoped"] = token(user, "scoped", repos=[OTHER_REPO])
    http.close()
    admin = HfApi(endpoint=server.url, token=server.token)
    for kind, repo in REPOS.items():
        creator = HfApi(endpoint=server.url, token=tokens["contributor"]) if kind == "contributed" else admin
        creator.create_repo(repo, private=kind in PRIVATE_KINDS)
        creator.upload_file(path_or_fileobj=b"content", path_in_repo="file.txt", repo_id=repo)
    admin.update_repo_settings(REPOS["gated"], gated="manual")
    admin.create_repo(OTHER_REPO, private=True)
    yield Team(server=server, tokens=tokens)
    stop_server(server)
