"""Domain errors. Each carries a stable machine-readable code and the HTTP status the API maps it to.

The codes the Hugging Face client reads (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) keep the
Hub's spelling; the others name what went wrong in the same style.
"""

from __future__ import annotations


class WeightyardError(Exception):
    """Base of every error the hub reports to a client."""

    code = "InternalError"
    status = 500

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def message_at(self, base_url: str) -> str:
        """The message shown to the client of the hub at `base_url` (errors that name a page add its URL)."""
        return self.message


class BadRequest(WeightyardError):
    code = "BadRequest"
    status = 400


class InvalidRepoId(BadRequest):
    code = "InvalidRepoId"


class InvalidPath(BadRequest):
    # The Hub answers an invalid file path in a preupload or a commit with 422; so does every route here.
    code = "InvalidPath"
    status = 422


class InvalidRefName(BadRequest):
    code = "InvalidRefName"


class MalformedCommit(BadRequest):
    code = "MalformedCommit"


class InvalidCardMetadata(BadRequest):
    """A README's metadata fails the Hub's checks; `errors` and `warnings` list them as the Hub does."""

    code = "InvalidCardMetadata"

    def __init__(self, errors: list[str], warnings: list[str]) -> None:
        super().__init__(
            "Invalid metadata in README.md: " + "; ".join(errors),
            errors=[{"message": message} for message in errors],
            warnings=[{"message": message} for message in warnings],
        )


class Unauthorized(WeightyardError):
    code = "Unauthorized"
    status = 401


class InvalidCredentials(Unauthorized):
    code = "InvalidCredentials"


class Forbidden(WeightyardError):
    code = "Forbidden"
    status = 403


class GatedRepo(WeightyardError):
    """The repo is gated and the caller has not been granted access to its files (401 when anonymous).

    The message is the Hub's, which users and tools match on; it names the page where access is asked for.
    """

    code = "GatedRepo"
    status = 403

    def __init__(self, repo_type: str, repo_id: str, page_path: str, anonymous: bool = False) -> None:
        self.repo_type = repo_type
        self.repo_id = repo_id
        self.page_path = page_path
        self.anonymous = anonymous
        super().__init__(self.message_at(""))
        if anonymous:
            self.status = 401

    def message_at(self, base_url: str) -> str:
        if self.anonymous:
            return (
                f"Access to {self.repo_type} {self.repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in."
            )
        return (
            f"Access to {self.repo_type} {self.repo_id} is restricted and you are not in the authorized "
            f"list. Visit {base_url}{self.page_path} to ask for access."
        )


class RateLimited(WeightyardError):
    code = "RateLimited"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RepoNotFound(WeightyardError):
    code = "RepoNotFound"
    status = 404


class RevisionNotFound(WeightyardError):
    code = "RevisionNotFound"
    status = 404


class EntryNotFound(WeightyardError):
    """A file or folder is missing at a commit; `commit` is echoed so clients can cache the absence."""

    code = "EntryNotFound"
    status = 404

    def __init__(self, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.commit = commit


class NotFound(WeightyardError):
    code = "NotFound"
    status = 404


class RepoExists(WeightyardError):
    code = "RepoExists"
    status = 409


class NamespaceInUse(WeightyardError):
    """A user or organisation name that is taken, owns repos, or was retired when its user was deleted."""

    code = "NamespaceInUse"
    status = 409


class NamespaceNotFound(WeightyardError):
    """A repo may only be created under an existing user or organisation."""

    code = "NamespaceNotFound"
    status = 404


class RefExists(WeightyardError):
    code = "RefExists"
    status = 409


class AccessAlreadyGranted(WeightyardError):
    """Accepting or granting access for a user who already has it."""

    code = "AccessAlreadyGranted"
    status = 409


class PathConflict(WeightyardError):
    code = "PathConflict"
    status = 409


class ParentCommitMismatch(WeightyardError):
    """The commit named a parent that is no longer the head of the branch (the Hub's wording)."""

    code = "ParentCommitMismatch"
    status = 412

    def __init__(self, **details: object) -> None:
        super().__init__(
            "The branch was updated since you opened this page. Please refresh and try again.", **details
        )


class PayloadTooLarge(WeightyardError):
    code = "PayloadTooLarge"
    status = 413


class TooManyObjects(PayloadTooLarge):
    """A commit or LFS batch request names more operations or objects than the hub accepts at once."""

    code = "TooManyObjects"


class RequestTimeout(WeightyardError):
    """The request body stopped arriving."""

    code = "RequestTimeout"
    status = 408


class RepoQuotaExceeded(WeightyardError):
    """An upload would take a repo past `WEIGHTYARD_MAX_REPO_SIZE` (committed files plus pending uploads).
    Not a `PayloadTooLarge`: the body may be well-formed and small, the repo is what is full."""

    code = "RepoQuotaExceeded"
    status = 413


class RangeNotSatisfiable(WeightyardError):
    code = "RangeNotSatisfiable"
    status = 416


class ContentMismatch(WeightyardError):
    """Uploaded bytes do not match the announced sha256 or size."""

    code = "ContentMismatch"
    status = 422


class UnsafeFile(WeightyardError):
    """The scanner found a file unsafe and the repo's policy refuses it; `findings` says why."""

    code = "UnsafeFile"
    status = 422


class ScanPending(WeightyardError):
    """A commit names content whose scan is still queued or running after the commit waited for it
    (`WEIGHTYARD_SCAN_WAIT`): retryable, with `Retry-After`; nothing was committed."""

    code = "ScanPending"
    status = 503

    def __init__(self, message: str, retry_after: int, **details: object) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class Quarantined(WeightyardError):
    """A file the scanner found unsafe is kept but served only to the repo's admins."""

    code = "Quarantined"
    status = 403


class BlobNotFound(WeightyardError):
    """A commit refers to content the hub does not hold (or the committer may not use)."""

    code = "BlobNotFound"
    status = 422


class InvalidSignature(WeightyardError):
    code = "InvalidUploadSignature"
    status = 403


class StoredContentDamaged(WeightyardError):
    """Content the hub recorded is not whole in its storage (a file shorter than its record): a server-side
    loss, answered with a 5xx before any byte is sent, and logged. `weightyard fsck` finds every such case."""

    code = "StoredContentDamaged"
    status = 500


class StoredContentMissing(StoredContentDamaged):
    """Content the hub recorded is missing from its storage."""

    code = "StoredContentMissing"


class ContentCollected(WeightyardError):
    """Content being stored was removed by `weightyard gc` (which had found the same content unreferenced)
    between the moment its bytes were stored and the transaction recording them: nothing was recorded, and
    sending the content again succeeds. Retryable, with `Retry-After`."""

    code = "ContentCollected"
    status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageUnavailable(WeightyardError):
    """The object store did not answer, or refused the hub's request (down, unreachable, misconfigured):
    retryable from the client's side, logged on the server's."""

    code = "StorageUnavailable"
    status = 503
