"""SQLAlchemy table definitions. The schema itself is created by the Alembic migrations beside this file."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(96), nullable=False, unique=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # display name, as `fullname` on the Hub (migration 0010_fullnames_creators)
    sa.Column("fullname", sa.String(200), nullable=True),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=True),
    sa.Column("revoked_at", sa.DateTime, nullable=True),
    # JSON list of repo ids and namespaces the token is limited to; NULL for a token valid on all the
    # user's repos.
    sa.Column("targets", sa.Text, nullable=True),
    sa.UniqueConstraint("user_id", "name"),
    # ids are never reused (migration 0007): grants issued on behalf of a token name its id
    sqlite_autoincrement=True,
)

repos = sa.Table(
    "repos",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("namespace", sa.String(96), nullable=False),
    sa.Column("name", sa.String(96), nullable=False),
    sa.Column("private", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("downloads", sa.Integer, nullable=False, default=0),
    # NULL, "auto" or "manual", as on the Hugging Face Hub
    sa.Column("gated", sa.String(16), nullable=True),
    # what happens to unsafe files; NULL follows the hub's setting
    sa.Column("scan_policy", sa.String(16), nullable=True),
    # the user who created the repo: an org's `contributor` may write to the repos they created
    sa.Column("created_by", sa.Integer, nullable=True),
    # Listing columns of the `main` head, kept in step by every commit to it (migration 0011_listing).
    sa.Column("likes", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("pipeline_tag", sa.String(64), nullable=True, index=True),
    sa.Column("library_name", sa.String(64), nullable=True, index=True),
    sa.Column("card_sha256", sa.String(64), nullable=True),
    sa.UniqueConstraint("type", "namespace", "name"),
)
# A listing page walks one of these in order and stops (migration 0014_listing_search).
for _column in ("updated_at", "created_at", "downloads", "likes"):
    sa.Index(f"ix_repos_type_{_column}", repos.c.type, repos.c[_column], repos.c.id)
# The repo id, spelled with a literal separator so that queries and the expression index below agree.
full_repo_id = repos.c.namespace + sa.literal_column("'/'", sa.String) + repos.c.name
sa.Index("ix_repos_type_full_id", repos.c.type, full_repo_id)
# Repo ids are unique whatever their case: `Alice/Model` and `alice/model` are one repo.
sa.Index(
    "ux_repos_type_id_nocase",
    repos.c.type,
    sa.func.lower(repos.c.namespace),
    sa.func.lower(repos.c.name),
    unique=True,
)

# The ids a repo had before it was moved (`/api/repos/move`): they keep answering, as on the Hub, until a
# new repo takes the name.
repo_redirects = sa.Table(
    "repo_redirects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("namespace", sa.String(96), nullable=False),
    sa.Column("name", sa.String(96), nullable=False),
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
sa.Index(
    "ux_repo_redirects_type_id_nocase",
    repo_redirects.c.type,
    sa.func.lower(repo_redirects.c.namespace),
    sa.func.lower(repo_redirects.c.name),
    unique=True,
)

blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    # git blob id of the content; known only for content small enough to be hashed in memory at ingest.
    sa.Column("git_sha1", sa.String(40), nullable=True),
    # when the content was last uploaded: `weightyard gc` removes unreferenced content only once this is older
    # than its `--uploads-older-than`, so an upload about to be committed is never collected.
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# Who has proven possession of a blob by uploading its bytes. A commit may only name content its author
# uploaded or can already read, so content-addressing never leaks a private file across repos.
blob_grants = sa.Table(
    "blob_grants",
    metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# The one gate's content index (migration 0006): every sha256 any commit of a repo has added. "May this
# principal receive this content?" is one indexed query over it, whether or not the content exists.
repo_contents = sa.Table(
    "repo_contents",
    metadata,
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True, index=True),
)

# Git-style tree objects, content-addressed and shared by every commit (and repo) that has the same folder.
tree_objects = sa.Table(
    "tree_objects",
    metadata,
    sa.Column("oid", sa.String(40), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)

commits = sa.Table(
    "commits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column("oid", sa.String(40), nullable=False),
    sa.Column("parent_oid", sa.String(40), nullable=True),
    sa.Column("tree_oid", sa.String(40), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("author", sa.String(96), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("repo_id", "oid"),
)

refs = sa.Table(
    "refs",
    metadata,
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("target_oid", sa.String(40), nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

lfs_uploads = sa.Table(
    "lfs_uploads",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # None for an upload session (`LfsService.open_session`) until the client completes it
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("part_size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # the hub token and repo the upload was granted for: its part URLs die with the token or the right
    sa.Column("token_id", sa.Integer, nullable=True),
    sa.Column("repo_id", sa.Integer, nullable=True),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

orgs = sa.Table(
    "orgs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(96), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("fullname", sa.String(200), nullable=True),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("org_id", sa.Integer, sa.ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

access_requests = sa.Table(
    "access_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("fields", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("repo_id", "user_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("actor", sa.String(96), nullable=True),
    sa.Column("token_name", sa.String(128), nullable=True),
    sa.Column("origin", sa.String(128), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("repo", sa.String(200), nullable=True),
    sa.Column("details", sa.Text, nullable=False),
)

# Xet storage (migration 0003). Hashes are in the Xet string form (`hash_to_string`).
# A stored xorb: its chunk table is the server's own parse (`pack_chunk_table`), the ground truth for shard
# verification, reconstruction and dedup answers. `last_used_at` moves whenever an upload names the xorb, so
# the garbage collector's grace period counts from the last time a client could have relied on it.
xet_xorbs = sa.Table(
    "xet_xorbs",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("wire_len", sa.BigInteger, nullable=False),
    sa.Column("raw_len", sa.BigInteger, nullable=False),
    sa.Column("n_chunks", sa.Integer, nullable=False),
    sa.Column("chunk_table", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_used_at", sa.DateTime, nullable=False),
)

# Where each stored chunk lies: the index server-side packing dedups against, and global-dedup queries use.
xet_chunks = sa.Table(
    "xet_chunks",
    metadata,
    sa.Column("chunk_hash", sa.String(64), primary_key=True),
    sa.Column("xorb_hash", sa.String(64), nullable=False, index=True),
    sa.Column("chunk_index", sa.Integer, nullable=False),
)

# Users who uploaded a xorb's bytes themselves: they may reference it before any commit makes it readable.
xet_xorb_grants = sa.Table(
    "xet_xorb_grants",
    metadata,
    sa.Column("xorb_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# A file whose sha256 the server has checked by reconstructing it; `terms` is `pack_terms` output.
xet_files = sa.Table(
    "xet_files",
    metadata,
    sa.Column("file_hash", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("terms", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

xet_file_xorbs = sa.Table(
    "xet_file_xorbs",
    metadata,
    sa.Column("file_hash", sa.String(64), primary_key=True),
    sa.Column("xorb_hash", sa.String(64), primary_key=True, index=True),
)

# One report per blob content, per name key (the part of a file name that changes a scan) and scanner version.
scan_reports = sa.Table(
    "scan_reports",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("name_key", sa.String(64), primary_key=True),
    sa.Column("scanner_version", sa.String(64), primary_key=True),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("format", sa.String(64), nullable=False),
    sa.Column("report", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# Scans still to run (migration 0015_scan_jobs, repos/scan_jobs.py): one job per content, name key and scanner
# version; `state` "queued", "running" (claimed by `claimed_by` until `lease_until`, renewed while it runs) or
# "failed" (`error`, JSON: what a commit naming the content is answered). Deleted once the report is stored.
scan_jobs = sa.Table(
    "scan_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("name_key", sa.String(64), nullable=False),
    sa.Column("scanner_version", sa.String(64), nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("lease_until", sa.DateTime, nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("sha256", "name_key", "scanner_version", name="uq_scan_jobs_content"),
    sa.Index("ix_scan_jobs_claim", "scanner_version", "state", "id"),
)

# Whole copies of content stored as xorbs, written for plain-HTTP downloads (repos/copies.py): the blob object
# under the same sha256 is a copy, evictable, exactly while this row exists; a whole blob without a row here
# came from an upload and is never evicted. `last_served_at` orders eviction (least recently served first).
whole_copies = sa.Table(
    "whole_copies",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_served_at", sa.DateTime, nullable=False),
    sa.Index("ix_whole_copies_served", "last_served_at"),
)

# Whole copies to write, one job per content, claimed by any server process under a lease.
copy_jobs = sa.Table(
    "copy_jobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("lease_until", sa.DateTime, nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_copy_jobs_claim", "state", "created_at"),
)

# Publishers' public keys (ECDSA, OMS); `fingerprint` is the key hint model_signing writes in a bundle.
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=False, unique=True),
    sa.Column("pem", sa.Text, nullable=False),
    sa.Column("curve", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime, nullable=True),
    sa.Column("revoke_reason", sa.Text, nullable=True),
)

# The outcome of each signature at a commit: publisher signatures verified at ingest, and the hub's own
# attestation (`kind` "hub", with its bundle).
commit_signatures = sa.Table(
    "commit_signatures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column("commit_oid", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("path", sa.String(1024), nullable=True),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("key_fingerprint", sa.String(128), nullable=True),
    sa.Column("signer", sa.String(96), nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("bundle", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
# A commit is attested by the hub once (migration 0016_hub_attestation_once).
sa.Index(
    "ux_commit_signatures_hub",
    commit_signatures.c.repo_id,
    commit_signatures.c.commit_oid,
    unique=True,
    sqlite_where=commit_signatures.c.kind == "hub",
    postgresql_where=commit_signatures.c.kind == "hub",
)

# Model cards (migration 0006_cards): each README content parsed and rendered once, when a commit adds it.
# `metadata` is the front matter as JSON (NULL when absent or unreadable, `metadata_error` says why); `html`
# is the sanitised rendering, or escaped text when `plain` (the card was over the rendering budget).
cards = sa.Table(
    "cards",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("renderer", sa.Integer, nullable=False),
    sa.Column("metadata", sa.Text, nullable=True),
    sa.Column("metadata_error", sa.Text, nullable=True),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("plain", sa.Boolean, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# Lower-cased names of deleted users: never given to a new user or organisation (namespace takeover).
retired_names = sa.Table(
    "retired_names",
    metadata,
    sa.Column("name_lower", sa.String(96), primary_key=True),
    sa.Column("name", sa.String(96), nullable=False),
    sa.Column("retired_at", sa.DateTime, nullable=False),
)

# Fixed-window request counters (one row per caller and minute), shared by every server process.
rate_limit_windows = sa.Table(
    "rate_limit_windows",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("ix_rate_limit_windows_window", "window"),
)

# Uploads counted against a repo's size limit before their bytes arrive: LFS objects a batch request let a
# client upload (`kind` "lfs", digest = sha256) and xorbs stored with the repo's Xet token ("xorb", hash).
upload_reservations = sa.Table(
    "upload_reservations",
    metadata,
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# What the hub derives from a file's content at commit time (migration 0011_listing), by sha256 and kind:
# "config" (the allowed subset of a config.json), "safetensors" (parameter counts by dtype from the
# header) and "tensors" (the file page's tensor summary, repos/tensors.py). `data` is JSON.
file_facts = sa.Table(
    "file_facts",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# The tags of each repo's `main` head (card tags, library, license, datasets, base models, formats), kept in
# step with the branch by every commit to it: `list_models(filter=…)` answers from this index.
repo_tags = sa.Table(
    "repo_tags",
    metadata,
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(200), primary_key=True, index=True),
)

# The substring index of repo ids and tags on SQLite (migration 0014_listing_search): an FTS5 table with the
# trigram tokenizer, rowid = repos.id, `name` the repo id, `body` the id and then each tag, one per line, kept
# in step by triggers on `repos` and `repo_tags`. A virtual table, so not part of `metadata`; on PostgreSQL
# GIN trigram indexes over `repos` and `repo_tags` serve the same queries.
repo_search = sa.table("repo_search", sa.column("rowid", sa.Integer), sa.column("name"), sa.column("body"))

# The last-commit index (repos/last_commits.py): content-addressed index trees, and each commit's root.
last_commit_trees = sa.Table(
    "last_commit_trees",
    metadata,
    sa.Column("oid", sa.String(40), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)

commit_last_commits = sa.Table(
    "commit_last_commits",
    metadata,
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("commit_oid", sa.String(40), primary_key=True),
    sa.Column("root", sa.String(40), nullable=False),
)
