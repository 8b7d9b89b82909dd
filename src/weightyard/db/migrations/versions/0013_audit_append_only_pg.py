"""The audit log is append-only on PostgreSQL too: triggers refuse to update or delete its rows, as the ones
0002_accounts creates on SQLite do.

Revision ID: 0013_audit_append_only_pg
Revises: 0012_last_commit_index
"""

from alembic import op

revision = "0013_audit_append_only_pg"
down_revision = "0012_last_commit_index"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$"
    )
    for name, event in (("audit_log_no_update", "UPDATE"), ("audit_log_no_delete", "DELETE")):
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {event} ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER audit_log_no_delete ON audit_log")
    op.execute("DROP TRIGGER audit_log_no_update ON audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
