from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["__init__", "chunking", "hashes", "reconstruction", "shard", "xorb"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module("weightyard.xet" if name == "__init__" else f"weightyard.xet.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
