"""Scan jobs: the scans still to run, kept in the database so that every server process can take one
(repos/scan_jobs.py). A job is done when its report is stored, and then deleted.

Revision ID: 0015_scan_jobs
Revises: 0014_listing_search
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_scan_jobs"
down_revision = "0014_listing_search"


def upgrade() -> None:
    op.create_table(
        "scan_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name_key", sa.String(64), nullable=False),
        sa.Column("scanner_version", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("sha256", "name_key", "scanner_version", name="uq_scan_jobs_content"),
    )
    op.create_index("ix_scan_jobs_claim", "scan_jobs", ["scanner_version", "state", "id"])


def downgrade() -> None:
    op.drop_index("ix_scan_jobs_claim", "scan_jobs")
    op.drop_table("scan_jobs")
