"""Xet storage (reserved: filled in by the Xet storage work).

Revision ID: 0003
Revises: 0002
"""

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    pass
