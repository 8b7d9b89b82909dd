"""The Xet CAS as a domain service: scoped tokens, xorb and shard uploads, dedup, reconstruction, gc, stats.

Every safety rule of docs/xet.md lives here, behind plain method calls: xorbs are validated by recomputation
while they stream in; a shard may only reference xorbs its uploader may read, and each file's claimed sha256
is checked by rebuilding the file before anything can name it; dedup answers and reconstructions are scoped
to what the token's user may read. The routes in `api/xet.py` only translate HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from weightyard.auth import AccountService, Action, Principal, Signer
from weightyard.config import Settings
from weightyard.db import tables, utcnow
from weightyard.errors import (
    Forbidden,
    InvalidCredentials,
    InvalidSignature,
    NotFound,
    StoredContentDamaged,
    Unauthorized,
)
from weightyard.repos.content import ContentStore, XetFile
from weightyard.repos.quota import XORB, ByteBudget, RepoQuota
from weightyard.repos.service import (
    PRESIGNED_URL_TTL,
    Commit,
    Repo,
    RepoService,
    _commit_from_row,
    _repo_from_row,
)
from weightyard.repos.xet_arrivals import ArrivalHashes
from weightyard.storage import BlobInfo, ScratchFile, unfinished, wait_all
from weightyard.xet import (
    FetchRange,
    Shard,
    ShardOverBudget,
    ShardVerificationError,
    ShardWork,
    XorbInfo,
    XorbParser,
    dedup_shard,
    hash_to_string,
    parse_range_header,
    parse_shard,
    plan_reconstruction,
    string_to_hash,
    verify_shard,
)
from weightyard.xet.xorb import CHUNK_HEADER_LEN, decode_chunk_payload
from weightyard.zero_copy import SegmentStream

_log = logging.getLogger("weightyard.storage")

TOKEN_TTL = 3600
FETCH_URL_TTL = 3600
# A fetch streams in pieces of this many bytes. The Xet client fetches many ranges at once, so larger pieces
# raise the server's peak memory (mapped pages count) faster than they lower the per-piece costs.
_FETCH_PIECE = 4 * 1024 * 1024
# Dedup answers stay usable this long in the client's cache; gc must not delete a xorb they name before then.
DEDUP_SHARD_TTL = 7 * 24 * 3600
# Bounds of one dedup answer: files looked at, and chunks described (48 bytes each in the shard, ~3 MiB).
DEDUP_ANSWER_FILES = 16
DEDUP_ANSWER_CHUNKS = 1 << 16
# The client trusts its own upload shards for 21 days without asking the server, and a dedup answer for 7:
# a xorb unused for longer than both together can no longer be named by any upload.
GC_GRACE = datetime.timedelta(days=28)
# Hashing one chunk reference into a file's Merkle tree costs about as much as rebuilding and hashing 8 KiB.
CHUNK_REF_COST = 8 * 1024
# A xorb being received is flushed to disk every this many bytes, in the background (the answer waits for the
# last fsync only).
XORB_SYNC_STEP = 16 * 1024 * 1024
READ, WRITE = "read", "write"


@dataclass(frozen=True)
class XetToken:
    """What a Xet access token grants: `scope` on one repo (read tokens: at one commit), until `expires`."""

    principal: Principal | None
    repo_type: str
    namespace: str
    name: str
    revision: str
    scope: str
    expires: int


@dataclass(frozen=True)
class XorbBytes:
    """Serialized bytes `[start, end)` of a stored xorb of `size` bytes, ready to stream."""

    start: int
    end: int
    size: int
    pieces: Iterator[memoryview]
    # A presigned URL of the xorb object to redirect the client to instead (WEIGHTYARD_BLOB_REDIRECT).
    location: str | None = None
    # The same bytes as a file range for the server to send itself (asked for with `segments=True`); then
    # `pieces` is empty.
    segments: SegmentStream | None = None


@dataclass(frozen=True)
class FetchGrant:
    """What a signed fetch URL grants: byte `spans` of `xorb`, for the reconstruction of `file`, on behalf of
    the hub token `issuer` (0: anonymous), until `expires`."""

    xorb: str
    spans: str
    expires: int
    file: str
    issuer: int

    def query(self, signature: str) -> str:
        return f"r={self.spans}&exp={self.expires}&f={self.file}&t={self.issuer}&sig={signature}"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires: int
    cas_url: str


@dataclass(frozen=True)
class GcReport:
    xorbs: int
    bytes_freed: int
    files: int
    dry_run: bool


@dataclass(frozen=True)
class RepoStats:
    repo_id: str
    repo_type: str
    logical_bytes: int
    stored_bytes: int


@dataclass(frozen=True)
class HubStats:
    logical_bytes: int
    stored_bytes: int
    xorb_bytes: int
    blob_bytes: int
    # Whole copies of content kept as xorbs (repos/copies.py): evictable, so neither stored nor blob bytes.
    copy_bytes: int
    repos: tuple[RepoStats, ...]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class XorbUpload:
    """One xorb body arriving: validated chunk by chunk while it is written to a temporary file, each byte
    counted against the repo's quota (`budget`) before it is kept."""

    def __init__(
        self,
        store: ContentStore,
        xorb_hash: bytes,
        repo: Repo,
        quota: RepoQuota,
        budget: ByteBudget | None,
        arrivals: ArrivalHashes,
        user_id: int,
    ) -> None:
        self._store = store
        self._arrivals = arrivals
        self._user_id = user_id
        self._hash = xorb_hash
        self._repo = repo
        self._quota = quota
        self._budget = budget
        self._size = 0
        self._synced = 0
        # Disk writes (and the latest background flush) still under way: the batches are checked and hashed
        # while the disk takes the ones before them.
        self._in_flight: list[Future[None]] = []
        self._syncing: Future[None] | None = None
        # Hashed for the shard's sha256 as it arrives, once next in its uploader's sequence (xet_arrivals)
        self._sha256 = arrivals.began(user_id, xorb_hash)
        self._parser = XorbParser(on_chunk=self._hash_chunk)
        self._scratch: ScratchFile = store.scratch()

    def _hash_chunk(self, data: bytes | memoryview) -> None:
        if self._sha256 is not None:
            self._sha256(data)

    def feed(self, data: bytes | memoryview) -> Future[None]:
        """Check, hash and write the next batch of the body. The disk takes it while it is parsed and hashed
        here, and may still be writing it when this returns: the caller keeps `data` as it is until the
        returned future is done (whose `result` raises what the write raised); `finish` and `abort` wait for
        every write."""
        if self._budget is not None:
            self._budget.take(len(data))
        if self._sha256 is None:
            self._claim_sha256()
        self._size += len(data)
        written = self._scratch.begin_write(data)
        try:
            # Raises what an earlier write raised; this one is waited for below, should anything raise.
            self._in_flight = [*unfinished(self._in_flight), written]
            self._parser.feed(data)
            flushing = self._syncing is not None and not self._syncing.done()
            if self._size - self._synced >= XORB_SYNC_STEP and not flushing:
                # Written back while the rest arrives, so the fsync before the answer waits only for the tail;
                # one flush at a time, beside the writes and the hashing.
                if self._syncing is not None:
                    self._syncing.result()
                self._syncing = self._scratch.begin_sync()
                self._synced = self._size
        except BaseException:
            with contextlib.suppress(BaseException):
                written.result()  # the buffer is the caller's again once this raises
            raise
        return written

    def _written(self) -> None:
        """Wait for every write and flush begun; raises the first that failed."""
        pending = [*self._in_flight, *([self._syncing] if self._syncing is not None else [])]
        self._in_flight, self._syncing = [], None
        wait_all(pending)

    def _claim_sha256(self) -> None:
        """Once every xorb before this one is hashed (it began while one was not), take the running hash over:
        the chunks that arrived so far are read back from the scratch file, the rest hashed as they come."""
        update = self._arrivals.claim(self._user_id, self._hash)
        if update is None:
            return
        self._written()  # the bytes read back must be on the disk
        chunks = self._parser.chunks
        payloads = ((c.start + CHUNK_HEADER_LEN, c.end - c.start - CHUNK_HEADER_LEN) for c in chunks)
        for chunk, payload in zip(chunks, self._scratch.read_back(payloads), strict=True):
            update(decode_chunk_payload(chunk.scheme, payload, chunk.length))
        self._sha256 = update

    def finish(self, token: XetToken) -> bool:
        self._written()
        info = self._parser.finish(self._hash)
        user = token.principal.user_id if token.principal is not None else None
        # Counted (atomically, against uploads that raced this one) before the xorb becomes usable.
        self._quota.reserve(
            self._repo.id, self._repo.repo_id, XORB, [(hash_to_string(self._hash), self._size)]
        )
        new = self._store.add_xorb(self._scratch, info, user)
        self._arrivals.stored(self._user_id, self._hash, info)
        return new

    def abort(self) -> None:
        with contextlib.suppress(BaseException):
            self._written()  # no write or flush may still use the file removed here
        self._scratch.discard()
        self._arrivals.failed(self._user_id, self._hash)


class XetService:
    def __init__(
        self,
        repos: RepoService,
        store: ContentStore,
        signer: Signer,
        engine: sa.Engine,
        accounts: AccountService,
        settings: Settings,
    ) -> None:
        self._repos = repos
        self._redirect = settings.blob_redirect == "presigned"
        self._verify_allowance = settings.xet_verify_allowance
        self._verify_ratio = settings.xet_verify_ratio
        self._gate = repos.gate
        self._accounts = accounts
        self._store = store
        self._signer = signer
        self._engine = engine
        self._arrivals = ArrivalHashes(store)

    @property
    def store(self) -> ContentStore:
        return self._store

    # ------------------------------------------------------------------ tokens

    def issue_token(
        self, principal: Principal | None, repo: Repo, scope: str, revision: str, cas_url: str
    ) -> IssuedToken:
        """A token for `scope` on `repo`; the caller checked that `principal` may write or download there."""
        if principal is not None and principal.token_id is None:
            raise Unauthorized("Xet tokens are issued to requests made with a hub token")
        if scope == WRITE and principal is None:
            raise Unauthorized("uploading needs a token")
        expires = int(time.time()) + TOKEN_TTL
        # The token names the hub token it was issued for, never a copy of the user's rights: every CAS call
        # looks the principal up again, so revocation, member removal and user deletion apply at once.
        payload = {
            "p": principal.token_id if principal is not None else None,
            "r": [repo.type, repo.namespace, repo.name],
            "v": revision,
            "s": scope,
            "e": expires,
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        signature = self._signer.sign("xet-token", body)
        return IssuedToken(f"{body}.{signature}", expires, cas_url)

    def authenticate(self, authorization: str | None) -> XetToken:
        """The grant behind `Authorization: Bearer <xet token>`; `InvalidCredentials` if forged or expired."""
        scheme, _, value = (authorization or "").partition(" ")
        body, _, signature = value.strip().partition(".")
        if scheme.lower() != "bearer" or not body or not signature:
            raise Unauthorized("the CAS needs a Xet access token")
        if not self._signer.verify(signature, "xet-token", body):
            raise InvalidCredentials("invalid Xet access token")
        payload = json.loads(_unb64(body))
        if int(payload["e"]) < time.time():
            raise InvalidCredentials("the Xet access token has expired")
        repo_type, namespace, name = payload["r"]
        return XetToken(
            self._live_principal(payload["p"]),
            repo_type,
            namespace,
            name,
            payload["v"],
            payload["s"],
            payload["e"],
        )

    def _live_principal(self, token_id: int | None) -> Principal | None:
        return None if token_id is None else self._accounts.principal_for_token(int(token_id), origin="xet")

    def _repo(self, token: XetToken, action: Action) -> Repo:
        """The token's repo, after checking its user still may perform `action` there (rights may change)."""
        return self._repos.get_repo(token.principal, token.repo_type, token.namespace, token.name, action)

    def _writer(self, token: XetToken) -> Principal:
        if token.scope != WRITE or token.principal is None:
            raise Forbidden("this Xet token has read scope; uploads need a write token")
        self._repo(token, Action.WRITE)
        return token.principal

    # ------------------------------------------------------------------ visibility

    def may_read_xorb(self, principal: Principal | None, xorb_hash: bytes) -> bool:
        """Whether `principal` uploaded this xorb or may receive some file made from it (the one gate).

        Dedup answers and shard references go through this, so a chunk stored only where the principal may
        not download stays invisible to it.
        """
        return self._gate.may_receive_xorb(principal, hash_to_string(xorb_hash))

    def _scoped_lookup(self, principal: Principal | None) -> Any:
        checked: dict[bytes, bool] = {}

        def lookup(xorb_hash: bytes) -> XorbInfo | None:
            if xorb_hash not in checked:
                checked[xorb_hash] = self.may_read_xorb(principal, xorb_hash)
            return self._store.xorb_info(xorb_hash) if checked[xorb_hash] else None

        return lookup

    # ------------------------------------------------------------------ uploads

    def begin_xorb(self, token: XetToken, xorb_hash: bytes) -> XorbUpload:
        principal = self._writer(token)
        repo = self._repo(token, Action.WRITE)
        quota = self._repos.quota
        budget = quota.budget(repo.id, repo.repo_id)
        return XorbUpload(self._store, xorb_hash, repo, quota, budget, self._arrivals, principal.user_id)

    def register_shard(self, token: XetToken, body: bytes) -> int:
        """Verify an uploaded shard against stored xorbs and record its files; returns how many were new to
        the uploader (content it could not receive before): whether someone else stored one is never said."""
        principal = self._writer(token)
        shard = parse_shard(body)

        def afford(work: ShardWork) -> None:
            self._afford(principal, shard, work)

        verify_shard(shard, self._scoped_lookup(principal), afford=afford)
        known = {entry.file_hash: self._store.file(entry.file_hash) for entry in shard.files}
        first_new = next((entry for entry in shard.files if known[entry.file_hash] is None), None)
        # A single file's upload was hashed while its xorbs arrived (xet_arrivals.py); this ends the sequence.
        early = self._arrivals.take(principal.user_id, first_new.terms if first_new is not None else ())
        checked: list[tuple[Any, str]] = []
        for entry in shard.files:
            assert entry.sha256 is not None, "verify_shard requires the sha256"
            claimed = entry.sha256.hex()
            file = known[entry.file_hash]
            if file is not None:
                actual = file.sha256
            elif entry is first_new and early is not None:
                actual = early
            else:
                actual = self._store.sha256_of(entry.terms)
            if actual != claimed:
                raise ShardVerificationError(
                    f"file {hash_to_string(entry.file_hash)} has sha256 {actual}, not the claimed {claimed}"
                )
            checked.append((entry, claimed))
        new = sum(not self._gate.may_receive(principal, sha256) for _, sha256 in checked)
        referenced = {t.xorb_hash for entry in shard.files for t in entry.terms} | {
            x.hash for x in shard.xorbs
        }
        with self._store.connect() as conn:
            present = set(
                conn.execute(
                    sa.select(tables.xet_xorbs.c.hash).where(
                        tables.xet_xorbs.c.hash.in_([hash_to_string(x) for x in referenced])
                    )
                ).scalars()
            )
            if len(present) != len(referenced):
                # gc removed a xorb between verification and now: refuse rather than record a broken file.
                raise ShardVerificationError("a xorb the shard references is no longer stored")
            self._store.touch_xorbs(conn, referenced)
            for entry, sha256 in checked:
                self._store.register_file(conn, entry, sha256)
        for entry, sha256 in checked:
            # The uploader proved it holds this content, as an LFS upload would: it may now commit it.
            self._repos.record_blob(principal, BlobInfo(sha256=sha256, size=entry.size))
        self._repos.scans.enqueue_uploads(sha256 for _, sha256 in checked)
        return new

    def _afford(self, principal: Principal, shard: Shard, work: ShardWork) -> None:
        """Refuse a shard whose verification would cost more than the uploader paid for.

        Rebuilding a new file to check its sha256 reads every byte it names. Bytes of distinct stored content
        are free: the uploader may only name xorbs it uploaded or was shown (content it may read), each is
        hashed once per shard, and an honest derived model (a fine-tune, an edited header) is mostly such
        bytes. What is charged is repetition, the bytes beyond that distinct content (a 31 kB shard can
        name terabytes of one chunk), plus every chunk reference. Files the hub already holds are not rebuilt.
        """
        new_files = [file for file in work.file_bytes if self._store.file(file) is None]
        rebuilt = sum(work.file_bytes[file] for file in new_files)
        repeated = rebuilt - work.distinct_bytes(new_files)
        cost = repeated + work.chunk_refs * CHUNK_REF_COST
        if cost <= self._verify_allowance:
            return
        xorbs = {t.xorb_hash for entry in shard.files for t in entry.terms} | {x.hash for x in shard.xorbs}
        sent = self._store.unused_upload_bytes(principal.user_id, xorbs)
        budget = self._verify_allowance + self._verify_ratio * sent
        if cost > budget:
            raise ShardOverBudget(
                f"verifying this shard means hashing {repeated} bytes of repeated content and"
                f" {work.chunk_refs} chunk references (counted as {cost} bytes), more than the {budget} this"
                f" upload pays for"
                f" ({sent} bytes of new xorbs)"
            )

    def dedup_answer(self, token: XetToken, chunk: bytes) -> bytes | None:
        """The dedup shard for a chunk the token's user may read (hashes keyed per answer), else None.

        The client queries only a file's first chunk and about one chunk in 1024 after it, so an answer
        naming just the xorb of the hit would leave most of a re-uploaded file undeduplicated. The answer
        carries the other xorbs of the readable files that contain it too (as the Hub answers with the shard
        of the upload), up to `DEDUP_ANSWER_CHUNKS` chunks.
        """
        principal = self._writer(token)  # only uploads deduplicate; the uploader's rights are checked now
        self._arrivals.queried(principal.user_id, chunk)
        location = self._store.locate_chunk(chunk)
        # The gate is asked whether or not the chunk is stored (about nothing, when it is not), so an absent
        # chunk and one the principal may not read cost the same.
        hit = location.xorb_hash if location is not None else bytes(32)
        if not self.may_read_xorb(token.principal, hit) or location is None:
            return None
        xorbs = self._answer_xorbs(token.principal, location.xorb_hash)
        infos = [info for info in map(self._store.xorb_info, xorbs) if info is not None]
        if not infos:
            return None
        with self._store.connect() as conn:
            self._store.touch_xorbs(conn, [info.hash for info in infos])
            # The client will name these xorbs in its shard, perhaps days later (it caches the answer): what
            # was granted now stays granted, so the repo they came from turning private, or its owner
            # deleting it, cannot make the upload that relied on the answer fail.
            self._store.grant_xorbs(conn, [info.hash for info in infos], principal.user_id)
        now = int(time.time())
        return dedup_shard(infos, hmac_key=os.urandom(32), created=now, expiry=now + DEDUP_SHARD_TTL)

    def _answer_xorbs(self, principal: Principal | None, xorb_hash: bytes) -> list[bytes]:
        """The hit's xorb (which the caller checked the principal may read) and the xorbs of the files using
        it that the principal may receive."""
        xf, xfx = tables.xet_files, tables.xet_file_xorbs
        users = xfx.alias("users")
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(xf.c.sha256, xfx.c.xorb_hash, tables.xet_xorbs.c.n_chunks)
                .join(users, users.c.file_hash == xf.c.file_hash)
                .join(xfx, xfx.c.file_hash == xf.c.file_hash)
                .join(tables.xet_xorbs, tables.xet_xorbs.c.hash == xfx.c.xorb_hash)
                .where(users.c.xorb_hash == hash_to_string(xorb_hash))
                .order_by(xf.c.created_at.desc())
            ).all()
        by_file: dict[str, list[tuple[str, int]]] = {}
        for row in rows:
            by_file.setdefault(row.sha256, []).append((row.xorb_hash, int(row.n_chunks)))
        readable = [
            xorbs
            for sha, xorbs in list(by_file.items())[:DEDUP_ANSWER_FILES]
            if self._gate.may_receive(principal, sha)
        ]
        answer, budget = [xorb_hash], DEDUP_ANSWER_CHUNKS
        for xorbs in readable:
            for name, chunks in xorbs:
                other = string_to_hash(name)
                if other not in answer and chunks <= budget:
                    answer.append(other)
                    budget -= chunks
        return answer

    # ------------------------------------------------------------------ downloads

    def reconstruction(
        self, token: XetToken, file_hash: bytes, range_header: str | None, version: int, cas_url: str
    ) -> dict[str, Any]:
        """The `/v1` or `/v2/reconstructions` answer, for a file the gate lets the token's principal receive:
        through a read token, one the token's repo holds at its revision and serves at one of its paths;
        through a write token, content the uploader may receive anywhere (its own uploads included)."""
        name = hash_to_string(file_hash)
        file = self._reachable_file(token, name)
        if file is None:
            raise NotFound(f"no file {name}")
        start, end = parse_range_header(range_header, file.size)
        plan = plan_reconstruction(file.terms, self._store.xorb_info, start, end)
        expires = int(time.time()) + FETCH_URL_TTL
        issuer = token.principal.token_id if token.principal is not None else None

        def sign(xorb: bytes, ranges: Iterable[FetchRange]) -> str:
            grant = FetchGrant(
                hash_to_string(xorb),
                ",".join(f"{r.byte_start}-{r.byte_end}" for r in ranges),
                expires,
                name,
                issuer or 0,
            )
            return f"{cas_url}/v1/fetch/{grant.xorb}?{grant.query(self._fetch_signature(grant))}"

        return plan.to_v2(sign) if version == 2 else plan.to_v1(sign)

    def _reachable_file(self, token: XetToken, name: str) -> XetFile | None:
        if token.scope == WRITE and token.principal is not None:
            self._repo(token, Action.WRITE)
            # The gate first, whatever the answer, so a stored file and an absent one cost the same.
            allowed = self._gate.may_receive_xet(token.principal, name)
            file = self._store.file(string_to_hash(name))
            return file if allowed else None
        repo = self._repo(token, Action.DOWNLOAD)
        entries = self._repos.files(self._repos.resolve(repo, token.revision))
        file = self._store.file(string_to_hash(name))
        if file is None:
            return None
        paths = [(path, entry) for path, entry in entries.items() if entry.sha256 == file.sha256]
        if any(self._gate.may_serve_file(token.principal, repo, path, entry) for path, entry in paths):
            return file
        return None

    def _fetch_signature(self, grant: FetchGrant) -> str:
        return self._signer.sign(
            "xet-fetch", grant.xorb, grant.spans, grant.expires, grant.file, grant.issuer
        )

    def open_fetch(
        self, grant: FetchGrant, signature: str, range_header: str | None, segments: bool = False
    ) -> XorbBytes:
        """Check a signed fetch URL and its Range; the bytes of the xorb object to send (with `segments`, as
        a file range for a server that sends files itself, where the xorb is a local file).

        The URL carries no Authorization, so it names the hub token it was issued for and the file it serves:
        each fetch looks the principal up again and asks the gate, so a revoked token, a removed member or a
        deleted user stops downloading at once, as do content quarantined or gated since.
        """
        valid = self._signer.verify(
            signature, "xet-fetch", grant.xorb, grant.spans, grant.expires, grant.file, grant.issuer
        )
        if not valid or grant.expires < time.time():
            raise InvalidSignature("fetch URL signature is invalid or expired")
        principal = self._live_principal(grant.issuer or None)
        if not self._gate.may_receive_xet(principal, grant.file):
            raise Forbidden("this fetch URL no longer grants its content")
        allowed = [tuple(int(v) for v in span.split("-")) for span in grant.spans.split(",") if span]
        xorb_hash = string_to_hash(grant.xorb)
        if range_header is None:
            start, last = allowed[0]
        else:
            info = self._store.xorb_info(xorb_hash)
            if info is None:
                raise NotFound(f"no xorb {grant.xorb}")
            start, end = parse_range_header(range_header, info.serialized_len)
            last = end - 1
        if not any(first <= start and last <= final for first, final in allowed):
            raise InvalidSignature("this fetch URL does not cover the requested range")
        try:
            self._store.check_xorb(xorb_hash)
        except StoredContentDamaged as exc:
            _log.error("serving refused: %s; run `weightyard fsck`", exc.message)
            raise
        size = self._store.xorb_size(xorb_hash)
        if size is None:
            raise NotFound(f"no xorb {grant.xorb}")
        if self._redirect:
            location = self._store.presign_xorb(xorb_hash, PRESIGNED_URL_TTL)
            if location is not None:
                return XorbBytes(start, last + 1, size, iter(()), location)
        if segments:
            stream = self._store.xorb_segments(xorb_hash, start, last + 1)
            if stream is not None:
                return XorbBytes(start, last + 1, size, iter(()), segments=stream)
        pieces = self._store.iter_xorb(xorb_hash, start, last + 1, _FETCH_PIECE)
        return XorbBytes(start, last + 1, size, pieces)

    def xet_hash(self, sha256: str) -> str | None:
        """The Xet hash of content stored as xorbs (None for a whole blob), which `/resolve` advertises."""
        return self.xet_hashes([sha256]).get(sha256)

    def xet_hashes(self, shas: Iterable[str]) -> dict[str, str]:
        """The Xet hash of each of `shas` stored as xorbs, in one query (a tree page asks for its files at
        once)."""
        return self._store.xet_hashes(shas)

    # ------------------------------------------------------------------ gc and stats

    def _all_commits(self) -> list[tuple[Repo, Commit]]:
        with self._engine.connect() as conn:
            repo_rows = conn.execute(sa.select(tables.repos)).all()
            commit_rows = conn.execute(sa.select(tables.commits)).all()
        repos = {row.id: _repo_from_row(row) for row in repo_rows}
        return [(repos[row.repo_id], _commit_from_row(row)) for row in commit_rows if row.repo_id in repos]

    def gc(
        self, dry_run: bool = False, grace: datetime.timedelta = GC_GRACE, reachable: set[str] | None = None
    ) -> GcReport:
        """Remove xorbs no commit reaches and no upload touched within `grace`; report the bytes freed.

        Files uploaded but never committed count as unreachable once their xorbs are past the grace period.
        An upload in flight always touches the xorbs it names (xorb upload, dedup answer, shard), and the
        deletion re-checks `last_used_at` in the same transaction, so it never removes what an upload uses.
        """
        if reachable is None:
            reachable = self._repos.referenced_content()[0]
        cutoff = utcnow() - grace
        xx, xf, xfx = tables.xet_xorbs, tables.xet_files, tables.xet_file_xorbs
        with self._store.connect() as conn:
            live_files = {
                row.file_hash
                for row in conn.execute(sa.select(xf.c.file_hash, xf.c.sha256, xf.c.created_at))
                if row.sha256 in reachable or row.created_at >= cutoff
            }
            live_xorbs = set(
                conn.execute(sa.select(xfx.c.xorb_hash).where(xfx.c.file_hash.in_(live_files))).scalars()
            )
            doomed = [
                (row.hash, int(row.wire_len))
                for row in conn.execute(sa.select(xx.c.hash, xx.c.wire_len, xx.c.last_used_at))
                if row.hash not in live_xorbs and row.last_used_at < cutoff
            ]
            doomed_names = [name for name, _ in doomed]
            dead_files = list(
                conn.execute(
                    sa.select(xfx.c.file_hash).where(xfx.c.xorb_hash.in_(doomed_names)).distinct()
                ).scalars()
            )
            if not dry_run and doomed:
                conn.execute(sa.delete(xfx).where(xfx.c.file_hash.in_(dead_files)))
                conn.execute(sa.delete(xf).where(xf.c.file_hash.in_(dead_files)))
                conn.execute(
                    sa.delete(tables.xet_chunks).where(tables.xet_chunks.c.xorb_hash.in_(doomed_names))
                )
                conn.execute(
                    sa.delete(tables.xet_xorb_grants).where(
                        tables.xet_xorb_grants.c.xorb_hash.in_(doomed_names)
                    )
                )
                conn.execute(sa.delete(xx).where(xx.c.hash.in_(doomed_names), xx.c.last_used_at < cutoff))
                # Under the write lock: an upload of the same xorb that stored it meanwhile finds it gone in
                # its own transaction and fails, retryably (ContentStore.add_xorb).
                for name, _ in doomed:
                    self._store.delete_xorb_object(name)
        return GcReport(len(doomed), sum(size for _, size in doomed), len(dead_files), dry_run)

    def stats(self) -> HubStats:
        """Logical bytes (file sizes summed over every commit) against the bytes stored for them."""
        xf, xfx, xx = tables.xet_files, tables.xet_file_xorbs, tables.xet_xorbs
        with self._engine.connect() as conn:
            xorb_sizes = {
                row.hash: int(row.wire_len) for row in conn.execute(sa.select(xx.c.hash, xx.c.wire_len))
            }
            file_xorbs: dict[str, set[str]] = {}
            for row in conn.execute(
                sa.select(xf.c.sha256, xfx.c.xorb_hash).join(xfx, xfx.c.file_hash == xf.c.file_hash)
            ):
                file_xorbs.setdefault(row.sha256, set()).add(row.xorb_hash)
            blob_sizes = {
                row.sha256: int(row.size)
                for row in conn.execute(sa.select(tables.blobs.c.sha256, tables.blobs.c.size))
            }
        # A copy is published on disk before its `whole_copies` row is written (with its job's removal, in
        # one transaction): the disk is looked at first, the copies and the copy jobs read after it, so that
        # a copy caught between the two is not counted as an uploaded whole blob.
        on_disk = {sha for sha in blob_sizes if self._store.has_whole_blob(sha)}
        with self._engine.connect() as conn:
            copies = {
                row.sha256: int(row.size)
                for row in conn.execute(sa.select(tables.whole_copies.c.sha256, tables.whole_copies.c.size))
            }
            being_copied = set(conn.execute(sa.select(tables.copy_jobs.c.sha256)).scalars())
        per_repo: dict[int, tuple[Repo, int, set[str]]] = {}
        for repo, commit in self._all_commits():
            _, logical, shas = per_repo.get(repo.id, (repo, 0, set()))
            files = self._repos.files(commit)
            per_repo[repo.id] = (
                repo,
                logical + sum(e.size for e in files.values()),
                shas | {e.sha256 for e in files.values()},
            )
        whole = on_disk - copies.keys() - being_copied

        def stored(shas: set[str]) -> int:
            xorbs = set().union(*(file_xorbs.get(sha, set()) for sha in shas if sha not in whole))
            return sum(xorb_sizes.get(x, 0) for x in xorbs) + sum(blob_sizes[s] for s in shas & whole)

        repos = tuple(
            RepoStats(repo.repo_id, repo.type, logical, stored(shas))
            for repo, logical, shas in sorted(per_repo.values(), key=lambda item: item[0].repo_id)
        )
        xorb_bytes = sum(xorb_sizes.values())
        blob_bytes = sum(blob_sizes[s] for s in whole)
        return HubStats(
            sum(r.logical_bytes for r in repos),
            xorb_bytes + blob_bytes,
            xorb_bytes,
            blob_bytes,
            sum(copies.values()),
            repos,
        )
