"""Rich progress bars for every transfer, including the ones huggingface_hub drives itself."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
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
