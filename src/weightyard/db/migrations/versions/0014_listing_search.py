"""Listing pages and searches that cost O(page), not O(repos): an index per sort key, and a substring index
over repo ids and tags (FTS5 trigram on SQLite, pg_trgm GIN on PostgreSQL).

The Hub's `search` matches any part of a repo id (`bert` finds `distilbert/…`), so the index is one of
trigrams, which answers substring queries, rather than of words. On SQLite the `repo_search` table is kept in
step by triggers on `repos` and `repo_tags`, so every write that changes a repo id or its tags (creation,
move, commit to `main`, deletion) updates it in the same transaction; on PostgreSQL the GIN indexes are over
the columns themselves.

Revision ID: 0014_listing_search
Revises: 0013_audit_append_only_pg
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_listing_search"
down_revision = "0013_audit_append_only_pg"

_SORTS = ("updated_at", "created_at", "downloads", "likes")

# `body` holds the repo id and then each tag, one per line: a search word holds no whitespace, so a match
# never spans two of them.
_SQLITE = (
    "CREATE VIRTUAL TABLE repo_search USING fts5(name, body, tokenize='trigram')",
    """INSERT INTO repo_search(rowid, name, body)
    SELECT r.id, r.namespace || '/' || r.name, r.namespace || '/' || r.name
        || coalesce(char(10) || (SELECT group_concat(tag, char(10)) FROM repo_tags WHERE repo_id = r.id), '')
    FROM repos AS r""",
    """CREATE TRIGGER repo_search_insert AFTER INSERT ON repos BEGIN
        INSERT INTO repo_search(rowid, name, body)
        VALUES (new.id, new.namespace || '/' || new.name, new.namespace || '/' || new.name);
    END""",
    """CREATE TRIGGER repo_search_move AFTER UPDATE OF namespace, name ON repos BEGIN
        UPDATE repo_search SET name = new.namespace || '/' || new.name,
            body = new.namespace || '/' || new.name || coalesce(
                char(10) || (SELECT group_concat(tag, char(10)) FROM repo_tags WHERE repo_id = new.id), '')
        WHERE rowid = new.id;
    END""",
    """CREATE TRIGGER repo_search_delete AFTER DELETE ON repos BEGIN
        DELETE FROM repo_search WHERE rowid = old.id;
    END""",
    """CREATE TRIGGER repo_search_tag_insert AFTER INSERT ON repo_tags BEGIN
        UPDATE repo_search SET body = name || char(10)
            || (SELECT group_concat(tag, char(10)) FROM repo_tags WHERE repo_id = new.repo_id)
        WHERE rowid = new.repo_id;
    END""",
    """CREATE TRIGGER repo_search_tag_delete AFTER DELETE ON repo_tags BEGIN
        UPDATE repo_search SET body = name || coalesce(
            char(10) || (SELECT group_concat(tag, char(10)) FROM repo_tags WHERE repo_id = old.repo_id), '')
        WHERE rowid = old.repo_id;
    END""",
)

_POSTGRESQL = (
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_repos_full_id_trgm ON repos USING gin (lower(namespace || '/' || name) gin_trgm_ops)",
    "CREATE INDEX ix_repo_tags_tag_trgm ON repo_tags USING gin (lower(tag) gin_trgm_ops)",
)


def upgrade() -> None:
    for column in _SORTS:
        op.create_index(f"ix_repos_type_{column}", "repos", ["type", column, "id"])
    op.create_index("ix_repos_type_full_id", "repos", ["type", sa.text("(namespace || '/' || name)")])
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": _SQLITE, "postgresql": _POSTGRESQL}.get(dialect, ()):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("insert", "move", "delete", "tag_insert", "tag_delete"):
            op.execute(f"DROP TRIGGER repo_search_{name}")
        op.execute("DROP TABLE repo_search")
    elif dialect == "postgresql":
        op.execute("DROP INDEX ix_repo_tags_tag_trgm")
        op.execute("DROP INDEX ix_repos_full_id_trgm")
    op.drop_index("ix_repos_type_full_id", "repos")
    for column in _SORTS:
        op.drop_index(f"ix_repos_type_{column}", "repos")
