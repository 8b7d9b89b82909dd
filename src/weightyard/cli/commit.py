"""`push`'s calls to the hub around its transfers, made as the stock client makes them: the repo checked
(created when missing, made private when asked), the branch created, the upload mode of each small file
asked (`/preupload`), and the commit sent (NDJSON: a header, then one line per file, small regular files
inline in base64, the others by their sha256), sent again after the hub's `Retry-After` while the hub answers
503 ScanPending (the scans of files just uploaded are still running; docs/scanning.md).

They go through `transfer.Calls`: over plain HTTP with no proxy on push's own connections, so that such a
push never imports the client library (about a third of a second of CPU, which on two cores it took from
the hashing and sending running beside it); through a proxy or TLS, through the library's session.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from weightyard.cli.transfer import Body, Calls, TransferRefused

# Files per /preupload request, as the stock client batches them.
PREUPLOAD_BATCH = 256
# The start of each small file the hub is shown to pick its upload mode (text or binary), as the stock client
# sends it.
SAMPLE_BYTES = 512
# A commit answered 503 ScanPending is sent again this many times in all, waiting the hub's Retry-After (at
# most this many seconds) in between.
COMMIT_TRIES = 12
MAX_RETRY_AFTER_S = 30


@dataclass(frozen=True)
class Stored:
    """A file the hub holds already (sent as an LFS object): committed by its sha256."""

    path_in_repo: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Inline:
    """A small regular file, sent inside the commit."""

    path: Path
    path_in_repo: str
    size: int


class HubRepo:
    """One model repo on the hub at `endpoint`, as `headers` (the token) may see and change it."""

    def __init__(self, endpoint: str, headers: dict[str, str], repo: str) -> None:
        self.calls = Calls(endpoint)
        self.endpoint = endpoint
        self.headers = headers
        self.repo = repo

    def close(self) -> None:
        self.calls.close()

    def _api(self, *parts: str) -> str:
        return "/".join((f"{self.endpoint}/api/models/{self.repo}", *parts))

    def ensure(self, private: bool) -> str | None:
        """Create the repo if it is missing; make an existing public repo private when `private` is asked
        for. Returns a note for the user when an existing repo was changed."""
        info = self._private()
        if info is None:
            namespace, name = self.repo.split("/")
            created = self.calls.post(
                f"{self.endpoint}/api/repos/create",
                {"name": name, "organization": namespace, "private": private},
                self.headers,
            )
            if created.status_code != 409:  # 409: created meanwhile by someone else; checked below
                created.raise_for_status()
                return None
            info = self._private()
            if info is None:
                raise TransferRefused(f"the hub says {self.repo} exists, and then that it does not")
        if private and not info:
            self.calls.request(
                "PUT", self._api("settings"), self.headers, Body.of_json({"private": True})
            ).raise_for_status()
            return f"{self.repo} was public and is now private"
        return None

    def _private(self) -> bool | None:
        """Whether the repo is private; None when the hub does not have it."""
        answer = self.calls.get(self._api() + "?expand=private", self.headers)
        if answer.status_code == 404 and answer.headers.get("x-error-code") == "RepoNotFound":
            return None
        answer.raise_for_status()
        return bool(answer.fields().get("private"))

    def create_branch(self, branch: str) -> None:
        """Create `branch` from the default branch, unless it exists."""
        answer = self.calls.post(self._api("branch", quote(branch, safe="")), {}, self.headers)
        if answer.status_code != 409:
            answer.raise_for_status()

    def upload_modes(self, revision: str, files: list[Inline]) -> dict[str, str]:
        """What the hub wants for each of `files` on `revision`, by path in the repo: `regular` (inside the
        commit), `lfs` (an object of its own, sent first) or `ignore`."""
        modes: dict[str, str] = {}
        for first in range(0, len(files), PREUPLOAD_BATCH):
            batch = files[first : first + PREUPLOAD_BATCH]
            payload = {
                "files": [
                    {"path": item.path_in_repo, "size": item.size, "sample": _sample(item.path)}
                    for item in batch
                ]
            }
            answer = self.calls.post(self._api("preupload", quote(revision, safe="")), payload, self.headers)
            answer.raise_for_status()
            listed = answer.fields().get("files")
            for item in listed if isinstance(listed, list) else []:
                if not isinstance(item, dict):
                    continue
                mode = "ignore" if item.get("shouldIgnore") else str(item.get("uploadMode"))
                modes[str(item.get("path"))] = mode
        missing = [item.path_in_repo for item in files if modes.get(item.path_in_repo) not in _MODES]
        if missing:
            raise TransferRefused(f"the hub named no upload mode for {missing[0]}")
        return modes

    def commit(self, revision: str, message: str, inline: list[Inline], stored: list[Stored]) -> str:
        """Commit `inline` and `stored` files on `revision`; returns the commit id."""
        header = json.dumps({"key": "header", "value": {"summary": message, "description": ""}}) + "\n"
        lines = [header.encode()] + [_stored_line(item) for item in stored]
        # each inline file's line: its JSON around the base64 of its bytes, read when the body is sent
        parts = [_inline_parts(item) for item in inline]
        length = sum(map(len, lines)) + sum(
            len(before) + _b64_length(item.size) + len(after)
            for item, (before, after) in zip(inline, parts, strict=True)
        )

        def pieces() -> Iterator[bytes]:
            yield b"".join(lines)
            for item, (before, after) in zip(inline, parts, strict=True):
                yield b"".join((before, _b64_of(item), after))

        body = Body(length, "application/x-ndjson", pieces)
        url = self._api("commit", quote(revision, safe=""))
        for attempt in range(COMMIT_TRIES):
            answer = self.calls.request("POST", url, self.headers, body)
            pending = answer.status_code == 503 and answer.headers.get("x-error-code") == "ScanPending"
            if not pending or attempt == COMMIT_TRIES - 1:
                break
            delay = str(answer.headers.get("retry-after") or "")
            time.sleep(min(int(delay) if delay.isdigit() else 1, MAX_RETRY_AFTER_S))
        answer.raise_for_status()
        oid = answer.fields().get("commitOid")
        if not isinstance(oid, str):
            raise TransferRefused("the hub's answer to the commit names no commit")
        return oid


_MODES = frozenset({"regular", "lfs", "ignore"})


def _sample(path: Path) -> str:
    with path.open("rb") as file:
        return base64.b64encode(file.read(SAMPLE_BYTES)).decode()


def _stored_line(item: Stored) -> bytes:
    value = {"path": item.path_in_repo, "algo": "sha256", "oid": item.sha256, "size": item.size}
    return (json.dumps({"key": "lfsFile", "value": value}) + "\n").encode()


def _inline_parts(item: Inline) -> tuple[bytes, bytes]:
    """The bytes of `item`'s commit line before and after the base64 of its content."""
    path = json.dumps(item.path_in_repo)
    before = f'{{"key": "file", "value": {{"path": {path}, "encoding": "base64", "content": "'
    return before.encode(), b'"}}\n'


def _b64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _b64_of(item: Inline) -> bytes:
    """The base64 of `item`'s bytes, read now; the file must still have the size it was announced with."""
    with item.path.open("rb") as file:
        data = file.read(item.size + 1)
    if len(data) != item.size:
        raise TransferRefused(f"{item.path} changed while it was being pushed; push it again")
    return base64.b64encode(data)
