"""One hub attestation per commit: a partial unique index on commit_signatures (repo_id, commit_oid) where
kind is 'hub', so the attestation is stored with an idempotent insert and the index, not a look first, decides
that a commit is attested once. Duplicates are not expected (attestations were written under the write lock);
any there are go first, keeping the oldest.

Revision ID: 0016_hub_attestation_once
Revises: 0015_scan_jobs
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_hub_attestation_once"
down_revision = "0015_scan_jobs"

_HUB = sa.text("kind = 'hub'")


def upgrade() -> None:
    op.execute(
        "DELETE FROM commit_signatures WHERE kind = 'hub' AND id NOT IN "
        "(SELECT MIN(id) FROM commit_signatures WHERE kind = 'hub' GROUP BY repo_id, commit_oid)"
    )
    op.create_index(
        "ux_commit_signatures_hub",
        "commit_signatures",
        ["repo_id", "commit_oid"],
        unique=True,
        sqlite_where=_HUB,
        postgresql_where=_HUB,
    )


def downgrade() -> None:
    op.drop_index("ux_commit_signatures_hub", "commit_signatures")
