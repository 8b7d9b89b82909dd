"""Upload sessions (`POST /api/{type}/{ns}/{name}/uploads`): a staged multipart upload opened by size alone,
completed with the client's sha256, which must equal the hub's own hash of what arrived.

Raw requests against a real hub (1 MiB parts): what becomes visible, what is refused and with which code,
and that nothing of a refused or abandoned session stays behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import sqlalchemy as sa
from huggingface_hub import HfApi
from tests.auth.gate_support import auth, create_repo, create_user
from tests.proxy import RewritingProxy
from tests.support import Server, database_url, loopback_request, start_server, stop_server, weightyard_cli

from weightyard.cli.transfer import Sent, TransferRefused, upload_file

pytestmark = pytest.mark.client

PART = 1024 * 1024  # the hub fixture's part size
DATA_SIZE = 2 * PART + 7  # three parts, the last one short


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A hub of its own (sessions left open on purpose stay out of other modules' hubs), in 1 MiB parts."""
    instance = start_server(
        tmp_path_factory.mktemp("sessions-hub") / "data", env={"WEIGHTYARD_MULTIPART_CHUNK_SIZE": str(PART)}
    )
    yield instance
    stop_server(instance)


@pytest.fixture
def repo(hub: Server, repo_name: str) -> str:
    HfApi(endpoint=hub.url, token=hub.token).create_repo(repo_name)
    return repo_name


def _open(server: Server, repo: str, size: int, token: str | None = None) -> httpx.Response:
    return loopback_request(
        "POST",
        f"{server.url}/api/models/{repo}/uploads",
        headers=auth(token or server.token),
        json={"size": size},
    )


def _session(server: Server, repo: str, size: int, token: str | None = None) -> dict[str, Any]:
    opened = _open(server, repo, size, token)
    assert opened.status_code == 200, opened.text
    session: dict[str, Any] = opened.json()
    return session


def _send(session: dict[str, Any], data: bytes, numbers: tuple[int, ...] | None = None) -> None:
    part = session["part_size"]
    for number in numbers or range(1, len(session["parts"]) + 1):
        chunk = data[(number - 1) * part : number * part]
        loopback_request("PUT", session["parts"][number - 1], content=chunk).raise_for_status()


def _complete(session: dict[str, Any], oid: str, if_stored: bool = False) -> httpx.Response:
    return loopback_request("POST", session["complete"], json={"oid": oid, "if_stored": if_stored})


def _stored(server: Server, sha256: str) -> bytes | None:
    path = server.data / "blobs" / sha256[:2] / sha256[2:4] / sha256
    return path.read_bytes() if path.is_file() else None


def _staging(server: Server, upload_id: str) -> bool:
    return (server.data / "blobs" / ".tmp" / "parts" / upload_id).exists()


def _upload_row(server: Server, upload_id: str) -> bool:
    engine = sa.create_engine(database_url(server.data))
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM lfs_uploads WHERE id = :id"), {"id": upload_id}
            ).first()
    finally:
        engine.dispose()
    return found is not None


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))


def _code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.headers.get("x-error-code", "")


def test_a_session_completed_with_the_right_sha256_makes_the_blob_visible_and_downloadable(
    hub: Server, repo: str, tmp_path: Path
) -> None:
    data = os.urandom(DATA_SIZE)
    oid = hashlib.sha256(data).hexdigest()
    session = _session(hub, repo, len(data))
    assert (session["part_size"], len(session["parts"])) == (PART, 3)
    _send(session, data, (3, 1, 2))
    assert _stored(hub, oid) is None, "nothing is visible before completion"
    done = _complete(session, oid)
    assert (done.status_code, done.json()) == (200, {"stored": True})
    assert _stored(hub, oid) == data
    assert not _staging(hub, session["id"]) and not _upload_row(hub, session["id"])
    api = HfApi(endpoint=hub.url, token=hub.token)
    (tmp_path / "model.bin").write_bytes(data)
    api.upload_file(path_or_fileobj=str(tmp_path / "model.bin"), path_in_repo="model.bin", repo_id=repo)
    path = api.hf_hub_download(repo, "model.bin", cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == data


def test_a_wrong_sha256_claim_is_refused_and_nothing_becomes_visible(hub: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    claimed = hashlib.sha256(data + b"x").hexdigest()
    session = _session(hub, repo, len(data))
    _send(session, data)
    refused = _complete(session, claimed)
    assert _code(refused) == (422, "ContentMismatch")
    assert "sha256" in refused.json()["error"]
    assert _stored(hub, claimed) is None
    assert _stored(hub, hashlib.sha256(data).hexdigest()) is None
    assert not _staging(hub, session["id"]) and not _upload_row(hub, session["id"])
    assert _code(_complete(session, hashlib.sha256(data).hexdigest()))[0] == 404, "the session is gone"


def test_completion_refuses_a_session_with_a_part_missing(hub: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    session = _session(hub, repo, len(data))
    _send(session, data, (1, 3))
    refused = _complete(session, hashlib.sha256(data).hexdigest())
    assert _code(refused) == (422, "ContentMismatch")
    assert "part 2" in refused.json()["error"]
    assert not _staging(hub, session["id"])


def test_asking_for_content_the_hub_holds_ends_the_session_without_its_bytes(hub: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    oid = hashlib.sha256(data).hexdigest()
    first = _session(hub, repo, len(data))
    _send(first, data)
    _complete(first, oid).raise_for_status()

    again = _session(hub, repo, len(data))
    _send(again, data, (1,))
    answer = _complete(again, oid, if_stored=True)
    assert (answer.status_code, answer.json()) == (200, {"stored": True})
    assert not _staging(hub, again["id"]) and not _upload_row(hub, again["id"])
    late = loopback_request("PUT", again["parts"][1], content=data[PART : 2 * PART])
    assert late.status_code == 404, "the session takes no more parts"
    assert _stored(hub, oid) == data


def test_asking_for_new_content_leaves_the_session_open(hub: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    oid = hashlib.sha256(data).hexdigest()
    session = _session(hub, repo, len(data))
    _send(session, data, (1,))
    answer = _complete(session, oid, if_stored=True)
    assert (answer.status_code, answer.json()) == (200, {"stored": False})
    _send(session, data, (2, 3))
    _complete(session, oid).raise_for_status()
    assert _stored(hub, oid) == data


def test_an_abandoned_session_leaves_nothing_behind(hub: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    session = _session(hub, repo, len(data))
    _send(session, data, (1, 2))
    assert _staging(hub, session["id"]) and _upload_row(hub, session["id"])
    assert loopback_request("DELETE", session["abandon"]).status_code == 204
    assert not _staging(hub, session["id"]) and not _upload_row(hub, session["id"])
    assert _code(loopback_request("DELETE", session["abandon"]))[0] == 404


def test_forged_or_extended_signatures_are_refused(hub: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    oid = hashlib.sha256(data).hexdigest()
    session = _session(hub, repo, len(data))
    _send(session, data)
    forged = _with_query(session["complete"], sig="0" * 64)
    assert _code(loopback_request("POST", forged, json={"oid": oid})) == (403, "InvalidUploadSignature")
    extended = _with_query(session["complete"], exp=str(2**40))
    assert _code(loopback_request("POST", extended, json={"oid": oid})) == (403, "InvalidUploadSignature")
    expired = _with_query(session["complete"], exp="1")
    assert _code(loopback_request("POST", expired, json={"oid": oid})) == (403, "InvalidUploadSignature")
    # the completion URL does not abandon, nor the abandon URL complete
    as_abandon = _with_query(session["abandon"], sig=parse_qs(urlsplit(session["complete"]).query)["sig"][0])
    assert _code(loopback_request("DELETE", as_abandon)) == (403, "InvalidUploadSignature")
    # a part URL signed for part 1 does not take part 4, which the session does not have
    beyond = session["parts"][0].replace("/parts/1?", "/parts/4?")
    assert _code(loopback_request("PUT", beyond, content=b"x")) == (403, "InvalidUploadSignature")
    assert _stored(hub, oid) is None
    _complete(session, oid).raise_for_status()


def test_a_part_larger_than_its_span_is_refused(hub: Server, repo: str) -> None:
    session = _session(hub, repo, DATA_SIZE)
    too_long = loopback_request("PUT", session["parts"][2], content=os.urandom(8))
    assert _code(too_long) == (422, "ContentMismatch")
    loopback_request("DELETE", session["abandon"]).raise_for_status()


def test_lfs_and_session_completions_do_not_cross(hub: Server, repo: str) -> None:
    data = os.urandom(DATA_SIZE)
    oid = hashlib.sha256(data).hexdigest()
    session = _session(hub, repo, len(data))
    _send(session, data)
    upload_id, query = session["id"], urlsplit(session["complete"]).query
    as_lfs = f"{hub.url}/api/lfs/uploads/{upload_id}/complete?{query}"
    assert _code(loopback_request("POST", as_lfs, json={"oid": oid})) == (403, "InvalidUploadSignature")
    assert _stored(hub, oid) is None
    _complete(session, oid).raise_for_status()


@pytest.mark.parametrize(
    ("body", "status"),
    [({"size": -1}, 400), ({"size": 0}, 400), ({"size": "5"}, 400), ({}, 400), ({"size": 2**63}, 400)],
)
def test_opening_a_session_checks_its_body(hub: Server, repo: str, body: object, status: int) -> None:
    opened = loopback_request(
        "POST", f"{hub.url}/api/models/{repo}/uploads", headers=auth(hub.token), json=body
    )
    assert opened.status_code == status, opened.text


def test_a_read_token_or_no_token_cannot_open_a_session(hub: Server, repo: str) -> None:
    reader = create_user(hub, "session-reader", scope="read")
    own = "session-reader/model"
    create_repo(hub, hub.token, own, private=False)
    assert _open(hub, own, 10, reader).status_code == 403
    anonymous = loopback_request("POST", f"{hub.url}/api/models/{repo}/uploads", json={"size": 10})
    assert anonymous.status_code == 401
    assert _open(hub, "nobody/nothing", 10).status_code == 404


def test_a_session_dies_with_its_token(hub: Server) -> None:
    token = create_user(hub, "session-writer")
    repo = "session-writer/model"
    create_repo(hub, token, repo, private=False)
    data = os.urandom(DATA_SIZE)
    oid = hashlib.sha256(data).hexdigest()
    session = _session(hub, repo, len(data), token)
    _send(session, data)
    loopback_request(
        "DELETE",
        f"{hub.url}/api/admin/users/session-writer/tokens/main",
        headers=auth(hub.token),
    ).raise_for_status()
    assert _complete(session, oid).status_code == 401
    assert loopback_request("DELETE", session["abandon"]).status_code == 401
    assert _stored(hub, oid) is None


# ---------------------------------------------------------------------------------------------- the client


def _done(value: str) -> Future[str]:
    future: Future[str] = Future()
    future.set_result(value)
    return future


def _send_file(server: Server, repo: str, path: Path, digest: Future[str], url: str | None = None) -> Sent:
    headers = {"Authorization": f"Bearer {server.token}"}
    return upload_file(url or server.url, headers, "models", repo, path, digest, lambda n: None)


def _open_sessions(server: Server) -> int:
    engine = sa.create_engine(database_url(server.data))
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(sa.text("SELECT COUNT(*) FROM lfs_uploads WHERE sha256 IS NULL")).scalar_one()
            )
    finally:
        engine.dispose()


def test_push_sends_a_large_file_through_a_session_and_it_downloads_scanned_and_identical(
    hub: Server, repo: str, tmp_path: Path
) -> None:
    data = os.urandom(11 * 1024 * 1024)  # past the CLI's 10 MiB threshold: eleven 1 MiB parts
    sessions = _open_sessions(hub)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(data)
    env = {"HF_TOKEN": hub.token, "WEIGHTYARD_ENDPOINT": hub.url}
    for _ in range(2):  # the second push finds the content stored
        pushed = weightyard_cli("push", str(tmp_path / "model"), repo, env=env)
        assert pushed.returncode == 0, pushed.stderr
    api = HfApi(endpoint=hub.url, token=hub.token)
    assert Path(api.hf_hub_download(repo, "weights.bin", cache_dir=tmp_path / "cache")).read_bytes() == data
    tree = httpx.get(f"{hub.url}/api/models/{repo}/tree/main?expand=true").json()
    entry = next(item for item in tree if item["path"] == "weights.bin")
    assert entry["lfs"]["oid"] == hashlib.sha256(data).hexdigest()
    assert entry["securityFileStatus"]["scanState"] == "current"
    assert _open_sessions(hub) == sessions, "no session is left behind"


def test_the_client_sends_new_content_through_a_session(hub: Server, repo: str, tmp_path: Path) -> None:
    sessions = _open_sessions(hub)
    data = os.urandom(DATA_SIZE)
    path = tmp_path / "new.bin"
    path.write_bytes(data)
    oid = hashlib.sha256(data).hexdigest()
    late: Future[str] = Future()
    sent_bytes = 0

    def advance(count: int) -> None:
        nonlocal sent_bytes
        sent_bytes += count
        if sent_bytes == len(data) and not late.done():
            late.set_result(oid)  # the hash is known only once every part is on its way

    headers = {"Authorization": f"Bearer {hub.token}"}
    assert upload_file(hub.url, headers, "models", repo, path, late, advance) is Sent.SESSION
    assert _stored(hub, oid) == data
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(DATA_SIZE))
    known = _done(hashlib.sha256(other.read_bytes()).hexdigest())
    assert _send_file(hub, repo, other, known) is Sent.SESSION, "asked first, then sent"
    assert _open_sessions(hub) == sessions, "no session is left behind"


def test_the_client_stops_sending_content_the_hub_already_holds(
    hub: Server, repo: str, tmp_path: Path
) -> None:
    sessions = _open_sessions(hub)
    data = os.urandom(DATA_SIZE)
    path = tmp_path / "again.bin"
    path.write_bytes(data)
    oid = hashlib.sha256(data).hexdigest()
    assert _send_file(hub, repo, path, _done(oid)) is Sent.SESSION
    blobs = sorted((hub.data / "blobs").rglob(oid))
    assert _send_file(hub, repo, path, _done(oid)) is Sent.ALREADY_STORED
    assert sorted((hub.data / "blobs").rglob(oid)) == blobs and len(blobs) == 1
    assert _open_sessions(hub) == sessions, "no session is left behind"


def test_a_wrong_or_stale_hash_is_refused_and_leaves_nothing(hub: Server, repo: str, tmp_path: Path) -> None:
    sessions = _open_sessions(hub)
    data = os.urandom(DATA_SIZE)
    path = tmp_path / "changed.bin"
    path.write_bytes(data)
    stale = hashlib.sha256(data[:-1] + bytes([data[-1] ^ 1])).hexdigest()  # the file as it was before
    with pytest.raises(TransferRefused, match="changed while it was being pushed"):
        _send_file(hub, repo, path, _done(stale))
    assert _stored(hub, stale) is None and _stored(hub, hashlib.sha256(data).hexdigest()) is None
    assert _open_sessions(hub) == sessions, "no session is left behind"


def test_a_file_changed_while_it_is_sent_is_refused(hub: Server, repo: str, tmp_path: Path) -> None:
    sessions = _open_sessions(hub)
    data = os.urandom(DATA_SIZE)
    path = tmp_path / "growing.bin"
    path.write_bytes(data)
    oid = hashlib.sha256(data).hexdigest()

    def append(count: int) -> None:
        with path.open("ab") as file:
            file.write(b"more")

    headers = {"Authorization": f"Bearer {hub.token}"}
    with pytest.raises(TransferRefused, match="changed while it was being pushed"):
        upload_file(hub.url, headers, "models", repo, path, _done(oid), append)
    assert _stored(hub, oid) is None
    assert _open_sessions(hub) == sessions, "no session is left behind"


def test_a_hub_without_sessions_gets_the_lfs_batch_api(hub: Server, repo: str, tmp_path: Path) -> None:
    proxy = RewritingProxy(hub.url)
    proxy.fail = lambda method, path: 404 if path.endswith("/uploads") else None
    try:
        data = os.urandom(DATA_SIZE)
        path = tmp_path / "old-hub.bin"
        path.write_bytes(data)
        oid = hashlib.sha256(data).hexdigest()
        assert _send_file(hub, repo, path, _done(oid), url=proxy.url) is Sent.LFS
        assert _stored(hub, oid) == data
    finally:
        proxy.close()


def test_to_a_hub_on_this_machine_each_part_starts_once_the_one_before_is_sent_whole(
    hub: Server, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from weightyard.cli import transfer

    # A spy on the real sender: when each part's request began, and when its last byte went to the socket
    # (noted before the part tells `_send_session` it is handed over).
    events: list[tuple[str, int]] = []
    real = transfer._put_direct

    def recorded(connections: Any, url: str, file: Any, path: Path, start: int, end: int, *rest: Any) -> Any:
        number = int(urlsplit(url).path.rsplit("/", 1)[1])
        events.append(("start", number))
        advance, counted = rest[0], 0

        def count(n: int) -> None:
            nonlocal counted
            counted += n
            if counted == end - start:
                events.append(("sent", number))
            advance(n)

        return real(connections, url, file, path, start, end, count, *rest[1:])

    monkeypatch.setattr(transfer, "_put_direct", recorded)
    data = os.urandom(5 * PART + 11)
    path = tmp_path / "in-order.bin"
    path.write_bytes(data)
    oid = hashlib.sha256(data).hexdigest()
    grant = _session(hub, repo, len(data))
    assert transfer._on_this_machine(grant["parts"][0])
    calls = transfer.Calls(grant["complete"])
    try:
        sent = transfer._send_session(calls, grant, path, len(data), _done(oid), lambda n: None, None)
    finally:
        calls.close()
    assert sent is Sent.SESSION
    assert sorted(events) == sorted([(kind, n) for n in range(1, 7) for kind in ("start", "sent")]), events
    for number in range(2, len(grant["parts"]) + 1):
        assert events.index(("sent", number - 1)) < events.index(("start", number)), events
    assert _complete(grant, oid).status_code == 200
    assert _stored(hub, oid) == data


@pytest.mark.parametrize(
    ("url", "environment", "direct"),
    [
        ("http://127.0.0.1:8000/api/lfs/uploads/x/parts/1", {}, True),
        ("http://hub.example.org/p", {}, True),
        ("https://127.0.0.1:8000/p", {}, False),  # TLS: the library's certificate checks
        ("http://127.0.0.1:8000/p", {"HTTP_PROXY": "http://127.0.0.1:3128"}, False),
        ("http://127.0.0.1:8000/p", {"http_proxy": "http://127.0.0.1:3128"}, False),
        ("http://127.0.0.1:8000/p", {"ALL_PROXY": "http://127.0.0.1:3128"}, False),
        ("http://127.0.0.1:8000/p", {"HTTP_PROXY": "http://127.0.0.1:3128", "NO_PROXY": "127.0.0.1"}, True),
        ("http://hub.example.org/p", {"HTTPS_PROXY": "http://127.0.0.1:3128"}, True),  # not for plain HTTP
    ],
)
def test_parts_go_by_sendfile_only_over_plain_http_with_no_proxy(
    url: str, environment: dict[str, str], direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from weightyard.cli.transfer import _direct

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert _direct(url) is direct


def test_through_a_proxy_the_parts_go_through_the_client_library(
    hub: Server, repo_name: str, tmp_path: Path
) -> None:
    # The proxy forwards what it is asked for (an absolute URL, as a client asks a proxy); it only counts the
    # parts that reach it.
    proxy = RewritingProxy(hub.url)
    through: list[str] = []

    def note(method: str, path: str) -> None:
        if (method == "PUT" and "/parts/" in path) or path.endswith("/uploads") or "/complete" in path:
            through.append(f"{method} {path}")

    proxy.fail = lambda method, path: note(method, path)
    try:
        folder = tmp_path / "model"
        folder.mkdir()
        data = os.urandom(10 * PART + 5)  # push sends it itself: from 10 MiB up
        (folder / "weights.bin").write_bytes(data)
        env = {"HF_TOKEN": hub.token, "WEIGHTYARD_ENDPOINT": hub.url, "HTTP_PROXY": proxy.url, "NO_PROXY": ""}
        pushed = weightyard_cli("push", str(folder), repo_name, env=env)
        assert pushed.returncode == 0, pushed.stderr
    finally:
        proxy.close()
    parts = [line for line in through if line.startswith("PUT ")]
    assert len(parts) == 11 and all(line.startswith(f"PUT {hub.url}/") for line in parts), through
    assert f"POST {hub.url}/api/models/{repo_name}/uploads" in through, "the session, too, went through it"
    assert _stored(hub, hashlib.sha256(data).hexdigest()) == data


def test_a_part_the_hub_refuses_is_one_line_naming_the_hubs_reason(
    hub: Server, repo: str, tmp_path: Path
) -> None:
    from weightyard.cli.transfer import _Connections, _put

    path = tmp_path / "refused.bin"
    path.write_bytes(os.urandom(DATA_SIZE + 1))
    grant = _session(hub, repo, DATA_SIZE)
    # the session's last part is 7 bytes long: 8 are refused
    with pytest.raises(TransferRefused) as refused, contextlib.closing(_Connections()) as connections:
        _put(None, connections, grant["parts"][2], path, 2 * PART, 2 * PART + 8, lambda n: None)
    part_path = urlsplit(grant["parts"][2]).path
    message = str(refused.value)
    assert message.startswith(f"the hub answered 422 to PUT {part_path}: "), message
    assert "bytes" in message.removeprefix(f"the hub answered 422 to PUT {part_path}: "), message
    loopback_request("DELETE", grant["abandon"]).raise_for_status()


def test_a_hub_that_cannot_be_reached_for_a_part_is_named_after_the_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from weightyard.cli import transfer

    monkeypatch.setattr(transfer, "FIRST_PAUSE_S", 0.001)
    path = tmp_path / "part.bin"
    path.write_bytes(os.urandom(1000))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    counted: list[int] = []
    with (
        pytest.raises(ConnectionError, match=f"cannot talk to the hub at http://127.0.0.1:{port}: "),
        contextlib.closing(transfer._Connections()) as connections,
    ):
        transfer._put(None, connections, f"http://127.0.0.1:{port}/parts/1", path, 0, 1000, counted.append)
    assert sum(counted) == 0  # what each failed attempt counted was taken back


def test_a_kept_connection_the_hub_closed_is_replaced_before_the_next_part(tmp_path: Path) -> None:
    from weightyard.cli.transfer import _Connections, _put

    # A server that answers each request as if the connection stayed open, then closes it.
    answered = threading.Semaphore(0)
    received: list[bytes] = []

    class Closing(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("ETag", f'"{len(received)}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            answered.release()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Closing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        data = os.urandom(3000)
        path = tmp_path / "parts.bin"
        path.write_bytes(data)
        url = f"http://127.0.0.1:{server.server_address[1]}/parts"
        counted: list[int] = []
        connections = _Connections()
        try:
            assert _put(None, connections, f"{url}/1", path, 0, 1000, counted.append) == '"1"'
            assert answered.acquire(timeout=10)
            assert _put(None, connections, f"{url}/2", path, 1000, 3000, counted.append) == '"2"'
        finally:
            connections.close()
    finally:
        server.shutdown()
        server.server_close()
    assert received == [data[:1000], data[1000:]]
    assert all(n > 0 for n in counted), counted  # no attempt failed: nothing was taken back


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/api/lfs/uploads/x/parts/1", True),
        ("https://127.5.0.1/p", True),
        ("http://[::1]:9/p", True),
        ("http://localhost:80/p", True),
        ("https://hub.example.org/p", False),
        ("http://10.0.0.2:8000/p", False),
        ("http://[2001:db8::1]/p", False),
    ],
)
def test_only_a_loopback_hub_counts_as_on_this_machine(url: str, local: bool) -> None:
    from weightyard.cli.transfer import _on_this_machine

    assert _on_this_machine(url) is local


def test_to_a_plain_http_hub_a_file_is_sent_before_the_client_library_is_imported(
    hub: Server, repo: str, tmp_path: Path
) -> None:
    # The session, its parts and its completion go on connections of push's own: start-up does not wait
    # for the client library's import (a quarter of a second on two cores) before the first byte.
    data = os.urandom(DATA_SIZE)
    path = tmp_path / "early.bin"
    path.write_bytes(data)
    oid = hashlib.sha256(data).hexdigest()
    script = f"""
import sys
from concurrent.futures import Future
from pathlib import Path
from weightyard.cli.transfer import Sent, upload_file
digest = Future()
digest.set_result({oid!r})
headers = {{"Authorization": "Bearer {hub.token}"}}
sent = upload_file({hub.url!r}, headers, "models", {repo!r}, Path({str(path)!r}), digest, lambda n: None)
assert sent is Sent.SESSION, sent
print(sorted(name for name in sys.modules if name.split(".")[0] in ("huggingface_hub", "httpx", "httpx2")))
"""
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]", ran.stdout
    assert _stored(hub, oid) == data


def test_a_push_takes_over_the_hash_its_command_began_before_the_cli_loaded(
    hub: Server, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `weightyard push DIR` begins hashing DIR's files before the CLI loads (weightyard/file_hash.py); push
    # then hashes none of them again, and the content arrives as it is.
    from weightyard import file_hash
    from weightyard.cli.hub import push_folder

    folder = tmp_path / "m"
    folder.mkdir()
    large, small = os.urandom(10 * PART + 7), b"a small file, sent inside the commit\n"
    (folder / "weights.bin").write_bytes(large)
    (folder / "notes.txt").write_bytes(small)
    hashed_by: list[str] = []
    real = file_hash.sha256_of_file

    def recorded(path: Path, advance: file_hash.Advance) -> str:
        hashed_by.append(f"{path.name} in {threading.current_thread().name}")
        return real(path, advance)

    monkeypatch.setattr(file_hash, "sha256_of_file", recorded)
    file_hash.start_early(["weightyard", "push", str(folder), repo])
    push_folder(hub.url, hub.token, folder, repo, "main", "pushed with its hashes begun early", private=False)
    assert hashed_by == ["notes.txt in early-hash", "weights.bin in early-hash"]
    assert _stored(hub, hashlib.sha256(large).hexdigest()) == large
    api = HfApi(endpoint=hub.url, token=hub.token)
    assert Path(api.hf_hub_download(repo, "notes.txt", cache_dir=tmp_path / "cache")).read_bytes() == small
