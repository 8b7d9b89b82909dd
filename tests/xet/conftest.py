"""Fixtures of the Xet library tests: protocol examples captured from the stock client, and its own hasher.

`data/` holds what we recorded once from huggingface_hub 2.4 + hf_xet 1.8 against a loopback CAS stub
(requests, token, shard and reconstruction answers) and the published gearhash table; the tests never read
anything outside the repository."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hf_xet
import pytest

from weightyard.xet.hashes import string_to_hash

XET_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def xet_data() -> Path:
    return XET_DATA


@pytest.fixture(scope="session")
def examples(xet_data: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((xet_data / "captured-examples.json").read_text())
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
