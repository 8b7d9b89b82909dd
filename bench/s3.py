"""S3 transfer benchmark: a large file uploaded to and downloaded from a hub whose blob store is S3
(SeaweedFS on loopback), streamed through the hub and through presigned URLs, against the anchor: the same
bytes copied to and from the same bucket with the same client library (obstore), no hub in between.

Rows (each the median of `--rounds` alternating rounds, MB/s, and the ratio hub / anchor):

- upload, anchor: `obstore.put` of the file (multipart, as the library does it);
- upload, streamed: an LFS upload as the hub asks for it (64 MiB parts, each through the hub into a part
  object of the bucket), then its completion: the hub reads the parts back to verify the sha256, then
  copies them into place server-side with `If-None-Match: *`;
- upload, presigned: the same, with the parts PUT to presigned URLs of the bucket;
- download, anchor: `obstore.get` streamed to a file;
- download, streamed: `GET /resolve` through the hub; presigned: the same request following the 302.

Clients are httpx streaming from and to a local file; everything shares this machine's cores.

    python bench/s3.py [--size-mib 1024] [--rounds 3]
    python bench/scale.py --rows s3       (the same rows, among the scale benchmark's; make bench)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import obstore
from obstore.store import S3Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.s3 import REGION, SeaweedServer, credentials_env, fresh_prefix, start_seaweed
from tests.support import Server, start_server, stop_server

MIB = 1024 * 1024
PIECE = 8 * MIB
PART = 64 * MIB  # the hub's default multipart chunk size


def _file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for offset in range(0, size, PIECE):
            chunk = os.urandom(min(PIECE, size - offset))
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def _pieces(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        left = length if length is not None else os.path.getsize(path) - start
        while left > 0:
            chunk = handle.read(min(PIECE, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _save(response: httpx.Response, target: Path) -> int:
    response.raise_for_status()
    written = 0
    with open(target, "wb") as handle:
        for chunk in response.iter_bytes(PIECE):
            handle.write(chunk)
            written += len(chunk)
    return written


class Hub:
    def __init__(self, seaweed: SeaweedServer, presigned: bool, work: Path) -> None:
        self.prefix = fresh_prefix()
        env = {
            **credentials_env(),
            "WEIGHTYARD_BLOB_URL": seaweed.url(self.prefix),
            "WEIGHTYARD_BLOB_REDIRECT": "presigned" if presigned else "stream",
            "WEIGHTYARD_LFS_UPLOADS": "always",
        }
        folder = work / ("presigned" if presigned else "streamed")
        folder.mkdir()
        self.server: Server = start_server(folder / "data", env=env)
        self.auth = {"Authorization": f"Bearer {self.server.token}"}
        self.client = httpx.Client(base_url=self.server.url, headers=self.auth, timeout=600)
        self.client.post("/api/repos/create", json={"name": "bench"}).raise_for_status()

    def _batch(self, sha: str, size: int) -> dict[str, object]:
        answer = self.client.post(
            "/admin/bench.git/info/lfs/objects/batch",
            headers={"Content-Type": "application/vnd.git-lfs+json"},
            json={
                "operation": "upload",
                "transfers": ["basic", "multipart"],
                "objects": [{"oid": sha, "size": size}],
            },
        )
        answer.raise_for_status()
        (obj,) = answer.json()["objects"]
        upload: dict[str, object] = obj["actions"]["upload"]
        return upload

    def upload(self, path: Path, sha: str, size: int) -> None:
        """As an LFS client does: the parts the batch answer names (to the hub or, presigned, to the bucket),
        then the completion; or one PUT when the hub asks for one."""
        upload = self._batch(sha, size)
        header = upload.get("header")
        with httpx.Client(timeout=600) as plain:
            if not isinstance(header, dict) or "chunk_size" not in header:
                plain.put(str(upload["href"]), content=_pieces(path)).raise_for_status()
                return
            chunk = int(header["chunk_size"])
            for number in range(1, -(-size // chunk) + 1):
                body = b"".join(_pieces(path, (number - 1) * chunk, chunk))
                plain.put(header[str(number)], content=body).raise_for_status()
            plain.post(str(upload["href"]), json={"oid": sha, "parts": []}).raise_for_status()

    def commit(self, sha: str, size: int, name: str) -> None:
        lines = [
            {"key": "header", "value": {"summary": f"add {name}", "description": ""}},
            {"key": "lfsFile", "value": {"path": name, "algo": "sha256", "oid": sha, "size": size}},
        ]
        body = "\n".join(json.dumps(line) for line in lines)
        self.client.post(
            "/api/models/admin/bench/commit/main",
            content=body,
            headers={"Content-Type": "application/x-ndjson"},
        ).raise_for_status()

    def download(self, name: str, target: Path) -> int:
        url = f"{self.server.url}/admin/bench/resolve/main/{name}"
        with (
            httpx.Client(timeout=600, headers=self.auth, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            return _save(response, target)

    def close(self) -> None:
        self.client.close()
        stop_server(self.server)


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _anchor_download(anchor: S3Store, key: str, target: Path) -> None:
    with open(target, "wb") as handle:
        for chunk in obstore.get(anchor, key).stream(min_chunk_size=PIECE):
            handle.write(chunk)


def _round(
    number: int, size: int, work: Path, anchor: S3Store, hubs: dict[str, Hub], times: dict[str, list[float]]
) -> None:
    """One round: new content (a hub stores content once; a second upload of it would move nothing), every
    upload, then every download, in alternating order from round to round."""
    source, target = work / "source.bin", work / "target.bin"
    sha = _file(source, size)
    key = f"anchor/{sha}"
    uploads: list[tuple[str, Callable[[], object]]] = [
        ("upload anchor", partial(obstore.put, anchor, key, source, chunk_size=PART)),
        ("upload streamed", partial(hubs["streamed"].upload, source, sha, size)),
        ("upload presigned", partial(hubs["presigned"].upload, source, sha, size)),
    ]
    for label, action in uploads if number % 2 == 0 else reversed(uploads):
        times.setdefault(label, []).append(_timed(action))
    name = f"r{number}.bin"
    for hub in hubs.values():
        hub.commit(sha, size, name)
    downloads: list[tuple[str, Callable[[], object]]] = [
        ("download anchor", partial(_anchor_download, anchor, key, target)),
        ("download streamed", partial(hubs["streamed"].download, name, target)),
        ("download presigned", partial(hubs["presigned"].download, name, target)),
    ]
    for label, action in downloads if number % 2 == 0 else reversed(downloads):
        times.setdefault(label, []).append(_timed(action))
        if target.stat().st_size != size:
            raise SystemExit(f"{label}: {target.stat().st_size} bytes, not {size}")
    source.unlink()
    target.unlink()


ROWS = [
    (direction, how) for direction in ("upload", "download") for how in ("anchor", "streamed", "presigned")
]


def measure(size_mib: int, rounds: int) -> list[dict[str, object]]:
    """The six rows (`ROWS`), each the median of `rounds` alternating rounds of a `size_mib` file: MB/s, its
    time and the ratio to the anchor of its direction (bench/scale.py reports them among its own rows)."""
    size = size_mib * MIB
    os.environ.update(credentials_env())
    work = Path(tempfile.mkdtemp(prefix="weightyard-bench-s3-"))
    seaweed = start_seaweed()
    hubs: dict[str, Hub] = {}
    times: dict[str, list[float]] = {}
    try:
        hubs = {"streamed": Hub(seaweed, False, work), "presigned": Hub(seaweed, True, work)}
        anchor = S3Store(
            seaweed.bucket,
            endpoint=seaweed.endpoint,
            region=REGION,
            client_options={"allow_http": True},
            virtual_hosted_style_request=False,
        )
        for number in range(rounds):
            _round(number, size, work, anchor, hubs, times)
    finally:
        for hub in hubs.values():
            hub.close()
        seaweed.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows: list[dict[str, object]] = []
    for direction, how in ROWS:
        base = statistics.median(times[f"{direction} anchor"])
        median = statistics.median(times[f"{direction} {how}"])
        rows.append(
            {
                "direction": direction,
                "how": how,
                "size_mib": size_mib,
                "rounds": rounds,
                "mb_per_s": round(size / median / 1e6, 1),
                "seconds": round(median, 2),
                "ratio": round(base / median, 2),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    rows = measure(options.size_mib, options.rounds)
    print(
        f"S3 transfers of {options.size_mib} MiB (SeaweedFS on loopback), medians of {options.rounds} rounds"
    )
    for row in rows:
        print(
            f"  {row['direction']:8} {row['how']:9} {row['mb_per_s']:8.1f} MB/s  {row['seconds']:7.2f} s"
            f"  hub / anchor {row['ratio']:5.2f}x"
        )


if __name__ == "__main__":
    main()
