"""The docs/xet.md safety rules on a running hub: private repos stay private at chunk level, and malicious
uploads (forged hashes and verification entries, foreign xorbs, false sha256, oversize bodies) are refused."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from tests.support import loopback_client, loopback_request
from tests.xet_hub.conftest import XetHub, payload, sha256, upload_line

from weightyard.xet import (
    CompressionScheme,
    FileTerm,
    Shard,
    XorbInfo,
    chunk_file,
    file_entry,
    hash_to_string,
    serialize_shard,
    serialize_xorb,
    shard_xorb,
)

MIB = 1024 * 1024
SECRET = payload(3 * MIB, seed=11)


@pytest.fixture(scope="module")
def secret_repo(xet_hub: XetHub, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """alice's private repo holding SECRET, uploaded by the stock client: its file hash and commit."""
    folder = tmp_path_factory.mktemp("secret")
    (folder / "secret.bin").write_bytes(SECRET)
    xet_hub.run_client(
        "alice",
        'api.create_repo("alice/secret", private=True)\n'
        + upload_line(folder / "secret.bin", "secret.bin", "alice/secret"),
        folder / "client",
    )
    loopback_request(
        "POST", f"{xet_hub.url}/api/repos/create", headers=xet_hub.headers("bob"), json={"name": "bob/own"}
    ).raise_for_status()
    loopback_request(
        "POST",
        f"{xet_hub.url}/api/repos/create",
        headers=xet_hub.headers("alice"),
        json={"name": "alice/mal"},
    ).raise_for_status()
    head = loopback_request(
        "HEAD", f"{xet_hub.url}/alice/secret/resolve/main/secret.bin", headers=xet_hub.headers("alice")
    )
    head.raise_for_status()
    return {"file_hash": head.headers["X-Xet-Hash"], "commit": head.headers["X-Repo-Commit"]}


def cas(
    xet_hub: XetHub, user: str, repo: str, scope: str = "write", rev: str = "main"
) -> tuple[httpx.Client, str]:
    token, url = xet_hub.xet_token(user, repo, scope, rev)
    return loopback_client(token=token, timeout=120), url


def upload_xorb(client: httpx.Client, url: str, chunks: list[bytes]) -> XorbInfo:
    body, info = serialize_xorb(chunks)
    response = client.post(f"{url}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body)
    assert response.status_code == 200, response.text
    return info


def whole_terms(info: XorbInfo) -> tuple[FileTerm, ...]:
    return (FileTerm(info.hash, info.raw_len, 0, len(info.chunks)),)


def post_shard(client: httpx.Client, url: str, shard: Shard) -> httpx.Response:
    return client.post(f"{url}/v1/shards", content=serialize_shard(shard))


# ---------------------------------------------------------------------------------------------- isolation


def test_another_user_gets_no_token_for_a_private_repo(xet_hub: XetHub, secret_repo: dict[str, str]) -> None:
    for scope in ("read", "write"):
        response = loopback_request(
            "GET",
            f"{xet_hub.url}/api/models/alice/secret/xet-{scope}-token/main",
            headers=xet_hub.headers("bob"),
        )
        assert response.status_code == 404
    assert loopback_request(
        "GET", f"{xet_hub.url}/api/models/alice/secret/xet-read-token/main"
    ).status_code in (401, 404)


def test_dedup_query_reveals_nothing_about_chunks_only_in_a_private_repo(
    xet_hub: XetHub, secret_repo: dict[str, str]
) -> None:
    first_chunk = hash_to_string(chunk_file([SECRET]).chunks[0].hash)
    owner, owner_url = cas(xet_hub, "alice", "alice/secret")
    assert owner.get(f"{owner_url}/v1/chunks/default/{first_chunk}").status_code == 200
    other, other_url = cas(xet_hub, "bob", "bob/own")
    assert other.get(f"{other_url}/v1/chunks/default/{first_chunk}").status_code == 404
    assert other.get(f"{other_url}/v1/chunks/default-merkledb/{first_chunk}").status_code == 404


def test_another_user_cannot_reconstruct_fetch_or_reference_a_private_file(
    xet_hub: XetHub, secret_repo: dict[str, str]
) -> None:
    file_hash = secret_repo["file_hash"]
    owner, owner_url = cas(xet_hub, "alice", "alice/secret", "read", secret_repo["commit"])
    plan = owner.get(f"{owner_url}/v1/reconstructions/{file_hash}", headers={"Range": "bytes=0-99999"}).json()
    other, other_url = cas(xet_hub, "bob", "bob/own", "read")
    for version in (1, 2):
        assert other.get(f"{other_url}/v{version}/reconstructions/{file_hash}").status_code == 404

    (xorb, ranges), *_ = plan["fetch_info"].items()
    signed = ranges[0]["url"]
    start, end = ranges[0]["url_range"]["start"], ranges[0]["url_range"]["end"]
    assert loopback_request("GET", signed, headers={"Range": f"bytes={start}-{end}"}).status_code == 206
    forged = signed.replace(f"r={start}-{end}", f"r=0-{end + 10_000_000}")
    assert (
        loopback_request("GET", forged, headers={"Range": f"bytes=0-{end + 10_000_000}"}).status_code == 403
    )
    # The URL grants the chunks that cover the asked range, not the rest of the xorb.
    assert (
        loopback_request("GET", signed, headers={"Range": f"bytes={end + 1}-{end + 1000}"}).status_code == 403
    )

    # Even knowing every chunk hash, bob cannot register alice's xorb under his repo or commit her sha256.
    chunks = chunk_file([SECRET])
    from weightyard.xet import string_to_hash

    xorb_hash = string_to_hash(xorb)
    terms = (FileTerm(xorb_hash, len(SECRET), 0, len(chunks.chunks)),)  # the client packs one file in order
    from weightyard.xet import verification_hash
    from weightyard.xet.shard import ShardFile

    entry = ShardFile(
        chunks.file_hash,
        terms,
        (verification_hash(c.hash for c in chunks.chunks),),
        hashlib.sha256(SECRET).digest(),
    )
    writer, writer_url = cas(xet_hub, "bob", "bob/own")
    refused = post_shard(writer, writer_url, Shard((entry,), ()))
    assert refused.status_code == 400 and refused.json()["code"] == "XetUnknownXorb"
    commit = _commit_lfs_file(xet_hub, "bob", "bob/own", "stolen.bin", sha256(SECRET), len(SECRET))
    assert commit.status_code == 422


@pytest.mark.client
def test_another_user_who_has_the_bytes_uploads_them_to_his_own_repo(
    xet_hub: XetHub, secret_repo: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "same.bin").write_bytes(SECRET)
    xet_hub.run_client(
        "bob",
        upload_line(tmp_path / "same.bin", "same.bin", "bob/own"),
        tmp_path / "client",
    )
    assert loopback_request("GET", f"{xet_hub.url}/bob/own/resolve/main/same.bin").content == SECRET


def _commit_lfs_file(xet_hub: XetHub, user: str, repo: str, path: str, oid: str, size: int) -> httpx.Response:
    lines = [
        {"key": "header", "value": {"summary": f"add {path}", "description": ""}},
        {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}},
    ]
    return loopback_request(
        "POST",
        f"{xet_hub.url}/api/models/{repo}/commit/main",
        headers={**xet_hub.headers(user), "Content-Type": "application/x-ndjson"},
        content="\n".join(json.dumps(line) for line in lines),
    )


# ----------------------------------------------------------------------------------------- malicious uploads


def test_xorb_uploaded_under_a_forged_hash_or_with_a_flipped_byte_is_refused(
    xet_hub: XetHub, secret_repo: dict[str, str]
) -> None:
    client, url = cas(xet_hub, "alice", "alice/mal")
    body, info = serialize_xorb([os.urandom(20_000), os.urandom(30_000)], CompressionScheme.NONE)
    other = serialize_xorb([os.urandom(100)])[1]
    forged = client.post(f"{url}/v1/xorbs/default/{hash_to_string(other.hash)}", content=body)
    assert forged.status_code == 400 and forged.json()["code"] == "XetXorbHashMismatch"
    flipped = bytearray(body)
    flipped[100] ^= 1
    damaged = client.post(f"{url}/v1/xorbs/default/{hash_to_string(info.hash)}", content=bytes(flipped))
    assert damaged.status_code == 400
    assert hash_to_string(info.hash) not in xet_hub.xorb_files()


def test_oversize_xorb_and_shard_bodies_are_refused_with_413(
    xet_hub: XetHub, secret_repo: dict[str, str]
) -> None:
    client, url = cas(xet_hub, "alice", "alice/mal")
    chunk = os.urandom(128 * 1024)
    # Two well-formed chunk runs back to back: every header is valid, only the total is over the limit.
    full, info = serialize_xorb([chunk] * 512, CompressionScheme.NONE)
    body = full + serialize_xorb([chunk] * 2, CompressionScheme.NONE)[0]
    response = client.post(f"{url}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body)
    assert response.status_code == 413 and response.json()["code"] == "XetXorbTooLarge"
    shard = client.post(f"{url}/v1/shards", content=bytes(64 * MIB + 1))
    assert shard.status_code == 413


def test_shard_with_forged_verification_entry_or_poisoned_chunk_list_is_refused(
    xet_hub: XetHub, secret_repo: dict[str, str]
) -> None:
    client, url = cas(xet_hub, "alice", "alice/mal")
    data = [os.urandom(40_000), os.urandom(50_000)]
    info = upload_xorb(client, url, data)
    honest = file_entry(whole_terms(info), {info.hash: info}.get, hashlib.sha256(b"".join(data)).digest())
    forged = replace(honest, verification=(os.urandom(32),))
    response = post_shard(client, url, Shard((forged,), (shard_xorb(info),)))
    assert response.status_code == 400 and response.json()["code"] == "XetShardVerification"
    block = shard_xorb(info)
    poisoned = replace(block, chunks=(replace(block.chunks[0], hash=os.urandom(32)), block.chunks[1]))
    response = post_shard(client, url, Shard((honest,), (poisoned,)))
    assert response.status_code == 400 and response.json()["code"] == "XetShardVerification"
    assert post_shard(client, url, Shard((honest,), (block,))).status_code == 200


def test_shard_naming_an_unknown_xorb_is_refused(xet_hub: XetHub, secret_repo: dict[str, str]) -> None:
    client, url = cas(xet_hub, "alice", "alice/mal")
    data = [os.urandom(30_000)]
    _, info = serialize_xorb(data)  # never uploaded
    entry = file_entry(whole_terms(info), {info.hash: info}.get, hashlib.sha256(data[0]).digest())
    response = post_shard(client, url, Shard((entry,), ()))
    assert response.status_code == 400 and response.json()["code"] == "XetUnknownXorb"


def test_shard_claiming_a_false_sha256_is_refused_and_the_sha256_cannot_be_committed(
    xet_hub: XetHub, secret_repo: dict[str, str]
) -> None:
    client, url = cas(xet_hub, "alice", "alice/mal")
    data = [os.urandom(60_000)]
    info = upload_xorb(client, url, data)
    claimed = hashlib.sha256(b"some other content").digest()
    lying = file_entry(whole_terms(info), {info.hash: info}.get, claimed)
    response = post_shard(client, url, Shard((lying,), ()))
    assert response.status_code == 400 and "sha256" in response.json()["error"]
    commit = _commit_lfs_file(xet_hub, "alice", "alice/mal", "lie.bin", claimed.hex(), len(data[0]))
    assert commit.status_code == 422


def test_shard_over_a_xorb_damaged_in_storage_before_its_file_is_hashed_is_refused(
    xet_hub: XetHub, secret_repo: dict[str, str]
) -> None:
    # The file does not begin with the uploader's first xorb, so the hub hashes it when the shard comes
    # (a single file's xorbs are hashed as they arrive instead: tests/xet_hub/test_arrival_sha256.py).
    client, url = cas(xet_hub, "alice", "alice/mal")
    first_data, data = [os.urandom(50_000)], [os.urandom(70_000)]
    first = upload_xorb(client, url, first_data)
    info = upload_xorb(client, url, data)
    name = hash_to_string(info.hash)
    stored = xet_hub.server.data / "xorbs" / name[:2] / name
    damaged = bytearray(stored.read_bytes())
    damaged[5000] ^= 1
    stored.write_bytes(bytes(damaged))
    lookup = {info.hash: info, first.hash: first}.get
    honest = file_entry(
        whole_terms(info) + whole_terms(first), lookup, hashlib.sha256(data[0] + first_data[0]).digest()
    )
    response = post_shard(client, url, Shard((honest,), ()))
    assert response.status_code == 400 and "sha256" in response.json()["error"]


def test_read_tokens_cannot_upload_and_forged_or_missing_tokens_are_refused(
    xet_hub: XetHub, secret_repo: dict[str, str]
) -> None:
    body, info = serialize_xorb([os.urandom(1000)])
    path = f"/v1/xorbs/default/{hash_to_string(info.hash)}"
    reader, url = cas(xet_hub, "alice", "alice/mal", "read")
    assert reader.post(url + path, content=body).status_code == 403
    assert reader.post(f"{url}/v1/shards", content=b"").status_code == 403
    token, _ = xet_hub.xet_token("alice", "alice/mal")
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (
        loopback_request(
            "POST", url + path, content=body, headers={"Authorization": f"Bearer {forged}"}
        ).status_code
        == 401
    )
    assert loopback_request("POST", url + path, content=body).status_code == 401
    # A hub token is not a Xet token.
    assert (
        loopback_request("POST", url + path, content=body, headers=xet_hub.headers("alice")).status_code
        == 401
    )


def test_xorb_upload_answer_does_not_reveal_that_another_user_stored_it(
    xet_hub: XetHub, secret_repo: dict[str, str]
) -> None:
    body, info = serialize_xorb([os.urandom(30_000)])
    path = f"/v1/xorbs/default/{hash_to_string(info.hash)}"
    owner, owner_url = cas(xet_hub, "alice", "alice/mal")
    assert owner.post(owner_url + path, content=body).json() == {"was_inserted": True}
    assert owner.post(owner_url + path, content=body).json() == {"was_inserted": False}
    other, other_url = cas(xet_hub, "bob", "bob/own")
    assert other.post(other_url + path, content=body).json() == {"was_inserted": True}
