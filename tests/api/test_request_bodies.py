"""Request bodies arrive whole and in order however the client cuts them: the server hands each piece it reads
on without copying it, and joins pieces that arrive faster than the app takes them (many small chunks of a
chunked body in one socket read, or a large body sent in one go)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator

import httpx
from huggingface_hub import HfApi
from tests.support import Server


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_commit_body_in_small_chunks_and_one_sent_whole_store_the_same_bytes(
    server: Server, repo_name: str
) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    content = os.urandom(1024 * 1024 + 17)
    lines = [
        {"key": "header", "value": {"summary": "add"}},
        {"key": "file", "value": {"content": base64.b64encode(content).decode(), "path": "a.bin"}},
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/x-ndjson"}
    url = f"{server.url}/api/models/{repo_name}/commit/main"
    # Chunked encoding, 61-byte chunks: one socket read holds hundreds of them.
    assert httpx.post(url, content=_pieces(body, 61), headers=headers, timeout=120).status_code == 200
    whole = body.replace(b'"a.bin"', b'"b.bin"')
    assert httpx.post(url, content=whole, headers=headers, timeout=120).status_code == 200
    for name in ("a.bin", "b.bin"):
        got = httpx.get(f"{server.url}/{repo_name}/resolve/main/{name}", headers=headers, timeout=120)
        assert got.status_code == 200 and got.content == content, name
