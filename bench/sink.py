"""A sink hub: just enough of the Hub protocol for an upload, every byte received and thrown away.

The stock client's Xet upload (`upload_file` with hf_xet) and `weightyard push` (an upload session, or LFS
batch and multipart parts) run against it unchanged; it answers like Weightyard does (the same routes, the
same 404s that make hf_xet fall back to `/v1/shards`, the same multipart part size) but stores, hashes and
checks nothing. It only remembers which objects a client verified or completed a session with, so that a
later batch (or a session's question) for one answers "stored" as the hub does. A client's time against it
is the client-side limit of an upload on this machine: what no server can improve.

    python bench/sink.py [--port 0]      # prints `listening on http://127.0.0.1:PORT`, serves until killed

`GET /_sink/stats` answers the bytes received in request bodies so far and how many xorbs, shards, parts,
upload sessions, commits and requests to unknown routes came in, so a benchmark can check that the client
really sent the file the way it sends it to the hub.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from weightyard.config import Settings

_READ = 1 << 20
_FAKE_OID = "0" * 40
_REPO = r"/api/(?P<plural>models|datasets|spaces)/(?P<ns>[^/]+)/(?P<name>[^/]+)"


def part_size() -> int:
    """The hub's multipart part size, so that the client cuts its upload the same way as for the hub."""
    return Settings().multipart_chunk_size  # WEIGHTYARD_MULTIPART_CHUNK_SIZE, as the hub reads it


class Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.received = 0
        self.requests = 0
        self.counts: dict[str, int] = {
            "xorbs": 0,
            "shards": 0,
            "parts": 0,
            "sessions": 0,
            "commits": 0,
            "unknown": 0,
        }
        self.lock = threading.Lock()
        self.part_size = part_size()
        # objects a client has verified or completed a session with: a later batch for one (or a session's
        # question) answers "stored", as the hub does
        self.stored: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn serves the hub
    server: Sink

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per request would cost the sink time; unknown routes are reported below

    # ------------------------------------------------------------------------------------------ plumbing

    def _discard_body(self) -> int:
        """Read the request body (Content-Length or chunked) into one reused buffer; returns its size."""
        buffer = memoryview(bytearray(_READ))
        total = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                total += self._discard(buffer, size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
        else:
            total = self._discard(buffer, int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.received += total
            self.server.requests += 1
        return total

    def _discard(self, buffer: memoryview, size: int) -> int:
        left = size
        while left > 0:
            got = self.rfile.readinto(buffer[: min(_READ, left)])
            if not got:
                raise ConnectionError("the client closed the connection inside a body")
            left -= got
        return size

    def _json_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        with self.server.lock:
            self.server.received += length
            self.server.requests += 1
        return json.loads(self.rfile.read(length) or b"{}")

    def _answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _count(self, what: str) -> None:
        with self.server.lock:
            self.server.counts[what] += 1

    def _unknown(self) -> None:
        self._discard_body()
        self._count("unknown")
        print(f"sink: no route for {self.command} {self.path}", file=sys.stderr, flush=True)
        self._answer(404, {"error": f"the sink has no route for {self.command} {self.path}"})

    # ------------------------------------------------------------------------------------------ routes

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/_sink/stats":
            with self.server.lock:
                stats = {"received": self.server.received, "requests": self.server.requests}
                self._answer(200, {**stats, **self.server.counts})
        elif match := re.fullmatch(_REPO + r"/xet-(write|read)-token/.+", path):
            self._discard_body()
            token = {
                "accessToken": "sink",
                "exp": int(time.time()) + 3600,
                "casUrl": self.server.url + "/cas",
            }
            headers = {
                "X-Xet-Cas-Url": token["casUrl"],
                "X-Xet-Access-Token": "sink",
                "X-Xet-Token-Expiration": str(token["exp"]),
            }
            self._answer(200, token, headers)
        elif path.startswith("/cas/v1/chunks/"):
            self._discard_body()
            self._answer(404)  # no dedup: everything the client sends is new to the sink
        elif match := re.fullmatch(_REPO, path):
            self._discard_body()
            repo_id = f"{match['ns']}/{match['name']}"
            self._answer(200, {"id": repo_id, "modelId": repo_id, "private": False, "sha": _FAKE_OID})
        else:
            self._unknown()

    def do_HEAD(self) -> None:
        self._unknown()

    def do_DELETE(self) -> None:
        if re.fullmatch(r"/_sink/sessions/[0-9a-f]+", self.path.split("?")[0]):
            self._discard_body()
            self._answer(204)
        else:
            self._unknown()

    def do_PUT(self) -> None:
        path = self.path.split("?")[0]
        if match := re.fullmatch(r"/_sink/parts/(?P<upload>[0-9a-f]+)/(?P<number>\d+)", path):
            self._discard_body()
            self._count("parts")
            self._answer(200, headers={"ETag": f'"{match["upload"]}-{match["number"]}"'})
        elif path.startswith("/_sink/objects/"):
            self._discard_body()
            self._answer(200)
        else:
            self._unknown()

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if path == "/api/repos/create":
            payload = self._json_body()
            name, namespace = str(payload.get("name")), payload.get("organization")
            repo_id = f"{namespace}/{name}" if namespace and "/" not in name else name
            self._answer(200, {"url": f"{self.server.url}/{repo_id}", "name": repo_id, "id": repo_id})
        elif re.fullmatch(_REPO + r"/preupload/.+", path):
            payload = self._json_body()
            files = [
                {"path": item["path"], "uploadMode": "lfs", "shouldIgnore": False, "oid": None}
                for item in payload.get("files", [])
            ]
            self._answer(200, {"files": files, "commitOid": _FAKE_OID})
        elif match := re.fullmatch(_REPO + r"/commit/.+", path):
            self._discard_body()  # NDJSON: header and one line per file, nothing of it is kept
            self._count("commits")
            url = f"{self.server.url}/{match['ns']}/{match['name']}"
            self._answer(
                200, {"success": True, "commitOid": _FAKE_OID, "commitUrl": f"{url}/commit/{_FAKE_OID}"}
            )
        elif match := re.fullmatch(_REPO + r"/uploads", path):
            self._count("sessions")
            self._answer(200, self._session(int(self._json_body()["size"])))
        elif re.fullmatch(r"/_sink/sessions/[0-9a-f]+/complete", path):
            payload = self._json_body()
            oid = str(payload.get("oid"))
            with self.server.lock:
                if payload.get("if_stored"):
                    stored = oid in self.server.stored
                else:
                    self.server.stored.add(oid)
                    stored = True
            self._answer(200, {"stored": stored})
        elif path.endswith(".git/info/lfs/objects/batch"):
            self._answer(200, self._lfs_batch(self._json_body()))
        elif path.startswith("/_sink/complete/"):
            self._json_body()
            self._answer(200)
        elif path.startswith("/_sink/verify"):
            oid = str(self._json_body().get("oid"))
            with self.server.lock:
                self.server.stored.add(oid)
            self._answer(200)
        elif path.startswith("/cas/v1/xorbs/"):
            self._discard_body()
            self._count("xorbs")
            self._answer(200, {"was_inserted": True})
        elif path == "/cas/v1/shards":
            self._discard_body()
            self._count("shards")
            self._answer(200, {"result": 1})
        elif path == "/cas/v2/shards" or path.startswith("/cas/v1/xorb-grants/"):
            self._discard_body()
            self._answer(404)  # as the hub: the client falls back to direct xorbs and /v1/shards
        else:
            self._unknown()

    def _session(self, size: int) -> dict[str, Any]:
        """An upload session as the hub opens one: the parts in the hub's part size, where to complete."""
        base, chunk, upload = self.server.url, self.server.part_size, uuid.uuid4().hex
        parts = [f"{base}/_sink/parts/{upload}/{n}" for n in range(1, max(1, math.ceil(size / chunk)) + 1)]
        return {
            "id": upload,
            "size": size,
            "part_size": chunk,
            "parts": parts,
            "complete": f"{base}/_sink/sessions/{upload}/complete",
            "abandon": f"{base}/_sink/sessions/{upload}",
            "expires_at": int(time.time()) + 3600,
        }

    def _lfs_batch(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Upload actions as the hub hands them out: multipart above the part size, one PUT below it."""
        base, chunk = self.server.url, self.server.part_size
        transfer, objects = "basic", []
        for item in payload.get("objects", []):
            oid, size = str(item["oid"]), int(item["size"])
            with self.server.lock:
                stored = oid in self.server.stored
            if stored:
                objects.append({"oid": oid, "size": size, "authenticated": True})
                continue
            verify = {"href": f"{base}/_sink/verify", "header": {}}
            if size > chunk:
                transfer = "multipart"
                upload = uuid.uuid4().hex
                header = {"chunk_size": str(chunk)}
                for number in range(1, math.ceil(size / chunk) + 1):
                    header[str(number)] = f"{base}/_sink/parts/{upload}/{number}"
                action = {"href": f"{base}/_sink/complete/{upload}", "header": header}
            else:
                action = {"href": f"{base}/_sink/objects/{oid}", "header": {}}
            actions = {"upload": action, "verify": verify}
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
        return {"transfer": transfer, "objects": objects, "hash_algo": "sha256"}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args()
    sink = Sink(("127.0.0.1", args.port))
    print(f"listening on {sink.url}", flush=True)
    try:
        sink.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sink.server_close()


if __name__ == "__main__":
    main()
