"""Fixtures shared by the provenance tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ._model_signing import ensure_model_signing
from ._support import KeyPair, make_key_pair, sign_payload, write_model

Forger = Callable[[dict[str, Any]], bytes]


@pytest.fixture(scope="session")
def key_pair() -> KeyPair:
    return make_key_pair()


@pytest.fixture(scope="session")
def other_key_pair() -> KeyPair:
    return make_key_pair()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model(tmp_path / "tiny-model")


@pytest.fixture
def forge(key_pair: KeyPair) -> Forger:
    """Sign any statement (as a dict) with the trusted key, as a compromised or buggy signer could."""

    def forge_statement(statement: dict[str, Any]) -> bytes:
        return sign_payload(json.dumps(statement).encode(), key_pair[0])

    return forge_statement


@pytest.fixture(scope="session")
def model_signing_cli() -> Path:
    return ensure_model_signing()
