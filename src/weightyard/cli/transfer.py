"""`push`'s transfer of large files: an upload session sent while the file is hashed, or the LFS batch API.

The LFS batch API names an object by its sha256, so a client must read the whole file before it sends a
byte. Weightyard's upload sessions (docs/hub.md) take the parts first and the sha256 at completion, which the
hub compares with its own hash of what arrived: here the parts are sent (a few in flight, in 8 MiB steps; to
a hub on this machine in order, each once the one before it is on the wire) while an independent reader
hashes the file (`weightyard/file_hash.py`, begun by the command before the CLI loads). Once the hash is
known, and parts are still to be sent, the hub is asked whether it already holds that content; if it does,
sending stops.

Over plain HTTP with no proxy, the session's requests and parts go on connections of our own (`Calls`,
`_put_direct`: the standard library's `http.client`, the parts by `sendfile`); else through the client
library's session. A hub without sessions gets the LFS batch API once the hash is known, parts in parallel
too. The commit that names these objects is `cli/commit.py`'s, through `Calls` as well.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import ipaddress
import json
import os
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from weightyard import __version__
from weightyard.cli.errors import refusal_line, transport_error, unreachable_line
from weightyard.file_hash import READ_SIZE, Advance

# Parts in flight at once: one being written by the hub while the next arrives (and one more to cover the
# gap of each request's round trip). More would only add memory and contention on a few cores.
PARTS_IN_FLIGHT = 3
_LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
# A send that fails on the way (connection dropped or timed out, hub restarting or overloaded) is sent again
# after a pause that doubles, as the stock client does with its parts; a refusal (any other status) is final.
RETRIES = 4
RETRY_STATUSES = frozenset({429, 502, 503, 504})
FIRST_PAUSE_S = 0.5
# How often a session being sent looks whether the push was called off.
_CANCEL_CHECK_S = 0.1


class TransferRefused(Exception):
    """The hub refused an object, or the local file changed while it was sent: one line for the user."""


class Sent(enum.Enum):
    """How a file reached the hub."""

    SESSION = "sent through an upload session"
    ALREADY_STORED = "already stored on the hub"
    LFS = "sent through the LFS batch API"


class _Stopped(Exception):
    """Raised in a part's body once the transfer it belongs to needs no more bytes."""


def _on_this_machine(url: str) -> bool:
    """Whether `url` names a loopback host (a hub that shares this machine's cores with the client)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_range(
    path: Path,
    start: int,
    end: int,
    advance: Advance,
    stop: threading.Event | None = None,
    sent: Future[None] | None = None,
) -> Iterator[bytes]:
    fd = os.open(path, os.O_RDONLY)
    try:
        position = start
        while position < end:
            if stop is not None and stop.is_set():
                raise _Stopped  # ends the request mid-body: the hub discards the part
            data = os.pread(fd, min(READ_SIZE, end - position), position)
            if not data:
                raise TransferRefused(f"{path} became shorter while it was being pushed")
            position += len(data)
            advance(len(data))
            yield data
    finally:
        os.close(fd)
    _handed_over(sent)


def _handed_over(sent: Future[None] | None) -> None:
    if sent is not None and not sent.done():
        sent.set_result(None)  # the whole body is handed to the connection


def _direct(url: str) -> bool:
    """Whether a part for `url` goes out over a connection of our own, the file's bytes handed to the socket
    by the kernel (`sendfile`): plain HTTP with no proxy configured for its host. Through a proxy or TLS, the
    client library's session sends it, with its proxy settings and certificate checks."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    proxy = proxies.get("http") or proxies.get("all")
    return not proxy or bool(urllib.request.proxy_bypass(parts.hostname))


# A connection's socket timeout: how long a send or a wait for the answer may stall.
_DIRECT_TIMEOUT_S = 60.0
# An answer is a few hundred bytes (a part, a session), a few tens of KB at most (the upload modes of a batch
# of small files); more is not read.
_MAX_ANSWER = 1024 * 1024


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle kept connection has something to read: the hub closed it (or broke the protocol)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Connection(http.client.HTTPConnection):
    """A connection whose small writes (a request's headers, then its JSON body) go out at once, not held
    back until the hub acknowledges the one before (Nagle's algorithm), as other HTTP clients do."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connections:
    """The connections of one transfer's direct parts: each is reused from part to part (a kept one the hub
    closed meanwhile is replaced before a byte is sent); all are closed when the transfer ends."""

    def __init__(self) -> None:
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self, host: str, port: int) -> http.client.HTTPConnection:
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                sock = connection.sock
                if (connection.host, connection.port) == (host, port) and sock and not _dropped(sock):
                    return connection
                connection.close()
        return _Connection(host, port, timeout=_DIRECT_TIMEOUT_S)

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(connection)
                return
        connection.close()

    def exchange(
        self, method: str, url: str, send: Callable[[http.client.HTTPConnection, str], None]
    ) -> _Reply:
        """One `method` request to `url` on a connection of these: `send(connection, target)` sends it, then
        the answer is read. The connection is kept for the next request unless the hub closes it, the answer
        was too long to read whole, or the request failed on the way (it cannot carry another then)."""
        parts = urlsplit(url)
        connection = self.take(parts.hostname or "", parts.port or 80)
        try:
            send(connection, parts.path + (f"?{parts.query}" if parts.query else ""))
            response = connection.getresponse()
            body = response.read(_MAX_ANSWER)
        except BaseException:
            connection.close()
            raise
        whole = response.isclosed()
        if whole and not response.will_close:
            self.give_back(connection)
        else:
            connection.close()
        refuse = _refusal(response, method, parts.path, body)
        cut = None if whole else f"the hub's answer to {method} {parts.path} is over {_MAX_ANSWER} bytes"
        return _Reply(response.status, response.headers, body, refuse, cut)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _put_direct(
    connections: _Connections,
    url: str,
    file: BinaryIO,
    path: Path,
    start: int,
    end: int,
    advance: Advance,
    stop: threading.Event | None,
    sent: Future[None] | None,
) -> _Reply:
    """PUT bytes [start, end) of `file` on a connection of the transfer's: the headers, then the bytes by
    `sendfile` straight from the page cache, in READ_SIZE steps (progress, `stop`)."""

    def send(connection: http.client.HTTPConnection, target: str) -> None:
        connection.putrequest("PUT", target, skip_accept_encoding=True)
        connection.putheader("Content-Length", str(end - start))
        connection.putheader("Content-Type", "application/octet-stream")
        connection.putheader("User-Agent", f"weightyard/{__version__}")
        connection.endheaders()
        sock = connection.sock
        position = start
        while position < end:
            if stop is not None and stop.is_set():
                raise _Stopped  # ends the request mid-body: the hub discards the part
            count = sock.sendfile(file, position, min(READ_SIZE, end - position))
            if not count:
                raise TransferRefused(f"{path} became shorter while it was being pushed")
            position += count
            advance(count)
        _handed_over(sent)

    return connections.exchange("PUT", url, send)


def _server_message(response: http.client.HTTPResponse, body: bytes) -> str | None:
    """What the hub said about a refusal: its `X-Error-Message`, its JSON `error`, else the reason phrase."""
    said = response.getheader("x-error-message")
    if said:
        return said
    with contextlib.suppress(ValueError, AttributeError):
        error = json.loads(body).get("error")
        if isinstance(error, str) and error:
            return error
    return response.reason


class _Reply:
    """An answer of the hub to a JSON request, whichever way it went; `cut` says why its body was not read
    whole (too long), None when it was."""

    def __init__(
        self, status: int, headers: Any, body: bytes, refuse: Callable[[], None], cut: str | None = None
    ) -> None:
        self.status_code = status
        self.headers = headers  # `.get(name)`, names in any case
        self._body = body
        self._refuse = refuse
        self._cut = cut

    def json(self) -> Any:
        if self._cut is not None:
            raise TransferRefused(self._cut)
        try:
            return json.loads(self._body)
        except ValueError:
            raise TransferRefused(f"the hub's answer is not JSON: {self._body[:80]!r}") from None

    def fields(self) -> dict[str, Any]:
        """The JSON object the hub answered."""
        value = self.json()
        if not isinstance(value, dict):
            raise TransferRefused(f"the hub's answer is not a JSON object: {self._body[:80]!r}")
        return value

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            self._refuse()


@dataclass(frozen=True)
class Body:
    """A request body: its length, its media type, and its bytes (`pieces()`: all of them, or an iterable of
    pieces that adds up to `length`, made anew for each attempt)."""

    length: int
    media_type: str
    pieces: Callable[[], bytes | Iterable[bytes]]

    @classmethod
    def of_json(cls, payload: object) -> Body:
        data = json.dumps(payload).encode()
        return cls(len(data), "application/json", lambda: data)


class Calls:
    """How push talks to the hub besides its parts. Over plain HTTP with no proxy (`_direct`), on connections
    of our own through the standard library: a push over plain HTTP never imports the client library (about
    a third of a second of CPU, on two cores taken from the hashing and sending beside it), and the parts go
    by `sendfile`. Else through the client library's session (its proxy settings, its certificate checks)."""

    def __init__(self, url: str) -> None:
        self.direct = _direct(url)
        self.connections = _Connections()
        self._session: Any = None

    def _library(self) -> Any:
        if self._session is None:
            from huggingface_hub import get_session

            self._session = get_session()
        return self._session

    def get(self, url: str, headers: dict[str, str]) -> _Reply:
        return self.request("GET", url, headers)

    def post(self, url: str, payload: object, headers: dict[str, str] | None = None) -> _Reply:
        return self.request("POST", url, headers or {}, Body.of_json(payload))

    def delete(self, url: str) -> _Reply:
        return self.request("DELETE", url, {})

    def put(self, url: str, content: Iterator[bytes], headers: dict[str, str]) -> Any:
        """A part through the client library (`_put_library`)."""
        return self._library().put(url, content=content, headers=headers)

    def close(self) -> None:
        self.connections.close()

    def request(self, method: str, url: str, headers: dict[str, str], body: Body | None = None) -> _Reply:
        """One request, its answer read (at most _MAX_ANSWER bytes of it)."""
        sent = dict(headers)
        if body is not None:
            sent["Content-Length"], sent["Content-Type"] = str(body.length), body.media_type
        elif method != "GET":
            sent["Content-Length"] = "0"
        if not self.direct:
            response = self._library().request(
                method, url, headers=sent, content=body.pieces() if body else None
            )
            return _Reply(
                response.status_code, response.headers, response.content, _library_refusal(response)
            )
        sent["User-Agent"] = f"weightyard/{__version__}"

        def send(connection: http.client.HTTPConnection, target: str) -> None:
            connection.request(method, target, body=body.pieces() if body else b"", headers=sent)

        try:
            return self.connections.exchange(method, url, send)
        except (OSError, http.client.HTTPException) as exc:
            raise _unreachable(url, exc) from exc


def _library_refusal(response: Any) -> Callable[[], None]:
    """How to refuse an answer that came through the client library: its own error, with the hub's reason."""
    from huggingface_hub import hf_raise_for_status

    return lambda: hf_raise_for_status(response)


def _refusal(response: http.client.HTTPResponse, method: str, path: str, body: bytes) -> Callable[[], None]:
    """How to refuse an answer of the hub: one line naming the request and the hub's reason."""

    def refuse() -> None:
        raise TransferRefused(refusal_line(response.status, method, path, _server_message(response, body)))

    return refuse


def _unreachable(url: str, error: BaseException) -> ConnectionError:
    parts = urlsplit(url)
    return ConnectionError(unreachable_line(f" at {parts.scheme}://{parts.netloc}", error))


def _put(
    session: Any,
    connections: _Connections,
    url: str,
    path: Path,
    start: int,
    end: int,
    advance: Advance,
    stop: threading.Event | None = None,
    sent: Future[None] | None = None,
) -> str:
    """PUT bytes [start, end) of the file and return the part's ETag, sent again on a transient failure (the
    progress shown goes back by what the failed attempt had counted); `stop` set ends it (`_Stopped`);
    `sent` is done once the whole body has been handed to the connection. Over plain HTTP with no proxy the
    bytes go by `sendfile` on a connection of `connections`, else through the client library's `session`."""
    direct = _direct(url)
    # httpx's or httpx2's transport errors, whichever the client library uses; ours are the socket's and
    # http.client's (a connection closed before the answer)
    failed_on_the_way: tuple[type[BaseException], ...] = (
        (OSError, http.client.HTTPException) if direct else (transport_error(),)
    )
    with open(path, "rb") if direct else contextlib.nullcontext() as file:
        for attempt in range(RETRIES + 1):
            counted = 0

            def count(n: int) -> None:
                nonlocal counted
                counted += n
                advance(n)

            last = attempt == RETRIES
            try:
                if file is not None:
                    answer = _put_direct(connections, url, file, path, start, end, count, stop, sent)
                else:
                    answer = _put_library(session, url, path, start, end, count, stop, sent)
            except failed_on_the_way as exc:
                if last:
                    if not direct:
                        raise
                    raise _unreachable(url, exc) from exc
            else:
                if last or answer.status_code not in RETRY_STATUSES:
                    answer.raise_for_status()
                    return str(answer.headers.get("etag") or "")
            advance(-counted)
            time.sleep(FIRST_PAUSE_S * 2**attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _put_library(
    session: Any,
    url: str,
    path: Path,
    start: int,
    end: int,
    advance: Advance,
    stop: threading.Event | None,
    sent: Future[None] | None,
) -> _Reply:
    response = session.put(
        url,
        content=_read_range(path, start, end, advance, stop, sent),
        headers={"Content-Length": str(end - start), "Content-Type": "application/octet-stream"},
    )
    return _Reply(response.status_code, response.headers, b"", _library_refusal(response))


def upload_lfs_object(
    endpoint: str,
    headers: dict[str, str],
    repo_path: str,
    path: Path,
    sha256: str,
    advance: Advance,
) -> None:
    """Store the file at `path` (whose sha256 is known) on the hub through the LFS batch API, unless the hub
    already has it: `repo_path` is the repo's URL path (`ns/name`, `datasets/ns/name`)."""
    from huggingface_hub import get_session, hf_raise_for_status

    session = get_session()
    size = path.stat().st_size
    lfs_headers = {**headers, "Accept": _LFS_MEDIA_TYPE, "Content-Type": _LFS_MEDIA_TYPE}
    batch = session.post(
        f"{endpoint}/{repo_path}.git/info/lfs/objects/batch",
        headers=lfs_headers,
        json={
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": [{"oid": sha256, "size": size}],
            "hash_algo": "sha256",
        },
    )
    hf_raise_for_status(batch)
    (answer,) = batch.json()["objects"]
    if "error" in answer:
        raise TransferRefused(f"the hub refused {path.name}: {answer['error'].get('message', '')}")
    actions = answer.get("actions")
    if not actions:
        advance(size)
        return  # already stored
    with contextlib.closing(_Connections()) as connections:
        _send_lfs_object(session, connections, actions["upload"], lfs_headers, path, sha256, size, advance)
    verify = actions.get("verify")
    if verify:
        hf_raise_for_status(
            session.post(verify["href"], headers=lfs_headers, json={"oid": sha256, "size": size})
        )


def _send_lfs_object(
    session: Any,
    connections: _Connections,
    upload: dict[str, Any],
    lfs_headers: dict[str, str],
    path: Path,
    sha256: str,
    size: int,
    advance: Advance,
) -> None:
    """The LFS batch API's upload action: one PUT, or parts in parallel and their completion."""
    from huggingface_hub import hf_raise_for_status

    header = upload.get("header") or {}
    if "chunk_size" not in header:
        _put(session, connections, upload["href"], path, 0, size, advance)
        return
    part_size = int(header["chunk_size"])
    urls = sorted((int(key), url) for key, url in header.items() if key.isdigit())
    senders = ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix="part")
    try:
        sent = [
            senders.submit(
                _put, session, connections, url, path, (n - 1) * part_size, min(n * part_size, size), advance
            )
            for n, url in urls
        ]
        parts = [
            {"partNumber": n, "etag": future.result()} for (n, _), future in zip(urls, sent, strict=True)
        ]
    finally:
        # after a failure, the parts not yet started are not sent
        senders.shutdown(cancel_futures=True)
    done = session.post(upload["href"], headers=lfs_headers, json={"oid": sha256, "parts": parts})
    hf_raise_for_status(done)


def _file_state(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


def upload_file(
    endpoint: str,
    headers: dict[str, str],
    repo_type: str,
    repo_id: str,
    path: Path,
    digest: Future[str],
    advance: Advance,
    cancel: threading.Event | None = None,
    repo_checked: threading.Event | None = None,
) -> Sent:
    """Store the file at `path` on the hub, `digest` being its sha256 as an independent reader computes it:
    through an upload session, sending while the hash runs; through the LFS batch API once the hash is
    known when the hub has no sessions. `repo_type` is the plural (`models`, `datasets`, `spaces`).

    `cancel` set ends the transfer (`_Stopped`) within a read. When the hub does not know the repo yet, the
    session is asked for again once `repo_checked` is set (the caller creates the repo meanwhile)."""
    before = _file_state(path)
    url = f"{endpoint}/api/{repo_type}/{repo_id}/uploads"
    calls = Calls(url)
    try:
        return _upload_file(
            calls,
            endpoint,
            headers,
            url,
            repo_type,
            repo_id,
            path,
            before,
            digest,
            advance,
            cancel,
            repo_checked,
        )
    finally:
        calls.close()


def _upload_file(
    calls: Calls,
    endpoint: str,
    headers: dict[str, str],
    url: str,
    repo_type: str,
    repo_id: str,
    path: Path,
    before: tuple[int, int],
    digest: Future[str],
    advance: Advance,
    cancel: threading.Event | None,
    repo_checked: threading.Event | None,
) -> Sent:
    opened = calls.post(url, {"size": before[0]}, headers)
    if opened.headers.get("x-error-code") == "RepoNotFound" and repo_checked is not None:
        repo_checked.wait()
        opened = calls.post(url, {"size": before[0]}, headers)
    if opened.status_code in (404, 405) and not opened.headers.get("x-error-code"):
        # a hub without upload sessions (its 404 names no error of ours: the route itself is missing)
        repo_path = repo_id if repo_type == "models" else f"{repo_type}/{repo_id}"
        upload_lfs_object(endpoint, headers, repo_path, path, digest.result(), advance)
        return Sent.LFS
    if opened.status_code == 413:  # the file itself is refused (too large), as the batch API says per object
        raise TransferRefused(f"the hub refused {path.name}: {opened.json().get('error', '')}")
    opened.raise_for_status()
    grant = opened.json()
    try:
        sent = _send_session(calls, grant, path, before[0], digest, advance, cancel)
        if sent is Sent.ALREADY_STORED:
            return sent
        sha256 = digest.result()
        if _file_state(path) != before:
            raise TransferRefused(f"{path} changed while it was being pushed; push it again")
        done = calls.post(grant["complete"], {"oid": sha256})
        if done.headers.get("x-error-code") == "ContentMismatch":
            raise TransferRefused(
                f"{path} changed while it was being pushed (the hub received other bytes than it hashed to "
                "locally); push it again"
            )
        done.raise_for_status()
        return Sent.SESSION
    except BaseException:
        # The hub would collect the session in time; giving it back now frees its quota at once.
        with contextlib.suppress(Exception):
            calls.delete(grant["abandon"])
        raise


def _send_session(
    calls: Calls,
    grant: dict[str, Any],
    path: Path,
    size: int,
    digest: Future[str],
    advance: Advance,
    cancel: threading.Event | None,
) -> Sent:
    """Send the session's parts, a few in flight; once `digest` is known while parts are left, ask the hub
    whether it holds that content already, and stop if it does (`Sent.ALREADY_STORED`)."""
    part_size, urls = int(grant["part_size"]), list(grant["parts"])
    stop = threading.Event()
    senders = ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix="part")
    in_flight: set[Future[Any]] = set()
    following, asked = 1, False
    # To a hub on this machine, a part starts only once the one before it is on the wire whole (one is
    # still being finished meanwhile): the parts arrive in order and the hub hashes each as it streams in,
    # instead of reading back the ones that arrived ahead of its in-order hash, CPU the client and the
    # hub would take from each other's cores. Over a network, parts go in parallel: several connections
    # carry more than one on a long or lossy path, and the hub's CPU is its own.
    in_order = _on_this_machine(urls[0]) if urls else False
    previous: Future[None] | None = None
    try:
        while following <= len(urls) or in_flight:
            if not asked and digest.done():
                asked = True
                probe = calls.post(grant["complete"], {"oid": digest.result(), "if_stored": True})
                # only a question: any other answer than "stored" leaves the completion to decide
                if probe.status_code == 200 and probe.json().get("stored") is True:
                    advance(max(0, size - (following - 1) * part_size))  # what will not be sent
                    return Sent.ALREADY_STORED
            while (
                following <= len(urls)
                and len(in_flight) < PARTS_IN_FLIGHT
                and (previous is None or previous.done() or not in_order)
            ):
                start, end = (following - 1) * part_size, min(following * part_size, size)
                url = urls[following - 1]
                previous = Future()
                in_flight.add(
                    senders.submit(
                        _put, calls, calls.connections, url, path, start, end, advance, stop, previous
                    )
                )
                following += 1
            waiting = in_flight | ({digest} if not asked else set())
            if previous is not None and not previous.done():
                waiting.add(previous)
            finished, _ = wait(waiting, timeout=_CANCEL_CHECK_S, return_when=FIRST_COMPLETED)
            if cancel is not None and cancel.is_set():
                raise _Stopped
            for future in finished & in_flight:
                in_flight.discard(future)
                future.result()
        return Sent.SESSION
    finally:
        stop.set()  # after a failure or an early end, parts still being sent end at their next read
        senders.shutdown(wait=False, cancel_futures=True)
