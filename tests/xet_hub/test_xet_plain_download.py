"""Plain-HTTP downloads of Xet-stored files: rebuilt from the xorbs in windows, every chunk checked.

The hub here makes no whole copies (`WEIGHTYARD_WHOLE_COPY_BUDGET=0`), so every download is a rebuild;
test_xet_whole_copies.py tests the copies."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support import loopback_request, stop_server
from tests.xet_hub.conftest import XetHub, payload, start_xet_hub, upload_line

from weightyard.xet import READ_WINDOW

pytestmark = pytest.mark.client

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def xet_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XetHub]:
    hub = start_xet_hub(
        tmp_path_factory.mktemp("no-copies") / "data", env={"WEIGHTYARD_WHOLE_COPY_BUDGET": "0"}
    )
    yield hub
    stop_server(hub.server)


def upload(xet_hub: XetHub, tmp_path: Path, repo: str, name: str, data: bytes) -> None:
    """Create `repo` for alice and upload `data` as `name` through the stock client's Xet path."""
    (tmp_path / name).write_bytes(data)
    loopback_request(
        "POST", f"{xet_hub.url}/api/repos/create", headers=xet_hub.headers("alice"), json={"name": repo}
    ).raise_for_status()
    xet_hub.run_client("alice", upload_line(tmp_path / name, name, repo), tmp_path / "up")


def test_ranges_across_rebuild_windows_are_exact_and_a_byte_flipped_in_storage_cuts_the_download(
    xet_hub: XetHub, tmp_path: Path
) -> None:
    data = payload(READ_WINDOW + 4 * MIB + 77)  # one xorb, rebuilt in two windows
    before = set(xet_hub.xorb_files())
    upload(xet_hub, tmp_path, "alice/rebuilt", "w.bin", data)
    (xorb,) = set(xet_hub.xorb_files()) - before
    blobs = xet_hub.blob_files()
    url = f"{xet_hub.url}/alice/rebuilt/resolve/main/w.bin"

    assert loopback_request("GET", url).content == data
    edges = [(READ_WINDOW - 5, READ_WINDOW + 70_000), (12_345, 12_345), (len(data) - 3, len(data) - 1)]
    for first, last in edges:
        ranged = loopback_request("GET", url, headers={"Range": f"bytes={first}-{last}"})
        assert ranged.status_code == 206 and ranged.content == data[first : last + 1]

    # Same size, so the checks before the headers pass; the second window's chunk hash does not.
    stored = next((xet_hub.server.data / "xorbs").rglob(xorb))
    damaged = bytearray(stored.read_bytes())
    damaged[READ_WINDOW + 2 * MIB] ^= 0x01
    stored.write_bytes(damaged)
    received = bytearray()

    def download() -> None:
        with httpx.stream("GET", url) as response:
            assert response.status_code == 200
            for piece in response.iter_bytes():
                received.extend(piece)

    with pytest.raises(httpx.RemoteProtocolError):
        download()
    assert len(received) < len(data)
    assert received == data[: len(received)], "bytes sent before the damage was found are the true ones"
    assert xet_hub.blob_files() == blobs, "a budget of 0 makes no whole copies"


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_downloads_given_up_mid_way_leave_no_xorb_file_open(xet_hub: XetHub, tmp_path: Path) -> None:
    # Sent with sendfile, each window holds its xorb file open until it is sent: windows checked ahead and
    # never sent must let theirs go too.
    data = payload(3 * READ_WINDOW + MIB, seed=7)
    upload(xet_hub, tmp_path, "alice/given-up", "g.bin", data)
    address = ("127.0.0.1", int(xet_hub.url.rsplit(":", 1)[1]))
    request = b"GET /alice/given-up/resolve/main/g.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    baseline = open_files(xet_hub.server.pid)
    for _ in range(5):
        with socket.create_connection(address, timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(request)
            assert sock.recv(65536)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
    deadline = time.monotonic() + 30
    while open_files(xet_hub.server.pid) > baseline:
        assert time.monotonic() < deadline, f"{open_files(xet_hub.server.pid) - baseline} files left open"
        time.sleep(0.05)
    assert loopback_request("GET", f"{xet_hub.url}/alice/given-up/resolve/main/g.bin").content == data


def test_xorb_ranges_the_client_fetches_are_sent_from_the_file_never_mapped_into_the_hub(
    xet_hub: XetHub, tmp_path: Path
) -> None:
    # The stock client's downloads fetch byte ranges of stored xorbs. Mapped into the hub to be sent, each
    # fetch in flight counted its pages in the hub's memory (50–60 MB more at a 1 GiB download): they go
    # by sendfile, so while a slow client holds a fetch open the xorb file is open but not mapped.
    data = payload(12 * MIB, seed=11)
    before = set(xet_hub.xorb_files())
    upload(xet_hub, tmp_path, "alice/fetched", "f.bin", data)
    (xorb,) = set(xet_hub.xorb_files()) - before
    stored = next((xet_hub.server.data / "xorbs").rglob(xorb)).read_bytes()
    head = loopback_request("HEAD", f"{xet_hub.url}/alice/fetched/resolve/main/f.bin")
    file_hash = head.headers["x-xet-hash"]
    token, cas_url = xet_hub.xet_token("alice", "alice/fetched", "read")
    plan = loopback_request(
        "GET", f"{cas_url}/v1/reconstructions/{file_hash}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    (fetch,) = plan["fetch_info"][xorb]
    first, last = fetch["url_range"]["start"], fetch["url_range"]["end"]
    assert last - first > 8 * MIB
    target = httpx.URL(fetch["url"])
    request = (
        f"GET {target.raw_path.decode()} HTTP/1.1\r\nHost: x\r\nRange: bytes={first}-{last}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    received = bytearray()
    with socket.create_connection(("127.0.0.1", target.port or 80), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(request)
        received += sock.recv(65536)
        # The hub opens the xorb once the head is out, then blocks on the full socket, part way through the
        # range: its descriptor is awaited (a busy machine may take a while), then the maps are read.
        deadline = time.monotonic() + 30
        while not any(
            Path(f"/proc/{xet_hub.server.pid}/fd/{fd}").resolve().name == xorb
            for fd in os.listdir(f"/proc/{xet_hub.server.pid}/fd")
            if os.path.exists(f"/proc/{xet_hub.server.pid}/fd/{fd}")
        ):
            assert time.monotonic() < deadline, "the hub never opened the xorb"
            time.sleep(0.05)
        time.sleep(0.1)  # what a hub that maps it would map with it
        maps = Path(f"/proc/{xet_hub.server.pid}/maps").read_text()
        assert xorb not in maps
        while chunk := sock.recv(1 << 20):
            received += chunk
    head_end = received.index(b"\r\n\r\n") + 4
    status_line = bytes(received[: received.index(b"\r\n")])
    assert status_line.startswith(b"HTTP/1.1 206")
    assert f"content-range: bytes {first}-{last}/{len(stored)}".encode() in bytes(received[:head_end]).lower()
    assert bytes(received[head_end:]) == stored[first : last + 1]
