"""Command-line interface. Each module registers its commands on `weightyard.cli.app.app`."""

from __future__ import annotations

import os

from weightyard.cli import accounts as _accounts  # noqa: F401
from weightyard.cli import hub as _hub  # noqa: F401
from weightyard.cli import maintenance as _maintenance  # noqa: F401
from weightyard.cli import provenance as _provenance  # noqa: F401
from weightyard.cli import scan as _scan  # noqa: F401
from weightyard.cli import storage as _storage  # noqa: F401
from weightyard.cli.app import app
from weightyard.cli.errors import run_cli


def main() -> None:
    # The CLI moves large files itself (upload sessions, else the LFS batch API) with bounded memory; it must
    # never be switched to Xet by the huggingface_hub client, which reads this variable when it is first
    # imported (commands import it lazily, after this line). Transfers draw rich progress bars, so the
    # client's own bars are turned off.
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # The client logs every retry of a failing request; a failure is reported once, as one line.
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    run_cli(app)
