"""The content index of the one gate: which repo holds which sha256, and which token issued a signed grant.

`repo_contents` is filled at commit time for every file a commit adds (rows stay while any revision of the
repo may still name the content, i.e. until the repo is deleted); the backfill reads the trees of the
commits already stored. `lfs_uploads` remembers the hub token and the repo a multipart upload was granted
for, so its part URLs stop working as soon as the token or the user's rights go.

Revision ID: 0006_gate_content_index
Revises: 0006_cards
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0006_gate_content_index"
down_revision = "0006_cards"


def upgrade() -> None:
    op.create_table(
        "repo_contents",
        sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True, index=True),
    )
    with op.batch_alter_table("lfs_uploads") as batch:
        batch.add_column(sa.Column("token_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("repo_id", sa.Integer, nullable=True))
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    bodies = {
        str(oid): str(body) for oid, body in conn.execute(sa.text("SELECT oid, body FROM tree_objects"))
    }
    shas_of: dict[str, set[str]] = {}

    def shas(oid: str) -> set[str]:
        # Tree bodies are JSON lists of [name, "d", oid] or [name, "f", sha256, size, lfs, git_oid].
        if oid not in shas_of:
            found: set[str] = set()
            shas_of[oid] = found
            for item in json.loads(bodies.get(oid, "[]")):
                if item[1] == "d":
                    found |= shas(item[2])
                else:
                    found.add(item[2])
        return shas_of[oid]

    rows: set[tuple[int, str]] = set()
    for repo_id, tree_oid in conn.execute(sa.text("SELECT repo_id, tree_oid FROM commits")):
        rows |= {(repo_id, sha) for sha in shas(tree_oid)}
    if rows:
        conn.execute(
            sa.text("INSERT INTO repo_contents (repo_id, sha256) VALUES (:repo_id, :sha256)"),
            [{"repo_id": repo_id, "sha256": sha} for repo_id, sha in sorted(rows)],
        )


def downgrade() -> None:
    with op.batch_alter_table("lfs_uploads") as batch:
        batch.drop_column("repo_id")
        batch.drop_column("token_id")
    op.drop_table("repo_contents")
