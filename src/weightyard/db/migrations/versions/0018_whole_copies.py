"""Whole copies of Xet-stored content for plain-HTTP downloads: the `whole_copies` rows that tell a copy from
an uploaded whole blob, and the `copy_jobs` queue that writes them (repos/copies.py).

Revision ID: 0018_whole_copies
Revises: 0017_upload_sessions
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_whole_copies"
down_revision = "0017_upload_sessions"


def upgrade() -> None:
    op.create_table(
        "whole_copies",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_served_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_whole_copies_served", "whole_copies", ["last_served_at"])
    op.create_table(
        "copy_jobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_copy_jobs_claim", "copy_jobs", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_copy_jobs_claim", "copy_jobs")
    op.drop_table("copy_jobs")
    op.drop_index("ix_whole_copies_served", "whole_copies")
    op.drop_table("whole_copies")
