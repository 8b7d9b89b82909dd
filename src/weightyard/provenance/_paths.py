"""Rules for the file names a signed manifest may hold, and for the paths a signature says to ignore."""

from __future__ import annotations

from collections.abc import Iterable

# Same bound as the hub's repo paths, so anything the hub stores can be signed and nothing longer can.
MAX_PATH_BYTES = 1024


def path_problem(name: str) -> str | None:
    """Say why `name` cannot name a file inside a model folder, or return None when it can.

    >>> path_problem("sub/tokenizer.json") is None
    True
    >>> path_problem("../etc/passwd")
    "'../etc/passwd' climbs out of the model folder"
    """
    if not name:
        return "an empty file name"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return f"{name!r} is not valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return f"{name[:64]!r}… is longer than {MAX_PATH_BYTES} bytes"
    if name.startswith("/"):
        return f"{name!r} is an absolute path"
    segments = name.split("/")
    if ".." in segments:
        return f"{name!r} climbs out of the model folder"
    if "\\" in name:
        return f"{name!r} holds a backslash"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        return f"{name!r} holds a control character"
    if "" in segments or "." in segments:
        return f"{name!r} has an empty or '.' segment"
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
