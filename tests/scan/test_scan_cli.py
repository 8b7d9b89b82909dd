"""`weightyard scan`: exit codes, the JSON document, folders, recursion and Hugging Face caches."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tests.scan.scan_corpus import OS_SYSTEM
from typer.testing import CliRunner

from weightyard.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["scan", *args])
    return result.exit_code, result.stdout


def scan_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out = run("--json", *args)
    return code, json.loads(out)


def model_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "onnx").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "README.md").write_text("# model\n")
    (folder / "onnx" / "notes.txt").write_text("exported\n")
    return folder


def test_all_safe_folder_exits_zero(tmp_path: Path) -> None:
    code, out = run(str(model_folder(tmp_path)), "--recursive")
    assert code == 0
    assert "3 files: 3 safe" in out


def test_unsafe_file_exits_one(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(OS_SYSTEM)
    code, out = run(str(tmp_path / "pytorch_model.bin"))
    assert code == 1
    assert "unsafe" in out and "os.system" in out


def test_suspicious_and_unscannable_files_exit_one(tmp_path: Path) -> None:
    (tmp_path / "modeling.py").write_text("x = 1\n")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 2)
    assert run(str(tmp_path / "modeling.py"))[0] == 1
    assert run(str(tmp_path / "blob.bin"))[0] == 1


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    assert run(str(tmp_path / "nope"))[0] == 2


def test_no_path_is_a_usage_error() -> None:
    assert run()[0] == 2


def test_json_is_one_object_with_one_entry_per_file_and_a_summary(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    (folder / "evil.pkl").write_bytes(OS_SYSTEM)
    code, doc = scan_json(str(folder), "--recursive")
    assert code == 1
    assert set(doc) == {"files", "summary"}
    by_path = {f["path"]: f for f in doc["files"]}
    assert set(by_path) == {
        os.path.join(str(folder), name) for name in ("README.md", "config.json", "evil.pkl", "onnx/notes.txt")
    }
    assert all(set(f) == {"path", "verdict", "format", "findings"} for f in doc["files"])
    evil = by_path[os.path.join(str(folder), "evil.pkl")]
    assert (evil["verdict"], evil["format"]) == ("unsafe", "pickle")
    assert evil["findings"][0]["rule"] == "pickle.dangerous-import"
    assert doc["summary"]["files"] == 4
    assert (doc["summary"]["unsafe"], doc["summary"]["safe"], doc["summary"]["verdict"]) == (1, 3, "unsafe")


def test_json_path_keeps_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    _, doc = scan_json("model", "model/config.json")
    assert sorted(f["path"] for f in doc["files"]) == [
        "model/README.md",
        "model/config.json",
        "model/config.json",
    ]


def test_folder_without_recursive_scans_only_its_own_files(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    (folder / "onnx" / "evil.pkl").write_bytes(OS_SYSTEM)
    code, doc = scan_json(str(folder))
    assert code == 0
    assert len(doc["files"]) == 2


def test_hugging_face_cache_folder_is_scanned_through_snapshot_links(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "blobs" / "aa11").write_bytes(OS_SYSTEM)
    (repo / "blobs" / "bb22").write_text(json.dumps({"model_type": "bert"}))
    (snapshot / "pytorch_model.bin").symlink_to("../../blobs/aa11")
    (snapshot / "config.json").symlink_to("../../blobs/bb22")
    code, doc = scan_json(str(tmp_path / "hub"), "--recursive")
    assert code == 1
    verdicts = {Path(f["path"]).relative_to(tmp_path / "hub").as_posix(): f["verdict"] for f in doc["files"]}
    assert verdicts == {
        "models--org--name/refs/main": "safe",
        "models--org--name/snapshots/0123abcd/config.json": "safe",
        "models--org--name/snapshots/0123abcd/pytorch_model.bin": "unsafe",
    }
