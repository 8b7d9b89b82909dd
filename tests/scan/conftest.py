"""The labelled corpus, generated once per session into a temporary folder and scanned once."""

from __future__ import annotations

import pytest
from tests.scan.corpus_reports import ScannedCorpus, scan_corpus
from tests.scan.scan_corpus import build


@pytest.fixture(scope="session")
def scanned_corpus(tmp_path_factory: pytest.TempPathFactory) -> ScannedCorpus:
    root = tmp_path_factory.mktemp("scan-corpus")
    return scan_corpus(root, build(root))
