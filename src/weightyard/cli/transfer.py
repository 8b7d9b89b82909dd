"""`push`'s transfer of large files: sha256 with large reads, then the LFS batch API with parts in parallel.

The stock client hashes in 1 MiB reads and sends multipart parts one after the other in 64 KiB writes, each
part waiting for the server to finish the previous one. Here the hash reads 8 MiB at a time with the next
read running while the current buffer is hashed, and a few parts are in flight at once, so the hub writes
and hashes one part while the next arrives. The commit itself stays with the stock client (`create_commit`),
which finds these objects stored and sends only the commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Reads for hashing and for sending: large enough that per-call overhead vanishes, small enough that the
# buffers in flight (two for hashing, one per part in flight) stay a few tens of MB.
READ_SIZE = 8 * 1024 * 1024
# Parts in flight at once: one being written by the hub while the next arrives (and one more to cover the
# gap of each request's round trip). More would only add memory and contention on a few cores.
PARTS_IN_FLIGHT = 3
_LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
# A send that fails on the way (connection dropped or timed out, hub restarting or overloaded) is sent again
# after a pause that doubles, as the stock client does with its parts; a refusal (any other status) is final.
RETRIES = 4
RETRY_STATUSES = frozenset({429, 502, 503, 504})
FIRST_PAUSE_S = 0.5

Advance = Callable[[int], object]


class TransferRefused(Exception):
    """The hub refused an object, or the local file changed while it was sent: one line for the user."""


def sha256_of_file(path: Path, advance: Advance) -> str:
    """The sha256 of the file at `path`, reading the next 8 MiB while the current 8 MiB are hashed (both
    release the GIL), and calling `advance` with each count of bytes hashed."""
    digest = hashlib.sha256()
    buffers = [bytearray(READ_SIZE), bytearray(READ_SIZE)]
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash-read") as reader:
            current, offset = 0, 0
            pending = reader.submit(os.preadv, fd, [buffers[current]], offset)
            while count := pending.result():
                offset += count
                pending = reader.submit(os.preadv, fd, [buffers[1 - current]], offset)
                digest.update(memoryview(buffers[current])[:count])
                advance(count)
                current = 1 - current
    finally:
        os.close(fd)
    return digest.hexdigest()


def _read_range(path: Path, start: int, end: int, advance: Advance) -> Iterator[bytes]:
    fd = os.open(path, os.O_RDONLY)
    try:
        position = start
        while position < end:
            data = os.pread(fd, min(READ_SIZE, end - position), position)
            if not data:
                raise TransferRefused(f"{path} became shorter while it was being pushed")
            position += len(data)
            advance(len(data))
            yield data
    finally:
        os.close(fd)


def _put(session: Any, url: str, path: Path, start: int, end: int, advance: Advance) -> Any:
    """PUT bytes [start, end) of the file, sent again on a transient failure (the progress shown goes back
    by what the failed attempt had counted)."""
    import httpx
    from huggingface_hub import hf_raise_for_status

    for attempt in range(RETRIES + 1):
        counted = 0

        def count(n: int) -> None:
            nonlocal counted
            counted += n
            advance(n)

        last = attempt == RETRIES
        try:
            response = session.put(
                url,
                content=_read_range(path, start, end, count),
                headers={"Content-Length": str(end - start), "Content-Type": "application/octet-stream"},
            )
        except httpx.TransportError:
            if last:
                raise
        else:
            if last or response.status_code not in RETRY_STATUSES:
                hf_raise_for_status(response)
                return response
        advance(-counted)
        time.sleep(FIRST_PAUSE_S * 2**attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


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
    upload = actions["upload"]
    header = upload.get("header") or {}
    if "chunk_size" in header:
        part_size = int(header["chunk_size"])
        urls = sorted((int(key), url) for key, url in header.items() if key.isdigit())
        senders = ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix="part")
        try:
            sent = [
                senders.submit(
                    _put, session, url, path, (n - 1) * part_size, min(n * part_size, size), advance
                )
                for n, url in urls
            ]
            parts = [
                {"partNumber": n, "etag": future.result().headers.get("etag", "")}
                for (n, _), future in zip(urls, sent, strict=True)
            ]
        finally:
            # after a failure, the parts not yet started are not sent
            senders.shutdown(cancel_futures=True)
        done = session.post(upload["href"], headers=lfs_headers, json={"oid": sha256, "parts": parts})
        hf_raise_for_status(done)
    else:
        _put(session, upload["href"], path, 0, size, advance)
    verify = actions.get("verify")
    if verify:
        hf_raise_for_status(
            session.post(verify["href"], headers=lfs_headers, json={"oid": sha256, "size": size})
        )
