"""Every labelled sample of the corpus gets exactly its expected verdict."""

from __future__ import annotations

import pytest
from tests.scan.corpus_reports import ScannedCorpus

from weightyard.scan import Severity, Verdict

CATEGORIES = [
    "pickle",
    "joblib",
    "torch",
    "numpy",
    "safetensors",
    "gguf",
    "keras",
    "tf",
    "onnx",
    "archive",
    "config",
]


def _mismatches(corpus: ScannedCorpus, prefix: str) -> list[str]:
    wrong = []
    for sample in corpus.samples:
        if sample.path.startswith(prefix):
            report = corpus.reports[sample.path]
            if report.verdict.value != sample.expected:
                rules = [f.rule for f in report.findings]
                wrong.append(f"{sample.path} ({sample.technique}): {report.verdict.value} {rules}")
    return wrong


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_malicious_technique_in_category_gets_its_expected_verdict(
    scanned_corpus: ScannedCorpus, category: str
) -> None:
    samples = [s for s in scanned_corpus.samples if s.path.startswith(f"{category}/")]
    assert samples
    assert all(s.malicious for s in samples)
    assert _mismatches(scanned_corpus, f"{category}/") == []


def test_every_benign_real_world_file_is_safe(scanned_corpus: ScannedCorpus) -> None:
    benign = [s for s in scanned_corpus.samples if not s.malicious]
    assert len(benign) > 40
    assert all(s.expected == "safe" for s in benign)
    assert _mismatches(scanned_corpus, "benign/") == []


def test_no_malicious_sample_is_safe(scanned_corpus: ScannedCorpus) -> None:
    malicious = [s for s in scanned_corpus.samples if s.malicious]
    assert len(malicious) > 100
    assert [s.path for s in malicious if scanned_corpus.reports[s.path].verdict is Verdict.SAFE] == []


def test_every_flagged_malicious_sample_carries_an_explaining_finding(scanned_corpus: ScannedCorpus) -> None:
    for sample in scanned_corpus.samples:
        if sample.malicious:
            report = scanned_corpus.reports[sample.path]
            weighty = {Severity.CRITICAL, Severity.WARNING}
            if sample.expected == "unscannable":
                weighty.add(Severity.ERROR)
            decisive = [f for f in report.findings if f.severity in weighty]
            assert decisive, sample.path
            assert all(f.rule and f.location and f.message for f in decisive), sample.path


def test_payload_pickles_name_the_imported_callable_and_its_opcode_offset(
    scanned_corpus: ScannedCorpus,
) -> None:
    report = scanned_corpus.reports["pickle/memo_swap.pkl"]
    hit = next(f for f in report.findings if f.rule == "pickle.dangerous-import")
    assert hit.subject == "os.system"
    assert hit.location.startswith("memo_swap.pkl@")
    offset = int(hit.location.rsplit("@", 1)[1])
    assert (scanned_corpus.root / "pickle/memo_swap.pkl").read_bytes()[offset] == 0x93


def test_torch_payload_location_names_the_zip_member(scanned_corpus: ScannedCorpus) -> None:
    report = scanned_corpus.reports["torch/zip_payload.pt"]
    hit = next(f for f in report.findings if f.rule == "pickle.dangerous-import")
    assert "/data.pkl@" in hit.location


def test_real_torch_numpy_and_sklearn_files_report_their_format(scanned_corpus: ScannedCorpus) -> None:
    formats = {s.path: scanned_corpus.reports[s.path].format for s in scanned_corpus.samples}
    assert formats["benign/torch/state_dict.pt"] == "pytorch-zip"
    assert formats["benign/torch/legacy_state_dict.pth"] == "pytorch-legacy"
    assert formats["benign/sklearn/forest.joblib"] == "joblib"
    assert formats["benign/sklearn/forest_zlib.joblib"] == "joblib+zlib"
    assert formats["benign/numpy/arrays.npz"] == "npz"
    assert formats["benign/minilm/model.safetensors"] == "safetensors"
    assert formats["benign/gguf/chat.gguf"] == "gguf"
    assert formats["benign/tf/saved_model.pb"] == "tf-savedmodel"
    assert formats["benign/onnx/model.onnx"] == "onnx"
    assert formats["benign/keras/model.keras"] == "keras"
