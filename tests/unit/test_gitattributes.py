"""git's pattern rules for `.gitattributes` LFS rules and `.gitignore`, bounded."""

from __future__ import annotations

import pytest

from weightyard.repos.gitattributes import (
    DEFAULT_GITATTRIBUTES,
    MAX_RULES,
    IgnoreRules,
    LfsRules,
    complete_lines,
)
from weightyard.repos.objects import git_blob_oid


def test_default_gitattributes_is_the_hubs_file() -> None:
    assert len(DEFAULT_GITATTRIBUTES) == 1519
    assert git_blob_oid(DEFAULT_GITATTRIBUTES) == "a6344aac8c09253b3b630fb776ae94478aa0275b"


@pytest.mark.parametrize(
    ("path", "lfs"),
    [
        ("a.bin", True),
        ("deep/er/lfs.bin", True),
        ("model.safetensors", True),
        ("x.tar.gz", True),
        ("runs/events.out.tfevents.17", True),
        ("saved_model/variables/v.data", True),
        ("saved_model/x", True),
        ("other/saved_model/x", False),  # the rule has a `/`: anchored at the root
        ("README.md", False),
        ("a.binary", False),
        ("config.json", False),
    ],
)
def test_default_rules_name_the_hubs_lfs_files(path: str, lfs: bool) -> None:
    assert LfsRules.parse(DEFAULT_GITATTRIBUTES).is_lfs(path) is lfs


def test_the_last_matching_rule_wins_and_unset_filters_count() -> None:
    rules = LfsRules.parse(DEFAULT_GITATTRIBUTES).then(
        LfsRules.parse(b"*.png filter=lfs\nsmall.bin -filter\n")
    )
    assert rules.is_lfs("img/a.png") and rules.is_lfs("big.bin")
    assert not rules.is_lfs("small.bin")


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("a.log", True),
        ("keep.log", False),
        ("deep/keep.log", False),
        ("build/out.txt", True),
        ("x/build/out.txt", True),
        ("build", False),  # `build/` names folders only
        ("top.txt", True),
        ("x/top.txt", False),
        ("docs/a/b/c.tmp", True),
        ("docs/c.tmp", True),
        ("a.txt", True),
        ("c.txt", False),
        ("b.md", False),
    ],
)
def test_gitignore_rules(path: str, ignored: bool) -> None:
    rules = IgnoreRules.parse(
        b"# comment\n*.log\nbuild/\n!keep.log\n/top.txt\ndocs/**/*.tmp\n[ab].txt\n!b.txt\n"
    )
    assert rules.is_ignored(path) is ignored


def test_a_file_in_an_excluded_folder_cannot_be_brought_back() -> None:
    assert IgnoreRules.parse(b"cache/\n!cache/keep.txt\n").is_ignored("cache/keep.txt")


def test_only_complete_lines_of_a_sample_are_read_as_rules() -> None:
    assert complete_lines(b"*.png filter=lfs\n*.jp", 100) == b"*.png filter=lfs\n"
    assert complete_lines(b"*.png filter=lfs", 16) == b"*.png filter=lfs"


def test_rules_are_bounded_and_matching_never_backtracks() -> None:
    many = b"".join(b"*.x%d filter=lfs\n" % index for index in range(MAX_RULES + 500))
    assert len(LfsRules.parse(many).rules) == MAX_RULES
    # A naive backtracking matcher takes time exponential in the stars here, past the test timeout.
    hostile = LfsRules.parse(b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b filter=lfs\n")
    assert not hostile.is_lfs("a" * 1000)
