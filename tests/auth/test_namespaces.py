"""Namespaces cannot be taken over: a deleted user's name stays retired, a name that owns repos is never
given to a new user or organisation, repos only live under existing users and organisations, and names are
compared case-insensitively."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import sqlalchemy as sa
from tests.auth.conftest import Team, cli
from tests.support import database_url, weightyard_cli

from weightyard.db import tables, utcnow

_unique = itertools.count()


def _name(prefix: str) -> str:
    return f"{prefix}-ns{next(_unique)}"


def _as(team: Team, token: str | None) -> httpx.Client:
    return httpx.Client(base_url=team.server.url, headers={"Authorization": f"Bearer {token}"})


def _admin(team: Team) -> httpx.Client:
    return _as(team, team.server.token)


def _user_with_private_repo(team: Team) -> tuple[str, str]:
    """A new user owning a private repo with one file; returns (user, repo id)."""
    user = _name("victim")
    cli(team.server, "user", "create", user)
    token = cli(team.server, "token", "create", "--user", user, "--name", "main", "--scope", "write")
    repo = f"{user}/secret"
    with _as(team, token) as client:
        assert client.post("/api/repos/create", json={"name": repo, "private": True}).status_code == 200
    return user, repo


def _code(response: httpx.Response) -> tuple[int, str | None]:
    return response.status_code, response.headers.get("x-error-code")


def test_deleting_a_user_who_owns_repos_is_refused(team: Team) -> None:
    user, repo = _user_with_private_repo(team)
    result = weightyard_cli("user", "delete", user, "--data", str(team.server.data))
    assert result.returncode == 2
    assert "owns 1 repo" in result.stderr and "--delete-repos" in result.stderr
    with _admin(team) as admin:
        assert _code(admin.delete(f"/api/admin/users/{user}")) == (409, "NamespaceInUse")
        assert admin.get(f"/api/models/{repo}").status_code == 200
        assert user in [u["name"] for u in admin.get("/api/admin/users").json()]


def test_a_deleted_users_namespace_cannot_be_taken_over_by_a_new_org_or_user(team: Team) -> None:
    user, repo = _user_with_private_repo(team)
    deleted = cli(team.server, "user", "delete", user, "--delete-repos")
    assert repo in deleted
    with _admin(team) as admin:
        assert _code(admin.get(f"/api/models/{repo}")) == (404, "RepoNotFound")
    with _as(team, team.tokens["outsider"]) as outsider:
        for spelling in (user, user.upper(), user.capitalize()):
            assert _code(outsider.post("/api/admin/orgs", json={"name": spelling})) == (409, "NamespaceInUse")
    with _admin(team) as admin:
        refused = admin.post("/api/admin/users", json={"name": user.upper()})
        assert _code(refused) == (409, "NamespaceInUse")
        assert "retired" in refused.json()["error"]
    result = weightyard_cli("org", "create", user, "--data", str(team.server.data))
    assert result.returncode == 2 and "retired" in result.stderr


def test_deleting_a_user_with_their_repos_over_http_lists_what_went(team: Team) -> None:
    user, repo = _user_with_private_repo(team)
    with _admin(team) as admin:
        response = admin.delete(f"/api/admin/users/{user}", params={"deleteRepos": "true"})
        assert response.status_code == 200, response.text
        assert response.json()["deletedRepos"] == [repo]
        assert _code(admin.get(f"/api/models/{repo}")) == (404, "RepoNotFound")


def test_a_site_admin_cannot_create_a_repo_in_a_namespace_no_one_owns(team: Team) -> None:
    unclaimed = _name("unclaimed")
    with _admin(team) as admin:
        response = admin.post("/api/repos/create", json={"name": f"{unclaimed}/model"})
        assert _code(response) == (404, "NamespaceNotFound")
        # The namespace stays free, so creating it later gives nobody someone else's repo.
        assert admin.post("/api/admin/orgs", json={"name": unclaimed}).status_code == 200
        assert admin.post("/api/repos/create", json={"name": f"{unclaimed}/model"}).status_code == 200


def test_a_namespace_spelt_in_another_case_is_the_same_namespace(team: Team) -> None:
    with _admin(team) as admin:
        response = admin.post("/api/repos/create", json={"name": "ACME/model"})
        assert _code(response) == (404, "NamespaceNotFound")
        assert "'acme'" in response.json()["error"]
        assert _code(admin.post("/api/admin/users", json={"name": "Acme"})) == (409, "NamespaceInUse")
    with _as(team, team.tokens["outsider"]) as outsider:
        assert _code(outsider.post("/api/admin/orgs", json={"name": "WRITER"})) == (409, "NamespaceInUse")


def _insert_orphan_repo(data: Path, namespace: str) -> None:
    # Test set-up: a repo left under a namespace with no owner, as a hub from before these rules may hold.
    engine = sa.create_engine(database_url(data))
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(tables.repos).values(
                type="model",
                namespace=namespace,
                name="left-behind",
                private=True,
                created_at=now,
                updated_at=now,
                downloads=0,
            )
        )
    engine.dispose()


def test_a_name_that_owns_repos_is_never_given_to_a_new_user_or_org(team: Team) -> None:
    orphaned = _name("orphan")
    _insert_orphan_repo(team.server.data, orphaned)
    with _as(team, team.tokens["outsider"]) as outsider:
        refused = outsider.post("/api/admin/orgs", json={"name": orphaned.upper()})
        assert _code(refused) == (409, "NamespaceInUse")
        assert "owns repos" in refused.json()["error"]
    with _admin(team) as admin:
        assert _code(admin.post("/api/admin/users", json={"name": orphaned})) == (409, "NamespaceInUse")
