"""The hub: settings, database, blob store and the domain services, wired once per process."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from weightyard.auth import LOCAL_ADMIN, AccountService, AuditLog, RateLimiter
from weightyard.cards import CardService
from weightyard.config import ADMIN_USER, Settings
from weightyard.db import create_engine, migrate, tables, transaction
from weightyard.repos import AccessRequests, LfsService, RepoService
from weightyard.repos.facts import FactsService
from weightyard.repos.provenance import KeyRegistry, ProvenanceService, hub_signing_key
from weightyard.repos.xet import XetService
from weightyard.storage import XetBlobStore, open_blob_store

ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name


@dataclass
class Hub:
    settings: Settings
    engine: sa.Engine
    repos: RepoService
    accounts: AccountService
    access: AccessRequests
    audit: AuditLog
    lfs: LfsService
    keys: KeyRegistry
    provenance: ProvenanceService
    limiter: RateLimiter | None
    cards: CardService
    facts: FactsService
    xet: XetService | None = None

    @classmethod
    def open(cls, settings: Settings) -> Hub:
        """Open (and on first use, initialise) the hub described by `settings`.

        Example:
            >>> hub = Hub.open(Settings(data=Path("/tmp/weightyard-doc")))  # doctest: +SKIP
        """
        settings.data.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.database_url_or_default())
        migrate(engine)
        xorbs = settings.data.resolve() / "xorbs" if settings.xet else None
        store = open_blob_store(settings.blob_url_or_default(), engine if settings.xet else None, xorbs)
        store.sweep_temporary()
        repos = RepoService(engine, store, settings)
        secret = _url_secret(engine)
        accounts = AccountService(engine, repos.delete_namespace_repos)
        lfs = LfsService(
            repos,
            accounts,
            store,
            secret,
            store.tmp_dir / "parts",
            settings.multipart_chunk_size,
            settings.upload_url_ttl,
            settings.max_file_size,
            settings.max_lfs_batch_objects,
        )
        accounts.ensure_admin_user()
        keys = KeyRegistry(engine)
        provenance = ProvenanceService(engine, repos, keys, hub_signing_key(engine))
        repos.after_commit.append(provenance.after_commit)
        cards = CardService(engine, store)
        repos.before_commit.append(cards.before_commit)
        facts = FactsService(engine, store, repos, cards)
        repos.before_commit.append(facts.before_commit)
        repos.after_commit.append(facts.after_commit)
        limiter = (
            RateLimiter(engine, settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
        )
        return cls(
            settings=settings,
            engine=engine,
            repos=repos,
            accounts=accounts,
            access=AccessRequests(engine),
            keys=keys,
            provenance=provenance,
            audit=AuditLog(engine),
            lfs=lfs,
            limiter=limiter,
            cards=cards,
            facts=facts,
            xet=XetService(repos, store, secret, engine, accounts, settings)
            if isinstance(store, XetBlobStore)
            else None,
        )

    def admin_token(self) -> str:
        """The bootstrap admin token, created with the `admin` user on first use and kept in the data folder
        (mode 0600) so `make run` can print it; other tokens are only ever shown once."""
        path = Path(self.settings.data) / ADMIN_TOKEN_FILE
        if path.is_file():
            return path.read_text().strip()
        secret = self.accounts.create_token(LOCAL_ADMIN, ADMIN_USER, "admin", scope="write")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
        return secret


def _url_secret(engine: sa.Engine) -> bytes:
    """The HMAC key of signed upload URLs, shared by every server process through the database."""
    with transaction(engine) as conn:
        value = conn.execute(
            sa.select(tables.settings.c.value).where(tables.settings.c.key == "url_secret")
        ).scalar()
        if value is None:
            value = secrets.token_hex(32)
            conn.execute(sa.insert(tables.settings).values(key="url_secret", value=value))
    return bytes.fromhex(str(value))
