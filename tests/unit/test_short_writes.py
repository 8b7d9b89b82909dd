"""Write transactions stay short: a commit builds its tree before taking the write lock (and builds again
under it when the branch moved meanwhile), and downloads are saved in batches, the last ones at a clean
stop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from weightyard.auth import LOCAL_ADMIN, Principal
from weightyard.config import Settings
from weightyard.errors import ParentCommitMismatch
from weightyard.hub import Hub
from weightyard.repos import AddFile, Repo


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A hub's settings on each database (the PostgreSQL database is shared by this module's tests)."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    return Settings(data=tmp_path / "data", database_url=url)


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    instance = Hub.open(settings)
    yield instance
    instance.close()


def _admin(hub: Hub) -> Principal:
    return hub.accounts.authenticate(hub.admin_token())


def _add(hub: Hub, admin: Principal, path: str, data: bytes) -> AddFile:
    ingest = hub.repos.start_ingest()
    ingest.write(data)
    content = hub.repos.record_content(admin, ingest.finish())
    return AddFile(path, content.sha256, content.size, content.lfs)


def _in_write_transaction(conn: sa.Connection) -> bool:
    return bool(conn.get_execution_options().get("weightyard_immediate"))


def test_a_commit_reads_no_tree_while_it_holds_the_write_lock(settings: Settings) -> None:
    first = Hub.open(settings)
    admin = _admin(first)
    repo = first.repos.create_repo(admin, "model", "admin", "big", private=False)
    first.repos.commit(
        admin,
        repo,
        "main",
        [_add(first, admin, f"d{i}/f{j}.txt", b"%d %d" % (i, j)) for i in range(5) for j in range(5)],
        "many",
    )
    first.close()
    # A fresh process: no tree is cached yet, so every tree the commit needs is read from the database. (Under
    # the "refuse" policy, the scan gate would read them all first, before any transaction.)
    hub = Hub.open(settings.model_copy(update={"scan_policy": "warn"}))
    try:
        locked_reads: list[str] = []

        def watch(conn: sa.Connection, _cursor: Any, statement: str, *_args: Any) -> None:
            if _in_write_transaction(conn) and "tree_objects" in statement and "SELECT" in statement:
                locked_reads.append(statement)

        sa.event.listen(hub.engine, "before_cursor_execute", watch)
        admin = _admin(hub)
        repo = hub.repos.get_repo(admin, "model", "admin", "big")
        added = _add(hub, admin, "d3/new.txt", b"new")

        result = hub.repos.commit(admin, repo, "main", [added], "one more")

        assert locked_reads == []
        files = hub.repos.files(result.commit)
        assert len(files) == 27 and files["d3/new.txt"].sha256 == added.sha256
    finally:
        hub.close()


def _land_a_commit_after_the_tree_is_built(
    hub: Hub, admin: Principal, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Make another commit land between the moment the next commit has built its tree and the moment it
    takes the write lock; returns the list the other commit's id goes to."""
    landed: list[str] = []
    other = _add(hub, admin, "other.txt", b"from the other writer")
    prebuild = hub.repos._prebuild

    def then_another_commit(*args: Any) -> Any:
        built = prebuild(*args)
        if not landed:
            landed.append("")  # the other commit builds its own tree through here too
            landed[0] = hub.repos.commit(admin, repo, "main", [other], "meanwhile").commit.oid
        return built

    monkeypatch.setattr(hub.repos, "_prebuild", then_another_commit)
    return landed


def test_a_commit_whose_branch_moved_after_its_tree_was_built_keeps_the_other_commit(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = _admin(hub)
    repo = hub.repos.create_repo(admin, "model", "admin", "moving", private=False)
    mine = _add(hub, admin, "mine.txt", b"mine")
    landed = _land_a_commit_after_the_tree_is_built(hub, admin, repo, monkeypatch)

    result = hub.repos.commit(admin, repo, "main", [mine], "mine")

    assert result.commit.parent_oid == landed[0]
    assert sorted(hub.repos.files(result.commit)) == [".gitattributes", "mine.txt", "other.txt"]


def test_a_commit_with_the_old_parent_is_refused_when_the_branch_moved_after_its_tree_was_built(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = _admin(hub)
    repo = hub.repos.create_repo(admin, "model", "admin", "parent", private=False)
    parent = hub.repos.resolve(repo, "main").oid
    mine = _add(hub, admin, "mine.txt", b"mine")
    landed = _land_a_commit_after_the_tree_is_built(hub, admin, repo, monkeypatch)

    with pytest.raises(ParentCommitMismatch):
        hub.repos.commit(admin, repo, "main", [mine], "mine", parent_commit=parent)

    assert hub.repos.resolve(repo, "main").oid == landed[0]


def test_downloads_counted_before_a_clean_stop_are_saved(settings: Settings) -> None:
    hub = Hub.open(settings)
    admin = _admin(hub)
    repo = hub.repos.create_repo(admin, "model", "admin", "popular", private=False)
    for _ in range(5):
        hub.repos.count_download(repo)
    hub.close()

    reopened = Hub.open(settings)
    try:
        assert reopened.repos.get_repo(LOCAL_ADMIN, "model", "admin", "popular").downloads == 5
    finally:
        reopened.close()
