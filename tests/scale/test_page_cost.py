"""A page costs the same whatever the size of what it pages through: tree listings (with `expand`), commit
history, `paths-info` and repo listings, counted in SQL statements (SQLAlchemy's cursor events) and, for the
queries themselves, in SQLite virtual-machine steps (a progress handler called on every step: an index seek is
one step, a scan one per row), on an in-process app over a real hub. And the pages still add up to the
whole answer."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.support import in_hub_background

from weightyard.api import create_app
from weightyard.auth import LOCAL_ADMIN, Principal
from weightyard.config import Settings
from weightyard.hub import Hub
from weightyard.repos import AddFile, Repo
from weightyard.repos.listing import ListQuery, list_page


@dataclass
class Cost:
    statements: int = 0
    steps: int = 0


@dataclass
class Local:
    hub: Hub
    client: TestClient
    admin: Principal
    headers: dict[str, str]

    @contextmanager
    def cost(self) -> Iterator[Cost]:
        """What the database does for the requests made inside the block."""
        cost = Cost()

        def count_statement(*_: Any) -> None:
            if not in_hub_background():
                cost.statements += 1

        def count_step() -> int:
            cost.steps += 1
            return 0

        def watch(dbapi_connection: Any, *_: Any) -> None:
            dbapi_connection.set_progress_handler(None if in_hub_background() else count_step, 1)

        # Connections are pooled: the handler goes on each one as it is checked out, and comes off after.
        sa.event.listen(self.hub.engine, "before_cursor_execute", count_statement)
        sa.event.listen(self.hub.engine, "checkout", watch)
        self.hub.engine.pool.dispose()
        try:
            yield cost
        finally:
            sa.event.remove(self.hub.engine, "checkout", watch)
            sa.event.remove(self.hub.engine, "before_cursor_execute", count_statement)
            self.hub.engine.pool.dispose()

    def commit(self, repo: Repo, files: dict[str, bytes], title: str = "Add files") -> None:
        operations = []
        for path, data in files.items():
            ingest = self.hub.repos.start_ingest()
            ingest.write(data)
            added = self.hub.repos.record_content(self.admin, ingest.finish())
            operations.append(AddFile(path, added.sha256, added.size, added.lfs))
        self.hub.repos.commit(self.admin, repo, "main", operations, title)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    hub = Hub.open(Settings(data=tmp_path_factory.mktemp("cost") / "data"))
    token = hub.admin_token()
    with TestClient(create_app(hub), base_url="http://testserver") as client:
        yield Local(hub, client, hub.accounts.authenticate(token), {"Authorization": f"Bearer {token}"})
    hub.close()


def _repo_with_files(local: Local, name: str, count: int) -> Repo:
    repo = local.hub.repos.create_repo(local.admin, "model", "admin", name, private=False)
    # .bin files are LFS files: each one has a Xet hash to look up and a last commit.
    local.commit(repo, {f"weights/part-{index:04d}.bin": f"part {index}".encode() for index in range(count)})
    local.commit(repo, {"README.md": b"# notes\n"}, "Add a card")
    return repo


def _pages(local: Local, url: str) -> Iterator[list[dict[str, Any]]]:
    while url:
        response = local.client.get(url, headers=local.headers)
        assert response.status_code == 200, response.text
        yield response.json()
        url = response.links.get("next", {}).get("url", "")


def test_an_expanded_tree_page_costs_the_same_for_a_small_and_a_large_folder(local: Local) -> None:
    small, large = _repo_with_files(local, "tree-small", 60), _repo_with_files(local, "tree-large", 240)
    costs = []
    for repo in (small, large):
        with local.cost() as cost:
            response = local.client.get(
                f"/api/models/{repo.repo_id}/tree/main/weights?expand=true", headers=local.headers
            )
        assert response.status_code == 200
        assert len(response.json()) == 50
        costs.append(cost.statements)

    assert costs[0] == costs[1], costs


def test_expanded_tree_pages_add_up_to_the_whole_tree(local: Local) -> None:
    repo = _repo_with_files(local, "tree-pages", 120)
    whole = local.hub.repos.tree(local.hub.repos.resolve(repo, "main"), "", recursive=True)

    pages = list(_pages(local, f"/api/models/{repo.repo_id}/tree/main?recursive=true&expand=true"))

    assert [len(page) for page in pages] == [50, 50, 23]
    listed = [item for page in pages for item in page]
    assert [item["path"] for item in listed] == [item.path for item in whole]
    assert all(
        item["lastCommit"]["title"] in ("Add files", "Add a card", "initial commit") for item in listed
    )
    assert {item["type"] for item in listed} == {"file", "directory"}


def test_a_history_page_costs_the_same_for_a_short_and_a_long_history(local: Local) -> None:
    costs = []
    for name, length in (("history-short", 4), ("history-long", 40)):
        repo = local.hub.repos.create_repo(local.admin, "model", "admin", name, private=False)
        for index in range(length):
            local.commit(repo, {"counter.txt": str(index).encode()}, f"commit {index}")
        with local.cost() as api:
            response = local.client.get(f"/api/models/{repo.repo_id}/commits/main", headers=local.headers)
        assert response.status_code == 200
        with local.cost() as page:
            assert len(local.hub.repos.history(repo, "main", 0, 5)) == 5
        costs.append((api.statements, page))

    assert costs[0][0] == costs[1][0], "statements per API page"
    assert costs[0][1].statements == costs[1][1].statements
    assert costs[1][1].steps < costs[0][1].steps * 1.5, costs


def test_history_pages_follow_the_parents_newest_first(local: Local) -> None:
    repo = local.hub.repos.create_repo(local.admin, "model", "admin", "history-pages", private=False)
    for index in range(7):
        local.commit(repo, {"counter.txt": str(index).encode()}, f"commit {index}")
    head = local.hub.repos.resolve(repo, "main")

    pages = [local.hub.repos.history(repo, "main", start, 3) for start in (0, 3, 6)]

    assert [len(page) for page in pages] == [3, 3, 2]
    chain = [commit for page in pages for commit in page]
    assert chain[0] == head
    assert [commit.title for commit in chain] == [f"commit {i}" for i in range(6, -1, -1)] + [
        "initial commit"
    ]
    assert all(child.parent_oid == parent.oid for child, parent in itertools.pairwise(chain))
    assert chain[-1].parent_oid is None
    assert local.hub.repos.history(repo, "main") == chain
    assert local.hub.repos.history_length(repo, "main") == 8
    assert local.hub.repos.history(repo, head.oid[:10], 7, 5) == chain[7:]


def test_paths_info_costs_the_same_for_a_small_and_a_large_repo(local: Local) -> None:
    costs = []
    for repo in (_repo_with_files(local, "paths-small", 10), _repo_with_files(local, "paths-large", 200)):
        with local.cost() as cost:
            response = local.client.post(
                f"/api/models/{repo.repo_id}/paths-info/main",
                data={
                    "paths": ["weights/part-0003.bin", "weights", "README.md", "missing.txt"],
                    "expand": "true",
                },
                headers=local.headers,
            )
        assert response.status_code == 200
        assert [item["path"] for item in response.json()] == ["weights/part-0003.bin", "weights", "README.md"]
        costs.append(cost.statements)

    assert costs[0] == costs[1], costs


@pytest.mark.parametrize("query", ["sort=lastModified", "sort=likes", "sort=id", "search=needle"])
def test_a_listing_page_costs_the_same_for_few_and_many_repos(local: Local, query: str) -> None:
    costs = []
    for owner, count in ((f"few{len(query)}", 6), (f"many{len(query)}", 90)):
        local.hub.accounts.create_org(LOCAL_ADMIN, owner)
        for index in range(count):
            # three needles in each haystack, private repos among the rest
            name = f"needle-{index}" if index % (count // 3) == 1 else f"hay-{index}"
            local.hub.repos.create_repo(local.admin, "model", owner, name, private=index % 3 == 0)
        with local.cost() as cost:
            response = local.client.get(f"/api/models?author={owner}&limit=2&{query}")
        assert response.status_code == 200
        assert len(response.json()) == 2
        costs.append(cost)

    assert costs[0].statements == costs[1].statements
    assert costs[1].steps < costs[0].steps * 3, costs


def test_a_listing_page_reads_its_cards_in_one_query(local: Local) -> None:
    local.hub.accounts.create_org(LOCAL_ADMIN, "carded")
    for index in range(8):
        repo = local.hub.repos.create_repo(local.admin, "model", "carded", f"card-{index}", private=False)
        local.commit(repo, {"README.md": f"---\nlicense: mit\ntags:\n- t{index}\n---\n# {index}\n".encode()})
    costs = []
    for limit in (2, 8):
        for extra in ("", "&cardData=true"):
            with local.cost() as cost:
                response = local.client.get(f"/api/models?author=carded&limit={limit}{extra}")
            assert response.status_code == 200
            assert len(response.json()) == limit
            if extra:
                assert all(item["cardData"]["license"] == "mit" for item in response.json())
            assert all(item["tags"] for item in response.json())
            costs.append(cost.statements)

    assert costs[0] == costs[2] and costs[1] == costs[3], costs


@pytest.fixture(scope="module")
def deep(local: Local) -> None:
    """100 more repos in the hub, one in five private, created within a second or two: many ties."""
    local.hub.accounts.create_org(LOCAL_ADMIN, "deep")
    for index in range(100):
        local.hub.repos.create_repo(local.admin, "model", "deep", f"repo-{index}", private=index % 5 == 0)


@pytest.mark.parametrize(
    "query", ["sort=lastModified", "sort=createdAt", "sort=downloads", "sort=id", "sort=likes&direction=1"]
)
@pytest.mark.usefixtures("deep")
def test_a_deep_listing_page_costs_what_a_shallow_one_does(local: Local, query: str) -> None:
    params = dict(part.split("=") for part in query.split("&"))
    listing = ListQuery("model", sort=params["sort"], descending=params.get("direction") != "1", limit=2)
    # the positions 2 and 90 repos into the hub's listing, as the pages before them hand them out
    positions, page = [], list_page(local.hub.engine, local.admin, listing, lambda repo: True)
    while page.next is not None and len(positions) < 45:
        positions.append(page.next)
        page = list_page(local.hub.engine, local.admin, replace(listing, after=page.next), lambda repo: True)
    costs = []
    for position in (positions[0], positions[44]):
        cursor = local.hub.cursors.encode(position)
        with local.cost() as cost:
            response = local.client.get(f"/api/models?limit=2&{query}&cursor={cursor}", headers=local.headers)
        assert response.status_code == 200, response.text
        assert len(response.json()) == 2
        costs.append(cost)

    assert costs[0].statements == costs[1].statements
    assert costs[1].steps < costs[0].steps * 1.5, costs
