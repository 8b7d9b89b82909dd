"""bench/download_bound.py, the download bound of bench/transfer.py: the unmodified client downloads a Xet
file through it with every xorb byte from another origin, so its timings are a true client-side bound."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from tests.support import Server, free_port

BOUND = Path(__file__).resolve().parents[2] / "bench" / "download_bound.py"
SIZE = 3 * 1024 * 1024 + 17


class Origin(ThreadingHTTPServer):
    """Files under `root` by path, single byte ranges: what nginx does with the xorb folder in the bench."""

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _OriginHandler)
        self.root = root
        self.served = 0


class _OriginHandler(BaseHTTPRequestHandler):
    server: Origin

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        path = (self.server.root / self.path.lstrip("/")).resolve()
        data = path.read_bytes() if path.is_relative_to(self.server.root) and path.is_file() else None
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if data is None or match is None:
            self.send_error(404 if data is None else 416)
            return
        first, last = int(match[1]), min(int(match[2]), len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.send_header("Content-Length", str(last + 1 - first))
        self.end_headers()
        self.wfile.write(data[first : last + 1])
        self.server.served += last + 1 - first


@pytest.fixture
def origin(server: Server) -> Iterator[Origin]:
    instance = Origin((server.data / "xorbs").resolve())
    thread = threading.Thread(target=instance.serve_forever, daemon=True)
    thread.start()
    try:
        yield instance
    finally:
        instance.shutdown()
        instance.server_close()


@pytest.fixture
def bound(server: Server, origin: Origin) -> Iterator[str]:
    port = free_port()
    origin_url = f"http://127.0.0.1:{origin.server_address[1]}"
    process = subprocess.Popen(
        [sys.executable, str(BOUND), "--hub", server.url, "--origin", origin_url, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"listening on http://127.0.0.1:{port}"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_stock_xet_download_through_the_bound_takes_every_byte_from_the_origin(
    server: Server, origin: Origin, bound: str, repo_name: str, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    api.upload_file(path_or_fileobj=data, path_in_repo="model.bin", repo_id=repo_name)
    code = (
        "import sys\nfrom huggingface_hub import hf_hub_download\n"
        "print(hf_hub_download(sys.argv[2], 'model.bin', endpoint=sys.argv[1], token=sys.argv[3]))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    done = subprocess.run(
        [sys.executable, "-c", code, bound, repo_name, server.token],
        env={**env, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    downloaded = Path(done.stdout.strip().splitlines()[-1]).read_bytes()
    assert hashlib.sha256(downloaded).digest() == hashlib.sha256(data).digest()
    with urllib.request.urlopen(f"{bound}/_bound/stats", timeout=10) as answer:  # noqa: S310 - loopback
        stats = json.loads(answer.read())
    assert stats["rewritten"] == 1 and stats["fetch_urls"] >= 1
    assert stats["forwarded_bytes"] < 64 * 1024  # the hub sent only the small answers
    assert origin.served >= SIZE  # random bytes do not compress: every one came from the origin
