"""Bad input is a 4xx with the error shape, never a 500: the cases that once answered 500, one by one."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from tests.support import Server

Call = Callable[[httpx.Client, str], httpx.Response]

CASES: list[tuple[str, Call, int, str]] = [
    ("paths-info-array", lambda c, r: c.post(f"/api/models/{r}/paths-info/main", json=[]), 400, "BadRequest"),
    (
        "paths-info-number",
        lambda c, r: c.post(f"/api/models/{r}/paths-info/main", json={"paths": 5}),
        400,
        "BadRequest",
    ),
    (
        "preupload-sample-number",
        lambda c, r: c.post(
            f"/api/models/{r}/preupload/main", json={"files": [{"path": "a.txt", "size": 1, "sample": 5}]}
        ),
        400,
        "BadRequest",
    ),
    (
        "commit-nested-line",
        lambda c, r: c.post(
            f"/api/models/{r}/commit/main",
            content=b'{"key": "header", "value": {"summary": "x", "deep": ' + b"[" * 100_000 + b"]" * 100_000,
        ),
        400,
        "MalformedCommit",
    ),
    (
        "branch-starting-point-number",
        lambda c, r: c.post(f"/api/models/{r}/branch/b1", json={"startingPoint": 5}),
        400,
        "BadRequest",
    ),
    ("audit-log-huge-before", lambda c, r: c.get("/api/admin/audit-log?before=1e23"), 400, "BadRequest"),
    (
        "audit-log-huge-integer-before",
        lambda c, r: c.get(f"/api/admin/audit-log?before={10**30}"),
        400,
        "BadRequest",
    ),
    (
        "token-expiry-overflow",
        lambda c, r: c.post(
            "/api/admin/users/admin/tokens", json={"name": "t", "expiresInDays": 99999999999}
        ),
        400,
        "BadRequest",
    ),
    (
        "create-repo-not-json",
        lambda c, r: c.post(
            "/api/repos/create", content=b"\xff{", headers={"Content-Type": "application/json"}
        ),
        400,
        "BadRequest",
    ),
    (
        "lfs-batch-huge-size",
        lambda c, r: c.post(
            f"/{r}.git/info/lfs/objects/batch",
            json={"operation": "upload", "objects": [{"oid": "ab" * 32, "size": 10**30}]},
        ),
        400,
        "BadRequest",
    ),
    ("list-models-huge-limit", lambda c, r: c.get(f"/api/models?limit={10**30}"), 400, "BadRequest"),
]


@pytest.fixture(scope="module")
def repo(server: Server) -> str:
    name = "admin/bad-input"
    response = httpx.post(
        f"{server.url}/api/repos/create",
        json={"name": name},
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert response.status_code in (200, 409), response.text
    return name


@pytest.mark.parametrize(("call", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_with_a_code(
    server: Server, repo: str, call: Call, status: int, code: str
) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        response = call(client, repo)
    assert (response.status_code, response.headers.get("x-error-code")) == (status, code), response.text[:300]
    assert response.json()["code"] == code


# A NUL character: SQLite stores and compares it, PostgreSQL refuses it in any text value. On either
# database the answer is never a 5xx: a repo or revision that cannot exist, a malformed request (both with the
# error shape), or, where SQLite simply stores or searches the text, success.
NUL_CASES: list[tuple[str, Call, bool]] = [
    ("repo-namespace", lambda c, r: c.get("/api/models/%00/x"), True),
    ("repo-name-resolve", lambda c, r: c.head("/datasets/admin/%00/resolve/main"), True),
    ("revision", lambda c, r: c.get(f"/api/models/{r}/tree/%00"), True),
    ("web-revision", lambda c, r: c.get(f"/{r}/commits/%00", headers={"Accept": "application/json"}), True),
    ("listing-search", lambda c, r: c.get("/api/models", params={"search": "a\x00b"}), False),
    (
        "commit-summary",
        lambda c, r: c.post(
            f"/api/models/{r}/commit/main",
            content=b'{"key": "header", "value": {"summary": "a\\u0000b"}}\n'
            b'{"key": "file", "value": {"path": "nul.txt", "content": "aGk="}}\n',
            headers={"Content-Type": "application/x-ndjson"},
        ),
        False,
    ),
]


@pytest.mark.parametrize(("call", "refused"), [c[1:] for c in NUL_CASES], ids=[c[0] for c in NUL_CASES])
def test_a_nul_character_is_never_a_server_error_on_either_database(
    server: Server, repo: str, call: Call, refused: bool
) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        response = call(client, repo)
    assert response.status_code < 500, response.text[:300]
    if refused or response.status_code >= 400:
        assert 400 <= response.status_code < 500, response.text[:300]
        code = response.headers.get("x-error-code")
        assert code, response.headers
        if response.request.method != "HEAD":
            assert response.json()["code"] == code
