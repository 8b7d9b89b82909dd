"""Rules for the file names a signed manifest may hold, and for the paths a signature says to ignore."""

from __future__ import annotations

from collections.abc import Collection

from weightyard.errors import InvalidPath
from weightyard.validation import check_path


def path_problem(name: str) -> str | None:
    """Say why `name` cannot name a file inside a model folder, or return None when it can.

    The rules are the hub's own path rules, so that a signature can cover anything the hub stores and
    nothing that could climb out of a model folder (`..`, absolute paths) or be spelt two ways.

    >>> path_problem("sub/tokenizer.json") is None
    True
    >>> path_problem("../etc/passwd")
    "path '../etc/passwd' has an empty, '.' or '..' segment"
    """
    try:
        check_path(name)
    except InvalidPath as error:
        return error.message
    return None


def covering_paths(name: str) -> list[str]:
    """`name` and every folder above it, outermost first: `a/b/c` gives `a`, `a/b`, `a/b/c`."""
    segments = name.split("/")
    return ["/".join(segments[: count + 1]) for count in range(len(segments))]


def matching_ignore(name: str, ignore_paths: Collection[str]) -> str | None:
    """Return the ignore entry that covers `name` (the file itself or a folder above it), if any.

    Entries are relative to the model root, as model_signing records them: `.git` covers `.git/config`
    but not `sub/.git/config`. Pass a set when there are many entries: the cost is one lookup per level
    of `name`, not one comparison per entry.
    """
    return next((path for path in covering_paths(name) if path in ignore_paths), None)
