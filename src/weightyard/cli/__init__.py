"""Command-line interface. Each module registers its commands on `weightyard.cli.app.app`."""

from __future__ import annotations

import os

# The CLI moves large files through the LFS batch API with bounded memory; it must never be switched to Xet
# by the huggingface_hub client, which reads this variable when it is imported.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

from weightyard.cli import hub as _hub  # noqa: E402,F401
from weightyard.cli import provenance as _provenance  # noqa: E402,F401
from weightyard.cli.app import app  # noqa: E402


def main() -> None:
    app()
