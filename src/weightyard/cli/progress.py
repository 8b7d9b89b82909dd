"""Rich progress bars for every transfer, including the ones huggingface_hub drives itself."""

from __future__ import annotations

import io
import sys
import threading
from types import TracebackType
from typing import Any, BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

_UNBOUNDED_WIDTH = 10_000

# Results (tables, confirmations, ids) go to stdout so they can be redirected or piped; progress bars, notes
# and errors go to stderr. Redirected to a file or a pipe, results are never cut to a terminal's width.
out = Console() if sys.stdout.isatty() else Console(width=_UNBOUNDED_WIDTH, soft_wrap=True)
console = Console(stderr=True)


def transfer_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class RichBar:
    """The slice of tqdm's interface that `hf_hub_download(tqdm_class=...)` uses, drawn by rich."""

    progress: Progress | None = None
    _lock = threading.Lock()

    def __init__(self, *, total: int | None = None, initial: int = 0, desc: str = "", **_: Any) -> None:
        assert RichBar.progress is not None, "RichBar.progress must be set by the command"
        self._progress = RichBar.progress
        with RichBar._lock:
            self._task = self._progress.add_task(desc, total=total, completed=initial)
        self.n = initial
        self.total = total

    def update(self, n: int = 1) -> None:
        self.n += n
        self._progress.update(self._task, advance=n)

    def close(self) -> None:
        self._progress.update(self._task, completed=self.total or self.n)

    def __enter__(self) -> RichBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ProgressFile(io.BufferedIOBase):
    """A read-only file that advances a progress task as it is read (seeks move the task back)."""

    def __init__(self, path: str, progress: Progress, task: TaskID) -> None:
        super().__init__()
        self._handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._progress = progress
        self._task = task
        self.name = path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._handle.read(-1 if size is None else size)
        self._progress.update(self._task, advance=len(data))
        return data

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        before = self._handle.tell()
        after = self._handle.seek(offset, whence)
        self._progress.update(self._task, advance=after - before)
        return after

    def tell(self) -> int:
        return self._handle.tell()

    def close(self) -> None:
        self._handle.close()
        super().close()
