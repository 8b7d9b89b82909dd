"""Bounded work per request: body sizes, stalled bodies and heads, connection counts, commit and batch sizes.

Every test runs against a real server process started with small limits (see conftest.py), and talks raw
HTTP over a socket where it matters when the server answers or closes.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.api.conftest import SMALL_LIMITS
from tests.support import Server

JUNK = b"{},"  # an array of empty objects, never closed: the most objects per byte


def _connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    return sock


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response (the server closes or announces the length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return int(status_line.split()[1]), headers, body


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection (after whatever it still had to send)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:  # closed with our unread bytes still queued
        return True
    except TimeoutError:
        return False
    return True


def _send_until_answered(sock: socket.socket, chunks: Iterator[bytes], limit: int) -> int:
    """Send chunks until the server answers; the number of body bytes sent by then. Past `limit` bytes, each
    chunk waits up to 0.1 s for the answer first: on a busy machine the server can take a while to answer,
    and the count must not run ahead of it (a chunk each 0.1 s stays well within the 1 s idle limit)."""
    sent = 0
    for chunk in chunks:
        if select.select([sock], [], [], 0.01 if sent <= limit else 0.1)[0]:
            return sent
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            return sent
        sent += len(chunk)
    return sent


def _chunks(total: int, size: int = 15 * 1024) -> Iterator[bytes]:
    yield b"[" + JUNK * (size // len(JUNK))
    for _ in range(total // size - 1):
        yield JUNK * (size // len(JUNK))


def _auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def _create_repo(server: Server, name: str) -> str:
    response = httpx.post(f"{server.url}/api/repos/create", json={"name": name}, headers=_auth(server))
    assert response.status_code == 200, response.text
    return str(response.json()["name"])


# ---------------------------------------------------------------------------------------------- bodies


def test_a_json_body_streamed_past_the_limit_is_refused_midway_without_growing_server_memory(
    small: Server,
) -> None:
    # First in the module, so the server's peak memory so far is its start-up peak.
    rss_before = small.rss_bytes()
    planned = 8 * 1024 * 1024
    with _connect(small) as sock:
        sock.sendall(
            _head(
                "POST",
                "/api/repos/create",
                {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            )
        )
        sent = _send_until_answered(sock, _chunks(planned), int(SMALL_LIMITS["WEIGHTYARD_MAX_JSON_BODY"]))
        status, headers, _ = _read_response(sock)
    assert (status, headers.get("x-error-code")) == (413, "PayloadTooLarge")
    assert sent < planned // 16, f"the 413 came only after {sent} bytes"
    # Parsing even 8 MiB of such JSON costs the server well over 100 MiB.
    assert small.peak_rss_bytes() - rss_before < 32 * 1024 * 1024


@pytest.mark.parametrize(
    "path", ["/api/repos/create", "/api/admin/orgs", "/api/models/admin/x/preupload/main", "/api/lfs/verify"]
)
def test_an_announced_oversized_body_gets_413_before_any_of_it_is_sent_or_the_caller_is_checked(
    small: Server, path: str
) -> None:
    # Anonymous: a 401 or 404 would mean the route did authentication or lookup work first.
    with _connect(small) as sock:
        sock.sendall(
            _head("POST", path, {"Content-Type": "application/json", "Content-Length": "10000000000"})
        )
        status, headers, body = _read_response(sock)
        assert _closed_by_server(sock)
    assert (status, headers.get("x-error-code")) == (413, "PayloadTooLarge")
    assert json.loads(body)["code"] == "PayloadTooLarge"


def test_a_body_within_the_limit_is_read(small: Server) -> None:
    files = [{"path": f"file-{i:05d}.txt", "size": 1, "sample": ""} for i in range(1000)]
    payload = json.dumps({"files": files}).encode()
    assert 32 * 1024 < len(payload) < 64 * 1024
    repo = _create_repo(small, "admin/within-limit")
    response = httpx.post(
        f"{small.url}/api/models/{repo}/preupload/main",
        content=payload,
        headers={**_auth(small), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["files"]) == 1000


def test_a_stalled_body_fails_with_408(small: Server) -> None:
    with _connect(small) as sock:
        sock.sendall(
            _head("POST", "/api/repos/create", {"Content-Type": "application/json", "Content-Length": "100"})
        )
        sock.sendall(b'{"name": ')
        status, headers, _ = _read_response(sock)
    assert (status, headers.get("x-error-code")) == (408, "RequestTimeout")


# ---------------------------------------------------------------------------------------------- connections


def test_connections_that_never_finish_their_request_head_are_closed(small: Server) -> None:
    """Slowloris: each connection keeps sending header bytes, which must not keep it open."""
    sockets = [_connect(small) for _ in range(10)]
    for sock in sockets:
        sock.sendall(b"GET /api/agent-harnesses HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.setblocking(False)
    open_ones = set(sockets)
    deadline = time.monotonic() + 20  # the server's head timeout is 1 s
    while open_ones and time.monotonic() < deadline:
        for sock in list(open_ones):
            try:
                if sock.recv(1024) == b"":
                    open_ones.discard(sock)
                    continue
            except BlockingIOError:
                pass
            except OSError:
                open_ones.discard(sock)
                continue
            try:
                sock.send(b"X-Slow: 1\r\n")
            except OSError:
                open_ones.discard(sock)
        time.sleep(0.2)
    for sock in sockets:
        sock.close()
    assert not open_ones, f"{len(open_ones)} slow connections were still open"


def test_an_idle_connection_is_closed_after_its_response(small: Server) -> None:
    with _connect(small) as sock:
        sock.sendall(_head("GET", "/api/agent-harnesses", {}))
        status, headers, _ = _read_response(sock)
        assert (status, headers.get("connection")) == (200, None)  # kept alive at first
        assert _closed_by_server(sock)


def test_past_the_connection_cap_requests_get_503_until_idle_connections_are_closed(small: Server) -> None:
    idle = [_connect(small) for _ in range(45)]  # the cap is 40
    try:
        with _connect(small) as sock:
            sock.sendall(_head("GET", "/api/agent-harnesses", {}))
            status, _, _ = _read_response(sock)
        assert status == 503
        for sock in idle:
            assert _closed_by_server(sock)  # none of them sent a request head in time
    finally:
        for sock in idle:
            sock.close()
    assert httpx.get(f"{small.url}/api/agent-harnesses").status_code == 200


def test_an_oversized_request_head_is_refused(small: Server) -> None:
    with _connect(small) as sock:
        # Larger than one read of the socket, so the server sees an incomplete head past the limit.
        sock.sendall(_head("GET", "/api/agent-harnesses", {"X-Big": "a" * 1024 * 1024}))
        status, _, _ = _read_response(sock)
        assert _closed_by_server(sock)
    assert status == 400


# ---------------------------------------------------------------------------------------------- commits


def _commit(server: Server, repo: str, lines: list[bytes]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/models/{repo}/commit/main",
        content=b"".join(line + b"\n" for line in lines),
        headers={**_auth(server), "Content-Type": "application/x-ndjson"},
        timeout=60,
    )


def _line(key: str, value: dict[str, object]) -> bytes:
    return json.dumps({"key": key, "value": value}).encode()


HEADER = _line("header", {"summary": "limits"})


def test_a_commit_with_more_operations_than_allowed_is_refused(small: Server) -> None:
    repo = _create_repo(small, "admin/many-operations")
    files = [_line("file", {"path": f"f{i}.txt", "content": "YQ=="}) for i in range(6)]
    response = _commit(small, repo, [HEADER, *files])
    assert (response.status_code, response.headers.get("x-error-code")) == (413, "TooManyObjects")
    assert _commit(small, repo, [HEADER, *files[:5]]).status_code == 200


@pytest.mark.parametrize("content_bytes", [0, 2 * 1024 * 1024], ids=["short-line", "streamed-line"])
def test_a_deeply_nested_commit_line_is_a_400(small: Server, content_bytes: int) -> None:
    repo = _create_repo(small, f"admin/nested-{content_bytes}")
    content = base64.b64encode(b"x" * content_bytes).decode()
    nested = b'{"key": "file", "value": {"path": "a.bin", "content": "%s", "x": %s%s}}' % (
        content.encode(),
        b"[" * 3000,
        b"]" * 3000,
    )
    response = _commit(small, repo, [HEADER, nested])
    assert (response.status_code, response.headers.get("x-error-code")) == (400, "MalformedCommit")
    assert "nest" in response.json()["error"]


@pytest.mark.parametrize("junk_bytes", [8000, 2 * 1024 * 1024], ids=["short-line", "streamed-line"])
def test_a_commit_line_padded_with_junk_is_a_400_but_long_file_content_is_not(
    small: Server, junk_bytes: int
) -> None:
    repo = _create_repo(small, f"admin/junk-{junk_bytes}")
    junk = _line("header", {"summary": "junk", "junk": [{}] * (junk_bytes // 4)})
    response = _commit(small, repo, [junk])
    assert (response.status_code, response.headers.get("x-error-code")) == (400, "MalformedCommit")
    big_file = _line("file", {"path": "big.bin", "content": base64.b64encode(b"y" * junk_bytes).decode()})
    assert _commit(small, repo, [HEADER, big_file]).status_code == 200


def test_an_lfs_batch_with_more_objects_than_allowed_is_refused(small: Server) -> None:
    repo = _create_repo(small, "admin/lfs-batch")
    objects = [{"oid": f"{i:064x}", "size": 10} for i in range(4)]

    def batch(count: int) -> httpx.Response:
        return httpx.post(
            f"{small.url}/{repo}.git/info/lfs/objects/batch",
            json={"operation": "upload", "objects": objects[:count]},
            headers=_auth(small),
        )

    response = batch(4)
    assert (response.status_code, response.headers.get("x-error-code")) == (413, "TooManyObjects")
    assert batch(3).status_code == 200
