"""Scanning the generated corpus the way a user would: files alone, model folders as folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.scan.scan_corpus import Sample

from weightyard.scan import Report, scan_file, scan_path


@dataclass(frozen=True)
class ScannedCorpus:
    root: Path
    samples: list[Sample]
    reports: dict[str, Report]


def scan_corpus(root: Path, samples: list[Sample]) -> ScannedCorpus:
    folders: dict[str, dict[str, Report]] = {}
    reports: dict[str, Report] = {}
    for sample in samples:
        if sample.folder is None:
            reports[sample.path] = scan_file(root / sample.path, Path(sample.path).name)
            continue
        if sample.folder not in folders:
            folders[sample.folder] = scan_path(root / sample.folder)
        reports[sample.path] = folders[sample.folder][Path(sample.path).relative_to(sample.folder).as_posix()]
    return ScannedCorpus(root, samples, reports)
