"""Every endpoint x every kind of caller x public/private/gated repo: the exact status and error code."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from tests.auth.conftest import ORG, REPOS, Team

# Access level of each caller on the acme repos: 0 none, 1 read, 2 write, 3 admin.
# None means the token itself is refused (401 on every endpoint).
LEVELS: dict[str, int | None] = {
    "anonymous": 0,
    "outsider": 0,
    "reader": 1,
    "writer-read-token": 1,
    "writer": 2,
    "orgadmin": 3,
    "siteadmin": 3,
    "revoked": None,
    "expired": None,
    "scoped-to-other": 0,
}

_unique = itertools.count()
CONTENT_SHA256 = hashlib.sha256(b"content").hexdigest()  # the file every team repo holds


@dataclass(frozen=True)
class Endpoint:
    name: str
    kind: str  # read | download | write | admin | listing
    call: Callable[[httpx.Client, str], httpx.Response]


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


ENDPOINTS = [
    Endpoint("model_info", "read", lambda c, r: c.get(f"/api/models/{r}")),
    Endpoint("revision_info", "read", lambda c, r: c.get(f"/api/models/{r}/revision/main")),
    Endpoint("tree", "read", lambda c, r: c.get(f"/api/models/{r}/tree/main?recursive=true")),
    Endpoint("refs", "read", lambda c, r: c.get(f"/api/models/{r}/refs")),
    Endpoint("commits", "read", lambda c, r: c.get(f"/api/models/{r}/commits/main")),
    Endpoint(
        "paths_info",
        "read",
        lambda c, r: c.post(f"/api/models/{r}/paths-info/main", data={"paths": "file.txt"}),
    ),
    Endpoint("resolve_head", "download", lambda c, r: c.head(f"/{r}/resolve/main/file.txt")),
    Endpoint("resolve_get", "download", lambda c, r: c.get(f"/{r}/resolve/main/file.txt")),
    Endpoint(
        "preupload",
        "write",
        lambda c, r: c.post(
            f"/api/models/{r}/preupload/main", json={"files": [{"path": "a.txt", "size": 1}]}
        ),
    ),
    Endpoint(
        "commit",
        "write",
        lambda c, r: c.post(
            f"/api/models/{r}/commit/main",
            content=_commit_body(),
            headers={"Content-Type": "application/x-ndjson"},
        ),
    ),
    Endpoint(
        "create_branch", "write", lambda c, r: c.post(f"/api/models/{r}/branch/b{next(_unique)}", json={})
    ),
    Endpoint(
        "create_tag",
        "write",
        lambda c, r: c.post(f"/api/models/{r}/tag/main", json={"tag": f"t{next(_unique)}"}),
    ),
    Endpoint(
        "lfs_batch",
        "write",
        lambda c, r: c.post(
            f"/{r}.git/info/lfs/objects/batch",
            json={"operation": "upload", "objects": [{"oid": "ab" * 32, "size": 10}]},
        ),
    ),
    Endpoint("xet_read_token", "download", lambda c, r: c.get(f"/api/models/{r}/xet-read-token/main")),
    Endpoint("xet_write_token", "write", lambda c, r: c.get(f"/api/models/{r}/xet-write-token/main")),
    Endpoint(
        "commit_by_digest",
        "write",
        lambda c, r: c.post(
            f"/api/models/{r}/commit/main",
            content=_lfs_pointer_commit_body(),
            headers={"Content-Type": "application/x-ndjson"},
        ),
    ),
    Endpoint("settings", "admin", lambda c, r: c.put(f"/api/models/{r}/settings", json={})),
    Endpoint("access_requests", "admin", lambda c, r: c.get(f"/api/models/{r}/user-access-request/pending")),
    Endpoint("repo_audit_log", "admin", lambda c, r: c.get("/api/admin/audit-log", params={"repo": r})),
    Endpoint("search", "listing", lambda c, r: c.get("/api/models", params={"author": ORG})),
]


def expected(kind: str, level: int | None, repo_kind: str, anonymous: bool) -> tuple[int, str | None]:
    """The (status, X-Error-Code) the hub must answer."""
    if level is None:
        return 401, "InvalidCredentials"
    readable = repo_kind != "private" or level >= 1
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
    needed = 2 if kind == "write" else 3
    if level >= needed:
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
    for repo_kind in REPOS
]


@pytest.mark.parametrize(("endpoint", "caller", "repo_kind"), CASES)
def test_permission_matrix(team: Team, endpoint: Endpoint, caller: str, repo_kind: str) -> None:
    token = team.tokens[caller]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    repo = REPOS[repo_kind]
    with httpx.Client(base_url=team.server.url, headers=headers) as client:
        response = endpoint.call(client, repo)
    status, code = expected(endpoint.kind, LEVELS[caller], repo_kind, anonymous=token is None)
    if endpoint.kind == "listing" and status == 200:
        # Listings always answer; a private repo must simply not be in them for an outsider.
        assert response.status_code == 200
        listed = [item["id"] for item in response.json()]
        visible = repo_kind != "private" or (LEVELS[caller] or 0) >= 1
        assert (repo in listed) == visible
        return
    assert (response.status_code, response.headers.get("x-error-code")) == (status, code), response.text[:300]
