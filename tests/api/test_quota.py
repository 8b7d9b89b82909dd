"""`WEIGHTYARD_MAX_REPO_SIZE` is a quota: LFS objects, inline commit content and Xet xorbs count against it
before their bytes are accepted, committed or not, and the refusal is a 413 `RepoQuotaExceeded`."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
from collections.abc import Iterator

import httpx
import pytest
from tests.support import Server, start_server, stop_server

from weightyard.xet import hash_to_string, serialize_xorb

QUOTA = 8192
_repos = itertools.count()


@pytest.fixture(scope="module")
def quota_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(
        tmp_path_factory.mktemp("quota") / "data", env={"WEIGHTYARD_MAX_REPO_SIZE": str(QUOTA)}
    )
    yield instance
    stop_server(instance)


def _client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})


def _new_repo(server: Server) -> tuple[str, int]:
    """A new repo and the room its quota leaves (a new repo already holds its default .gitattributes)."""
    repo = f"admin/quota-{next(_repos)}"
    with _client(server) as client:
        assert client.post("/api/repos/create", json={"name": repo}).status_code == 200
        tree = client.get(f"/api/models/{repo}/tree/main", params={"recursive": "true"}).json()
    return repo, QUOTA - sum(item.get("size", 0) for item in tree)


def _batch(server: Server, repo: str, data: bytes) -> httpx.Response:
    with _client(server) as client:
        return client.post(
            f"/{repo}.git/info/lfs/objects/batch",
            json={
                "operation": "upload",
                "objects": [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}],
            },
        )


def _upload(server: Server, repo: str, data: bytes) -> None:
    """Upload `data` through the LFS batch API, without committing it."""
    answer = _batch(server, repo, data)
    assert answer.status_code == 200, answer.text
    href = answer.json()["objects"][0]["actions"]["upload"]["href"]
    assert httpx.put(href, content=data).status_code == 200


def _commit(server: Server, repo: str, lines: list[dict[str, object]]) -> httpx.Response:
    body = [{"key": "header", "value": {"summary": "quota"}}, *lines]
    with _client(server) as client:
        return client.post(
            f"/api/models/{repo}/commit/main",
            content=b"".join(json.dumps(line).encode() + b"\n" for line in body),
            headers={"Content-Type": "application/x-ndjson"},
        )


def _refused(response: httpx.Response) -> bool:
    return (response.status_code, response.headers.get("x-error-code")) == (413, "RepoQuotaExceeded")


def test_uncommitted_lfs_uploads_count_against_the_quota(quota_hub: Server) -> None:
    repo, room = _new_repo(quota_hub)
    first = os.urandom(room - 1000)
    _upload(quota_hub, repo, first)
    refused = _batch(quota_hub, repo, os.urandom(QUOTA - len(first) + 1))
    assert _refused(refused), refused.text
    assert f"limit of {QUOTA} bytes" in refused.json()["error"]
    # Asking again for the object already pending costs nothing; another repo has its own quota.
    assert _batch(quota_hub, repo, first).status_code == 200
    assert _batch(quota_hub, _new_repo(quota_hub)[0], os.urandom(room - 1000)).status_code == 200


def test_committed_content_counts_once_and_pending_uploads_on_top(quota_hub: Server) -> None:
    repo, room = _new_repo(quota_hub)
    data = os.urandom(room - 1000)
    _upload(quota_hub, repo, data)
    lfs_line = {"path": "w.bin", "algo": "sha256", "oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert _commit(quota_hub, repo, [{"key": "lfsFile", "value": lfs_line}]).status_code == 200
    _upload(quota_hub, repo, os.urandom(1000))  # committed + pending: within the quota
    assert _refused(_batch(quota_hub, repo, os.urandom(QUOTA - len(data) - 1000 + 1)))


def test_an_inline_commit_past_the_quota_is_refused(quota_hub: Server) -> None:
    repo, room = _new_repo(quota_hub)
    _upload(quota_hub, repo, os.urandom(room - 1000))
    content = base64.b64encode(os.urandom(QUOTA - (room - 1000) + 1)).decode()
    response = _commit(quota_hub, repo, [{"key": "file", "value": {"path": "big.bin", "content": content}}])
    assert _refused(response), response.text
    small = base64.b64encode(b"fits").decode()
    line = {"key": "file", "value": {"path": "a.txt", "content": small}}
    assert _commit(quota_hub, repo, [line]).status_code == 200


def test_xorbs_count_against_the_quota_of_their_tokens_repo(quota_hub: Server) -> None:
    repo, room = _new_repo(quota_hub)
    with _client(quota_hub) as client:
        token = client.get(f"/api/models/{repo}/xet-write-token/main").json()
    cas = httpx.Client(headers={"Authorization": f"Bearer {token['accessToken']}"})

    def upload_xorb(size: int) -> httpx.Response:
        body, info = serialize_xorb([os.urandom(size)])
        return cas.post(f"{token['casUrl']}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body)

    assert upload_xorb(room // 2).status_code == 200
    refused = upload_xorb(QUOTA - room // 2 + 1)
    assert _refused(refused), refused.text
    # The refused xorb was not kept: only the first counts, and the rest of the room is still free.
    assert _batch(quota_hub, repo, os.urandom(room // 4)).status_code == 200


def _open_session(server: Server, repo: str, size: int) -> httpx.Response:
    with _client(server) as client:
        return client.post(f"/api/models/{repo}/uploads", json={"size": size})


def test_an_upload_session_counts_by_size_until_completed_then_as_its_content(quota_hub: Server) -> None:
    repo, room = _new_repo(quota_hub)
    data = os.urandom(room - 1000)
    session = _open_session(quota_hub, repo, len(data))
    assert session.status_code == 200, session.text
    assert _refused(_open_session(quota_hub, repo, 1001)), "the open session holds its size"
    assert httpx.put(session.json()["parts"][0], content=data).status_code == 200
    done = httpx.post(session.json()["complete"], json={"oid": hashlib.sha256(data).hexdigest()})
    assert done.status_code == 200, done.text
    # now a pending upload of that content: asking the batch API for it costs nothing more
    assert _batch(quota_hub, repo, data).status_code == 200
    assert _refused(_batch(quota_hub, repo, os.urandom(1001)))


def test_an_abandoned_or_refused_session_gives_its_size_back(quota_hub: Server) -> None:
    repo, room = _new_repo(quota_hub)
    abandoned = _open_session(quota_hub, repo, room)
    assert httpx.delete(abandoned.json()["abandon"]).status_code == 204
    refused = _open_session(quota_hub, repo, room)
    assert httpx.put(refused.json()["parts"][0], content=os.urandom(room)).status_code == 200
    wrong = httpx.post(refused.json()["complete"], json={"oid": "ab" * 32})
    assert wrong.headers["x-error-code"] == "ContentMismatch"
    assert _open_session(quota_hub, repo, room).status_code == 200
