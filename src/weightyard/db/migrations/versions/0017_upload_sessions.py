"""Upload sessions: a staged multipart upload opened by size alone, whose sha256 the client names only when
it completes the upload (`POST /api/{type}/{ns}/{name}/uploads`). Such an upload is an `lfs_uploads` row with
no sha256 until then.

Revision ID: 0017_upload_sessions
Revises: 0016_hub_attestation_once
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_upload_sessions"
down_revision = "0016_hub_attestation_once"


def upgrade() -> None:
    with op.batch_alter_table("lfs_uploads") as batch:
        batch.alter_column("sha256", existing_type=sa.String(64), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM lfs_uploads WHERE sha256 IS NULL")
    with op.batch_alter_table("lfs_uploads") as batch:
        batch.alter_column("sha256", existing_type=sa.String(64), nullable=False)
