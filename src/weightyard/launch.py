"""The `weightyard` command. For `weightyard push DIR …` it begins hashing the folder's files
(`weightyard.file_hash.start_early`) before it loads the CLI, which takes about 0.2 s of one core while the
other has nothing to do; then it runs the CLI."""

from __future__ import annotations

import sys

from weightyard.file_hash import start_early, stop_early


def main() -> None:
    start_early(sys.argv)
    try:
        from weightyard.cli import main as cli_main

        cli_main()
    finally:
        stop_early()  # a command that ended before push took its hashes (a bad argument, say)
