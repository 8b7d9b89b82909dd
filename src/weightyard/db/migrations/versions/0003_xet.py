"""Xet storage: xorbs and their chunk tables, the chunk index, Xet files and who may use which xorb.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "xet_xorbs",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("wire_len", sa.BigInteger, nullable=False),
        sa.Column("raw_len", sa.BigInteger, nullable=False),
        sa.Column("n_chunks", sa.Integer, nullable=False),
        sa.Column("chunk_table", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_used_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "xet_chunks",
        sa.Column("chunk_hash", sa.String(64), primary_key=True),
        sa.Column("xorb_hash", sa.String(64), nullable=False, index=True),
        sa.Column("chunk_index", sa.Integer, nullable=False),
    )
    op.create_table(
        "xet_xorb_grants",
        sa.Column("xorb_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "xet_files",
        sa.Column("file_hash", sa.String(64), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("terms", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "xet_file_xorbs",
        sa.Column("file_hash", sa.String(64), primary_key=True),
        sa.Column("xorb_hash", sa.String(64), primary_key=True, index=True),
    )
