"""Helpers for the gate tests: a hub with an organisation, its roles and outsiders, and content stored as
Xet xorbs through the CAS (the stock client's path) so every read path can be tried on it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import httpx
from tests.support import Server, loopback_client, loopback_request

from weightyard.xet import (
    FileTerm,
    Shard,
    XorbInfo,
    file_entry,
    hash_to_string,
    serialize_shard,
    serialize_xorb,
)
from weightyard.xet.shard import ShardFile


@dataclass(frozen=True)
class Stored:
    """A file committed through the CAS: where it is, its bytes, and everything a client may name it by."""

    repo: str
    path: str
    data: bytes
    xorb_body: bytes
    info: XorbInfo
    entry: ShardFile

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def xet_hash(self) -> str:
        return hash_to_string(self.entry.file_hash)

    @property
    def first_chunk(self) -> str:
        return hash_to_string(self.info.chunks[0].hash)


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def admin_post(server: Server, path: str, payload: dict[str, object]) -> httpx.Response:
    response = loopback_request("POST", f"{server.url}{path}", headers=auth(server.token), json=payload)
    response.raise_for_status()
    return response


def create_user(server: Server, name: str, scope: str = "write") -> str:
    """Create `name` with one hub token (named "main"); returns the token."""
    admin_post(server, "/api/admin/users", {"name": name})
    created = admin_post(server, f"/api/admin/users/{name}/tokens", {"name": "main", "scope": scope})
    return str(created.json()["token"])


def set_member(server: Server, org: str, user: str, role: str) -> None:
    response = loopback_request(
        "PUT",
        f"{server.url}/api/admin/orgs/{org}/members/{user}",
        headers=auth(server.token),
        json={"role": role},
    )
    response.raise_for_status()


def create_repo(server: Server, token: str, repo: str, private: bool, **settings: object) -> None:
    response = loopback_request(
        "POST", f"{server.url}/api/repos/create", headers=auth(token), json={"name": repo, "private": private}
    )
    response.raise_for_status()
    if settings:
        response = loopback_request(
            "PUT", f"{server.url}/api/models/{repo}/settings", headers=auth(token), json=settings
        )
        response.raise_for_status()


def xet_token(server: Server, token: str | None, repo: str, scope: str) -> httpx.Response:
    return loopback_request(
        "GET", f"{server.url}/api/models/{repo}/xet-{scope}-token/main", headers=auth(token)
    )


def cas_client(server: Server, token: str | None, repo: str, scope: str) -> tuple[httpx.Client, str] | None:
    """A client holding a Xet token of `scope` on `repo`, and the CAS URL; None when the hub refuses one."""
    response = xet_token(server, token, repo, scope)
    if response.status_code != 200:
        return None
    body = response.json()
    return loopback_client(token=body["accessToken"]), str(body["casUrl"])


def commit_lfs_pointer(
    server: Server, token: str, repo: str, path: str, sha256: str, size: int
) -> httpx.Response:
    """Commit a file by digest only (an LFS pointer), as a client does after an upload it says it made."""
    lines = [
        {"key": "header", "value": {"summary": f"add {path}", "description": ""}},
        {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": sha256, "size": size}},
    ]
    return loopback_request(
        "POST",
        f"{server.url}/api/models/{repo}/commit/main",
        headers={**auth(token), "Content-Type": "application/x-ndjson"},
        content="\n".join(json.dumps(line) for line in lines),
    )


def store_through_cas(server: Server, token: str, repo: str, path: str, data: bytes) -> Stored:
    """Upload `data` as one xorb and one shard with a write token, then commit it by digest."""
    cas = cas_client(server, token, repo, "write")
    assert cas is not None
    client, url = cas
    body, info = serialize_xorb([data])
    response = client.post(f"{url}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body)
    assert response.status_code == 200, response.text
    terms = (FileTerm(info.hash, info.raw_len, 0, len(info.chunks)),)
    entry = file_entry(terms, {info.hash: info}.get, hashlib.sha256(data).digest())
    response = client.post(f"{url}/v1/shards", content=serialize_shard(Shard((entry,), ())))
    assert response.status_code == 200, response.text
    committed = commit_lfs_pointer(server, token, repo, path, hashlib.sha256(data).hexdigest(), len(data))
    assert committed.status_code == 200, committed.text
    return Stored(repo, path, data, body, info, entry)


def fetch_reconstruction(client: httpx.Client, url: str, stored: Stored) -> bytes | None:
    """Ask for the file's reconstruction and fetch every range it names; the xorb bytes received, or None
    when any step is refused. The bytes are checked against the xorb the content was stored in."""
    plan = client.get(f"{url}/v1/reconstructions/{stored.xet_hash}")
    if plan.status_code != 200:
        return None
    received = b""
    for ranges in plan.json()["fetch_info"].values():
        for item in ranges:
            start, end = item["url_range"]["start"], item["url_range"]["end"]
            piece = loopback_request("GET", item["url"], headers={"Range": f"bytes={start}-{end}"})
            if piece.status_code != 206:
                return None
            assert piece.content == stored.xorb_body[start : end + 1]
            received += piece.content
    return received


def random_text(label: str) -> bytes:
    return f"{label} {os.urandom(16).hex()}\n".encode()
