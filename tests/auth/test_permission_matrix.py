"""Every route x every kind of caller: the exact status and error code.

Repo routes are checked on public, private and gated repos; account routes (users, organisations, tokens,
keys, the hub's audit log) against read tokens, tokens limited to one repo, unlimited write tokens and site
admins. `test_every_route_is_in_the_matrix` lists the application's own routes, so a route added without
its rows here fails.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.auth.conftest import ORG, PRIVATE_KINDS, REPOS, Team
from tests.support import loopback_client

# Access level of each caller on the acme repos: 0 none, 1 read, 2 write, 3 admin.
# None means the token itself is refused (401 on every endpoint).
LEVELS: dict[str, int | None] = {
    "anonymous": 0,
    "outsider": 0,
    "reader": 1,
    # read on the org's repos, write on the one it created ("contributed", see `level_of`)
    "contributor": 1,
    "writer-read-token": 1,
    "writer": 2,
    "orgadmin": 3,
    "orgadmin-read": 1,
    "orgadmin-scoped": 0,
    "siteadmin": 3,
    "siteadmin-read": 1,
    "siteadmin-scoped": 0,
    "revoked": None,
    "expired": None,
    "scoped-to-other": 0,
}
# Tokens limited to a repo outside acme: they may not even ask for access to an acme repo.
LIMITED_ELSEWHERE = {"scoped-to-other", "orgadmin-scoped", "siteadmin-scoped"}

_unique = itertools.count()
CONTENT_SHA256 = hashlib.sha256(b"content").hexdigest()  # the file every team repo holds


def _fresh(prefix: str) -> str:
    return f"{prefix}{next(_unique)}"


Call = Callable[[httpx.Client, str, str], httpx.Response]
Setup = Callable[[Team, str], str]


@dataclass(frozen=True)
class Endpoint:
    name: str
    # read | download | write | admin | listing | create | ask
    kind: str
    # "METHOD /path" of every application route this row stands for
    routes: tuple[str, ...]
    call: Call
    # Prepares what the call acts on (a fresh branch, user, repo...) with the admin token; its result is
    # the call's third argument.
    setup: Setup | None = None
    repo_kinds: tuple[str, ...] = tuple(REPOS)


def _admin(team: Team) -> httpx.Client:
    return loopback_client(team.server.url, team.server.token)


def _admin_call(team: Team, method: str, url: str, **kwargs: Any) -> httpx.Response:
    with _admin(team) as client:
        response = client.request(method, url, **kwargs)
    assert response.status_code == 200, response.text[:300]
    return response


def _commit_body() -> bytes:
    lines = [
        {"key": "header", "value": {"summary": "matrix"}},
        {
            "key": "file",
            "value": {"content": base64.b64encode(b"x").decode(), "path": f"m{next(_unique)}.txt"},
        },
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _lfs_pointer_commit_body() -> bytes:
    """A commit naming the repos' shared `file.txt` content by digest only (what the one gate checks)."""
    lines = [
        {"key": "header", "value": {"summary": "matrix"}},
        {
            "key": "lfsFile",
            "value": {"path": f"p{next(_unique)}.txt", "algo": "sha256", "oid": CONTENT_SHA256, "size": 7},
        },
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _fresh_branch(team: Team, repo: str) -> str:
    branch = _fresh("del-b")
    _admin_call(team, "POST", f"/api/models/{repo}/branch/{branch}", json={})
    return branch


def _fresh_tag(team: Team, repo: str) -> str:
    tag = _fresh("del-t")
    _admin_call(team, "POST", f"/api/models/{repo}/tag/main", json={"tag": tag})
    return tag


def _fresh_repo_like(team: Team, repo: str) -> str:
    """A new repo with the visibility, gating and creator of `repo`, to be deleted."""
    fresh = f"{ORG}/{_fresh('del-r')}"
    payload = {"name": fresh, "private": repo in (REPOS[kind] for kind in PRIVATE_KINDS)}
    if repo == REPOS["contributed"]:
        with _client(team, "contributor") as client:
            assert client.post("/api/repos/create", json=payload).status_code == 200
    else:
        _admin_call(team, "POST", "/api/repos/create", json=payload)
    if repo == REPOS["gated"]:
        _admin_call(team, "PUT", f"/api/models/{fresh}/settings", json={"gated": "manual"})
    return fresh


def _fresh_user(team: Team, _repo: str = "") -> str:
    user = _fresh("u")
    _admin_call(team, "POST", "/api/admin/users", json={"name": user})
    return user


def _fresh_granted_user(team: Team, repo: str) -> str:
    user = _fresh_user(team)
    _admin_call(team, "POST", f"/api/models/{repo}/user-access-request/grant", json={"user": user})
    return user


def _fresh_member(team: Team, _repo: str) -> str:
    user = _fresh_user(team)
    _admin_call(team, "PUT", f"/api/admin/orgs/{ORG}/members/{user}", json={"role": "read"})
    return user


def _fresh_public_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# The user whose own tokens and keys the account rows act on: an org admin, not a site admin.
SELF = "orgadmin"


def _fresh_token_of_self(team: Team, _repo: str) -> str:
    name = _fresh("t")
    _admin_call(team, "POST", f"/api/admin/users/{SELF}/tokens", json={"name": name, "scope": "read"})
    return name


def _fresh_key_of_self(team: Team, _repo: str) -> str:
    response = _admin_call(
        team, "POST", f"/api/admin/users/{SELF}/keys", json={"publicKey": _fresh_public_key()}
    )
    return str(response.json()["fingerprint"])


_JSON = {"Accept": "application/json"}

ENDPOINTS = [
    Endpoint(
        "model_info",
        "read",
        ("GET /api/{plural}/{namespace}/{name}",),
        lambda c, r, t: c.get(f"/api/models/{r}"),
    ),
    Endpoint(
        "revision_info",
        "read",
        ("GET /api/{plural}/{namespace}/{name}/revision/{rest:path}",),
        lambda c, r, t: c.get(f"/api/models/{r}/revision/main"),
    ),
    Endpoint(
        "tree",
        "read",
        ("GET /api/{plural}/{namespace}/{name}/tree/{rest:path}",),
        lambda c, r, t: c.get(f"/api/models/{r}/tree/main?recursive=true"),
    ),
    Endpoint(
        "refs",
        "read",
        ("GET /api/{plural}/{namespace}/{name}/refs",),
        lambda c, r, t: c.get(f"/api/models/{r}/refs"),
    ),
    Endpoint(
        "commits",
        "read",
        ("GET /api/{plural}/{namespace}/{name}/commits/{rest:path}",),
        lambda c, r, t: c.get(f"/api/models/{r}/commits/main"),
    ),
    Endpoint(
        "paths_info",
        "read",
        ("POST /api/{plural}/{namespace}/{name}/paths-info/{rest:path}",),
        lambda c, r, t: c.post(f"/api/models/{r}/paths-info/main", data={"paths": "file.txt"}),
    ),
    Endpoint(
        "signatures",
        "read",
        ("GET /api/{plural}/{namespace}/{name}/signatures/{rest:path}",),
        lambda c, r, t: c.get(f"/api/models/{r}/signatures/main"),
    ),
    Endpoint(
        "attestation",
        "read",
        ("GET /api/{plural}/{namespace}/{name}/attestation/{rest:path}",),
        lambda c, r, t: c.get(f"/api/models/{r}/attestation/main"),
    ),
    Endpoint(
        "resolve_head",
        "download",
        (
            "GET /{namespace}/{name}/resolve/{rest:path}",
            "GET /{prefix}/{namespace}/{name}/resolve/{rest:path}",
        ),
        lambda c, r, t: c.head(f"/{r}/resolve/main/file.txt"),
    ),
    Endpoint("resolve_get", "download", (), lambda c, r, t: c.get(f"/{r}/resolve/main/file.txt")),
    Endpoint(
        "auth_check",
        "download",
        ("GET /api/{plural}/{namespace}/{name}/auth-check",),
        lambda c, r, t: c.get(f"/api/models/{r}/auth-check"),
    ),
    Endpoint(
        "lfs_files",
        "download",
        ("GET /api/{plural}/{namespace}/{name}/lfs-files",),
        lambda c, r, t: c.get(f"/api/models/{r}/lfs-files"),
    ),
    Endpoint(
        "xet_read_token",
        "download",
        ("GET /api/{plural}/{namespace}/{name}/xet-read-token/{rev:path}",),
        lambda c, r, t: c.get(f"/api/models/{r}/xet-read-token/main"),
    ),
    Endpoint(
        "web_model", "read", ("GET /{namespace}/{name}",), lambda c, r, t: c.get(f"/{r}", headers=_JSON)
    ),
    Endpoint(
        "web_tree",
        "read",
        ("GET /{namespace}/{name}/tree/{rest:path}",),
        lambda c, r, t: c.get(f"/{r}/tree/main", headers=_JSON),
    ),
    # The page of a gated file answers for anyone who may see the repo; its content is withheld (that is
    # the gate's own test), so the page itself is a read.
    Endpoint(
        "web_blob",
        "read",
        ("GET /{namespace}/{name}/blob/{rest:path}",),
        lambda c, r, t: c.get(f"/{r}/blob/main/file.txt", headers=_JSON),
    ),
    Endpoint(
        "web_commits",
        "read",
        ("GET /{namespace}/{name}/commits/{rest:path}",),
        lambda c, r, t: c.get(f"/{r}/commits/main", headers=_JSON),
    ),
    Endpoint(
        "web_commit",
        "read",
        ("GET /{namespace}/{name}/commit/{rest:path}",),
        lambda c, r, t: c.get(f"/{r}/commit/main", headers=_JSON),
    ),
    Endpoint(
        "preupload",
        "write",
        ("POST /api/{plural}/{namespace}/{name}/preupload/{rest:path}",),
        lambda c, r, t: c.post(
            f"/api/models/{r}/preupload/main", json={"files": [{"path": "a.txt", "size": 1}]}
        ),
    ),
    Endpoint(
        "commit",
        "write",
        ("POST /api/{plural}/{namespace}/{name}/commit/{rest:path}",),
        lambda c, r, t: c.post(
            f"/api/models/{r}/commit/main",
            content=_commit_body(),
            headers={"Content-Type": "application/x-ndjson"},
        ),
    ),
    Endpoint(
        "commit_by_digest",
        "write",
        (),
        lambda c, r, t: c.post(
            f"/api/models/{r}/commit/main",
            content=_lfs_pointer_commit_body(),
            headers={"Content-Type": "application/x-ndjson"},
        ),
    ),
    Endpoint(
        "create_branch",
        "write",
        ("POST /api/{plural}/{namespace}/{name}/branch/{rest:path}",),
        lambda c, r, t: c.post(f"/api/models/{r}/branch/{_fresh('b')}", json={}),
    ),
    Endpoint(
        "delete_branch",
        "write",
        ("DELETE /api/{plural}/{namespace}/{name}/branch/{rest:path}",),
        lambda c, r, t: c.delete(f"/api/models/{r}/branch/{t}"),
        setup=_fresh_branch,
    ),
    Endpoint(
        "super_squash",
        "write",
        ("POST /api/{plural}/{namespace}/{name}/super-squash/{rest:path}",),
        lambda c, r, t: c.post(f"/api/models/{r}/super-squash/{t}", json={"message": "squash"}),
        setup=_fresh_branch,
    ),
    Endpoint(
        "create_tag",
        "write",
        ("POST /api/{plural}/{namespace}/{name}/tag/{rest:path}",),
        lambda c, r, t: c.post(f"/api/models/{r}/tag/main", json={"tag": _fresh("t")}),
    ),
    Endpoint(
        "delete_tag",
        "write",
        ("DELETE /api/{plural}/{namespace}/{name}/tag/{rest:path}",),
        lambda c, r, t: c.delete(f"/api/models/{r}/tag/{t}"),
        setup=_fresh_tag,
    ),
    Endpoint(
        "lfs_batch",
        "write",
        (
            "POST /{namespace}/{name}/info/lfs/objects/batch",
            "POST /{prefix}/{namespace}/{name}/info/lfs/objects/batch",
        ),
        lambda c, r, t: c.post(
            f"/{r}.git/info/lfs/objects/batch",
            json={"operation": "upload", "objects": [{"oid": "ab" * 32, "size": 10}]},
        ),
    ),
    Endpoint(
        "upload_session",
        "write",
        ("POST /api/{plural}/{namespace}/{name}/uploads",),
        lambda c, r, t: c.post(f"/api/models/{r}/uploads", json={"size": 10}),
    ),
    Endpoint(
        "xet_write_token",
        "write",
        ("GET /api/{plural}/{namespace}/{name}/xet-write-token/{rev:path}",),
        lambda c, r, t: c.get(f"/api/models/{r}/xet-write-token/main"),
    ),
    Endpoint(
        "create_repo",
        "create",
        ("POST /api/repos/create",),
        lambda c, r, t: c.post("/api/repos/create", json={"name": f"{ORG}/{_fresh('new')}"}),
        repo_kinds=("public",),
    ),
    Endpoint(
        "delete_repo",
        "admin",
        ("DELETE /api/repos/delete",),
        lambda c, r, t: c.request("DELETE", "/api/repos/delete", json={"name": t}),
        setup=_fresh_repo_like,
    ),
    # deleting content the repo does not hold is a no-op that still needs the admin right
    Endpoint(
        "delete_lfs_files",
        "admin",
        ("POST /api/{plural}/{namespace}/{name}/lfs-files/batch",),
        lambda c, r, t: c.post(
            f"/api/models/{r}/lfs-files/batch",
            json={"deletions": {"sha": ["ab" * 32], "rewriteHistory": True}},
        ),
    ),
    # a move needs the admin right on the repo and the create right in the target namespace (acme here)
    Endpoint(
        "move_repo",
        "admin",
        ("POST /api/repos/move",),
        lambda c, r, t: c.post("/api/repos/move", json={"fromRepo": t, "toRepo": f"{ORG}/{_fresh('moved')}"}),
        setup=_fresh_repo_like,
    ),
    Endpoint(
        "settings",
        "admin",
        ("PUT /api/{plural}/{namespace}/{name}/settings",),
        lambda c, r, t: c.put(f"/api/models/{r}/settings", json={}),
    ),
    Endpoint(
        "access_requests",
        "admin",
        ("GET /api/{plural}/{namespace}/{name}/user-access-request/{status}",),
        lambda c, r, t: c.get(f"/api/models/{r}/user-access-request/pending"),
    ),
    Endpoint(
        "grant_access",
        "admin",
        ("POST /api/{plural}/{namespace}/{name}/user-access-request/grant",),
        lambda c, r, t: c.post(f"/api/models/{r}/user-access-request/grant", json={"user": t}),
        setup=_fresh_user,
    ),
    Endpoint(
        "handle_access_request",
        "admin",
        ("POST /api/{plural}/{namespace}/{name}/user-access-request/handle",),
        lambda c, r, t: c.post(
            f"/api/models/{r}/user-access-request/handle", json={"user": t, "status": "rejected"}
        ),
        setup=_fresh_granted_user,
    ),
    Endpoint(
        "repo_audit_log",
        "admin",
        (),
        lambda c, r, t: c.get("/api/admin/audit-log", params={"repo": r}),
    ),
    Endpoint(
        "ask_access",
        "ask",
        ("POST /api/{plural}/{namespace}/{name}/ask-access",),
        lambda c, r, t: c.post(f"/api/models/{r}/ask-access", json={}),
    ),
    Endpoint(
        "web_ask_access",
        "ask",
        ("POST /{namespace}/{name}/ask-access",),
        lambda c, r, t: c.post(f"/{r}/ask-access", headers=_JSON),
    ),
    Endpoint(
        "search",
        "listing",
        ("GET /api/{plural}",),
        lambda c, r, t: c.get("/api/models", params={"author": ORG}),
    ),
]


def level_of(caller: str, repo_kind: str) -> int | None:
    """The caller's level on a repo: its role's, except a contributor's write on the repo it created."""
    if caller == "contributor" and repo_kind == "contributed":
        return 2
    return LEVELS[caller]


def expected(kind: str, caller: str, repo_kind: str, anonymous: bool) -> tuple[int, str | None]:
    """The (status, X-Error-Code) the hub must answer."""
    level = level_of(caller, repo_kind)
    if level is None:
        return 401, "InvalidCredentials"
    readable = repo_kind not in PRIVATE_KINDS or level >= 1
    if kind == "listing":
        return 200, None
    if kind == "read":
        return (200, None) if readable else (404, "RepoNotFound")
    if kind == "download":
        if not readable:
            return 404, "RepoNotFound"
        if repo_kind == "gated" and level < 1:
            return (401 if anonymous else 403), "GatedRepo"
        return 200, None
    if kind == "ask":
        if not readable:
            return 404, "RepoNotFound"
        if anonymous:
            return 401, "Unauthorized"
        if caller in LIMITED_ELSEWHERE:
            return 403, "Forbidden"
        return (200, None) if repo_kind == "gated" else (400, "BadRequest")
    if kind == "create" and caller == "contributor":
        return 200, None  # a contributor creates repos in the org, and then writes to those
    # As on the Hub, an org's write role covers repo settings, access requests and deletion ("admin" rows).
    if level >= 2:
        return 200, None
    if not readable:
        return 404, "RepoNotFound"
    if anonymous:
        return 401, "Unauthorized"
    return 403, "Forbidden"


CASES = [
    pytest.param(endpoint, caller, repo_kind, id=f"{endpoint.name}-{caller}-{repo_kind}")
    for endpoint in ENDPOINTS
    for caller in LEVELS
    for repo_kind in endpoint.repo_kinds
]


def _client(team: Team, caller: str) -> httpx.Client:
    return loopback_client(team.server.url, team.tokens[caller])


@pytest.mark.parametrize(("endpoint", "caller", "repo_kind"), CASES)
def test_permission_matrix(team: Team, endpoint: Endpoint, caller: str, repo_kind: str) -> None:
    repo = REPOS[repo_kind]
    target = endpoint.setup(team, repo) if endpoint.setup else ""
    with _client(team, caller) as client:
        response = endpoint.call(client, repo, target)
    status, code = expected(endpoint.kind, caller, repo_kind, anonymous=team.tokens[caller] is None)
    if endpoint.kind == "listing" and status == 200:
        # Listings always answer; a private repo must simply not be in them for an outsider.
        assert response.status_code == 200
        listed = [item["id"] for item in response.json()]
        visible = repo_kind not in PRIVATE_KINDS or (level_of(caller, repo_kind) or 0) >= 1
        assert (repo in listed) == visible
        return
    assert (response.status_code, response.headers.get("x-error-code")) == (status, code), response.text[:300]


# ------------------------------------------------------------------------------------------ account routes

# Who may perform each account action. Every other caller is refused: 401 anonymous, else 403.
MAY = {
    # site administrators only; reading needs no write scope
    "site-read": {"siteadmin", "siteadmin-read"},
    "site": {"siteadmin"},
    # any user, through an unlimited write token
    "any-user": {"outsider", "orgadmin", "siteadmin"},
    # the admins of the organisation (acme), or a site administrator
    "org-admin": {"orgadmin", "siteadmin"},
    # the user (SELF) themself or a site administrator
    "self-read": {"orgadmin", "orgadmin-read", "siteadmin", "siteadmin-read"},
    "self": {"orgadmin", "siteadmin"},
}
ACCOUNT_CALLERS = (
    "anonymous",
    "outsider",
    "orgadmin-read",
    "orgadmin-scoped",
    "orgadmin",
    "siteadmin-read",
    "siteadmin-scoped",
    "siteadmin",
)


@dataclass(frozen=True)
class AccountEndpoint:
    name: str
    may: str
    route: str
    call: Call
    setup: Setup | None = None


ACCOUNT_ENDPOINTS = [
    AccountEndpoint(
        "list_users", "site-read", "GET /api/admin/users", lambda c, r, t: c.get("/api/admin/users")
    ),
    AccountEndpoint(
        "create_user",
        "site",
        "POST /api/admin/users",
        lambda c, r, t: c.post("/api/admin/users", json={"name": _fresh("u")}),
    ),
    AccountEndpoint(
        "delete_user",
        "site",
        "DELETE /api/admin/users/{name}",
        lambda c, r, t: c.delete(f"/api/admin/users/{t}"),
        setup=_fresh_user,
    ),
    AccountEndpoint(
        "create_org",
        "any-user",
        "POST /api/admin/orgs",
        lambda c, r, t: c.post("/api/admin/orgs", json={"name": _fresh("o")}),
    ),
    AccountEndpoint(
        "set_member",
        "org-admin",
        "PUT /api/admin/orgs/{org}/members/{user}",
        lambda c, r, t: c.put(f"/api/admin/orgs/{ORG}/members/{t}", json={"role": "admin"}),
        setup=_fresh_user,
    ),
    AccountEndpoint(
        "remove_member",
        "org-admin",
        "DELETE /api/admin/orgs/{org}/members/{user}",
        lambda c, r, t: c.delete(f"/api/admin/orgs/{ORG}/members/{t}"),
        setup=_fresh_member,
    ),
    AccountEndpoint(
        "list_tokens",
        "self-read",
        "GET /api/admin/users/{user}/tokens",
        lambda c, r, t: c.get(f"/api/admin/users/{SELF}/tokens"),
    ),
    AccountEndpoint(
        "create_token",
        "self",
        "POST /api/admin/users/{user}/tokens",
        lambda c, r, t: c.post(
            f"/api/admin/users/{SELF}/tokens", json={"name": _fresh("t"), "scope": "write"}
        ),
    ),
    AccountEndpoint(
        "revoke_token",
        "self",
        "DELETE /api/admin/users/{user}/tokens/{name}",
        lambda c, r, t: c.delete(f"/api/admin/users/{SELF}/tokens/{t}"),
        setup=_fresh_token_of_self,
    ),
    AccountEndpoint(
        "add_key",
        "self",
        "POST /api/admin/users/{user}/keys",
        lambda c, r, t: c.post(f"/api/admin/users/{SELF}/keys", json={"publicKey": _fresh_public_key()}),
    ),
    AccountEndpoint(
        "revoke_key",
        "self",
        "POST /api/admin/users/{user}/keys/{fingerprint}/revoke",
        lambda c, r, t: c.post(f"/api/admin/users/{SELF}/keys/{t}/revoke", json={"reason": "matrix"}),
        setup=_fresh_key_of_self,
    ),
    AccountEndpoint(
        "hub_audit_log",
        "site-read",
        "GET /api/admin/audit-log",
        lambda c, r, t: c.get("/api/admin/audit-log"),
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "caller"),
    [
        pytest.param(endpoint, caller, id=f"{endpoint.name}-{caller}")
        for endpoint in ACCOUNT_ENDPOINTS
        for caller in ACCOUNT_CALLERS
    ],
)
def test_account_permission_matrix(team: Team, endpoint: AccountEndpoint, caller: str) -> None:
    target = endpoint.setup(team, "") if endpoint.setup else ""
    with _client(team, caller) as client:
        response = endpoint.call(client, "", target)
    if caller in MAY[endpoint.may]:
        assert response.status_code == 200, response.text[:300]
    else:
        code = "Unauthorized" if team.tokens[caller] is None else "Forbidden"
        status = 401 if code == "Unauthorized" else 403
        assert (response.status_code, response.headers.get("x-error-code")) == (status, code), response.text[
            :300
        ]


# ------------------------------------------------------------------------------------------ every route

# Routes that need no row, and why. Anything else the application serves must have a row above.
NO_ROW = {
    "GET /api/openapi.json": "public: the API description",
    "GET /api/docs": "public: the API documentation page",
    "GET /docs/oauth2-redirect": "public: part of the API documentation page",
    "GET /redoc": "public: the API documentation page",
    "GET /.well-known/weightyard/hub-key.pem": "public: the hub's public key",
    "GET /api/keys": "public: publishers' public keys",
    "GET /api/whoami-v2": "answers only about the caller's own token",
    "GET /api/agent-harnesses": "public: a constant",
    "POST /api/validate-yaml": "public: checks the posted text, touches no repo",
    "GET /": "a listing: filtered by the same can(READ) as the `search` row",
    "GET /models": "a listing: filtered by the same can(READ) as the `search` row",
    "GET /.json": "a listing: filtered by the same can(READ) as the `search` row",
    "GET /models.json": "a listing: filtered by the same can(READ) as the `search` row",
    "GET /sign-in": "public: the sign-in form",
    "GET /sign-in.json": "public: the sign-in form",
    "POST /sign-in": "checks the posted token like any request does",
    "POST /sign-out": "clears the caller's own cookie",
    "GET /-/static/{name}": "public: style sheets and scripts",
    # Signed URLs and Xet tokens are handed out only by routes with rows above (lfs_batch, upload_session,
    # xet_*_token).
    # Signed URLs and Xet tokens name the hub token they were issued for and re-check it and the WRITE or
    # DOWNLOAD right on every use: tests/auth/test_live_rights.py; what the CAS releases goes through the one
    # gate: tests/auth/test_content_gate.py.
    "PUT /api/lfs/objects/{oid}": "authorised by the signed URL lfs_batch hands out after its WRITE check",
    "PUT /api/lfs/uploads/{upload_id}/parts/{number}": "a signed URL from lfs_batch or upload_session",
    "POST /api/lfs/uploads/{upload_id}/complete": "authorised by a signed URL from lfs_batch",
    "POST /api/uploads/{upload_id}/complete": "authorised by a signed URL from upload_session",
    "DELETE /api/uploads/{upload_id}": "authorised by a signed URL from upload_session",
    "POST /api/lfs/verify": "checks the caller may name the object, like a commit does",
    "POST /xet-cas/v1/xorbs/{prefix}/{xorb}": "authorised by a Xet token from xet_write_token",
    "POST /xet-cas/v1/shards": "authorised by a Xet token from xet_write_token",
    "POST /xet-cas/v1/xorb-grants/{prefix}/{xorb}": "answers 404 to everyone (not implemented)",
    "POST /xet-cas/v2/shards": "answers 404 to everyone (not implemented)",
    "GET /xet-cas/v1/chunks/{prefix}/{chunk}": "authorised by a Xet token from xet_write_token",
    "GET /xet-cas/v{version}/reconstructions/{file_hash}": "authorised by a Xet token from xet_*_token",
    "GET /xet-cas/v1/fetch/{xorb}": "authorised by a signed URL in a reconstruction",
}


def _routes(routes: list[Any], prefix: str = "") -> Iterator[str]:
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's wrapper around an included router
            yield from _routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "routes"):
            yield from _routes(route.routes, prefix + getattr(route, "path", ""))
        else:
            for method in getattr(route, "methods", None) or ():
                if method != "HEAD":  # HEAD rides along with GET and is checked through it
                    yield f"{method} {prefix}{route.path}"


def test_every_route_is_in_the_matrix(tmp_path: Path) -> None:
    from weightyard.api import create_app
    from weightyard.config import Settings
    from weightyard.hub import Hub

    app = create_app(Hub.open(Settings(data=tmp_path / "data")))
    served = set(_routes(list(app.routes)))
    in_matrix = {route for endpoint in ENDPOINTS for route in endpoint.routes}
    in_matrix |= {endpoint.route for endpoint in ACCOUNT_ENDPOINTS}
    assert served - in_matrix - set(NO_ROW) == set(), "routes without rows in the permission matrix"
    assert (in_matrix | set(NO_ROW)) - served == set(), "rows for routes the application no longer serves"
