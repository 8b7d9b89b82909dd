"""Fixtures of the scale tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from weightyard.config import Settings
from weightyard.hub import Hub


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    """A hub in this process on each database (a fresh PostgreSQL database per test module)."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    instance = Hub.open(Settings(data=tmp_path / "data", database_url=url))
    yield instance
    instance.close()
