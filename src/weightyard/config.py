"""One Settings object for the whole hub (environment prefix `WEIGHTYARD_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from weightyard.names import ADMIN_USER

__all__ = ["ADMIN_USER", "MIB", "Settings"]

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Hub configuration. Every field can be set as `WEIGHTYARD_<NAME>` in the environment.

    Example:
        >>> Settings(data=Path("/srv/weightyard")).database_url_or_default()
        'sqlite:////srv/weightyard/weightyard.db'
    """

    model_config = SettingsConfigDict(env_prefix="WEIGHTYARD_")

    data: Path = Path(".weightyard")
    database_url: str | None = None
    blob_url: str | None = None
    # How downloads of stored content leave the hub: "stream" sends the bytes itself (works wherever
    # clients can reach the hub); "presigned" answers `/resolve` of LFS files and Xet CAS fetches with a
    # 302 to a short-lived URL of an object store that signs them (s3://), so the bytes flow from the store
    # straight to the client, and hands LFS clients presigned part URLs. A store that cannot sign streams.
    blob_redirect: Literal["stream", "presigned"] = "stream"
    host: str = "127.0.0.1"
    port: int = 8000
    # Public base URL used in absolute links (pagination, commit URLs, LFS actions). Defaults to the
    # request's own scheme and Host, which is right whenever clients reach the hub directly.
    public_url: str | None = None
    # Files at least this large (or binary) are stored and listed as LFS files, as on the Hugging Face Hub.
    lfs_threshold: int = 10 * MIB
    # Which clients get `uploadMode: "lfs"` from /preupload. The stock huggingface_hub client with hf_xet
    # installed uploads every "lfs" file through Xet and has no fallback, so by default only clients that
    # identify themselves as LFS-capable (the weightyard CLI, or any client whose User-Agent carries the
    # token "weightyard", e.g. HF_HUB_USER_AGENT_ORIGIN=weightyard-lfs) are sent to the LFS batch API.
    # "always" suits teams whose clients all set HF_HUB_DISABLE_XET=1; "never" forces inline uploads.
    lfs_uploads: str = "auto"
    # Xet storage: the CAS routes under /xet-cas, Xet tokens, and `uploadMode: "lfs"` for large or binary
    # files to every client (clients with hf_xet upload them through Xet, others through LFS batch), as the
    # Hugging Face Hub does. Xet uploads are kept as xorbs in DATA/xorbs. Off: the hub core's behaviour.
    xet: bool = True
    # Whole copies of Xet-stored files for plain-HTTP downloads (docs/xet.md, "Storage model"): a `/resolve`
    # GET of content kept only as xorbs queues a background rebuild into a whole blob, served from then on at
    # the speed of an uploaded one. The copies take at most this many bytes in all, the least recently served
    # evicted first (uploaded whole blobs are never evicted); a file larger than this gets no copy; 0 turns
    # copies off. Two largest files (the 50 GB file limit) by default.
    whole_copy_budget: int = 100 * 1000**3
    # LFS objects above this size are uploaded in parts of this size (multipart transfer).
    multipart_chunk_size: int = 64 * MIB
    # Lifetime of signed LFS upload URLs, in seconds.
    upload_url_ttl: int = 24 * 3600
    # Abuse limits; 0 turns a limit off. The file limit matches the Hugging Face Hub's 50 GB.
    max_file_size: int = 50 * 1000**3
    max_repo_size: int = 0
    # What happens to a file the scanner finds unsafe: "refuse" the commit (default), "quarantine" it (kept,
    # served only to the repo's admins), or "warn" (served with a warning header). Repos may override it.
    scan_policy: str = "refuse"
    # Scanning runs in every server process, off the requests (docs/scanning.md, "On the hub"): this many
    # scan threads per process, each bounded by the scanner's own budgets.
    scan_workers: int = 1
    # Seconds a commit waits for the scans of the files it adds; past it, the commit is answered 503
    # ScanPending with Retry-After (nothing committed; the scans go on).
    scan_wait: float = 5.0
    # Seconds a process holds a scan job without renewing its claim (renewed while the scan runs): the job of
    # a process that died is taken over by another after at most this long.
    scan_lease: int = 30
    # Seconds between sweeps for stored reports made by older scanner rules, which are queued to be redone
    # (the first sweep runs as the process starts); 0 turns the sweep off, leaving the stale reports that
    # reads come across to be redone as they are met.
    scan_sweep: float = 60.0
    # Requests per clock minute per token (per client address for anonymous requests and invalid tokens),
    # counted in the database so the limit holds across every server process on it.
    rate_limit_per_minute: int = 0
    # Bounded work per request (docs/security.md, "Limits"). Every request body except the streamed
    # uploads (commits, LFS objects and parts, Xet xorbs and shards) is cut off past `max_json_body` bytes
    # with 413, while it is read and before any parsing or authentication work.
    max_json_body: int = MIB
    # Seconds a request body may go without a byte arriving before the request fails with 408.
    body_idle_timeout: float = 60.0
    # Seconds a connection has to deliver a complete request head (first, and after each response), and
    # seconds an idle keep-alive connection is kept open.
    header_timeout: float = 30.0
    keep_alive_timeout: int = 30
    # Most bytes of one request head (request line plus headers); a longer one is refused with 400.
    max_header_bytes: int = 64 * 1024
    # Most connections and requests in progress at once; past it requests are answered 503 at once.
    max_connections: int = 1000
    # Most operations (files added or deleted) in one commit, and objects in one LFS batch request.
    max_commit_operations: int = 10_000
    max_lfs_batch_objects: int = 1000
    # Each line of a commit body: the deepest nesting of JSON containers (the commit format needs 2) and
    # the most bytes outside the file content it inlines.
    max_commit_line_depth: int = 4
    max_commit_line_bytes: int = MIB
    # Verifying a Xet shard rebuilds each new file to check its sha256 and hashes every chunk it names. The
    # bytes named beyond the distinct stored content they cover (repetition) may reach this many, plus
    # `xet_verify_ratio` times the bytes of fresh xorbs the uploader sent for it; each chunk reference
    # counts as 8 KiB.
    xet_verify_allowance: int = 256 * MIB
    xet_verify_ratio: int = 32

    @classmethod
    def for_data(cls, data: Path | None) -> Settings:
        """Settings from the environment, with the data folder overridden when `data` is given."""
        return cls(data=data) if data else cls()

    def database_url_or_default(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data.resolve() / 'weightyard.db'}"

    def blob_url_or_default(self) -> str:
        if self.blob_url:
            return self.blob_url
        return f"file://{self.data.resolve() / 'blobs'}"
