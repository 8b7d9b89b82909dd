"""The client-side bound of `hf_hub_download` (Xet): the stock client fetching its xorb bytes from nginx.

A loopback proxy that the client uses as its endpoint (`HF_ENDPOINT`): it forwards every request to the real
hub unchanged (the Host header too, so the hub's answers name the proxy: the token's `casUrl` and so the
reconstruction request come back through it) except that it rewrites the fetch URLs of the reconstruction
answer (`GET /xet-cas/v1|v2/reconstructions/{file}`: `fetch_info.*.url` in v1, `xorbs.*.url` in v2) to
`ORIGIN/<first two hex digits>/<xorb hash>`, where Debian's nginx serves the hub's own xorb folder
(`DATA/xorbs/ab/<hash>`). The fetch ranges are byte ranges of the stored xorb file, which nginx serves with
`Range` and sendfile, so the client's byte fetches cost no server anything beyond that; the client does not
know. Its time through the proxy is what the client itself costs on this machine: hub time / bound time
says how close the hub is, anchor time / bound time is the best ratio any server could give this client.

bench/transfer.py runs it in a thread beside the `hf_hub_download` row. By hand:

    python bench/download_bound.py --hub http://127.0.0.1:PORT --origin http://127.0.0.1:NGINX/xorbs

prints `listening on http://127.0.0.1:PORT` and serves until killed. `GET /_bound/stats` answers how many
answers were rewritten, how many fetch URLs they carried, the body bytes forwarded from the hub and the
seconds spent waiting on it, so a benchmark can check that the file's bytes came from the origin.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_RECONSTRUCTION = re.compile(r"/xet-cas/v[12]/reconstructions/[0-9a-f]+")
# Not forwarded: they describe one hop's connection, not the message (RFC 9110 §7.6.1).
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


class BoundProxy(ThreadingHTTPServer):
    """The proxy: `with BoundProxy(hub, origin) as proxy:` serves on `proxy.url` in a thread until the end."""

    daemon_threads = True

    def __init__(self, hub: str, origin: str, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        parsed = urllib.parse.urlsplit(hub)
        if parsed.scheme != "http" or parsed.hostname is None:
            raise ValueError(f"the hub must be an http:// URL, not {hub!r}")
        self.hub_host, self.hub_port = parsed.hostname, parsed.port or 80
        self.origin = origin.rstrip("/")
        self.lock = threading.Lock()
        self.stats = {"rewritten": 0, "fetch_urls": 0, "forwarded_bytes": 0, "requests": 0}
        self.hub_seconds = 0.0
        self.last_hub_seconds = 0.0
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def snapshot(self) -> dict[str, float]:
        with self.lock:
            return {**self.stats, "hub_seconds": self.hub_seconds}

    def checked(self, download: Callable[[], float], limit: int = 1 << 20) -> float:
        """Run one download through the proxy and check that its bytes came from the origin: a reconstruction
        was rewritten and at most `limit` body bytes came from the hub. `last_hub_seconds` is then the time
        that download spent waiting on the hub's answers (HEAD, token, reconstruction)."""
        before = self.snapshot()
        seconds = download()
        after = self.snapshot()
        forwarded = after["forwarded_bytes"] - before["forwarded_bytes"]
        if after["rewritten"] == before["rewritten"] or forwarded > limit:
            rewritten = after["rewritten"] - before["rewritten"]
            raise RuntimeError(
                f"the bound download did not fetch from the origin: {rewritten} reconstructions rewritten, "
                f"{forwarded} body bytes forwarded from the hub"
            )
        self.last_hub_seconds = after["hub_seconds"] - before["hub_seconds"]
        return seconds

    def __enter__(self) -> BoundProxy:
        self._thread = threading.Thread(target=self.serve_forever, name="download-bound", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def rewrite(self, body: bytes) -> bytes:
        """The reconstruction answer with every fetch URL pointing at the origin's copy of its xorb."""
        plan: dict[str, Any] = json.loads(body)
        urls = 0
        for key in ("fetch_info", "xorbs"):  # v1, v2
            for xorb, entries in (plan.get(key) or {}).items():
                for entry in entries:
                    entry["url"] = f"{self.origin}/{xorb[:2]}/{xorb}"
                    urls += 1
        if urls == 0:
            raise ValueError("a reconstruction answer without fetch URLs")
        with self.lock:
            self.stats["rewritten"] += 1
            self.stats["fetch_urls"] += urls
        return json.dumps(plan).encode()


def expose(xorbs: Path) -> None:
    """Make the hub's xorb folder readable by nginx's workers (they drop to an unprivileged user as root)."""
    xorbs.parent.chmod(0o755)
    for folder, _, files in os.walk(xorbs):
        os.chmod(folder, 0o755)  # noqa: S103 - a benchmark's temporary folder, on loopback
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn serves the hub
    server: BoundProxy

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _hub(self) -> http.client.HTTPConnection:
        # One keep-alive connection to the hub per client connection (this handler lives as long as it).
        connection: http.client.HTTPConnection | None = getattr(self, "_connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.server.hub_host, self.server.hub_port, timeout=120)
            self._connection = connection
        return connection

    def _forward(self) -> None:
        if self.path == "/_bound/stats":
            self._send(200, {"Content-Type": "application/json"}, json.dumps(self.server.snapshot()).encode())
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        start = time.perf_counter()
        connection = self._hub()
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException):
            connection.close()  # a kept-alive connection the hub closed: once more on a new one
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
        with self.server.lock:
            self.server.hub_seconds += time.perf_counter() - start
            self.server.stats["forwarded_bytes"] += len(data)
            self.server.stats["requests"] += 1
        out = {k: v for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP}
        if answer.status == 200 and _RECONSTRUCTION.fullmatch(self.path.split("?")[0]):
            data = self.server.rewrite(data)
        if self.command != "HEAD":  # a HEAD answer keeps the hub's Content-Length: the size of the file
            out = {k: v for k, v in out.items() if k.lower() != "content-length"}
            out["Content-Length"] = str(len(data))
        self._send(answer.status, out, data)

    def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response_only(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers and self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _forward


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hub", required=True, help="the hub's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--origin", required=True, help="base URL where nginx serves the hub's xorbs folder")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args()
    proxy = BoundProxy(args.hub, args.origin, args.port)
    print(f"listening on {proxy.url}", flush=True)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server_close()


if __name__ == "__main__":
    main()
