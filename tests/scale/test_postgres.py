"""A hub on PostgreSQL: the migrations build the same schema as on SQLite, a real `weightyard serve` on a
PostgreSQL database serves the stock client, and the database alone keeps repo ids unique whatever their case.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
from tests.postgres import SUPERUSER, TEMPLATE, PostgresCluster
from tests.support import Server, start_server, stop_server, weightyard_cli

import weightyard.db
from weightyard.db import create_engine, migrate, schema_state, tables, transaction, utcnow

_INDEXES = {
    "sqlite": "SELECT tbl_name, name, sql LIKE 'CREATE UNIQUE%' FROM sqlite_master "
    "WHERE type = 'index' AND sql IS NOT NULL",
    "postgresql": "SELECT tablename, indexname, indexdef LIKE 'CREATE UNIQUE%' FROM pg_indexes "
    "WHERE schemaname = 'public' AND indexname NOT IN (SELECT conname FROM pg_constraint)",
}
_TRIGGERS = {
    "sqlite": "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'",
    "postgresql": "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal",
}


def _schema(url: str) -> dict[str, Any]:
    """Each table's columns, primary key, unique constraints (by columns: SQLite leaves them unnamed),
    indexes ((name, unique) pairs, less those PostgreSQL creates behind a unique constraint), triggers."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            # From the catalogs: SQLAlchemy's reflection skips expression indexes (the lower-cased repo ids).
            indexes = list(conn.execute(sa.text(_INDEXES[engine.dialect.name])))
            triggers = list(conn.execute(sa.text(_TRIGGERS[engine.dialect.name])))
        inspector = sa.inspect(engine)
        return {
            table: {
                "columns": sorted(column["name"] for column in inspector.get_columns(table)),
                "indexes": sorted((name, unique) for owner, name, unique in indexes if owner == table),
                "unique": sorted(
                    sorted(constraint["column_names"])
                    for constraint in inspector.get_unique_constraints(table)
                ),
                "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
                "triggers": sorted(name for owner, name in triggers if owner == table),
            }
            for table in inspector.get_table_names()
        }
    finally:
        engine.dispose()


# Reflecting unique constraints on PostgreSQL passes over the expression indexes, which `_INDEXES` covers.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migrated_schema_on_postgresql_matches_sqlite(postgres_url: str, tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'weightyard.db'}"
    engine = create_engine(sqlite_url)
    migrate(engine)
    engine.dispose()

    on_sqlite, on_postgres = _schema(sqlite_url), _schema(postgres_url)

    assert "ux_repos_type_id_nocase" in dict(on_postgres["repos"]["indexes"])
    # The substring search index is each database's own (migration 0014_listing_search): an FTS5 table and
    # the triggers that keep it in step on SQLite, GIN trigram indexes on PostgreSQL.
    assert sorted(table for table in on_sqlite if table.startswith("repo_search")) == [
        "repo_search",
        *(f"repo_search_{shadow}" for shadow in ("config", "content", "data", "docsize", "idx")),
    ]
    assert on_sqlite["repos"]["triggers"] == ["repo_search_delete", "repo_search_insert", "repo_search_move"]
    assert on_sqlite["repo_tags"]["triggers"] == ["repo_search_tag_delete", "repo_search_tag_insert"]
    assert ("ix_repos_full_id_trgm", False) in on_postgres["repos"]["indexes"]
    assert ("ix_repo_tags_tag_trgm", False) in on_postgres["repo_tags"]["indexes"]
    on_sqlite = {table: facts for table, facts in on_sqlite.items() if not table.startswith("repo_search")}
    for table in ("repos", "repo_tags"):
        on_sqlite[table]["triggers"] = []
        on_postgres[table]["indexes"] = [
            index for index in on_postgres[table]["indexes"] if "_trgm" not in index[0]
        ]
    assert on_postgres["audit_log"]["triggers"] == ["audit_log_no_delete", "audit_log_no_update"]
    assert sorted(on_postgres) == sorted(on_sqlite)
    for table in on_sqlite:
        assert on_postgres[table] == on_sqlite[table], table


def test_every_revision_id_fits_the_alembic_version_column() -> None:
    # Alembic's version table holds VARCHAR(32): SQLite ignores the length, PostgreSQL refuses a longer id.
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(Path(weightyard.db.__file__).parent / "migrations"))
    revisions = [script.revision for script in scripts.walk_revisions()]

    assert len(revisions) > 10
    assert [revision for revision in revisions if len(revision) > 32] == []


def test_db_upgrade_migrates_an_empty_postgresql_database(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres_cluster.create_database("weightyard_empty")
    env = {"WEIGHTYARD_DATABASE_URL": url}

    refused = weightyard_cli("serve", "--data", str(tmp_path / "data"), "--port", "9", env=env, timeout=60)
    upgraded = weightyard_cli("db", "upgrade", "--data", str(tmp_path / "data"), env=env, timeout=120)

    assert refused.returncode == 3
    assert "weightyard db upgrade" in refused.stdout + refused.stderr
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    engine = create_engine(url)
    try:
        assert schema_state(engine).up_to_date
    finally:
        engine.dispose()


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log"])
def test_postgresql_refuses_to_rewrite_the_audit_log(postgres_url: str, statement: str) -> None:
    engine = create_engine(postgres_url)
    try:
        with transaction(engine) as conn:
            conn.execute(
                sa.insert(tables.audit_log).values(
                    at=utcnow(), actor="admin", action="repo.create", repo="admin/x", details="{}"
                )
            )
            before = conn.execute(sa.select(tables.audit_log)).all()
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), transaction(engine) as conn:
            conn.exec_driver_sql(statement)
        with engine.connect() as conn:
            assert conn.execute(sa.select(tables.audit_log)).all() == before
    finally:
        engine.dispose()


@pytest.mark.parametrize("idle_enough", [True, False])
def test_a_pooled_connection_dropped_while_idle_is_replaced_when_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, idle_enough: bool
) -> None:
    # Every connection counts as idle long enough to be pinged, or none does.
    monkeypatch.setattr(weightyard.db, "_PING_AFTER_IDLE_S", 0.0 if idle_enough else 1e9)
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        admin = create_engine(postgres_url)
        with admin.connect() as conn:  # waits (up to 10 s) until the backend has gone
            assert conn.execute(sa.text(f"SELECT pg_terminate_backend({int(pid)}, 10000)")).scalar_one()
        admin.dispose()

        def use() -> int:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())

        if idle_enough:
            assert use() != pid, "a new connection replaced the dropped one"
        else:
            with pytest.raises(sa.exc.OperationalError):
                use()
    finally:
        engine.dispose()


def test_write_transactions_on_postgresql_run_one_at_a_time(postgres_url: str) -> None:
    # The read-decide-write transactions (create the URL secret if missing, ...) rely on this, as on SQLite.
    engine = create_engine(postgres_url)
    seen: list[str | None] = []

    def read_then_write() -> None:
        with transaction(engine) as conn:
            query = sa.select(tables.settings.c.value).where(tables.settings.c.key == "k")
            seen.append(conn.execute(query).scalar())

    try:
        with transaction(engine) as first:
            second = threading.Thread(target=read_then_write)
            second.start()
            with engine.connect() as observer:
                waiting = 0
                for _ in range(300):  # bounded: the second transaction queues up within moments
                    waiting = observer.exec_driver_sql(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    ).scalar_one()
                    if waiting:
                        break
                    time.sleep(0.1)
            assert waiting == 1
            first.execute(sa.insert(tables.settings).values(key="k", value="first"))
        second.join(timeout=60)

        assert seen == ["first"]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg_server(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(
        tmp_path_factory.mktemp("pg-hub") / "data", env={"WEIGHTYARD_DATABASE_URL": postgres_url}
    )
    yield instance
    stop_server(instance)


@pytest.mark.client
def test_stock_client_round_trip_on_postgresql(pg_server: Server, tmp_path: Path) -> None:
    api = HfApi(endpoint=pg_server.url, token=pg_server.token)
    repo = api.create_repo("admin/pg-round-trip").repo_id
    api.upload_file(path_or_fileobj=b"weights on postgres\n", path_in_repo="notes.txt", repo_id=repo)

    path = hf_hub_download(
        repo, "notes.txt", endpoint=pg_server.url, token=pg_server.token, cache_dir=tmp_path
    )

    assert Path(path).read_bytes() == b"weights on postgres\n"
    assert sorted(api.list_repo_files(repo)) == [".gitattributes", "notes.txt"]


def _at_once(actions: list[Callable[[], object]]) -> list[int]:
    """Run each action on its own thread, released together; each one's HTTP status (200 when it returned)."""
    barrier = threading.Barrier(len(actions))
    statuses = [0] * len(actions)

    def run(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            actions[index]()
            statuses[index] = 200
        except HfHubHTTPError as exc:
            statuses[index] = exc.response.status_code

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_case_variants_created_concurrently_give_one_repo(pg_server: Server) -> None:
    api = HfApi(endpoint=pg_server.url, token=pg_server.token)
    for round_ in range(5):
        names = [f"admin/Race-{round_}", f"admin/race-{round_}"]

        statuses = _at_once([partial(api.create_repo, name) for name in names])

        assert sorted(statuses) == [200, 409], statuses
        stored = [model.id for model in api.list_models(author="admin") if model.id.lower() == names[1]]
        assert len(stored) == 1, stored


def test_concurrent_commits_on_one_parent_on_postgresql_one_wins(pg_server: Server) -> None:
    api = HfApi(endpoint=pg_server.url, token=pg_server.token)
    repo = api.create_repo("admin/pg-one-parent").repo_id
    parent = api.model_info(repo).sha
    commits = [
        partial(
            api.create_commit,
            repo,
            operations=[CommitOperationAdd(f"f{index}.txt", str(index).encode())],
            commit_message=f"commit {index}",
            parent_commit=parent,
        )
        for index in range(4)
    ]

    statuses = _at_once(commits)

    assert sorted(statuses) == [200, 412, 412, 412]
    assert len(api.list_repo_files(repo)) == 2, "the .gitattributes and the one winner's file"


def test_concurrent_commits_without_parent_on_postgresql_all_apply(pg_server: Server) -> None:
    api = HfApi(endpoint=pg_server.url, token=pg_server.token)
    repo = api.create_repo("admin/pg-no-parent").repo_id
    uploads = [
        partial(api.upload_file, path_or_fileobj=str(i).encode(), path_in_repo=f"f{i}.txt", repo_id=repo)
        for i in range(6)
    ]

    statuses = _at_once(uploads)

    assert statuses == [200] * 6
    assert sorted(api.list_repo_files(repo)) == [".gitattributes"] + [f"f{i}.txt" for i in range(6)]
    assert len(api.list_repo_commits(repo)) == 7


def _serving_role_sql(role: str) -> list[str]:
    """The statements docs/scale.md gives for the workers' role, with `role` for its name."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "scale.md").read_text()
    block = text.split("<!-- serving-role:", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]
    return [line.replace("weightyard_serve", role) for line in block.splitlines() if line.strip()]


@pytest.mark.client
def test_the_documented_serving_role_runs_the_hub_and_cannot_rewrite_the_audit_log(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    role = f"wy_serve_{uuid.uuid4().hex[:8]}"
    owner_url = postgres_cluster.create_database(f"served_{uuid.uuid4().hex[:8]}", template=TEMPLATE)
    owner = sa.create_engine(owner_url)
    try:
        with owner.begin() as conn:
            for statement in _serving_role_sql(role):
                conn.exec_driver_sql(statement)
    finally:
        owner.dispose()
    serving_url = owner_url.replace(f"://{SUPERUSER}@", f"://{role}@", 1)
    hub = start_server(tmp_path / "data", env={"WEIGHTYARD_DATABASE_URL": serving_url})
    try:
        api = HfApi(endpoint=hub.url, token=hub.token)
        repo = api.create_repo("admin/served-by-a-role").repo_id
        api.upload_file(path_or_fileobj=b"written by the serving role\n", path_in_repo="a.txt", repo_id=repo)
        assert sorted(api.list_repo_files(repo)) == [".gitattributes", "a.txt"]
    finally:
        stop_server(hub)
    serving = sa.create_engine(serving_url)
    try:
        with serving.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar() > 0
        for statement in ("UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), serving.begin() as conn:
                conn.exec_driver_sql(statement)
    finally:
        serving.dispose()
