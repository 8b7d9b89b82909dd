"""Scan reports per blob (by sha256, the part of the name that matters, and scanner version); per-repo policy.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "scan_reports",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("name_key", sa.String(64), primary_key=True),
        sa.Column("scanner_version", sa.String(64), primary_key=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    with op.batch_alter_table("repos") as batch:
        batch.add_column(sa.Column("scan_policy", sa.String(16), nullable=True))
