"""Turns the parsed lines of a commit body into pending operations (content already ingested)."""

from __future__ import annotations

from dataclasses import dataclass, field

from weightyard.api.ndjson import ContentSink, NdjsonStream, StreamedContent, decode_base64
from weightyard.config import Settings
from weightyard.errors import MalformedCommit, TooManyObjects
from weightyard.repos import ContentIngest, IngestedContent, RepoService
from weightyard.repos.quota import ByteBudget

OPERATION_KEYS = ("header", "file", "lfsFile", "deletedFile", "deletedFolder")


@dataclass
class PendingFile:
    path: str
    content: IngestedContent


@dataclass
class PendingLfsFile:
    path: str
    sha256: str
    size: int | None


@dataclass
class PendingDelete:
    path: str
    folder: bool


Pending = PendingFile | PendingLfsFile | PendingDelete


@dataclass
class CommitBody:
    summary: str = ""
    description: str = ""
    parent_commit: str | None = None
    operations: list[Pending] = field(default_factory=list)


def _text(value: dict[str, object], key: str, line: int, required: bool = True) -> str:
    item = value.get(key)
    if item is None and not required:
        return ""
    if not isinstance(item, str):
        raise MalformedCommit(f"line {line}: '{key}' must be a string")
    return item


class CommitBodyReader:
    """Feed it the raw body; `body` holds the header and operations once `close` returns.

    The settings bound it: operations per commit, and the nesting and size of each line.
    """

    def __init__(self, repos: RepoService, settings: Settings, budget: ByteBudget | None = None) -> None:
        self._repos = repos
        # The repo's quota, shared by every inline file of the commit.
        self._budget = budget
        self._lines = 0
        self._max_operations = settings.max_commit_operations
        self.body = CommitBody()
        self._stream = NdjsonStream(
            self._open_sink,
            self._on_line,
            max_depth=settings.max_commit_line_depth,
            max_line_bytes=settings.max_commit_line_bytes,
        )

    def _open_sink(self) -> ContentSink:
        return self._repos.start_ingest(self._budget)

    def feed(self, data: bytes) -> None:
        self._stream.feed(data)

    def close(self) -> CommitBody:
        self._stream.close()
        if self._lines == 0:
            raise MalformedCommit("the commit body is empty; the first line must be the header")
        return self.body

    def abort(self) -> None:
        self._stream.abort()

    def _on_line(self, line: object) -> None:
        self._lines += 1
        number = self._lines
        if not isinstance(line, dict) or not isinstance(line.get("value"), dict):
            raise MalformedCommit(f'line {number}: expected {{"key": ..., "value": {{...}}}}')
        key = line.get("key")
        value: dict[str, object] = line["value"]
        if key not in OPERATION_KEYS:
            raise MalformedCommit(f"line {number}: unknown operation key {str(key)[:50]!r}")
        if (number == 1) != (key == "header"):
            raise MalformedCommit(f"line {number}: the header must come first, once")
        if number > self._max_operations + 1:
            raise TooManyObjects(f"a commit holds at most {self._max_operations} operations")
        if key == "header":
            self.body.summary = _text(value, "summary", number)
            self.body.description = _text(value, "description", number, required=False)
            parent = value.get("parentCommit")
            if parent is not None and not isinstance(parent, str):
                raise MalformedCommit("parentCommit must be a string")
            self.body.parent_commit = parent
        elif key == "file":
            self.body.operations.append(
                PendingFile(_text(value, "path", number), self._content(value, number))
            )
        elif key == "lfsFile":
            if value.get("algo", "sha256") != "sha256":
                raise MalformedCommit(f"line {number}: only sha256 LFS objects are supported")
            size = value.get("size")
            if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
                raise MalformedCommit(f"line {number}: 'size' must be a non-negative integer")
            self.body.operations.append(
                PendingLfsFile(_text(value, "path", number), _text(value, "oid", number), size)
            )
        else:
            folder = key == "deletedFolder"
            self.body.operations.append(PendingDelete(_text(value, "path", number), folder))

    def _content(self, value: dict[str, object], number: int) -> IngestedContent:
        encoding = value.get("encoding", "base64")
        content = value.get("content")
        if encoding != "base64":
            if isinstance(content, StreamedContent):
                content.sink.abort()
            raise MalformedCommit(f"line {number}: unsupported encoding {str(encoding)[:20]!r}; use base64")
        if isinstance(content, StreamedContent):
            sink = content.sink
            assert isinstance(sink, ContentIngest)
            return sink.finish()
        if not isinstance(content, str):
            raise MalformedCommit(f"line {number}: 'content' must be a base64 string")
        ingest = self._repos.start_ingest(self._budget)
        ingest.write(decode_base64(content))
        return ingest.finish()
