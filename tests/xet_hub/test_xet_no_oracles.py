"""No oracles, no poisoning: what the CAS answers an uploader depends only on what that uploader may read, and
nothing another uploader stored first (xorbs, shards, alternative chunkings, LFS objects, unfinished uploads,
commits by digest) can make a valid upload fail. Every refusal on the CAS routes is logged with its reason."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
from tests.auth.gate_support import cas_client, commit_lfs_pointer, create_repo, store_through_cas
from tests.support import loopback_request
from tests.xet_hub.conftest import XetHub, payload, upload_line

from weightyard.xet import FileTerm, Shard, file_entry, hash_to_string, serialize_shard, serialize_xorb
from weightyard.xet.shard import ShardFile


def _register(hub: XetHub, user: str, repo: str, data: bytes, pieces: int = 1) -> httpx.Response:
    """Upload `data` as a xorb of `pieces` chunks and register it in a shard with `user`'s write token."""
    cas = cas_client(hub.server, hub.tokens[user], repo, "write")
    assert cas is not None
    client, url = cas
    size = -(-len(data) // pieces)
    body, info = serialize_xorb([data[i : i + size] for i in range(0, len(data), size)])
    assert client.post(f"{url}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body).status_code == 200
    terms = (FileTerm(info.hash, info.raw_len, 0, len(info.chunks)),)
    entry = file_entry(terms, {info.hash: info}.get, hashlib.sha256(data).digest())
    return client.post(f"{url}/v1/shards", content=serialize_shard(Shard((entry,), ())))


def test_shard_result_says_only_whether_the_content_is_new_to_the_uploader(xet_hub: XetHub) -> None:
    create_repo(xet_hub.server, xet_hub.tokens["alice"], "alice/oracle-private", private=True)
    create_repo(xet_hub.server, xet_hub.tokens["bob"], "bob/oracle", private=True)
    private = os.urandom(30_000)
    store_through_cas(xet_hub.server, xet_hub.tokens["alice"], "alice/oracle-private", "p.bin", private)
    nowhere = os.urandom(30_000)
    # bob holds both contents; that alice stored one of them privately must not change his answers
    stored_elsewhere = _register(xet_hub, "bob", "bob/oracle", private)
    stored_nowhere = _register(xet_hub, "bob", "bob/oracle", nowhere)
    assert stored_elsewhere.json() == stored_nowhere.json() == {"result": 1}
    assert _register(xet_hub, "bob", "bob/oracle", private).json() == {"result": 0}


def test_content_others_stored_first_in_every_form_does_not_break_a_stock_client_upload(
    xet_hub: XetHub, tmp_path: Path
) -> None:
    victim = payload(20_000)
    sha = hashlib.sha256(victim).hexdigest()
    token = xet_hub.tokens["bob"]
    create_repo(xet_hub.server, token, "bob/poison", private=True)
    # An LFS object of the same bytes uploaded whole, and an upload asked for and never finished.
    other = payload(20_000)
    objects = [{"oid": sha, "size": len(victim)}, {"oid": hashlib.sha256(other).hexdigest(), "size": 20_000}]
    batch = loopback_request(
        "POST",
        f"{xet_hub.url}/bob/poison.git/info/lfs/objects/batch",
        headers=xet_hub.headers("bob"),
        json={"operation": "upload", "objects": objects},
    )
    assert batch.status_code == 200
    upload = batch.json()["objects"][0]["actions"]["upload"]
    assert loopback_request("PUT", upload["href"], content=victim).status_code == 200

    # The same bytes under other chunkings (so other file hashes), each registered and one committed.
    for pieces in (1, 2, 3):
        assert _register(xet_hub, "bob", "bob/poison", victim, pieces).status_code == 200
    assert (
        commit_lfs_pointer(xet_hub.server, token, "bob/poison", "v.bin", sha, len(victim)).status_code == 200
    )
    # A xorb holding the first bytes among junk, and a file entry over part of it.
    cas = cas_client(xet_hub.server, token, "bob/poison", "write")
    assert cas is not None
    client, url = cas
    body, info = serialize_xorb([victim[:8192], os.urandom(9000)])
    assert client.post(f"{url}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body).status_code == 200
    part: ShardFile = file_entry(
        (FileTerm(info.hash, 8192, 0, 1),), {info.hash: info}.get, hashlib.sha256(victim[:8192]).digest()
    )
    assert client.post(f"{url}/v1/shards", content=serialize_shard(Shard((part,), ()))).status_code == 200
    (tmp_path / "v.bin").write_bytes(victim)
    xet_hub.run_client(
        "alice",
        'api.create_repo("alice/poison-target")\n'
        + upload_line(tmp_path / "v.bin", "v.bin", "alice/poison-target"),
        tmp_path / "client",
    )
    downloaded = loopback_request("GET", f"{xet_hub.url}/alice/poison-target/resolve/main/v.bin")
    assert downloaded.status_code == 200 and downloaded.content == victim
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(payload(20_000))
    xet_hub.run_client("alice", upload_line(fresh, "fresh.bin", "alice/poison-target"), tmp_path / "client2")
    assert (
        loopback_request("GET", f"{xet_hub.url}/alice/poison-target/resolve/main/fresh.bin").content
        == fresh.read_bytes()
    )


def test_every_refusal_on_the_cas_routes_is_logged_with_its_reason(xet_hub: XetHub) -> None:
    create_repo(xet_hub.server, xet_hub.tokens["bob"], "bob/logged", private=True)
    cas = cas_client(xet_hub.server, xet_hub.tokens["bob"], "bob/logged", "write")
    assert cas is not None
    client, url = cas
    _, info = serialize_xorb([os.urandom(5000)])  # never uploaded
    terms = (FileTerm(info.hash, info.raw_len, 0, 1),)
    entry = file_entry(terms, {info.hash: info}.get, hashlib.sha256(b"x").digest())
    refused = client.post(f"{url}/v1/shards", content=serialize_shard(Shard((entry,), ())))
    assert refused.status_code == 400
    missing = client.get(f"{url}/v1/chunks/default/{hash_to_string(os.urandom(32))}")
    assert missing.status_code == 404
    log = (xet_hub.server.data.parent / f"{xet_hub.server.data.name}-server.log").read_text()
    assert "CAS POST /xet-cas/v1/shards -> 400 XetUnknownXorb: " in log
    assert "CAS GET /xet-cas/v1/chunks/default/" in log and "-> 404 NoDedupAnswer" in log


def test_an_upload_relying_on_a_dedup_answer_survives_the_source_repo_turning_private(
    xet_hub: XetHub,
) -> None:
    create_repo(xet_hub.server, xet_hub.tokens["bob"], "bob/shared", private=False)
    create_repo(xet_hub.server, xet_hub.tokens["alice"], "alice/deduped", private=False)
    shared = store_through_cas(
        xet_hub.server, xet_hub.tokens["bob"], "bob/shared", "s.bin", os.urandom(30_000)
    )
    cas = cas_client(xet_hub.server, xet_hub.tokens["alice"], "alice/deduped", "write")
    assert cas is not None
    client, url = cas
    assert client.get(f"{url}/v1/chunks/default/{shared.first_chunk}").status_code == 200
    # Between alice's dedup answer and her shard, the owner of the content she deduplicated against hides it.
    loopback_request(
        "PUT",
        f"{xet_hub.url}/api/models/bob/shared/settings",
        headers=xet_hub.headers("bob"),
        json={"private": True},
    ).raise_for_status()
    registered = client.post(f"{url}/v1/shards", content=serialize_shard(Shard((shared.entry,), ())))
    assert registered.status_code == 200, registered.text
    committed = commit_lfs_pointer(
        xet_hub.server, xet_hub.tokens["alice"], "alice/deduped", "s.bin", shared.sha256, len(shared.data)
    )
    assert committed.status_code == 200, committed.text
    assert loopback_request("GET", f"{xet_hub.url}/alice/deduped/resolve/main/s.bin").content == shared.data
