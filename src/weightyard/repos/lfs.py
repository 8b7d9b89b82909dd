"""The Git LFS batch API's server side: upload decisions, signed upload URLs, basic and multipart uploads.

Upload URLs are called by clients without any Authorization header, so each one carries an HMAC signature
over what it allows (which object, which size, for which hub token and repo, until when). Every use looks the
token up again and checks the write right on the repo, so a URL dies with its token, with the user, and with
the user's membership.

Upload sessions are Weightyard's own extension for its CLI (`open_session`): a multipart upload opened by size
alone, so the client sends while it still hashes. The hub hashes the parts as they stream, as for any
multipart upload, and the client names the sha256 only when it completes the session; the content becomes
visible only if that claim equals the hub's own hash of what arrived. Stock clients use the batch API.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from weightyard.auth import AccountService, Action, Principal, Signer, require
from weightyard.db import tables, transaction, utcnow
from weightyard.errors import (
    BadRequest,
    ContentMismatch,
    InvalidSignature,
    NotFound,
    PayloadTooLarge,
    TooManyObjects,
    Unauthorized,
)
from weightyard.repos.content import BlobWriter, ContentStore
from weightyard.repos.quota import LFS
from weightyard.repos.service import Repo, RepoService
from weightyard.storage import BlobInfo, PartWriter, StagedUpload, check_sha256

MAX_PARTS = 10_000


@dataclass(frozen=True)
class UploadAction:
    """What the client must do for one object: nothing (already usable), one PUT, or several parts."""

    sha256: str
    size: int
    upload_url: str | None = None
    part_urls: tuple[str, ...] = ()
    part_size: int = 0
    verify_url: str | None = None
    # set when the object is refused (too large); the client aborts the upload with this message
    error: str | None = None


@dataclass(frozen=True)
class UploadSession:
    """An upload session as the client receives it: where each part goes, where it completes or abandons."""

    upload_id: str
    size: int
    part_size: int
    part_urls: tuple[str, ...]
    complete_url: str
    abandon_url: str
    expires: int


def session_reservation(upload_id: str) -> str:
    """The name an upload session's bytes are reserved under in the repo's quota until its sha256 is known."""
    return f"upload:{upload_id}"


class LfsService:
    def __init__(
        self,
        repos: RepoService,
        accounts: AccountService,
        store: ContentStore,
        signer: Signer,
        part_size: int,
        ttl: int,
        max_file_size: int = 0,
        max_batch_objects: int = 1000,
        presigned_parts: bool = False,
    ):
        self._repos = repos
        # Parts go straight to the object store when it signs URLs (WEIGHTYARD_BLOB_REDIRECT=presigned);
        # completing the upload still verifies the whole before anything is visible.
        self._presigned_parts = presigned_parts
        self._accounts = accounts
        self._store = store
        self._signer = signer
        self._part_size = part_size
        self._ttl = ttl
        self._max_file_size = max_file_size
        self._max_batch_objects = max_batch_objects

    def batch(
        self, principal: Principal | None, repo: Repo, objects: list[tuple[str, int]], base_url: str
    ) -> list[UploadAction]:
        """Decide, for each (sha256, size), whether and how the client uploads it."""
        require(principal, Action.WRITE, repo.ref)
        assert principal is not None
        if principal.token_id is None:
            raise Unauthorized("upload URLs are issued to requests made with a hub token")
        if len(objects) > self._max_batch_objects:
            raise TooManyObjects(
                f"{len(objects)} objects in one batch request; the limit is {self._max_batch_objects}"
            )
        expires = int(time.time()) + self._ttl
        actions = []
        uploads: list[tuple[str, int]] = []
        stored: list[str] = []
        for sha256, size in objects:
            check_sha256(sha256)
            if size < 0:
                raise BadRequest(f"object {sha256} has a negative size")
            if self._max_file_size and size > self._max_file_size:
                limit = self._max_file_size
                actions.append(
                    UploadAction(sha256, size, error=f"{size} bytes exceed the file size limit ({limit})")
                )
                continue
            if self._holds(principal, sha256, size):
                actions.append(UploadAction(sha256, size))
                stored.append(sha256)
                continue
            uploads.append((sha256, size))
        self._repos.renew_uploads(stored)
        # Every byte this batch lets the client send counts against the repo's quota before any arrives.
        self._repos.quota.reserve(repo.id, repo.repo_id, LFS, uploads)
        for sha256, size in uploads:
            if size > self._part_size:
                actions.append(self._multipart(principal, repo, sha256, size, expires, base_url))
            else:
                token = principal.token_id
                signature = self._signer.sign("lfs-put", sha256, size, token, repo.id, expires)
                url = f"{base_url}/api/lfs/objects/{sha256}?size={size}&token={token}&repo={repo.id}"
                actions.append(
                    UploadAction(
                        sha256, size, upload_url=f"{url}&exp={expires}&sig={signature}", verify_url=None
                    )
                )
        return actions

    def _holds(self, principal: Principal, sha256: str, size: int) -> bool:
        """Whether the uploader need not send this content: the hub holds it, and it is content the uploader
        may receive (the gate first, always: the same queries whether or not anyone stored it)."""
        allowed = self._repos.gate.may_receive(principal, sha256)
        return self._repos.blob_size(sha256) == size and allowed

    def _multipart(
        self, principal: Principal, repo: Repo, sha256: str, size: int, expires: int, base_url: str
    ) -> UploadAction:
        upload_id, part_urls = self._staged_upload(principal, repo, sha256, size, expires, base_url)
        signature = self._signer.sign("lfs-complete", upload_id, expires)
        complete = f"{base_url}/api/lfs/uploads/{upload_id}/complete?exp={expires}&sig={signature}"
        return UploadAction(sha256, size, upload_url=complete, part_urls=part_urls, part_size=self._part_size)

    def _staged_upload(
        self, principal: Principal, repo: Repo, sha256: str | None, size: int, expires: int, base_url: str
    ) -> tuple[str, tuple[str, ...]]:
        """Record a new multipart upload (of `sha256`, or of content named at completion); its id and part
        URLs."""
        parts = math.ceil(size / self._part_size)
        if parts > MAX_PARTS:
            raise PayloadTooLarge(f"{size} bytes need more than {MAX_PARTS} parts")
        upload_id = uuid.uuid4().hex
        with transaction(self._repos_engine) as conn:
            conn.execute(
                sa.insert(tables.lfs_uploads).values(
                    id=upload_id,
                    user_id=principal.user_id,
                    sha256=sha256,
                    size=size,
                    part_size=self._part_size,
                    created_at=utcnow(),
                    token_id=principal.token_id,
                    repo_id=repo.id,
                )
            )
        base = f"{base_url}/api/lfs/uploads/{upload_id}"
        part_urls = self._store_part_urls(upload_id, parts, expires) or tuple(
            f"{base}/parts/{n}?exp={expires}&sig={self._signer.sign('lfs-part', upload_id, n, expires)}"
            for n in range(1, parts + 1)
        )
        return upload_id, part_urls

    def _store_part_urls(self, upload_id: str, parts: int, expires: int) -> tuple[str, ...]:
        """Presigned URLs of the object store for the parts, or () to receive them through the hub."""
        if not self._presigned_parts:
            return ()
        lifetime = max(1, expires - int(time.time()))
        urls: list[str] = []
        for number in range(1, parts + 1):
            url = self._store.presign_part(upload_id, number, lifetime)
            if url is None:
                return ()  # a store that cannot sign: the hub takes the parts
            urls.append(url)
        return tuple(urls)

    @property
    def _repos_engine(self) -> sa.Engine:
        return self._repos._engine

    def _check(self, signature: str, expires: int, purpose: str, *fields: str | int | None) -> None:
        if not self._signer.verify(signature, purpose, *fields, expires) or expires < time.time():
            raise InvalidSignature("upload URL signature is invalid or expired")

    # -- basic transfer

    def open_upload(
        self, sha256: str, size: int, token_id: int, repo_id: int, expires: int, signature: str
    ) -> tuple[BlobWriter, Principal]:
        """Check a signed basic-upload URL; the writer for its body and the principal it uploads for."""
        self._check(signature, expires, "lfs-put", sha256, size, token_id, repo_id)
        return self._store.writer(sha256), self._grant_holder(token_id, repo_id)

    def finish_upload(self, writer: BlobWriter, sha256: str, size: int, principal: Principal) -> None:
        """Commit an uploaded body: its bytes must hash to the oid and have the announced size."""
        blob = writer.commit(expected_sha256=sha256, expected_size=size)
        self._repos.record_blob(principal, blob)
        self._repos.scans.enqueue_uploads([blob.sha256])

    def _grant_holder(self, token_id: int | None, repo_id: int | None) -> Principal:
        """The principal an upload URL was issued for, as it stands now: its token still valid, its user
        still there, and still allowed to write to the repo."""
        if token_id is None or repo_id is None:
            raise InvalidSignature("this upload was not issued for a token and a repo")
        principal = self._accounts.principal_for_token(token_id, origin="lfs")
        require(principal, Action.WRITE, self._repos.repo_by_id(repo_id).ref)
        return principal

    # -- multipart transfer

    def _upload_row(self, upload_id: str) -> sa.Row[tuple[object, ...]]:
        with self._repos_engine.connect() as conn:
            row = conn.execute(
                sa.select(tables.lfs_uploads).where(tables.lfs_uploads.c.id == upload_id)
            ).first()
        if row is None:
            raise NotFound(f"no upload {upload_id}")
        return row

    def _staged(self, upload_id: str, row: sa.Row[tuple[object, ...]]) -> StagedUpload:
        """The upload's parts, as the store holds them (any server process may have received some)."""
        m = row._mapping
        return self._store.upload(upload_id, m["sha256"], int(m["size"]), int(m["part_size"]))

    def open_part(self, upload_id: str, number: int, expires: int, signature: str) -> PartWriter:
        """Check a signed part URL; returns the writer that puts the part's bytes where they belong."""
        self._check(signature, expires, "lfs-part", upload_id, number)
        row = self._upload_row(upload_id)
        self._grant_holder(row.token_id, row.repo_id)
        staged = self._staged(upload_id, row)
        if not 1 <= number <= staged.parts:
            raise BadRequest(f"part {number} is out of range 1..{staged.parts}")
        writer = staged.part_writer(number)
        # An abandon (or `gc`) deletes the upload's row, then its folder. One that ran since the row was read
        # above left this writer to make the folder again, and nothing would remove it but a later `gc`: the
        # row is read once more, and the folder removed if it is gone. One that deletes the row after this
        # read removes the folder itself.
        try:
            self._upload_row(upload_id)
        except BaseException:
            writer.abort()
            self._store.objects.delete_upload(upload_id)
            raise
        return writer

    def complete(self, upload_id: str, expires: int, signature: str, sha256: str) -> None:
        """Check that every part is there and that the whole hashes to the upload's sha256, then make the
        staged bytes the blob (on a local store the parts were written in place: nothing is copied)."""
        self._check(signature, expires, "lfs-complete", upload_id)
        row = self._upload_row(upload_id)
        principal = self._grant_holder(row.token_id, row.repo_id)
        if row.sha256 is None or sha256 != row.sha256:
            raise BadRequest("completion names another object than the upload")
        self._adopt(upload_id, row, principal, sha256)

    def _adopt(
        self, upload_id: str, row: sa.Row[tuple[object, ...]], principal: Principal, sha256: str
    ) -> None:
        """Make the staged upload the blob `sha256` if every part is there and its bytes hash to it, record
        it for `principal` and enqueue its scan; the upload is gone afterwards, whatever happens."""
        staged = self._staged(upload_id, row)
        blob = BlobInfo(sha256=sha256, size=int(row.size))
        try:
            staged.seal()
            missing = staged.missing_parts()
            if missing:
                raise ContentMismatch(f"part {missing[0]} of {staged.parts} was not uploaded")
            actual = staged.digest()
            if actual != blob.sha256:
                raise ContentMismatch(f"content sha256 is {actual}, not the announced {blob.sha256}")
            self._store.adopt(staged, blob)
        finally:
            staged.discard()
            with transaction(self._repos_engine) as conn:
                conn.execute(sa.delete(tables.lfs_uploads).where(tables.lfs_uploads.c.id == upload_id))
        self._repos.record_blob(principal, blob)
        self._repos.scans.enqueue_uploads([blob.sha256])

    # -- upload sessions (Weightyard's extension: the sha256 named at completion)

    def open_session(
        self, principal: Principal | None, repo: Repo, size: int, base_url: str
    ) -> UploadSession:
        """Open a multipart upload of `size` bytes whose sha256 the client names when it completes it."""
        require(principal, Action.WRITE, repo.ref)
        assert principal is not None
        if principal.token_id is None:
            raise Unauthorized("upload URLs are issued to requests made with a hub token")
        if self._max_file_size and size > self._max_file_size:
            raise PayloadTooLarge(f"{size} bytes exceed the file size limit ({self._max_file_size})")
        expires = int(time.time()) + self._ttl
        upload_id, part_urls = self._staged_upload(principal, repo, None, size, expires, base_url)
        try:
            # The bytes count against the repo's quota by size until their sha256 is known (at completion).
            self._repos.quota.reserve(repo.id, repo.repo_id, LFS, [(session_reservation(upload_id), size)])
        except BaseException:
            self._forget(upload_id, repo.id)
            raise
        base = f"{base_url}/api/uploads/{upload_id}"
        complete = self._signer.sign("upload-complete", upload_id, expires)
        abandon = self._signer.sign("upload-abandon", upload_id, expires)
        return UploadSession(
            upload_id,
            size,
            self._part_size,
            part_urls,
            complete_url=f"{base}/complete?exp={expires}&sig={complete}",
            abandon_url=f"{base}?exp={expires}&sig={abandon}",
            expires=expires,
        )

    def _session_row(self, upload_id: str) -> sa.Row[tuple[object, ...]]:
        row = self._upload_row(upload_id)
        if row.sha256 is not None:
            raise NotFound(f"no upload session {upload_id}")
        return row

    def complete_session(
        self, upload_id: str, expires: int, signature: str, sha256: str, if_stored: bool
    ) -> bool:
        """End an upload session with the client's claim that its content hashes to `sha256`.

        With `if_stored`, the hub only looks whether it already holds that content for the uploader (as the
        batch API's "already stored"): if so the session ends without its bytes (True), else it stays open
        (False). Otherwise every part must be there and hash to `sha256`; the blob is then visible (True).
        A wrong claim is `ContentMismatch` and ends the session with nothing visible."""
        self._check(signature, expires, "upload-complete", upload_id)
        check_sha256(sha256)
        row = self._session_row(upload_id)
        principal = self._grant_holder(row.token_id, row.repo_id)
        repo_id = int(row.repo_id)
        if if_stored:
            if not self._holds(principal, sha256, int(row.size)):
                return False
            self._repos.renew_uploads([sha256])
            self._forget(upload_id, repo_id)
            return True
        try:
            self._adopt(upload_id, row, principal, sha256)
        except BaseException:
            self._repos.quota.settle(repo_id, session_reservation(upload_id), None)
            raise
        self._repos.quota.settle(repo_id, session_reservation(upload_id), sha256)
        return True

    def abandon_session(self, upload_id: str, expires: int, signature: str) -> None:
        """End an upload session the client gives up (the hub already had the content, the file changed):
        its parts, its row and its quota reservation go."""
        self._check(signature, expires, "upload-abandon", upload_id)
        row = self._session_row(upload_id)
        self._grant_holder(row.token_id, row.repo_id)
        self._forget(upload_id, int(row.repo_id))

    def _forget(self, upload_id: str, repo_id: int) -> None:
        with transaction(self._repos_engine) as conn:
            conn.execute(sa.delete(tables.lfs_uploads).where(tables.lfs_uploads.c.id == upload_id))
        self._store.objects.delete_upload(upload_id)
        self._repos.quota.settle(repo_id, session_reservation(upload_id), None)

    def verify(self, principal: Principal | None, sha256: str, size: int | None) -> None:
        if principal is None:
            raise InvalidSignature("verification needs a token")
        self._repos.check_blob(principal, sha256, size)
