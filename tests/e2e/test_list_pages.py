"""`list_models` pages through the stock client: keyset cursors in `Link: rel="next"`, several pages in every
sort, each repo once, private repos only for those who may read them; a cursor the hub did not hand out is a
400, never a page."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi
from tests.support import Server, weightyard_cli

pytestmark = pytest.mark.client

REPOS = 205
# every eighth repo is private: the owner pages through 3 pages of 100, a stranger through 2
PRIVATE = {index for index in range(REPOS) if index % 8 == 0}
# `siblings` makes a page hold 100 entries, not 1000; the rest is what the sorts are checked against
FIELDS = ["siblings", "lastModified", "createdAt", "downloads", "likes", "private"]
SORTS = ["lastModified", "createdAt", "downloads", "likes", "trendingScore", "id"]


@pytest.fixture(scope="module")
def owner(server: Server) -> str:
    """A namespace of REPOS repos, created in an order unlike their names."""
    name = f"u{uuid.uuid4().hex[:10]}"
    result = weightyard_cli("user", "create", name, "--data", str(server.data))
    assert result.returncode == 0, result.stderr
    api = HfApi(endpoint=server.url, token=server.token)
    for index in range(REPOS):
        # names sort apart from creation order: the id sort is not the creation order read back
        api.create_repo(f"{name}/m{(index * 7919) % 1000:03d}-{index}", private=index in PRIVATE)
    return name


def _key(model: Any, sort: str) -> Any:
    return {
        "lastModified": model.last_modified,
        "createdAt": model.created_at,
        "downloads": model.downloads,
        "likes": model.likes,
        "trendingScore": model.downloads,
        "id": model.id,
    }[sort]


def _pages(url: str, params: dict[str, Any], token: str | None = None) -> Iterator[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url, params=params, headers=headers)
    for _ in range(REPOS):  # bounded: a page holds at least one repo
        assert response.status_code == 200, response.text
        yield response
        if "next" not in response.links:
            return
        response = httpx.get(response.links["next"]["url"], headers=headers)
    pytest.fail("the pages never ended")


@pytest.mark.parametrize("sort", SORTS)
def test_the_stock_client_pages_through_every_repo_once_in_every_sort(
    server: Server, owner: str, sort: str
) -> None:
    api = HfApi(endpoint=server.url, token=server.token)

    listed = list(api.list_models(author=owner, sort=sort, expand=FIELDS))  # type: ignore[arg-type]

    ids = [model.id for model in listed]
    assert len(ids) == REPOS
    assert len(set(ids)) == REPOS
    assert {model.id.split("-")[-1] for model in listed} == {str(index) for index in range(REPOS)}
    keys = [_key(model, sort) for model in listed]
    assert keys == sorted(keys, reverse=True)  # newest, most, last first
    pages = list(
        _pages(f"{server.url}/api/models", {"author": owner, "sort": sort, "expand": FIELDS}, server.token)
    )
    assert [len(page.json()) for page in pages] == [100, 100, 5]
    assert [item["id"] for page in pages for item in page.json()] == ids


def test_ascending_pages_are_the_descending_ones_reversed(server: Server, owner: str) -> None:
    for sort in ("createdAt", "downloads", "id"):
        walks = [
            [
                item["id"]
                for page in _pages(
                    f"{server.url}/api/models",
                    {"author": owner, "sort": sort, "direction": direction, "expand": ["siblings"]},
                    server.token,
                )
                for item in page.json()
            ]
            for direction in ("-1", "1")
        ]
        assert len(walks[0]) == REPOS
        assert walks[1] == walks[0][::-1], sort


def test_a_stranger_pages_through_the_public_repos_only(server: Server, owner: str) -> None:
    anonymous = HfApi(endpoint=server.url, token=False)

    listed = list(anonymous.list_models(author=owner, expand=FIELDS))  # type: ignore[arg-type]

    assert sorted(int(model.id.split("-")[-1]) for model in listed) == sorted(set(range(REPOS)) - PRIVATE)
    assert not any(model.private for model in listed)


def test_a_cursor_from_the_owners_pages_shows_a_stranger_only_public_repos(
    server: Server, owner: str
) -> None:
    first = next(_pages(f"{server.url}/api/models", {"author": owner, "expand": FIELDS}, server.token))
    assert any(item["private"] for item in first.json())
    following = httpx.get(first.links["next"]["url"])

    assert following.status_code == 200
    assert following.json()
    assert not any(item["private"] for item in following.json())


def _cursor(response: httpx.Response) -> str:
    return dict(httpx.URL(response.links["next"]["url"]).params.multi_items())["cursor"]


def test_a_cursor_the_hub_did_not_hand_out_is_a_400(server: Server, owner: str) -> None:
    first = httpx.get(
        f"{server.url}/api/models", params={"author": owner, "sort": "likes", "expand": ["siblings"]}
    )
    cursor = _cursor(first)
    body, signature = cursor.split(".")
    fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    fields[3] = 1  # the row id of another repo, signed with the old signature
    forged = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    bad = [
        "garbage",
        "5000",
        "",
        cursor[:-1],
        cursor + "A",
        f"{forged}.{signature}",
        f"{body}.{signature[::-1]}",
        "é" * 40,
        "A" * 5000 + "." + signature,
    ]
    for value in bad:
        response = httpx.get(
            f"{server.url}/api/models", params={"author": owner, "sort": "likes", "cursor": value}
        )
        assert response.status_code == 400, (value, response.text)
        assert response.json()["code"] == "BadRequest"
        assert response.headers["X-Error-Code"] == "BadRequest"
    # a real cursor, in a listing of another order: its position means nothing there
    for sort in ("id", "createdAt"):
        other = httpx.get(
            f"{server.url}/api/models", params={"author": owner, "sort": sort, "cursor": cursor}
        )
        assert other.status_code == 400, other.text
    ascending = httpx.get(
        f"{server.url}/api/models",
        params={"author": owner, "sort": "likes", "direction": "1", "cursor": cursor},
    )
    assert ascending.status_code == 400
    assert (
        httpx.get(
            f"{server.url}/api/models", params={"author": owner, "sort": "likes", "cursor": cursor}
        ).status_code
        == 200
    )
