"""Numbers in requests beyond what a database integer holds (row ids are 32-bit on PostgreSQL, and SQLite
takes nothing past 64 bits) get a clear answer, never a server error: a cursor past any list is invalid, an
id past any row names nothing."""

from __future__ import annotations

import httpx
from huggingface_hub import HfApi
from tests.support import Server

BIG = ("2147483648", "9223372036854775808", "99999999999999999999999")


def test_cursors_past_any_list_are_refused_as_invalid(server: Server, repo_name: str) -> None:
    HfApi(endpoint=server.url, token=server.token).create_repo(repo_name)
    headers = {"Authorization": f"Bearer {server.token}"}
    for cursor in BIG:
        for route in ("commits/main", "tree/main"):
            response = httpx.get(
                f"{server.url}/api/models/{repo_name}/{route}", params={"cursor": cursor}, headers=headers
            )
            assert (response.status_code, response.json()["error"]) == (400, "invalid cursor"), (
                route,
                cursor,
            )


def test_ids_past_any_row_name_nothing(server: Server, repo_name: str) -> None:
    HfApi(endpoint=server.url, token=server.token).create_repo(repo_name)
    headers = {"Authorization": f"Bearer {server.token}"}
    for before in BIG[:2]:
        response = httpx.get(f"{server.url}/api/admin/audit-log", params={"before": before}, headers=headers)
        assert response.status_code in (400, 422), before
    handled = httpx.post(
        f"{server.url}/api/models/{repo_name}/user-access-request/handle",
        json={"status": "accepted", "requestId": 999_999_999_999_999_999},
        headers=headers,
    )
    assert (handled.status_code, handled.json()["code"]) == (404, "NotFound")
