"""Uploads counted against a repo's quota before their bytes are accepted.

Each LFS object a batch request lets a client upload, and each xorb stored for a repo's Xet token, is noted
here with its size, so `WEIGHTYARD_MAX_REPO_SIZE` counts uploads that no commit names yet.

Revision ID: 0008_upload_reservations
Revises: 0007_gate_token_ids
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_upload_reservations"
down_revision = "0007_gate_token_ids"


def upgrade() -> None:
    op.create_table(
        "upload_reservations",
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("upload_reservations")
