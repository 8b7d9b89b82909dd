"""The metadata read path, on each database: the repo and its revision read in one query give the answers (and
refusals, in the same order) that reading them one after the other gives; reads on PostgreSQL run in
autocommit, while write transactions stay whole; content-derived caches never keep a miss."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from tests.support import in_hub_background

from weightyard.auth import Action, Principal
from weightyard.content_cache import ContentCache
from weightyard.db import row_locked_transaction, tables, transaction
from weightyard.errors import RepoNotFound, RevisionNotFound, WeightyardError
from weightyard.hub import Hub
from weightyard.repos import AddFile, Commit, Repo


def _autocommit(conn: sa.Connection) -> bool:
    # psycopg's own flag: no BEGIN is sent before a statement, and no ROLLBACK after the block
    return bool(getattr(conn.connection.dbapi_connection, "autocommit", False))


def _admin(hub: Hub) -> Principal:
    return hub.accounts.authenticate(hub.admin_token())


def _commit(hub: Hub, admin: Principal, repo: Repo, branch: str, path: str, data: bytes) -> Commit:
    ingest = hub.repos.start_ingest()
    ingest.write(data)
    content = hub.repos.record_content(admin, ingest.finish())
    added = AddFile(path, content.sha256, content.size, content.lfs)
    return hub.repos.commit(admin, repo, branch, [added], f"add {path}").commit


def _two_step(
    hub: Hub, principal: Principal | None, namespace: str, name: str, revision: str, action: Action
) -> tuple[Repo, Commit] | str:
    try:
        repo = hub.repos.get_repo(principal, "model", namespace, name, action)
        return repo, hub.repos.resolve(repo, revision)
    except WeightyardError as exc:
        return type(exc).__name__


def _one_query(
    hub: Hub, principal: Principal | None, namespace: str, name: str, revision: str, action: Action
) -> tuple[Repo, Commit] | str:
    try:
        return hub.repos.get_repo_at(principal, "model", namespace, name, revision, action)
    except WeightyardError as exc:
        return type(exc).__name__


def test_the_repo_and_its_revision_in_one_query_answer_as_the_two_reads_do(hub: Hub) -> None:
    admin = _admin(hub)
    public = hub.repos.create_repo(admin, "model", "admin", "Public", private=False)
    first = _commit(hub, admin, public, "main", "a.txt", b"a")
    hub.repos.create_branch(admin, public, "dev", None)
    _commit(hub, admin, public, "dev", "b.txt", b"b")
    hub.repos.create_tag(admin, public, "v1", first.oid, None)
    # a tag named like a branch: the branch wins, on both paths
    hub.repos.create_tag(admin, public, "dev", first.oid, None)
    private = hub.repos.create_repo(admin, "model", "admin", "secret", private=True)
    _commit(hub, admin, private, "main", "s.txt", b"s")
    moved = hub.repos.create_repo(admin, "model", "admin", "old-name", private=False)
    hub.repos.move_repo(admin, "model", ("admin", "old-name"), ("admin", "new-name"))
    assert moved is not None

    revisions = ["main", "dev", "v1", "refs/heads/dev", "refs/tags/dev", first.oid, first.oid[:8], "nope"]
    revisions.append("0" * 40)
    cases = [
        (principal, namespace, name, revision, action)
        for principal in (admin, None)
        for namespace, name in (
            ("admin", "Public"),
            ("ADMIN", "public"),
            ("admin", "secret"),
            ("admin", "old-name"),
            ("admin", "missing"),
        )
        for revision in revisions
        for action in (Action.READ, Action.DOWNLOAD)
    ]
    for case in cases:
        assert _one_query(hub, *case) == _two_step(hub, *case), case

    # the cases cover what they are meant to
    answers = [_one_query(hub, *case) for case in cases]
    assert "RepoNotFound" in answers and "RevisionNotFound" in answers
    assert _one_query(hub, None, "admin", "secret", "nope", Action.READ) == RepoNotFound.__name__
    dev = _one_query(hub, None, "admin", "public", "dev", Action.READ)
    assert not isinstance(dev, str) and dev[1].title == "add b.txt"
    assert _one_query(hub, admin, "admin", "public", "nope", Action.READ) == RevisionNotFound.__name__


def test_the_repo_and_a_branch_are_one_statement(hub: Hub) -> None:
    admin = _admin(hub)
    repo = hub.repos.create_repo(admin, "model", "admin", "counted", private=False)
    _commit(hub, admin, repo, "main", "a.txt", b"a")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sa.event.listen(hub.engine, "before_cursor_execute", count)
    try:
        hub.repos.get_repo_at(None, "model", "admin", "counted", "main")
    finally:
        sa.event.remove(hub.engine, "before_cursor_execute", count)
    assert len(statements) == 1


def test_reads_run_in_autocommit_on_postgresql_and_writes_in_whole_transactions(hub: Hub) -> None:
    postgres = hub.engine.dialect.name == "postgresql"
    with hub.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        # SQLite: deferred transactions (a consistent snapshot, in process); PostgreSQL: no BEGIN, no ROLLBACK
        assert _autocommit(conn) is postgres

    def abandoned(writing: Any) -> None:
        with writing(hub.engine) as conn:
            assert not _autocommit(conn)
            conn.execute(sa.insert(tables.settings).values(key=f"half-{writing.__name__}", value="x"))
            raise RuntimeError("abandon the transaction")

    half = sa.select(tables.settings).where(tables.settings.c.key.like("half-%"))
    for writing in (transaction, row_locked_transaction):
        with pytest.raises(RuntimeError):
            abandoned(writing)
        with hub.engine.connect() as conn:
            # nothing of the abandoned transaction is visible, and its connection reads in autocommit again
            assert conn.execute(half).all() == []
            assert _autocommit(conn) is postgres


def test_a_card_read_before_it_is_stored_is_found_once_stored(hub: Hub) -> None:
    readme = b"---\nlicense: mit\n---\n# Late\n"
    ingest = hub.repos.start_ingest()
    ingest.write(readme)
    content = hub.repos.record_content(_admin(hub), ingest.finish())
    assert hub.cards.get(content.sha256) is None  # not stored yet: the miss is not kept
    hub.cards.prepare(content.sha256, content.size)
    card = hub.cards.get(content.sha256)
    assert card is not None and card.metadata == {"license": "mit"}
    # what a caller does to the card it got does not change what the next caller reads
    card.metadata["license"] = "changed"
    again = hub.cards.get(content.sha256)
    assert again is not None and again.metadata == {"license": "mit"}


def test_the_content_cache_keeps_to_its_bounds() -> None:
    cache: ContentCache[str, bytes] = ContentCache(max_items=3, max_weight=10, weigh=len)
    for key in "abc":
        cache.put(key, b"xx")
    assert cache.get("a") == b"xx"  # "a" is now the most recently used
    cache.put("d", b"xx")
    assert cache.get("b") is None and len(cache) == 3  # the least recently used went
    cache.put("e", b"xxxxxx")
    assert cache.weight <= 10 and cache.get("e") == b"xxxxxx"
    cache.put("huge", b"x" * 11)  # heavier than the whole cache: not kept, nothing else dropped for it
    assert cache.get("huge") is None and cache.get("e") == b"xxxxxx"


def test_the_metadata_requests_run_few_statements_and_take_a_connection_only_for_them(hub: Hub) -> None:
    from fastapi.testclient import TestClient

    from weightyard.api import create_app

    admin = _admin(hub)
    repo = hub.repos.create_repo(admin, "model", "admin", "mix", private=False)
    for path in ("README.md", "config.json", "sub/model.bin"):
        _commit(hub, admin, repo, "main", path, path.encode())
    requests = {
        ("GET", "/api/models/admin/mix"): 3,  # repo and branch, the gate's reports, signatures
        ("GET", "/api/models/admin/mix/tree/main"): 2,  # repo and branch, Xet hashes
        ("HEAD", "/admin/mix/resolve/main/config.json"): 2,  # repo and branch, the gate's report
    }
    queries: list[str] = []
    connections: list[object] = []

    def query(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and not in_hub_background():
            queries.append(statement)

    def connection(conn: object) -> None:
        if not in_hub_background():
            connections.append(conn)

    with TestClient(create_app(hub)) as client:
        for (method, path), most in requests.items():
            assert client.request(method, path).status_code == 200  # trees and caches are warm after it
            sa.event.listen(hub.engine, "before_cursor_execute", query)
            sa.event.listen(hub.engine, "engine_connect", connection)
            try:
                assert client.request(method, path).status_code == 200
            finally:
                sa.event.remove(hub.engine, "before_cursor_execute", query)
                sa.event.remove(hub.engine, "engine_connect", connection)
            assert len(queries) <= most, (path, queries)
            assert len(connections) == len(queries), path
            queries.clear()
            connections.clear()
