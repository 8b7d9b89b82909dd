"""Provenance on the hub: publishers' keys, signatures verified at ingest, and the hub's own attestation.

Every commit is attested by the hub: its manifest (each file's path and sha256, known since ingest, so no
blob is read again) is signed with the hub's key in the OpenSSF model-signing format, so a client can prove
the bytes it downloaded are those the hub recorded. Signature files pushed with a commit (`model.sig`, or any
`*.sig` at the root) are verified against the publishers' registered keys when the commit lands.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from weightyard.auth import Principal, audit, require_self_or_site_admin, user_id_of
from weightyard.db import insert_ignore, stored_setting, tables, transaction, utcnow
from weightyard.errors import BadRequest, NotFound, RefExists
from weightyard.provenance import (
    REVOKED_KEY,
    ProvenanceError,
    Reason,
    curve_name,
    generate_private_key,
    load_private_key,
    load_public_key,
    manifest_from_digests,
    public_key_fingerprint,
    public_key_pem,
    revoked_key_message,
    sign_manifest,
    verify_signature,
)
from weightyard.repos.objects import FileEntry
from weightyard.repos.service import Commit, Repo, RepoService, _commit_from_row, _repo_from_row

SIGNATURE_SUFFIX = ".sig"
_MAX_SIGNATURE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SigningKey:
    user: str
    fingerprint: str
    pem: str
    curve: str
    created_at: datetime.datetime
    revoked_at: datetime.datetime | None
    revoke_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "fingerprint": self.fingerprint,
            "curve": self.curve,
            "publicKey": self.pem,
            "createdAt": self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "revokedAt": self.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ") if self.revoked_at else None,
            "revokeReason": self.revoke_reason,
        }


def signature_paths(files: dict[str, FileEntry]) -> list[str]:
    return sorted(path for path in files if "/" not in path and path.endswith(SIGNATURE_SUFFIX))


class KeyRegistry:
    """Publishers' public keys: added by the user (or an admin), revoked with a reason and a time."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def add(self, actor: Principal | None, user: str, pem: bytes) -> SigningKey:
        require_self_or_site_admin(actor, user, "register signing keys")
        try:
            key = load_public_key(pem)
            curve = curve_name(key)
        except ProvenanceError as exc:
            raise BadRequest(str(exc)) from None
        fingerprint = public_key_fingerprint(key)
        canonical = public_key_pem(key).decode()
        with transaction(self._engine) as conn:
            user_id = user_id_of(conn, user)
            row: dict[str, object] = {
                "user_id": user_id,
                "fingerprint": fingerprint,
                "pem": canonical,
                "curve": curve,
                "created_at": utcnow(),
            }
            if not insert_ignore(conn, tables.signing_keys, [row]):  # the fingerprint is unique
                raise RefExists(f"the key {fingerprint} is already registered")
            audit.record(conn, actor, "key.add", user=user, fingerprint=fingerprint, curve=curve)
        return self.get(fingerprint)

    def revoke(self, actor: Principal | None, user: str, fingerprint: str, reason: str) -> SigningKey:
        require_self_or_site_admin(actor, user, "revoke signing keys")
        if not reason.strip():
            raise BadRequest("say why the key is revoked")
        with transaction(self._engine) as conn:
            updated = conn.execute(
                sa.update(tables.signing_keys)
                .where(
                    tables.signing_keys.c.fingerprint == fingerprint,
                    tables.signing_keys.c.revoked_at.is_(None),
                    tables.signing_keys.c.user_id
                    == sa.select(tables.users.c.id).where(tables.users.c.name == user).scalar_subquery(),
                )
                .values(revoked_at=utcnow(), revoke_reason=reason)
            )
            if updated.rowcount == 0:
                raise NotFound(f"{user!r} has no active key {fingerprint}")
            audit.record(conn, actor, "key.revoke", user=user, fingerprint=fingerprint, reason=reason)
        return self.get(fingerprint)

    def _query(self) -> sa.Select[Any]:
        return sa.select(tables.signing_keys, tables.users.c.name.label("user_name")).join(
            tables.users, tables.users.c.id == tables.signing_keys.c.user_id
        )

    @staticmethod
    def _key(row: sa.Row[Any]) -> SigningKey:
        return SigningKey(
            user=row.user_name,
            fingerprint=row.fingerprint,
            pem=row.pem,
            curve=row.curve,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
            revoke_reason=row.revoke_reason,
        )

    def get(self, fingerprint: str) -> SigningKey:
        with self._engine.connect() as conn:
            row = conn.execute(self._query().where(tables.signing_keys.c.fingerprint == fingerprint)).first()
        if row is None:
            raise NotFound(f"no key {fingerprint}")
        return self._key(row)

    def list_keys(self, user: str | None = None) -> list[SigningKey]:
        query = self._query().order_by(tables.signing_keys.c.id)
        if user is not None:
            query = query.where(tables.users.c.name == user)
        with self._engine.connect() as conn:
            return [self._key(row) for row in conn.execute(query)]


# model_info reads this on every call (built once: building a statement costs more than running it).
_SIGNATURES_OF = (
    sa.select(tables.commit_signatures)
    .where(
        tables.commit_signatures.c.repo_id == sa.bindparam("repo_id"),
        tables.commit_signatures.c.commit_oid == sa.bindparam("oid"),
    )
    .order_by(tables.commit_signatures.c.id)
)


class ProvenanceService:
    """Attests and verifies each new commit (wired as a RepoService after-commit hook)."""

    def __init__(self, engine: sa.Engine, repos: RepoService, keys: KeyRegistry, hub_key_pem: bytes) -> None:
        self._engine = engine
        self._repos = repos
        self._keys = keys
        self._hub_key = load_private_key(hub_key_pem)
        self.hub_public_key = public_key_pem(self._hub_key)

    def in_commit(self, conn: sa.Connection, repo: Repo, commit: Commit, files: dict[str, FileEntry]) -> None:
        """Attest and verify a commit inside its own transaction (a `RepoService.in_commit` hook): the commit
        and its attestation land together or not at all."""
        self.attest(conn, repo, commit, files)

    def attest(self, conn: sa.Connection, repo: Repo, commit: Commit, files: dict[str, FileEntry]) -> bool:
        """Record the hub's attestation and the publisher signatures' verdicts of a commit, unless they are
        there already; True when they were recorded now."""
        common = {"repo_id": repo.id, "commit_oid": commit.oid, "created_at": utcnow()}
        # One hub attestation per commit (a unique index): the same commit id again (identical content, same
        # second) or a repair racing another process finds it attested already, and records nothing.
        attestation = {**self._attest(repo, commit, files), **common}
        if not insert_ignore(conn, tables.commit_signatures, [attestation]):
            return False
        rows = [{**self._verify(repo, files, path), **common} for path in signature_paths(files)]
        if rows:
            conn.execute(sa.insert(tables.commit_signatures), rows)
        return True

    def unattested(self) -> list[tuple[Repo, Commit]]:
        """Commits without the hub's attestation: left by versions that attested after the commit's
        transaction, when a crash fell in between."""
        signatures = tables.commit_signatures
        hub_rows = (
            sa.select(signatures.c.repo_id, signatures.c.commit_oid)
            .where(signatures.c.kind == "hub")
            .subquery()
        )
        query = (
            sa.select(tables.commits)
            .outerjoin(
                hub_rows,
                sa.and_(
                    hub_rows.c.repo_id == tables.commits.c.repo_id,
                    hub_rows.c.commit_oid == tables.commits.c.oid,
                ),
            )
            .where(hub_rows.c.commit_oid.is_(None))
            .order_by(tables.commits.c.id)
        )
        with self._engine.connect() as conn:
            commits = conn.execute(query).all()
            repo_ids = {row.repo_id for row in commits}
            repos = {
                row.id: _repo_from_row(row)
                for row in conn.execute(sa.select(tables.repos).where(tables.repos.c.id.in_(repo_ids)))
            }
        return [(repos[row.repo_id], _commit_from_row(row)) for row in commits if row.repo_id in repos]

    def repair_attestations(self) -> int:
        """Attest every commit that lacks the hub's attestation; returns how many were repaired.

        Run at start-up and by `weightyard fsck --repair`. Each commit is attested in its own transaction
        that checks again, so several processes starting at once attest a commit once.
        """
        repaired = 0
        for repo, commit in self.unattested():
            files = self._repos.files(commit)
            with transaction(self._engine) as conn:
                repaired += self.attest(conn, repo, commit, files)
        return repaired

    def _attest(self, repo: Repo, commit: Commit, files: dict[str, FileEntry]) -> dict[str, Any]:
        digests = {path: entry.sha256 for path, entry in files.items()}
        manifest = manifest_from_digests(digests, model_name=repo.repo_id, ignore=signature_paths(files))
        bundle = sign_manifest(manifest, self._hub_key)
        return {
            "kind": "hub",
            "path": None,
            "verdict": "valid",
            "reason": "valid",
            "message": f"attested by this hub at commit {commit.oid}",
            "key_fingerprint": public_key_fingerprint(self._hub_key),
            "signer": None,
            "details": json.dumps({"files": sorted(manifest.files)}),
            "bundle": bundle.decode(),
        }

    def _verify(self, repo: Repo, files: dict[str, FileEntry], path: str) -> dict[str, Any]:
        entry = files[path]
        if entry.size > _MAX_SIGNATURE_BYTES:
            return _row(path, "invalid", Reason.MALFORMED_BUNDLE.value, "the signature file is too large")
        bundle = b"".join(self._repos.read(entry, 0, entry.size, _MAX_SIGNATURE_BYTES))
        digests = {p: e.sha256 for p, e in files.items()}
        registered = {key.fingerprint: key for key in self._keys.list_keys()}
        keys = [key.pem.encode() for key in registered.values()]
        result = verify_signature(bundle, digests, keys, signature_name=path) if keys else None
        if result is None:
            return _row(path, "invalid", Reason.UNKNOWN_KEY.value, "no signing key is registered on this hub")
        signer_key = registered.get(result.key_fingerprint or "")
        details = {
            "files": list(result.files),
            "unsignedFiles": sorted(
                set(result.unsigned_files) | (set(files) - set(result.files) - set(signature_paths(files)))
            ),
            "problems": [
                {"reason": p.reason.value, "message": p.message, "path": p.path} for p in result.problems
            ],
            "modelName": result.model_name,
        }
        verdict, reason, message = result.verdict.value, result.reason.value, result.message
        if result.valid and result.model_name not in (repo.repo_id, repo.name):
            verdict, reason = "invalid", Reason.MODEL_NAME_MISMATCH.value
            message = f"signed for model {result.model_name!r}, not {repo.repo_id!r} (a replayed signature?)"
        if result.valid and signer_key is not None and signer_key.revoked_at is not None:
            verdict, reason = "invalid", REVOKED_KEY
            message = revoked_key_message(
                signer_key.fingerprint, signer_key.to_dict()["revokedAt"], signer_key.revoke_reason
            )
        return _row(
            path,
            verdict,
            reason,
            message,
            key_fingerprint=result.key_fingerprint,
            signer=signer_key.user if signer_key else None,
            details=details,
        )

    def status(self, repo: Repo, commit: Commit) -> dict[str, Any]:
        """The provenance of a commit: the hub's attestation and every publisher signature, judged with the
        current state of their keys: a signature whose key is revoked now is invalid (`revoked_key`), however
        long before the revocation it arrived."""
        with self._engine.connect() as conn:
            rows = conn.execute(_SIGNATURES_OF, {"repo_id": repo.id, "oid": commit.oid}).all()
        # Keys are looked up only for commits that carry publisher signatures (model_info asks every time).
        keys = (
            {key.fingerprint: key for key in self._keys.list_keys()}
            if any(r.kind != "hub" for r in rows)
            else {}
        )
        hub: dict[str, Any] | None = None
        publishers = []
        for row in rows:
            details = json.loads(row.details)
            if row.kind == "hub":
                hub = {"keyFingerprint": row.key_fingerprint, "files": details["files"], "bundle": row.bundle}
                continue
            item = {
                "path": row.path,
                "verdict": row.verdict,
                "reason": row.reason,
                "message": row.message,
                "signer": row.signer,
                "keyFingerprint": row.key_fingerprint,
                **details,
            }
            key = keys.get(row.key_fingerprint or "")
            if key is not None:
                item["publicKey"] = key.pem
                if key.revoked_at is not None:
                    revoked_at = key.to_dict()["revokedAt"]
                    item["keyRevoked"] = {"at": revoked_at, "reason": key.revoke_reason}
                    if row.verdict == "valid":
                        item["verdict"], item["reason"] = "invalid", REVOKED_KEY
                        item["message"] = revoked_key_message(key.fingerprint, revoked_at, key.revoke_reason)
            publishers.append(item)
        if not publishers:
            overall = "unsigned"
        elif all(item["verdict"] == "valid" for item in publishers):
            overall = "signed"
        else:
            overall = "invalid"
        return {"commit": commit.oid, "status": overall, "hub": hub, "signatures": publishers}


def _row(
    path: str,
    verdict: str,
    reason: str,
    message: str,
    key_fingerprint: str | None = None,
    signer: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": "publisher",
        "path": path,
        "verdict": verdict,
        "reason": reason,
        "message": message,
        "key_fingerprint": key_fingerprint,
        "signer": signer,
        "details": json.dumps(details or {"files": [], "unsignedFiles": [], "problems": []}),
        "bundle": None,
    }


def hub_signing_key(engine: sa.Engine) -> bytes:
    """The hub's private signing key (P-256), created on first use and shared by every server process through
    the database."""
    return stored_setting(engine, "hub_signing_key", lambda: generate_private_key().decode()).encode()
