"""bench/sink.py, the upload sink of bench/transfer.py: the unmodified clients complete their uploads against
it, sending every byte the way they send it to the hub, so its timings are a true client-side bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import free_port, weightyard_cli

SINK = Path(__file__).resolve().parents[2] / "bench" / "sink.py"
SIZE = 3 * 1024 * 1024 + 17
PART = 1024 * 1024
LARGE = 10 * PART + 5  # from the CLI's 10 MiB threshold up, `push` sends the file itself


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SINK), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "WEIGHTYARD_MULTIPART_CHUNK_SIZE": str(PART)},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"listening on http://127.0.0.1:{port}"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_sink/stats", timeout=10) as answer:  # noqa: S310 - loopback
        result: dict[str, int] = json.loads(answer.read())
    return result


def client_env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    return {
        **env,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **extra,
    }


def test_stock_xet_upload_completes_against_the_sink_and_sends_every_byte(sink: str, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(SIZE))
    code = (
        "import sys\nfrom huggingface_hub import HfApi\n"
        "api = HfApi(endpoint=sys.argv[1], token='anything')\n"
        "api.create_repo('someone/model', exist_ok=True)\n"
        "api.upload_file(path_or_fileobj=sys.argv[2], path_in_repo='model.bin', repo_id='someone/model')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, sink, str(path)],
        env=client_env(tmp_path / "hf"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    counts = stats(sink)
    assert counts["received"] > SIZE  # random bytes do not compress: all of them, plus framing
    assert counts["xorbs"] >= 1 and counts["shards"] == 1 and counts["commits"] == 1
    assert counts["unknown"] == 0


def test_weightyard_push_completes_against_the_sink_in_multipart_parts(sink: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(os.urandom(SIZE))
    pushed = weightyard_cli("push", str(folder), "someone/model", "--endpoint", sink, "--token", "anything")
    assert pushed.returncode == 0, pushed.stderr
    counts = stats(sink)
    assert counts["received"] > SIZE
    assert counts["parts"] == 4 and counts["commits"] == 1  # 3 MiB + 17 bytes in 1 MiB parts
    assert counts["unknown"] == 0


def test_weightyard_push_of_a_large_file_completes_against_the_sink_through_an_upload_session(
    sink: str, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(os.urandom(LARGE))
    pushed = weightyard_cli("push", str(folder), "someone/model", "--endpoint", sink, "--token", "anything")
    assert pushed.returncode == 0, pushed.stderr
    counts = stats(sink)
    assert counts["received"] > LARGE
    assert counts["sessions"] == 1 and counts["parts"] == 11 and counts["commits"] == 1  # 1 MiB parts
    assert counts["unknown"] == 0
