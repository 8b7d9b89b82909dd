"""The labelled corpus, generated once per session into a temporary folder and scanned once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.scan.scan_corpus import Sample, build

from weightyard.scan import Report, scan_file, scan_path


@dataclass(frozen=True)
class ScannedCorpus:
    root: Path
    samples: list[Sample]
    reports: dict[str, Report]


def scan_sample(root: Path, sample: Sample, folders: dict[str, dict[str, Report]]) -> Report:
    if sample.folder is None:
        return scan_file(root / sample.path, Path(sample.path).name)
    if sample.folder not in folders:
        folders[sample.folder] = scan_path(root / sample.folder)
    return folders[sample.folder][Path(sample.path).relative_to(sample.folder).as_posix()]


@pytest.fixture(scope="session")
def scanned_corpus(tmp_path_factory: pytest.TempPathFactory) -> ScannedCorpus:
    root = tmp_path_factory.mktemp("scan-corpus")
    samples = build(root)
    folders: dict[str, dict[str, Report]] = {}
    reports = {s.path: scan_sample(root, s, folders) for s in samples}
    return ScannedCorpus(root, samples, reports)
