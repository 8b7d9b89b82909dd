"""Test support: start a real `weightyard serve` on a free loopback port; run clients in subprocesses."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Tests must never reach a real hub: anything not pointed at the test server fails fast.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


# httpx builds a TLS context for every client it makes, parsing certifi's whole bundle (20-100 ms on this
# busy machine: longer than most requests to a test hub), and `httpx.get` makes a client per call. The tests
# speak plain HTTP to loopback, so the clients of code that makes many share one context.
_TLS = ssl.create_default_context()


# A hub's own threads (the scan queue's runners and the whole-copy thread polling for jobs, the download
# counter, the blob writer, the Xet upload hash) query the database whenever they wake: what they do is not
# a request's cost, in the tests that count a request's statements.
HUB_BACKGROUND_THREADS = ("scan-", "download-counts", "blob-writer", "whole-copies", "xet-arrival-sha256")


def in_hub_background() -> bool:
    return threading.current_thread().name.startswith(HUB_BACKGROUND_THREADS)


def loopback_client(url: str = "", token: str | None = None, **kwargs: Any) -> httpx.Client:
    """An httpx client for a test hub at `url`, sending `token` (when given) as its bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, verify=_TLS, **kwargs)


def loopback_request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request, as `httpx.request` makes it, with a client sharing the tests' TLS context."""
    with loopback_client() as client:
        return client.request(method, url, **kwargs)


# Ports handed out for servers the tests start: below the kernel's ephemeral range (32768 and up here, see
# /proc/sys/net/ipv4/ip_local_port_range), so that no outgoing connection of any test process can take one
# between the probe below and the server's bind, as a port the kernel picked from that range could be; and
# below tests/s3.py's SeaweedFS ports (20000 and up).
_PORTS = range(10000, 20000)


def free_port() -> int:
    """A loopback port nothing is bound to now, picked at random from `_PORTS` (the kernel's choice when all
    the tries find theirs taken)."""
    for port in random.sample(_PORTS, 50):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    token: str
    data: Path
    process: subprocess.Popen[bytes]
    # The settings it was started with beyond `--data` (its database, blob store): what a CLI command run
    # on the same hub needs besides `--data`.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_bytes(self) -> int:
        """VmHWM of the server process: the most memory it has held since it started."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmHWM not found")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS not found")


# A PostgreSQL run (`WEIGHTYARD_TEST_DATABASE=postgresql`, read by tests/conftest.py) gives the hub of each
# data folder its own fresh PostgreSQL database: tests/conftest.py sets this factory of database URLs.
new_database: Callable[[], str] | None = None
_database_urls: dict[Path, str] = {}


def database_url(data: Path) -> str:
    """The database of the hub on `data`: its own PostgreSQL database in a PostgreSQL run, else the SQLite
    file in the folder."""
    key = data.resolve()
    if new_database is None:
        return f"sqlite:///{key / 'weightyard.db'}"
    if key not in _database_urls:
        _database_urls[key] = new_database()
    return _database_urls[key]


def _database_environment(data: Path) -> dict[str, str]:
    return {} if new_database is None else {"WEIGHTYARD_DATABASE_URL": database_url(data)}


def weightyard_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a `weightyard` process (hub or CLI) runs in: the test's, less any client installed
    beside the venv.

    The second client-generation run puts an older `huggingface_hub` first on PYTHONPATH for the stock
    clients; Weightyard itself always runs with what its own install declares.
    """
    environment = {**os.environ, **(extra or {})}
    entries = [entry for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
    kept = [entry for entry in entries if not (Path(entry) / "huggingface_hub").is_dir()]
    if kept:
        environment["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        environment.pop("PYTHONPATH", None)
    return environment


# Tries of `start_server` when its port was taken between `free_port` and the server's bind: another test
# process, or a connection's ephemeral port, can take it meanwhile.
_PORT_TRIES = 3


def start_server(data: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Server:
    """`weightyard serve` on a free loopback port, with `args` added to its command line (`--workers 2`)."""
    for _ in range(_PORT_TRIES - 1):
        try:
            return _start_server(data, env, args)
        except _PortTaken:
            continue
    return _start_server(data, env, args)


class _PortTaken(RuntimeError):
    pass


def _start_server(data: Path, env: dict[str, str] | None, args: tuple[str, ...]) -> Server:
    port = free_port()
    log = open(data.parent / f"{data.name}-server.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "weightyard",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data",
            str(data),
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=weightyard_environment({**_database_environment(data), **(env or {})}),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with loopback_client(url, timeout=1) as probe:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.close()
                if b"address already in use" in Path(log.name).read_bytes():
                    raise _PortTaken(f"port {port} was taken before the server bound it; see {log.name}")
                raise RuntimeError(f"server exited early; see {log.name}")
            try:
                if probe.get("/api/agent-harnesses").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            process.kill()
            raise RuntimeError("server did not start within 60 s")
    if new_database is not None and (data / "weightyard.db").exists():
        process.kill()
        raise RuntimeError(f"a PostgreSQL run, but the hub on {data} made a SQLite database")
    token = (data / "admin-token").read_text().strip()
    return Server(url=url, token=token, data=data, process=process, env=dict(env or {}))


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


def run_python(code: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter, for clients that read their configuration at import time."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def weightyard_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI; unless `env` names an XDG_CONFIG_HOME, each call gets an empty one, so the hub keys that
    `pull` trusts on first use never carry over to another test's server that reuses a port."""
    database = _database_environment(Path(args[args.index("--data") + 1])) if "--data" in args else {}
    with tempfile.TemporaryDirectory(prefix="wy-config-") as config:
        return subprocess.run(
            [sys.executable, "-m", "weightyard", *args],
            env=weightyard_environment(
                {"COLUMNS": "200", "XDG_CONFIG_HOME": config, **database, **(env or {})}
            ),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


class _LoopbackRelay:
    """A TCP relay on 127.0.0.1 in front of the hub; subclasses watch requests and alter responses."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self._target_port))
        state: dict[str, Any] = {}
        threading.Thread(target=self._relay_back, args=(upstream, client, state), daemon=True).start()
        try:
            while data := client.recv(65536):
                self._on_request(data, state)
                upstream.sendall(data)
        except OSError:
            pass

    def _relay_back(self, upstream: socket.socket, client: socket.socket, state: dict[str, Any]) -> None:
        try:
            while data := upstream.recv(65536):
                data, stop = self._on_response(data, state)
                client.sendall(data)
                if stop:
                    break
        except OSError:
            pass
        finally:
            # shutdown, not only close: the thread blocked reading the client holds the socket open, and
            # the client would see the cut only when its read timed out.
            for end in (client, upstream):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def _on_request(self, data: bytes, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _on_response(self, data: bytes, state: dict[str, Any]) -> tuple[bytes, bool]:
        raise NotImplementedError


class CuttingProxy(_LoopbackRelay):
    """Cuts the first download response after `cut_after` bytes, the way a dropped connection would, and
    records every request line it relays."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        super().__init__(target_port)
        self._cut_after = cut_after
        self._cut_done = False
        self.requests: list[str] = []

    def _on_request(self, data: bytes, state: dict[str, Any]) -> None:
        first_line = data.split(b"\r\n", 1)[0].decode("latin-1")
        if first_line.startswith(("GET ", "HEAD ")):
            ranged = "\r\nrange:" in data.decode("latin-1").lower()
            self.requests.append(first_line + (" [range]" if ranged else ""))
            if first_line.startswith("GET ") and "/resolve/" in first_line:
                state["download"] = True

    def _on_response(self, data: bytes, state: dict[str, Any]) -> tuple[bytes, bool]:
        sent = state.get("sent", 0)
        with self._lock:
            cut = not self._cut_done and state.get("download", False) and sent + len(data) > self._cut_after
            if cut:
                self._cut_done = True
        if cut:
            return data[: self._cut_after - sent], True
        state["sent"] = sent + len(data)
        return data, False


class TamperingProxy(_LoopbackRelay):
    """Flips one byte in the body of each download of a file whose URL contains `path_fragment`: a
    compromised mirror or network, for verification tests."""

    def __init__(self, target_port: int, path_fragment: str) -> None:
        super().__init__(target_port)
        self._fragment = path_fragment
        self.tampered = 0

    def _on_request(self, data: bytes, state: dict[str, Any]) -> None:
        first_line = data.split(b"\r\n", 1)[0].decode("latin-1")
        if first_line.startswith("GET ") and "/resolve/" in first_line and self._fragment in first_line:
            state["armed"] = True

    def _on_response(self, data: bytes, state: dict[str, Any]) -> tuple[bytes, bool]:
        if not state.get("armed"):
            return data, False
        start = 0
        if not state.get("in_body"):
            end = data.find(b"\r\n\r\n")
            if end < 0:
                return data, False
            state["in_body"] = True
            start = end + 4
        if start >= len(data):
            return data, False
        state["armed"] = state["in_body"] = False
        with self._lock:
            self.tampered += 1
        return data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1 :], False


def worker_pids(server: Server) -> list[int]:
    """The worker processes of a `serve --workers N` (multiprocessing's resource tracker left out)."""
    pid = server.pid
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
        except OSError:
            continue  # exited meanwhile
    return found


def worker_of(server: Server, client_port: int) -> int:
    """The worker process holding the server end of the connection from `client_port` (after an answer on
    it): the connection's socket inode from /proc/net/tcp, found among each worker's open files."""
    port = int(server.url.rsplit(":", 1)[1])
    # /proc/net/tcp is no snapshot: the kernel writes it a page at a time, walking a hash table that other
    # connections change meanwhile, so one socket may appear more than once (seen in CI: one inode on three
    # rows) or, rarely, be passed over. Rows are told apart by inode, and a table without the connection is
    # read again.
    for _ in range(50):
        ours = [
            row
            for row in _tcp_rows()
            if row[1].endswith(f":{port:04X}") and row[2].endswith(f":{client_port:04X}")
        ]
        # An earlier connection from the same client port may linger in TIME_WAIT (state 06, no inode).
        inodes = sorted({row[9] for row in ours if row[3] == "01"})  # ESTABLISHED
        if inodes:
            break
        time.sleep(0.01)
    assert len(inodes) == 1, f"connections from port {client_port} to port {port}: {ours}"
    for pid in worker_pids(server):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inodes[0]}]":
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def _tcp_rows() -> list[list[str]]:
    return [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]


def accepting_workers(server: Server) -> list[int]:
    """The workers that accept connections already: those whose event loop watches the listening socket (an
    `epoll` entry for it in /proc/PID/fdinfo). A worker still building its app does not, and a request then
    always lands on another one."""
    port = int(server.url.rsplit(":", 1)[1])
    listening = {
        f"socket:[{row[9]}]" for row in _tcp_rows() if row[1].endswith(f":{port:04X}") and row[3] == "0A"
    }
    ready = []
    for pid in worker_pids(server):
        try:
            fds = {fd.name for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd) in listening}
            for info in Path(f"/proc/{pid}/fdinfo").iterdir():
                watched = [
                    line.split()[1] for line in info.read_text().splitlines() if line.startswith("tfd:")
                ]
                if fds.intersection(watched):
                    ready.append(pid)
                    break
        except OSError:
            continue  # exited meanwhile, or a file closed while read
    return ready


def wait_for_workers(server: Server, count: int) -> list[int]:
    """Wait (at most 60 s) until `count` workers accept connections; returns their process ids."""
    for _ in range(600):
        ready = accepting_workers(server)
        if len(ready) == count:
            return ready
        time.sleep(0.1)
    raise AssertionError(f"{len(accepting_workers(server))} of {count} workers accept connections after 60 s")
