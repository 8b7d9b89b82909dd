"""Gigabyte transfers keep memory bounded: inline commits from the stock client, and weightyard push/pull."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from tests.support import Server, run_python, start_server, stop_server

GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024
SERVER_PEAK_LIMIT = 300 * MIB
CLIENT_PEAK_LIMIT = 400 * MIB

pytestmark = [pytest.mark.slow, pytest.mark.client]


def write_random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(16 * MIB, remaining))
            digest.update(block)
            handle.write(block)
            remaining -= len(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(16 * MIB):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of its own, so its peak memory reflects this test only."""
    instance = start_server(tmp_path / "data")
    yield instance
    stop_server(instance)


@pytest.fixture(params=["xet", "inline"])
def stock_upload_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A fresh server with Xet on (the default: the stock client uploads through Xet) or off (the hub answers
    "regular" and the stock client inlines the bytes base64-encoded in one NDJSON commit request)."""
    env = {} if request.param == "xet" else {"WEIGHTYARD_XET": "false"}
    instance = start_server(tmp_path / "data", env=env)
    yield instance
    stop_server(instance)


def test_gigabyte_from_the_stock_client_keeps_server_memory_bounded(
    stock_upload_server: Server, tmp_path: Path
) -> None:
    fresh_server = stock_upload_server
    big = tmp_path / "big.bin"
    expected = write_random_file(big, GIB)
    code = f"""
from huggingface_hub import HfApi
api = HfApi(endpoint={fresh_server.url!r}, token={fresh_server.token!r})
api.create_repo("admin/big")
api.upload_file(path_or_fileobj={str(big)!r}, path_in_repo="big.bin", repo_id="admin/big")
"""
    result = run_python(code, {})
    assert result.returncode == 0, result.stderr
    assert fresh_server.peak_rss_bytes() < SERVER_PEAK_LIMIT
    _, entry = HfApi(endpoint=fresh_server.url, token=fresh_server.token).list_repo_tree("admin/big")
    assert entry.lfs is not None and entry.lfs.sha256 == expected
    assert entry.size == GIB


# VmHWM, not getrusage's ru_maxrss: Linux carries the maxrss of the process image that exec replaced (the
# forked copy of this pytest process, hundreds of MB late in the suite) into the new program's ru_maxrss.
PEAK_OF_CLI = """
import sys
from pathlib import Path
from weightyard.cli import main
sys.argv = ["weightyard", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
status = Path("/proc/self/status").read_text().splitlines()
(peak,) = (int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print("PEAK", peak, file=sys.stderr)
sys.exit(code)
"""


def run_cli_measured(args: list[str], server: Server) -> tuple[int, int, str]:
    import subprocess
    import sys

    # pull trusts the hub's key on first use: a configuration of its own keeps another run's hub on the same
    # port from looking like a changed key.
    config = server.data.parent / "cli-config"
    result = subprocess.run(
        [sys.executable, "-c", PEAK_OF_CLI, *args],
        env={
            **os.environ,
            "HF_TOKEN": server.token,
            "WEIGHTYARD_ENDPOINT": server.url,
            "XDG_CONFIG_HOME": str(config),
        },
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    peaks = [int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("PEAK ")]
    assert peaks, result.stderr
    return result.returncode, peaks[0], result.stderr


def test_push_and_pull_a_gigabyte_with_bounded_memory_on_both_sides(
    fresh_server: Server, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    expected = write_random_file(folder / "weights.bin", GIB)
    (folder / "config.json").write_text("{}")
    code, client_peak, log = run_cli_measured(["push", str(folder), "admin/huge"], fresh_server)
    assert code == 0, log
    assert client_peak < CLIENT_PEAK_LIMIT
    assert fresh_server.peak_rss_bytes() < SERVER_PEAK_LIMIT
    code, client_peak, log = run_cli_measured(
        ["pull", "admin/huge", "--to", str(tmp_path / "copy")], fresh_server
    )
    assert code == 0, log
    assert client_peak < CLIENT_PEAK_LIMIT
    assert sha256_of(tmp_path / "copy" / "weights.bin") == expected
    assert fresh_server.peak_rss_bytes() < SERVER_PEAK_LIMIT
