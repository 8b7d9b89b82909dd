"""Input rules over HTTP: names that would show as something else are refused, and downloads declare their
type for good (`X-Content-Type-Options: nosniff`)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import httpx
from huggingface_hub import HfApi
from tests.support import Server


def _commit(server: Server, repo: str, path: str, content: bytes) -> httpx.Response:
    lines = [
        {"key": "header", "value": {"summary": "add"}},
        {"key": "file", "value": {"content": base64.b64encode(content).decode(), "path": path}},
    ]
    return httpx.post(
        f"{server.url}/api/models/{repo}/commit/main",
        content=b"".join(json.dumps(line).encode() + b"\n" for line in lines),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/x-ndjson"},
    )


def test_paths_and_ref_names_with_bidi_or_zero_width_characters_are_refused(
    server: Server, repo_name: str
) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    for path in ("a/\u202etxt.exe", "model\u200b.safetensors", "README\u2066.md"):
        response = _commit(server, repo_name, path, b"x")
        assert (response.status_code, response.headers["x-error-code"]) == (422, "InvalidPath"), path
        assert "invisible or control character" in response.json()["error"]
    spoofing_branch = quote("release\u202e1", safe="")
    branch = httpx.post(
        f"{server.url}/api/models/{repo_name}/branch/{spoofing_branch}",
        headers={"Authorization": f"Bearer {server.token}"},
        json={},
    )
    assert (branch.status_code, branch.headers["x-error-code"]) == (400, "InvalidRefName")
    assert [f.path for f in api.list_repo_tree(repo_name)] == [".gitattributes"]
    assert [b.name for b in api.list_repo_refs(repo_name).branches] == ["main"]


def test_downloads_pages_and_errors_say_nosniff(server: Server, repo_name: str) -> None:
    HfApi(endpoint=server.url, token=server.token).create_repo(repo_name)
    assert _commit(server, repo_name, "page.txt", b"<html><script>alert(1)</script>").status_code == 200
    urls = [
        f"/{repo_name}/resolve/main/page.txt",  # the raw bytes of a file
        f"/{repo_name}/blob/main/page.txt",  # its page
        f"/{repo_name}/resolve/main/missing.txt",  # an error
        "/xet-cas/v1/fetch/" + "0" * 64 + "?r=0-1&exp=0&sig=x",  # a CAS fetch (refused: bad signature)
    ]
    for url in urls:
        response = httpx.get(server.url + url, headers={"Authorization": f"Bearer {server.token}"})
        assert response.headers.get("x-content-type-options") == "nosniff", (url, response.status_code)
