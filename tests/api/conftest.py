"""A hub started with small limits, so each limit can be shown to hold without big bodies or long waits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support import Server, start_server, stop_server

SMALL_LIMITS = {
    "WEIGHTYARD_MAX_JSON_BODY": str(64 * 1024),
    "WEIGHTYARD_BODY_IDLE_TIMEOUT": "1",
    "WEIGHTYARD_HEADER_TIMEOUT": "1",
    "WEIGHTYARD_MAX_HEADER_BYTES": str(8 * 1024),
    "WEIGHTYARD_MAX_CONNECTIONS": "40",
    "WEIGHTYARD_MAX_COMMIT_OPERATIONS": "5",
    "WEIGHTYARD_MAX_LFS_BATCH_OBJECTS": "3",
    "WEIGHTYARD_MAX_COMMIT_LINE_BYTES": "4096",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(tmp_path_factory.mktemp("small-limits") / "data", env=SMALL_LIMITS)
    yield instance
    stop_server(instance)
