"""The one validator for repo ids, file paths and ref names, used by every entry point."""

from __future__ import annotations

import re

from weightyard.errors import InvalidPath, InvalidRefName, InvalidRepoId

REPO_TYPES = ("model", "dataset", "space")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
MAX_PATH_BYTES = 1024
# Characters that print as nothing though `str.isprintable` calls them printable: Hangul fillers, the
# braille blank, the combining grapheme joiner, Khmer inherent vowels and the variation selectors.
_INVISIBLE_GLYPHS = frozenset(
    "\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
    + "".join(chr(c) for c in range(0xE0100, 0xE01F0))
)
_REF_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
COMMIT_OID_RE = re.compile(r"^[0-9a-f]{40}$")


def invisible_character(text: str) -> str | None:
    """The first character of `text` that a reader would not see as itself, as `U+XXXX`, else None.

    That is every control, format (bidirectional overrides and isolates, zero-width characters), line and
    paragraph separator, space other than ' ', surrogate, private-use or unassigned code point (exactly what
    `str.isprintable` refuses), and the few glyphs that render blank. Such characters let a name look like
    another one (`a/\u202etxt.exe` shows as `a/exe.txt`), so no repo id, path or ref may contain them.
    """
    for char in text:
        if not char.isprintable() or char in _INVISIBLE_GLYPHS:
            return f"U+{ord(char):04X}"
    return None


def check_repo_segment(segment: str, what: str = "name") -> str:
    if not _SEGMENT_RE.fullmatch(segment) or "--" in segment or ".." in segment or segment.endswith(".git"):
        raise InvalidRepoId(
            f"invalid repo {what} {segment[:100]!r}: use letters, digits, '.', '_' and '-', start with a "
            "letter or digit, at most 96 characters, no '--' or '..'"
        )
    return segment


# `/api/models/gpt2/refs` is the refs of the one-segment id `gpt2` (which the Hub answers RepoNotFound), not
# the info of a repo `gpt2/refs`: no repo may be named like a route that follows a repo id directly.
RESERVED_REPO_NAMES = frozenset({"refs", "auth-check", "lfs-files"})


def check_new_repo_name(name: str) -> str:
    """A repo segment that may name a new repo (created or moved)."""
    check_repo_segment(name)
    if name.lower() in RESERVED_REPO_NAMES:
        raise InvalidRepoId(f"{name!r} is reserved: it names a route after a repo id")
    return name


def check_repo_id(repo_id: str) -> tuple[str, str]:
    """Split `namespace/name` after checking both parts.

    Example:
        >>> check_repo_id("alice/tiny-bert")
        ('alice', 'tiny-bert')
    """
    parts = repo_id.split("/")
    if len(parts) != 2:
        raise InvalidRepoId(f"a repo id is 'namespace/name', got {repo_id[:200]!r}")
    return check_repo_segment(parts[0], "namespace"), check_repo_segment(parts[1])


def check_repo_type(repo_type: str) -> str:
    if repo_type not in REPO_TYPES:
        raise InvalidRepoId(f"unknown repo type {repo_type!r}; expected one of {', '.join(REPO_TYPES)}")
    return repo_type


def check_path(path: str) -> str:
    """Check a file path inside a repo: relative POSIX, no '..', '.' or empty segments, no control chars.

    Example:
        >>> check_path("1_Pooling/config.json")
        '1_Pooling/config.json'
    """
    if not path:
        raise InvalidPath("empty path")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidPath(f"path longer than {MAX_PATH_BYTES} bytes")
    invisible = invisible_character(path)
    if invisible:
        raise InvalidPath(f"path {path[:100]!r} contains an invisible or control character ({invisible})")
    if "\\" in path:
        raise InvalidPath(f"path {path[:100]!r} contains a backslash; use '/'")
    if path.startswith("/"):
        raise InvalidPath(f"path {path[:100]!r} is absolute")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath(f"path {path[:100]!r} is not valid UTF-8") from None
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidPath(f"path {path[:100]!r} has an empty, '.' or '..' segment")
    return path


def check_folder(path: str) -> str:
    """A folder path as sent by clients: the same rules, with one trailing '/' tolerated."""
    return check_path(path[:-1] if path.endswith("/") else path)


def check_ref_name(name: str) -> str:
    """Git's rules for a branch or tag name (`git check-ref-format --branch`)."""
    problem = None
    if not name or len(name) > 255:
        problem = "must be 1 to 255 characters"
    elif _REF_FORBIDDEN_RE.search(name):
        problem = "contains a space, control character or one of ~ ^ : ? * [ \\"
    elif invisible_character(name):
        problem = f"contains an invisible or control character ({invisible_character(name)})"
    elif name.startswith("/") or name.endswith("/") or "//" in name:
        problem = "has an empty component"
    elif ".." in name or "@{" in name or name == "@":
        problem = "contains '..' or '@{' or is '@'"
    elif name.endswith(".") or name.startswith("-"):
        problem = "ends with '.' or starts with '-'"
    elif any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        problem = "has a component starting with '.' or ending with '.lock'"
    elif COMMIT_OID_RE.match(name):
        problem = "looks like a commit id"
    if problem:
        raise InvalidRefName(f"invalid ref name {name[:100]!r}: {problem}")
    return name
