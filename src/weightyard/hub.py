"""The hub: settings, database, blob store and the domain services, wired once per process."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from weightyard.auth import LOCAL_ADMIN, AccountService, AuditLog, RateLimiter, Signer
from weightyard.cards import CardService
from weightyard.config import ADMIN_USER, Settings
from weightyard.db import create_engine, stored_setting
from weightyard.maintenance.startup import (
    check_data_folder,
    check_database,
    folder_lock,
    upgrade_schema,
    uses_default_database,
)
from weightyard.repos import AccessRequests, LfsService, RepoService, delete_namespace_repos
from weightyard.repos.content import ContentStore, open_content_store
from weightyard.repos.facts import FactsService
from weightyard.repos.listing import Cursors
from weightyard.repos.provenance import KeyRegistry, ProvenanceService, hub_signing_key
from weightyard.repos.xet import XetService

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
    # All stored content, for maintenance (gc, fsck, backup); the services reach content through it.
    store: ContentStore
    # the listing pages' cursors, signed with the key every server process shares
    cursors: Cursors
    xet: XetService | None = None

    @classmethod
    def open(cls, settings: Settings, create: bool = True) -> Hub:
        """Open the hub described by `settings`, after the start-up checks (`StartupError` says what is
        wrong); with `create`, a missing data folder is created and initialised.

        Example:
            >>> hub = Hub.open(Settings(data=Path("/tmp/weightyard-doc")))  # doctest: +SKIP
        """
        check_data_folder(settings, create)
        with folder_lock(settings):
            return cls._assemble(settings, _open_database(settings))

    @classmethod
    def _assemble(cls, settings: Settings, engine: sa.Engine) -> Hub:
        xorbs = settings.data.resolve() / "xorbs"
        store = open_content_store(settings.blob_url_or_default(), engine, xorbs, xet=settings.xet)
        store.sweep_scratch()
        repos = RepoService(engine, store, settings)
        # The one signer of what the hub hands out and takes back unrecorded (URLs, tokens, cursors).
        signer = Signer(_url_secret(engine))
        accounts = AccountService(engine, delete_namespace_repos)
        lfs = LfsService(
            repos,
            accounts,
            store,
            signer,
            settings.multipart_chunk_size,
            settings.upload_url_ttl,
            settings.max_file_size,
            settings.max_lfs_batch_objects,
            presigned_parts=settings.blob_redirect == "presigned",
        )
        accounts.ensure_admin_user()
        keys = KeyRegistry(engine)
        provenance = ProvenanceService(engine, repos, keys, hub_signing_key(engine))
        repos.in_commit.append(provenance.in_commit)
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
            store=store,
            cursors=Cursors(signer),
            xet=XetService(repos, store, signer, engine, accounts, settings) if settings.xet else None,
        )

    def admin_token(self) -> str:
        """The bootstrap admin token, created with the `admin` user on first use and kept in the data folder
        (mode 0600) so `make run` can print it; other tokens are only ever shown once."""
        path = Path(self.settings.data) / ADMIN_TOKEN_FILE
        with folder_lock(self.settings):
            if path.is_file():
                return path.read_text().strip()
            secret = self._new_admin_token()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secret + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        return secret

    def _new_admin_token(self) -> str:
        # A token named "admin" whose file was deleted keeps working for whoever copied it; the new one
        # takes the next free name instead of failing the start.
        names = {token.name for token in self.accounts.list_tokens(LOCAL_ADMIN, ADMIN_USER)}
        name = next(n for n in ("admin", *(f"admin-{i}" for i in range(2, len(names) + 3))) if n not in names)
        return self.accounts.create_token(LOCAL_ADMIN, ADMIN_USER, name, scope="write")

    def close(self) -> None:
        """Save the downloads counted since the last flush and release the database; on SQLite, first fold
        the write-ahead log into the database file, so that after a clean stop the file alone holds everything
        (and a plain file copy is a full copy)."""
        self.repos.downloads.flush()
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self.engine.dispose()


@dataclass
class Administration:
    """What the administration commands (`weightyard user|org|token|audit|key …`) work on: the accounts, the
    audit log and the publishers' keys in the configured database. No blob store is opened, and with
    `WEIGHTYARD_DATABASE_URL` no data folder is needed: an operator runs them from any machine that has the
    hub's settings.
    """

    engine: sa.Engine
    accounts: AccountService
    audit: AuditLog
    keys: KeyRegistry

    @classmethod
    def open(cls, settings: Settings) -> Administration:
        """The configured database after the start-up checks (`StartupError` says what is wrong); an embedded
        hub's data folder must exist, as for `Hub.open(settings, create=False)`."""
        if uses_default_database(settings):
            check_data_folder(settings, create=False)
            with folder_lock(settings):
                engine = _open_database(settings)
        else:
            engine = _open_database(settings)
        accounts = AccountService(engine, delete_namespace_repos)
        accounts.ensure_admin_user()
        return cls(engine=engine, accounts=accounts, audit=AuditLog(engine), keys=KeyRegistry(engine))

    def close(self) -> None:
        self.engine.dispose()


def _open_database(settings: Settings) -> sa.Engine:
    """The configured database, checked, its schema current: SQLite upgrades itself (under the folder lock
    when it is the data folder's); another database must have been upgraded with `weightyard db upgrade`."""
    url = settings.database_url_or_default()
    engine = create_engine(url)
    where = sa.make_url(url).render_as_string(hide_password=True)
    try:
        check_database(engine, where)
        upgrade_schema(engine, where, automatic=engine.dialect.name == "sqlite")
    except BaseException:
        engine.dispose()
        raise
    return engine


def _url_secret(engine: sa.Engine) -> bytes:
    """The HMAC key of signed upload URLs, shared by every server process through the database."""
    return bytes.fromhex(stored_setting(engine, "url_secret", lambda: secrets.token_hex(32)))
