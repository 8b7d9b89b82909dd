"""Rules for the file names a signed manifest may hold, and for the paths a signature says to ignore."""

from __future__ import annotations

from collections.abc import Iterable

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


def matching_ignore(name: str, ignore_paths: Iterable[str]) -> str | None:
    """Return the ignore entry that covers `name` (the file itself or a folder above it), if any.

    Entries are relative to the model root, as model_signing records them: `.git` covers `.git/config`
    but not `sub/.git/config`.
    """
    for entry in ignore_paths:
        if name == entry or name.startswith(entry + "/"):
            return entry
    return None
