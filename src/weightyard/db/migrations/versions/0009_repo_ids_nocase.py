"""Repo ids are unique whatever their case (a constraint, not a check before the insert), and a moved repo's
old id keeps answering (`repo_redirects`), as on the Hub.

Revision ID: 0009_repo_ids_nocase
Revises: 0008_upload_reservations
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_repo_ids_nocase"
down_revision = "0008_upload_reservations"


def upgrade() -> None:
    op.create_index(
        "ux_repos_type_id_nocase",
        "repos",
        ["type", sa.text("lower(namespace)"), sa.text("lower(name)")],
        unique=True,
    )
    op.create_table(
        "repo_redirects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("namespace", sa.String(96), nullable=False),
        sa.Column("name", sa.String(96), nullable=False),
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index(
        "ux_repo_redirects_type_id_nocase",
        "repo_redirects",
        ["type", sa.text("lower(namespace)"), sa.text("lower(name)")],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ux_repo_redirects_type_id_nocase", "repo_redirects")
    op.drop_table("repo_redirects")
    op.drop_index("ux_repos_type_id_nocase", "repos")
