"""The repository stands alone: no code, test, benchmark, build file or doc reads or points at the developers'
notes kept outside it (the shared folder beside the checkout and the notes in it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Written so that this file does not match itself.
OUTSIDE = re.compile(
    r"\.\./share[d]\b|/work/share[d]\b|\b(?:DESIGN|HF_PROTOCOL|XET_PROTOCOL|SCANNING|PROVENANCE|TRUST)\.md\b"
)
TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".toml",
    ".cfg",
    ".ini",
    ".txt",
    ".html",
    ".js",
    ".css",
    ".yaml",
    ".yml",
    ".json",
}


def project_files() -> list[Path]:
    files = [ROOT / "Makefile", ROOT / "README.md", ROOT / "pyproject.toml"]
    for top in ("src", "tests", "docs", "bench"):
        for path in sorted((ROOT / top).rglob("*")):
            parts = path.relative_to(ROOT).parts
            if any(part.startswith(".") or part == "__pycache__" for part in parts):
                continue  # tool environments and caches the tests make (tests/.tools), not the project
            if path.is_file() and path.suffix in TEXT_SUFFIXES:
                files.append(path)
    return files


def test_no_file_points_outside_the_repository() -> None:
    found = []
    for path in project_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
