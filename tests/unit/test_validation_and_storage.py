"""The one validator."""

from __future__ import annotations

import pytest

from weightyard.errors import InvalidPath, InvalidRefName, InvalidRepoId
from weightyard.validation import check_path, check_ref_name, check_repo_id, check_repo_segment

# One of each class of character that shows as something other than itself (or as nothing): bidirectional
# overrides, embeddings and isolates, zero-width characters, separators, odd spaces, soft hyphen, BOM,
# C1 controls, private use, unassigned, and glyphs that render blank.
INVISIBLE = [
    "\u202e",  # right-to-left override: `a/\u202etxt.exe` shows as `a/exe.txt`
    "\u202d",
    "\u202a",
    "\u2066",  # left-to-right isolate
    "\u2069",  # pop directional isolate
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\u200e",  # left-to-right mark
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark
    "\u00ad",  # soft hyphen
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\u00a0",  # no-break space
    "\u3000",  # ideographic space
    "\u0085",  # next line (C1 control)
    "\ue000",  # private use
    "\U000e0001",  # language tag
    "\u0378",  # unassigned
    "\u3164",  # Hangul filler
    "\u2800",  # braille blank
    "\ufe0f",  # variation selector
    "\u034f",  # combining grapheme joiner
]


@pytest.mark.parametrize(
    "path", ["a", "a/b.txt", "1_Pooling/config.json", ".gitattributes", "é/ü.bin", "x" * 1024]
)
def test_valid_paths_pass(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(
    "path", ["", "/a", "../a", "a/../b", "a//b", "a/", "./a", "a\\b", "a\x00", "a\nb", "\x7f", "x" * 1025]
)
def test_invalid_paths_are_rejected(path: str) -> None:
    with pytest.raises(InvalidPath):
        check_path(path)


@pytest.mark.parametrize("char", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_invisible_characters_are_refused_in_paths_refs_and_repo_ids(char: str) -> None:
    with pytest.raises(InvalidPath, match=f"invisible or control character \\(U\\+{ord(char):04X}"):
        check_path(f"a/{char}txt.exe")
    with pytest.raises(InvalidRefName, match="invisible"):
        check_ref_name(f"release{char}1")
    with pytest.raises(InvalidRepoId):
        check_repo_id(f"alice/model{char}")
    with pytest.raises(InvalidRepoId):
        check_repo_segment(f"alice{char}", "namespace")


def test_a_repo_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidRepoId):
        check_repo_id("alice/model\n")


@pytest.mark.parametrize("repo_id", ["alice/tiny", "Org.1/model_v2-final", "a/" + "b" * 96])
def test_valid_repo_ids_pass(repo_id: str) -> None:
    assert "/".join(check_repo_id(repo_id)) == repo_id


@pytest.mark.parametrize(
    "repo_id", ["alice", "a/b/c", "a/b--c", "a/b..c", "-a/b", "a/.b", "a/b c", "a/" + "b" * 97, "a/x.git"]
)
def test_invalid_repo_ids_are_rejected(repo_id: str) -> None:
    with pytest.raises(InvalidRepoId):
        check_repo_id(repo_id)


@pytest.mark.parametrize("name", ["main", "dev", "feature/x", "v1.0", "release-2026.11"])
def test_valid_ref_names_pass(name: str) -> None:
    assert check_ref_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a..b",
        "a b",
        "a~b",
        "a^b",
        "a:b",
        "a?b",
        "a*b",
        "a[b",
        "a\\b",
        "/a",
        "a/",
        "a//b",
        ".a",
        "a.lock",
        "a.",
        "@",
        "a@{b",
        "-a",
        "0" * 40,
    ],
)
def test_invalid_ref_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidRefName):
        check_ref_name(name)
