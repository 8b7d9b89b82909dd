"""Gate timing benchmark: does committing a sha256 by digest take longer when the content exists (in a repo
the committer may not read) than when it exists nowhere? Either answer is the same refusal
(`422 BlobNotFound`); a difference in time would tell an uploader that someone holds the content.

Set-up: alice's private repo holds a file; 20 public repos with 20 files each stand for the rest of the hub
(what a walk over readable repos would have to read). mallory commits, by digest only, alice's file's
sha256 and a sha256 nobody stored, interleaved, against `weightyard serve` on loopback. Printed: the medians,
the ratio present / absent (the anchor: 1.0 means no oracle), and whether the two samples overlap.

    .venv/bin/python bench/gate_oracle.py [--samples 60] [--json]     # about a minute here
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import Server, start_server, stop_server

PUBLIC_REPOS = 20
FILES_PER_REPO = 20
WARM_UP = 5


def _headers(token: str, ndjson: bool = False) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if ndjson:
        headers["Content-Type"] = "application/x-ndjson"
    return headers


def _user(server: Server, name: str) -> str:
    admin = _headers(server.token)
    httpx.post(f"{server.url}/api/admin/users", headers=admin, json={"name": name}).raise_for_status()
    created = httpx.post(
        f"{server.url}/api/admin/users/{name}/tokens", headers=admin, json={"name": "main", "scope": "write"}
    )
    created.raise_for_status()
    return str(created.json()["token"])


def _commit(server: Server, token: str, repo: str, lines: list[dict[str, object]]) -> httpx.Response:
    body = "\n".join(json.dumps(line) for line in [{"key": "header", "value": {"summary": "bench"}}, *lines])
    return httpx.post(
        f"{server.url}/api/models/{repo}/commit/main", headers=_headers(token, ndjson=True), content=body
    )


def _inline(path: str, data: bytes) -> dict[str, object]:
    return {"key": "file", "value": {"content": base64.b64encode(data).decode(), "path": path}}


def _repo(server: Server, token: str, repo: str, private: bool) -> None:
    httpx.post(
        f"{server.url}/api/repos/create", headers=_headers(token), json={"name": repo, "private": private}
    ).raise_for_status()


def measure(server: Server, samples: int) -> dict[str, list[float]]:
    alice, mallory = _user(server, "alice"), _user(server, "mallory")
    _repo(server, alice, "alice/secret", private=True)
    secret = os.urandom(5000)
    _commit(server, alice, "alice/secret", [_inline("secret.bin", secret)]).raise_for_status()
    for index in range(PUBLIC_REPOS):
        _repo(server, alice, f"alice/public{index}", private=False)
        files = [_inline(f"f{n}.txt", os.urandom(100)) for n in range(FILES_PER_REPO)]
        _commit(server, alice, f"alice/public{index}", files).raise_for_status()
    _repo(server, mallory, "mallory/own", private=False)
    digests = {
        "present": hashlib.sha256(secret).hexdigest(),
        "absent": hashlib.sha256(b"content nobody stored").hexdigest(),
    }
    times: dict[str, list[float]] = {kind: [] for kind in digests}
    for round_ in range(samples + WARM_UP):
        for kind, sha in digests.items():
            pointer = {"path": "x.bin", "algo": "sha256", "oid": sha, "size": len(secret)}
            start = time.perf_counter()
            answer = _commit(server, mallory, "mallory/own", [{"key": "lfsFile", "value": pointer}])
            elapsed = time.perf_counter() - start
            assert answer.status_code == 422, answer.text
            assert answer.json()["code"] == "BlobNotFound", answer.text
            if round_ >= WARM_UP:
                times[kind].append(elapsed * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = start_server(Path(folder) / "data")
        try:
            times = measure(server, args.samples)
        finally:
            stop_server(server)
    present, absent = times["present"], times["absent"]
    result = {
        "samples": args.samples,
        "present_median_ms": statistics.median(present),
        "absent_median_ms": statistics.median(absent),
        "ratio_present_over_absent": statistics.median(present) / statistics.median(absent),
        "overlap": min(present) <= max(absent) and min(absent) <= max(present),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"commit by digest, {args.samples} samples each (interleaved)")
    print(f"  content in a private repo: median {result['present_median_ms']:.1f} ms")
    print(f"  content stored nowhere:    median {result['absent_median_ms']:.1f} ms")
    print(f"ratio present / absent: {result['ratio_present_over_absent']:.2f} (anchor 1.00: no oracle)")
    print(f"samples overlap: {result['overlap']}")


if __name__ == "__main__":
    main()
