"""A minimal CAS on the standard library's HTTP server, built only from `weightyard.xet`.

It lets the stock client (`hf_xet`) upload to and download from this library, so the tests check the library
against the real client rather than against our own reading of the spec.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from weightyard.xet import (
    FileTerm,
    ShardFile,
    XetError,
    XorbInfo,
    dedup_index_entries,
    dedup_shard,
    hash_to_string,
    parse_range_header,
    parse_shard,
    parse_xorb,
    plan_reconstruction,
    string_to_hash,
    verify_shard,
)

HASH = r"([0-9a-f]{64})"


@dataclass
class CasState:
    xorb_bodies: dict[bytes, bytes] = field(default_factory=dict)
    xorbs: dict[bytes, XorbInfo] = field(default_factory=dict)
    files: dict[bytes, ShardFile] = field(default_factory=dict)
    dedup_index: dict[bytes, bytes] = field(default_factory=dict)
    shard_bodies: list[bytes] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    answer_v2_reconstructions: bool = True
    global_dedup: bool = True

    def terms(self, file_hash: bytes) -> tuple[FileTerm, ...]:
        return self.files[file_hash].terms


class CasStub:
    def __init__(self) -> None:
        self.state = CasState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self.state, self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> CasStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler_for(state: CasState, stub: CasStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(
            self, status: int, body: bytes = b"", content_type: str = "application/json", **headers: str
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: object) -> None:
            self._send(status, json.dumps(value).encode())

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def do_GET(self) -> None:
            state.requests.append(f"GET {self.path}")
            if self.path == "/token":
                token = {"accessToken": "t", "exp": int(time.time()) + 3600, "casUrl": stub.url + "/cas"}
                return self._json(200, token)
            if match := re.fullmatch(rf"/cas/v1/chunks/[^/]+/{HASH}", self.path):
                return self._chunk_query(string_to_hash(match[1]))
            if match := re.fullmatch(rf"/cas/v(1|2)/reconstructions/{HASH}", self.path):
                return self._reconstruction(match[1], string_to_hash(match[2]))
            if match := re.fullmatch(rf"/cas/fetch/{HASH}", self.path):
                body = state.xorb_bodies[string_to_hash(match[1])]
                start, end = parse_range_header(self.headers["Range"], len(body))
                content_range = f"bytes {start}-{end - 1}/{len(body)}"
                return self._send(
                    206, body[start:end], "application/octet-stream", Content_Range=content_range
                )
            return self._send(404)

        def _chunk_query(self, chunk: bytes) -> None:
            xorb = state.dedup_index.get(chunk) if state.global_dedup else None
            if xorb is None:
                return self._send(404)
            now = int(time.time())
            body = dedup_shard([state.xorbs[xorb]], hmac_key=b"\x5a" * 32, created=now, expiry=now + 86400)
            return self._send(200, body, "application/octet-stream")

        def _reconstruction(self, version: str, file_hash: bytes) -> None:
            if version == "2" and not state.answer_v2_reconstructions:
                return self._send(404)
            if file_hash not in state.files:
                return self._send(404)
            terms = state.terms(file_hash)
            size = sum(t.unpacked_len for t in terms)
            try:
                start, end = parse_range_header(self.headers.get("Range"), size)
            except XetError as exc:
                return self._json(exc.status, {"error": exc.message})
            plan = plan_reconstruction(terms, state.xorbs.get, start, end)

            def sign(xorb: bytes, ranges: object) -> str:
                return f"{stub.url}/cas/fetch/{hash_to_string(xorb)}"

            return self._json(200, plan.to_v2(sign) if version == "2" else plan.to_v1(sign))

        def do_POST(self) -> None:
            state.requests.append(f"POST {self.path}")
            body = self._body()
            try:
                if match := re.fullmatch(rf"/cas/v1/xorbs/[^/]+/{HASH}", self.path):
                    return self._xorb_upload(string_to_hash(match[1]), body)
                if self.path == "/cas/v1/shards":
                    return self._shard_upload(body)
            except XetError as exc:
                state.rejections.append(f"{exc.code}: {exc.message}")
                return self._json(exc.status, {"error": exc.message, "code": exc.code})
            return self._send(404)

        def _xorb_upload(self, xorb_hash: bytes, body: bytes) -> None:
            info = parse_xorb(body, xorb_hash)
            inserted = xorb_hash not in state.xorbs
            state.xorbs[xorb_hash] = info
            state.xorb_bodies[xorb_hash] = body
            self._json(200, {"was_inserted": inserted})

        def _shard_upload(self, body: bytes) -> None:
            shard = parse_shard(body)
            verify_shard(shard, state.xorbs.get)
            state.shard_bodies.append(body)
            for entry in shard.files:
                state.files[entry.file_hash] = entry
            new_xorbs = [state.xorbs[block.hash] for block in shard.xorbs]
            state.dedup_index.update(dedup_index_entries(shard.files, new_xorbs, state.xorbs.get))
            self._json(200, {"result": 1})

    return Handler
