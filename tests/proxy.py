"""A proxy in front of a real hub, for tests of clients facing a hostile or unreliable network."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

# (method, path, body) -> body: how the proxy rewrites an answer of the hub.
Rewrite = Callable[[str, str, bytes], bytes]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length"}


class RewritingProxy:
    """A small HTTP server on 127.0.0.1 that forwards every request to the hub and passes each answer
    through `rewrite`: a hostile mirror, or a tampering network in front of an honest hub."""

    def __init__(self, hub_url: str) -> None:
        self.rewrite: Rewrite = lambda method, path, body: body
        # A status to answer instead of forwarding the request (a hub that fails now and then), or None.
        self.fail: Callable[[str, str], int | None] = lambda method, path: None
        proxy = self
        client = httpx.Client(base_url=hub_url, timeout=60)

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status = proxy.fail(self.command, self.path)
                if status is not None:
                    self.rfile.read(length)
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = client.request(
                    self.command, self.path, headers=headers, content=self.rfile.read(length)
                )
                body = proxy.rewrite(self.command, self.path, upstream.content)
                self.send_response(upstream.status_code)
                for name, value in upstream.headers.multi_items():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", upstream.headers.get("content-length", "0"))
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = _forward

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._client = client

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
