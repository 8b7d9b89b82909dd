"""Concurrent creations, on SQLite and on PostgreSQL: a constraint decides which writer wins, the others get
the error that names the conflict (never an integrity error, which the API would answer with a 500), and
creations that may repeat (a bootstrap secret, an access request) give every writer the first one's value."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from weightyard.auth import LOCAL_ADMIN, Principal
from weightyard.db import create_engine, insert_ignore, stored_setting, tables, transaction, utcnow
from weightyard.errors import NamespaceInUse, RefExists, RepoExists
from weightyard.hub import Hub
from weightyard.repos import AddFile, Repo

WRITERS = 6


def _at_once(action: Callable[[int], Any]) -> list[Any]:
    """Run `action(i)` for each writer on its own thread, released together; each one's result or error."""
    barrier = threading.Barrier(WRITERS)
    outcomes: list[Any] = [None] * WRITERS

    def run(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            outcomes[index] = action(index)
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def _unique_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def test_insert_ignore_counts_the_rows_it_inserted(hub: Hub) -> None:
    key = _unique_name("k")
    with transaction(hub.engine) as conn:
        first = insert_ignore(
            conn, tables.settings, [{"key": key, "value": "1"}, {"key": key + "b", "value": "2"}]
        )
        again = insert_ignore(
            conn, tables.settings, [{"key": key, "value": "3"}, {"key": key + "c", "value": "4"}]
        )
        stored = conn.execute(sa.select(tables.settings.c.value).where(tables.settings.c.key == key)).scalar()

    assert (first, again, stored) == (2, 1, "1")


def test_insert_ignore_counts_exactly_over_several_pages_of_rows(hub: Hub) -> None:
    # More rows than one multi-row INSERT carries, so the count is summed over pages, new and known mixed.
    prefix = _unique_name("p")
    rows = [{"key": f"{prefix}-{index}", "value": str(index)} for index in range(2500)]
    with transaction(hub.engine) as conn:
        first = insert_ignore(conn, tables.settings, rows[:1500])
        again = insert_ignore(conn, tables.settings, rows[700:])
        known = insert_ignore(conn, tables.settings, rows[100:2400])

    assert (first, again, known) == (1500, 1000, 0)


def test_a_setting_made_by_several_writers_at_once_keeps_the_first_value(hub: Hub) -> None:
    key = _unique_name("secret-")
    engine = create_engine(str(hub.engine.url.render_as_string(hide_password=False)))
    try:
        values = _at_once(lambda _: stored_setting(engine, key, lambda: secrets.token_hex(16)))
    finally:
        engine.dispose()

    assert len(set(values)) == 1 and isinstance(values[0], str)
    with hub.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.settings.c.value).where(tables.settings.c.key == key)).all()
    assert [row.value for row in rows] == values[:1]


def test_users_created_at_once_under_one_name_in_any_case_give_one_user(hub: Hub) -> None:
    name = _unique_name("racer")
    variants = [name, name.upper(), name.capitalize()]

    outcomes = _at_once(lambda i: hub.accounts.create_user(LOCAL_ADMIN, variants[i % len(variants)]))

    assert outcomes.count(None) == 1, outcomes
    assert all(isinstance(outcome, NamespaceInUse) for outcome in outcomes if outcome is not None)
    assert [u.name for u in hub.accounts.list_users(LOCAL_ADMIN) if u.name.lower() == name] != []


def test_tokens_created_at_once_under_one_name_give_one_token(hub: Hub) -> None:
    outcomes = _at_once(lambda _: hub.accounts.create_token(LOCAL_ADMIN, "admin", "twin", scope="read"))

    secrets_ = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert len(secrets_) == 1, outcomes
    assert all(isinstance(outcome, RefExists) for outcome in outcomes if not isinstance(outcome, str))
    assert [token.name for token in hub.accounts.list_tokens(LOCAL_ADMIN, "admin")].count("twin") == 1


def _admin(hub: Hub) -> Principal:
    return hub.accounts.authenticate(hub.admin_token())


def test_repos_created_at_once_under_one_id_in_any_case_give_one_repo(hub: Hub) -> None:
    admin = _admin(hub)
    name = _unique_name("Model-")
    variants = [name, name.lower(), name.upper()]

    outcomes = _at_once(lambda i: hub.repos.create_repo(admin, "model", "admin", variants[i % 3], False))

    assert sum(isinstance(outcome, Repo) for outcome in outcomes) == 1, outcomes
    assert all(isinstance(outcome, RepoExists) for outcome in outcomes if not isinstance(outcome, Repo))
    assert [r.name for r in hub.repos.list_repos(admin, "model", search=name.lower())] != []


def test_pull_requests_opened_at_once_get_distinct_numbers(hub: Hub) -> None:
    admin = _admin(hub)
    repo = hub.repos.create_repo(admin, "model", "admin", _unique_name("prs"), private=False)

    def open_pull_request(index: int) -> int | None:
        ingest = hub.repos.start_ingest()
        ingest.write(b"proposal %d" % index)
        content = hub.repos.record_content(admin, ingest.finish())
        add = AddFile(f"p{index}.txt", content.sha256, content.size, content.lfs)
        return hub.repos.commit(admin, repo, "main", [add], f"proposal {index}", create_pr=True).pull_request

    numbers = _at_once(open_pull_request)

    assert sorted(numbers) == list(range(1, WRITERS + 1)), numbers
    assert sorted(ref.name for ref in hub.repos.refs(repo) if ref.name.startswith("refs/pr/")) == sorted(
        f"refs/pr/{n}" for n in numbers
    )


def test_branches_created_at_once_under_one_name_give_one_branch(hub: Hub) -> None:
    admin = _admin(hub)
    repo = hub.repos.create_repo(admin, "model", "admin", _unique_name("branches"), private=False)

    outcomes = _at_once(lambda _: hub.repos.create_branch(admin, repo, "dev", None))

    assert sum(not isinstance(outcome, Exception) for outcome in outcomes) == 1, outcomes
    assert all(isinstance(outcome, RefExists) for outcome in outcomes if isinstance(outcome, Exception))


def test_access_requested_at_once_is_one_request(hub: Hub) -> None:
    admin = _admin(hub)
    repo = hub.repos.create_repo(admin, "model", "admin", _unique_name("gated"), private=False)
    repo = hub.repos.update_settings(admin, repo, private=None, gated="manual")
    user = _unique_name("asker")
    hub.accounts.create_user(LOCAL_ADMIN, user)
    asker = hub.accounts.authenticate(hub.accounts.create_token(LOCAL_ADMIN, user, "t", scope="read"))

    statuses = _at_once(lambda _: hub.access.request(asker, repo))

    assert statuses == ["pending"] * WRITERS
    assert [request.user for request in hub.access.list(admin, repo, "pending")] == [user]
    with hub.engine.connect() as conn:
        logged = conn.execute(
            sa.select(sa.func.count())
            .select_from(tables.audit_log)
            .where(tables.audit_log.c.action == "access.request", tables.audit_log.c.repo == repo.repo_id)
        ).scalar_one()
    assert logged == 1


def test_signing_key_bootstrap_and_blob_grants_repeat_harmlessly(hub: Hub) -> None:
    admin = _admin(hub)
    ingest = hub.repos.start_ingest()
    ingest.write(b"granted once")
    blob = ingest.finish().blob

    _at_once(lambda _: hub.repos.record_blob(admin, blob))

    with hub.engine.connect() as conn:
        grants = conn.execute(
            sa.select(sa.func.count())
            .select_from(tables.blob_grants)
            .where(tables.blob_grants.c.sha256 == blob.sha256)
        ).scalar_one()
        created = conn.execute(
            sa.select(tables.blobs.c.created_at).where(tables.blobs.c.sha256 == blob.sha256)
        )
    assert grants == 1 and created.scalar_one() <= utcnow()


def test_a_commit_attested_by_several_repairs_at_once_is_attested_once(hub: Hub) -> None:
    admin = _admin(hub)
    repo = hub.repos.create_repo(admin, "model", "admin", _unique_name("attested"), private=False)
    head = hub.repos.resolve(repo, "main")
    signatures = tables.commit_signatures
    mine = (signatures.c.repo_id == repo.id, signatures.c.commit_oid == head.oid)
    with transaction(hub.engine) as conn:
        # Test set-up: the state an older version left when a crash fell between a commit and its attestation.
        conn.execute(sa.delete(signatures).where(*mine))

    repaired = _at_once(lambda _: hub.provenance.repair_attestations())

    assert sum(repaired) == 1, repaired
    with hub.engine.connect() as conn:
        kinds = conn.execute(sa.select(signatures.c.kind).where(*mine)).scalars().all()
    assert kinds == ["hub"]
