"""Token ids are never reused: grants issued on behalf of a token (Xet tokens, signed URLs) name its id, and
SQLite would otherwise hand the id of a deleted user's last token to the next token created.

Nothing references `tokens.id`, so rebuilding the table with AUTOINCREMENT cascades nowhere.

Revision ID: 0007_gate_token_ids
Revises: 0007_retired_names_rate_limits
"""

from alembic import op

revision = "0007_gate_token_ids"
down_revision = "0007_retired_names_rate_limits"


def upgrade() -> None:
    with op.batch_alter_table("tokens", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass


def downgrade() -> None:
    with op.batch_alter_table("tokens", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
        pass
