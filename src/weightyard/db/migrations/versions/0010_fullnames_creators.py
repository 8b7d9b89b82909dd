"""Display names of users and organisations; the creator of each repo (for the contributor role).

Revision ID: 0010_fullnames_creators
Revises: 0009_repo_ids_nocase
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_fullnames_creators"
down_revision = "0009_repo_ids_nocase"


def upgrade() -> None:
    op.add_column("users", sa.Column("fullname", sa.String(200), nullable=True))
    op.add_column("orgs", sa.Column("fullname", sa.String(200), nullable=True))
    op.add_column("repos", sa.Column("created_by", sa.Integer, nullable=True))
