"""The last commit of every path at every commit, kept at commit time (see repos/last_commits.py).

Commits made before this revision are not indexed: their paths are listed without a last commit until a
later commit changes them.

Revision ID: 0012_last_commit_index
Revises: 0011_listing
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_last_commit_index"
down_revision = "0011_listing"


def upgrade() -> None:
    op.create_table(
        "last_commit_trees",
        sa.Column("oid", sa.String(40), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "commit_last_commits",
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("commit_oid", sa.String(40), primary_key=True),
        sa.Column("root", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("commit_last_commits")
    op.drop_table("last_commit_trees")
