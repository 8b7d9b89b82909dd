"""Listings and searches answered from the indexes of migration 0014_listing_search, on SQLite (FTS5 trigram)
and PostgreSQL (pg_trgm): the same hits and misses, filters, pages and hidden private repos on both, and the
index follows every write that changes what is searched (creation, move, a card's tags, deletion)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from weightyard.auth import LOCAL_ADMIN, Principal, Signer
from weightyard.config import Settings
from weightyard.errors import BadRequest
from weightyard.hub import Hub
from weightyard.repos import AddFile, Repo
from weightyard.repos.listing import Cursors, ListPage, ListQuery, list_page


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    data = tmp_path_factory.mktemp("listing") / "data"
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    instance = Hub.open(Settings(data=data, database_url=url))
    yield instance
    instance.close()


_users = 0


def _user(hub: Hub) -> Principal:
    """A new user (each test its own namespace, so tests sharing the module's hub do not see each other's)."""
    global _users
    _users += 1
    name = f"user{_users}"
    hub.accounts.create_user(LOCAL_ADMIN, name)
    return hub.accounts.authenticate(hub.accounts.create_token(LOCAL_ADMIN, name, "t", scope="write"))


def _commit_card(hub: Hub, principal: Principal, repo: Repo, card: bytes) -> None:
    ingest = hub.repos.start_ingest()
    ingest.write(card)
    added = hub.repos.record_content(principal, ingest.finish())
    hub.repos.commit(
        principal, repo, "main", [AddFile("README.md", added.sha256, added.size, added.lfs)], "card"
    )


def _ids(hub: Hub, query: ListQuery, principal: Principal | None = None) -> list[str]:
    page = list_page(hub.engine, principal, query, lambda repo: hub.repos.gate.may_download(principal, repo))
    return [item.repo.repo_id for item in page.items]


def test_search_finds_any_part_of_a_repo_id_whatever_its_case(hub: Hub) -> None:
    alice = _user(hub)
    for name in ("DistilBERT-base", "bert-tiny", "gpt-small"):
        hub.repos.create_repo(alice, "model", alice.name, name, private=False)

    def search(text: str) -> list[str]:
        return sorted(_ids(hub, ListQuery("model", author=alice.name, search=text)))

    assert search("bert") == [f"{alice.name}/DistilBERT-base", f"{alice.name}/bert-tiny"]
    assert search("ERT-B") == [f"{alice.name}/DistilBERT-base"]
    assert search(f"{alice.name}/gpt") == [f"{alice.name}/gpt-small"]
    assert search("bert-tinyx") == []
    assert search("-S") == [f"{alice.name}/gpt-small"], "shorter than a trigram"
    assert search("a%e") == [], "LIKE wildcards are plain characters"
    assert search('"bert"') == [], "quotes are plain characters"


def test_words_match_the_repo_id_or_a_tag_and_follow_the_card(hub: Hub) -> None:
    bob = _user(hub)
    repo = hub.repos.create_repo(bob, "model", bob.name, "encoder", private=False)
    other = hub.repos.create_repo(bob, "model", bob.name, "decoder", private=False)
    _commit_card(hub, bob, repo, b"---\nlicense: apache-2.0\ntags:\n- quantised\n---\n# Encoder\n")

    def words(*values: str) -> list[str]:
        return sorted(_ids(hub, ListQuery("model", author=bob.name, words=values)))

    assert words("quantis") == [repo.repo_id]
    assert words("apache", "enc") == [repo.repo_id]
    assert words("apache", "dec") == [], "every word must match"
    assert words("coder") == sorted([repo.repo_id, other.repo_id])
    assert words("quantised\nlicense") == [], "a word never spans two tags"

    _commit_card(hub, bob, repo, b"---\nlicense: mit\ntags:\n- distilled\n---\n# Encoder\n")

    assert words("quantis") == []
    assert words("distil") == [repo.repo_id]
    assert words("license:mit") == [repo.repo_id]


def test_moved_and_deleted_repos_are_found_by_their_new_id_only(hub: Hub) -> None:
    carol = _user(hub)
    hub.repos.create_repo(carol, "model", carol.name, "before-move", private=False)
    moved = hub.repos.move_repo(carol, "model", (carol.name, "before-move"), (carol.name, "after-move"))
    gone = hub.repos.create_repo(carol, "model", carol.name, "doomed-move", private=False)
    _commit_card(hub, carol, gone, b"---\ntags:\n- doomedtag\n---\n")
    hub.repos.delete_repo(carol, "model", carol.name, "doomed-move")

    assert _ids(hub, ListQuery("model", search="before-move")) == []
    assert _ids(hub, ListQuery("model", search="after-move")) == [moved.repo_id]
    assert _ids(hub, ListQuery("model", words=("move",), author=carol.name)) == [moved.repo_id]
    assert _ids(hub, ListQuery("model", words=("doomedtag",))) == []


def test_filters_by_tag_task_and_author(hub: Hub) -> None:
    dan = _user(hub)
    tagged = hub.repos.create_repo(dan, "model", dan.name, "classifier", private=False)
    hub.repos.create_repo(dan, "model", dan.name, "plain", private=False)
    _commit_card(hub, dan, tagged, b"---\nlicense: mit\npipeline_tag: text-classification\n---\n")

    assert _ids(hub, ListQuery("model", author=dan.name, tags=("license:mit",))) == [tagged.repo_id]
    assert _ids(hub, ListQuery("model", author=dan.name, pipeline_tag="text-classification")) == [
        tagged.repo_id
    ]
    assert _ids(hub, ListQuery("model", author=dan.name, tags=("license:mit", "nope"))) == []
    assert len(_ids(hub, ListQuery("model", author=dan.name))) == 2


def _walk(hub: Hub, query: ListQuery, page: ListPage, backward: bool) -> list[ListPage]:
    """The pages from `page` on, following their positions one way, to the end (bounded)."""
    pages = [page]
    for _ in range(20):
        position = page.previous if backward else page.next
        if position is None:
            return pages
        page = list_page(hub.engine, None, replace(query, after=position), lambda repo: True)
        pages.append(page)
    pytest.fail("the pages never ended")


def _listed(page: ListPage) -> list[str]:
    return [item.repo.repo_id for item in page.items]


@pytest.mark.parametrize("descending", [True, False], ids=["descending", "ascending"])
@pytest.mark.parametrize("sort", ["lastModified", "createdAt", "likes", "downloads", "trendingScore", "id"])
def test_pages_cover_every_match_once_in_sort_order_both_ways(hub: Hub, sort: str, descending: bool) -> None:
    erin = _user(hub)
    for index in range(7):
        repo = hub.repos.create_repo(erin, "model", erin.name, f"paged-{index}", private=False)
        for _ in range(index % 3):  # downloads with ties, so the row id orders some of them
            hub.repos.count_download(repo)
    hub.repos.downloads.flush()
    everything = _ids(hub, ListQuery("model", author=erin.name, sort=sort, descending=descending))
    query = ListQuery("model", author=erin.name, sort=sort, descending=descending, limit=3)

    forward = _walk(hub, query, list_page(hub.engine, None, query, lambda repo: True), backward=False)
    back = _walk(hub, query, forward[-1], backward=True)

    assert [len(page.items) for page in forward] == [3, 3, 1]
    assert [page.index for page in forward] == [0, 1, 2]
    assert [repo_id for page in forward for repo_id in _listed(page)] == everything
    assert sorted(everything) == sorted(f"{erin.name}/paged-{index}" for index in range(7))
    assert [_listed(page) for page in back] == [_listed(page) for page in reversed(forward)]
    assert [page.index for page in back] == [2, 1, 0]
    assert back[-1].previous is None and forward[-1].next is None
    if sort == "id":
        assert everything == sorted(everything, reverse=descending)
    if sort == "downloads":
        counts = [hub.repos.get_repo(erin, "model", *repo_id.split("/")).downloads for repo_id in everything]
        assert counts == sorted(counts, reverse=descending)


def test_a_position_from_another_order_is_refused(hub: Hub) -> None:
    frank = _user(hub)
    for index in range(3):
        hub.repos.create_repo(frank, "model", frank.name, f"order-{index}", private=False)
    query = ListQuery("model", author=frank.name, sort="likes", limit=1)
    position = list_page(hub.engine, None, query, lambda repo: True).next
    assert position is not None

    for other in (
        replace(query, sort="id"),
        replace(query, sort="downloads"),
        replace(query, descending=False),
    ):
        with pytest.raises(BadRequest):
            list_page(hub.engine, None, replace(other, after=position), lambda repo: True)


def test_a_cursor_carries_its_position_only_with_this_hubs_signature(hub: Hub) -> None:
    gina = _user(hub)
    for index in range(3):
        hub.repos.create_repo(gina, "model", gina.name, f"signed-{index}", private=False)
    for sort in ("lastModified", "downloads", "id"):
        query = ListQuery("model", author=gina.name, sort=sort, limit=1)
        position = list_page(hub.engine, None, query, lambda repo: True).next
        assert position is not None
        cursor = hub.cursors.encode(position)

        assert hub.cursors.decode(cursor) == position
        with pytest.raises(BadRequest):
            Cursors(Signer(b"another hub's secret, 32 bytes long")).decode(cursor)
        body, signature = cursor.split(".")
        for forged in (body + "." + signature[:-2], body[:-2] + "." + signature, cursor.replace(".", "")):
            with pytest.raises(BadRequest):
                hub.cursors.decode(forged)


def test_private_repos_are_listed_and_found_only_for_those_who_may_read_them(hub: Hub) -> None:
    owner, stranger = _user(hub), _user(hub)
    hidden = hub.repos.create_repo(owner, "model", owner.name, "secret-searchable", private=True)
    shown = hub.repos.create_repo(owner, "model", owner.name, "public-searchable", private=False)
    _commit_card(hub, owner, hidden, b"---\ntags:\n- hushhush\n---\n")

    for query in (
        ListQuery("model", search="searchable", author=owner.name),
        ListQuery("model", words=("searchable",)),
        ListQuery("model", author=owner.name),
    ):
        assert sorted(_ids(hub, query, owner)) == sorted([hidden.repo_id, shown.repo_id])
        assert _ids(hub, query, stranger) == [shown.repo_id]
        assert _ids(hub, query, None) == [shown.repo_id]
    assert _ids(hub, ListQuery("model", words=("hushhush",)), stranger) == []
    assert _ids(hub, ListQuery("model", words=("hushhush",)), owner) == [hidden.repo_id]
    total = list_page(
        hub.engine, None, ListQuery("model", words=("searchable",)), lambda r: True, with_total=True
    )
    assert total.total == 1
