"""Shared fixtures: a real `weightyard serve` on a free loopback port, and clients pointed at it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from tests.support import Server, start_server, stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One hub for the session, in its default configuration."""
    instance = start_server(tmp_path_factory.mktemp("hub") / "data")
    yield instance
    stop_server(instance)


@pytest.fixture(scope="session")
def lfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A hub that sends every binary or >=1 MiB file through the LFS batch API, in 1 MiB parts."""
    instance = start_server(
        tmp_path_factory.mktemp("lfs-hub") / "data",
        env={
            "WEIGHTYARD_LFS_UPLOADS": "always",
            "WEIGHTYARD_LFS_THRESHOLD": str(1024 * 1024),
            "WEIGHTYARD_MULTIPART_CHUNK_SIZE": str(1024 * 1024),
        },
    )
    yield instance
    stop_server(instance)


_counter = 0


@pytest.fixture
def repo_name() -> str:
    """A fresh repo name per test (tests share the session server)."""
    global _counter
    _counter += 1
    return f"admin/t{os.getpid()}-{_counter}-{time.time_ns() % 1_000_000}"
