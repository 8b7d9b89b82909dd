"""Model cards: each README content parsed and rendered once, at commit time.

Revision ID: 0006_cards
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_cards"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "cards",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("renderer", sa.Integer, nullable=False),
        sa.Column("metadata", sa.Text, nullable=True),
        sa.Column("metadata_error", sa.Text, nullable=True),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("plain", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
