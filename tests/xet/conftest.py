"""Shared fixtures of the Xet library tests: the captured protocol examples and the client's own hasher."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hf_xet
import pytest

from weightyard.xet.hashes import string_to_hash

SHARED_XET = Path(__file__).resolve().parents[2].parent / "shared" / "xet"


@pytest.fixture(scope="session")
def shared_xet() -> Path:
    assert SHARED_XET.is_dir(), f"the captured Xet examples belong beside the repository, at {SHARED_XET}"
    return SHARED_XET


@pytest.fixture(scope="session")
def examples(shared_xet: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_xet / "examples.json").read_text())
    return data


@pytest.fixture
def client_file_hash(tmp_path: Path) -> Callable[[bytes], bytes]:
    """The Xet hash the stock client (hf_xet) computes for some bytes."""

    def compute(data: bytes) -> bytes:
        path = tmp_path / "client-input.bin"
        path.write_bytes(data)
        (info,) = hf_xet.hash_files([str(path)])
        assert info.file_size == len(data)
        return string_to_hash(info.hash)

    return compute
