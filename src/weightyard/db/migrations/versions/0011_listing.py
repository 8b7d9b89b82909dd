"""Facts derived from files at commit time, and the listing index of each repo's main head.

Revision ID: 0011_listing
Revises: 0010_fullnames_creators
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_listing"
down_revision = "0010_fullnames_creators"


def upgrade() -> None:
    op.create_table(
        "file_facts",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "repo_tags",
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(200), primary_key=True),
    )
    op.create_index("ix_repo_tags_tag", "repo_tags", ["tag"])
    op.add_column("repos", sa.Column("likes", sa.Integer, nullable=False, server_default="0"))
    op.add_column("repos", sa.Column("pipeline_tag", sa.String(64), nullable=True))
    op.add_column("repos", sa.Column("library_name", sa.String(64), nullable=True))
    op.add_column("repos", sa.Column("card_sha256", sa.String(64), nullable=True))
    op.create_index("ix_repos_pipeline_tag", "repos", ["pipeline_tag"])
    op.create_index("ix_repos_library_name", "repos", ["library_name"])
