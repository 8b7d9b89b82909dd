"""Names a deleted user leaves behind stay retired, and rate-limit counters shared by every server process.

`retired_names` keeps the lower-cased name of every deleted user, so no one can later sign up or create an
organisation under it and inherit what still points at it (links, signatures by that name, repos restored
from a backup). `rate_limit_windows` holds one counter per caller and minute, bumped with an atomic upsert.

Revision ID: 0007_retired_names_rate_limits
Revises: 0006_gate_content_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_retired_names_rate_limits"
down_revision = "0006_gate_content_index"


def upgrade() -> None:
    op.create_table(
        "retired_names",
        sa.Column("name_lower", sa.String(96), primary_key=True),
        sa.Column("name", sa.String(96), nullable=False),
        sa.Column("retired_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "rate_limit_windows",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("window", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index("ix_rate_limit_windows_window", "rate_limit_windows", ["window"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_windows_window", "rate_limit_windows")
    op.drop_table("rate_limit_windows")
    op.drop_table("retired_names")
