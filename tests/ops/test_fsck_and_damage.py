"""`weightyard fsck` finds every kind of damage and repairs what can be repaired; damaged content is never
served as a short 200."""

from __future__ import annotations

import hashlib
import random

import httpx
from tests.ops.conftest import MIB, Hub, binary

from weightyard.xet import hash_to_string, serialize_xorb


def _xet_file(hub: Hub, repo: str, seed: int) -> tuple[bytes, str]:
    """A file stored as one xorb (uploaded as a Xet client would) and committed; returns it and its xorb."""
    from weightyard.xet import FileTerm, Shard, chunk_file, serialize_shard, verification_hash
    from weightyard.xet.shard import ShardFile

    source = random.Random(seed)
    data = b"weightyard ops xet\n" + source.randbytes(200_000)
    chunks = chunk_file([data])
    body, info = serialize_xorb([data[c.offset : c.offset + c.length] for c in chunks.chunks])
    token_answer = httpx.get(f"{hub.url}/api/models/{repo}/xet-write-token/main", headers=hub.headers).json()
    auth = {"Authorization": f"Bearer {token_answer['accessToken']}"}
    cas = token_answer["casUrl"]
    httpx.post(
        f"{cas}/v1/xorbs/default/{hash_to_string(info.hash)}", content=body, headers=auth
    ).raise_for_status()
    entry = ShardFile(
        chunks.file_hash,
        (FileTerm(info.hash, len(data), 0, len(chunks.chunks)),),
        (verification_hash(c.hash for c in chunks.chunks),),
        hashlib.sha256(data).digest(),
    )
    httpx.post(
        f"{cas}/v1/shards", content=serialize_shard(Shard((entry,), ())), headers=auth
    ).raise_for_status()
    oid = hashlib.sha256(data).hexdigest()
    line = (
        f'{{"key":"lfsFile","value":{{"path":"xet.bin","algo":"sha256","oid":"{oid}","size":{len(data)}}}}}'
    )
    httpx.post(
        f"{hub.url}/api/models/{repo}/commit/main",
        headers={**hub.headers, "Content-Type": "application/x-ndjson"},
        content=b'{"key":"header","value":{"summary":"xet"}}\n' + line.encode(),
    ).raise_for_status()
    return data, hash_to_string(info.hash)


def test_damaged_content_is_a_5xx_with_a_code_before_any_byte_and_a_log_line(hub: Hub) -> None:
    hub.create_repo("m")
    cut, gone = binary(MIB, 1), binary(MIB, 2)
    hub.commit("admin/m", {"cut.bin": cut, "gone.bin": gone})
    xet_data, xorb = _xet_file(hub, "admin/m", seed=3)
    resolve = f"{hub.url}/admin/m/resolve/main"
    assert httpx.get(f"{resolve}/xet.bin").content == xet_data

    path = hub.blob_path(hashlib.sha256(cut).hexdigest())
    path.write_bytes(cut[: MIB // 2])
    hub.blob_path(hashlib.sha256(gone).hexdigest()).unlink()
    xorb_path = hub.data / "xorbs" / xorb[:2] / xorb
    xorb_path.unlink()

    for name, code in (("cut.bin", "StoredContentDamaged"), ("gone.bin", "StoredContentMissing")):
        answer = httpx.get(f"{resolve}/{name}")
        assert answer.status_code == 500 and answer.json()["code"] == code, (name, answer.text)
        assert answer.headers["X-Error-Code"] == code
        ranged = httpx.get(f"{resolve}/{name}", headers={"Range": "bytes=0-99"})
        assert ranged.status_code == 500
    answer = httpx.get(f"{resolve}/xet.bin")
    assert answer.status_code == 500 and answer.json()["code"] == "StoredContentMissing"
    assert xorb in answer.json()["error"]
    # The Xet client's path: a signed fetch URL for the lost xorb.
    read = httpx.get(f"{hub.url}/api/models/admin/m/xet-read-token/main", headers=hub.headers).json()
    file_hash = httpx.head(f"{resolve}/xet.bin").headers.get("X-Xet-Hash")
    plan = httpx.get(
        f"{read['casUrl']}/v1/reconstructions/{file_hash}",
        headers={"Authorization": f"Bearer {read['accessToken']}"},
    ).json()
    fetch = plan["fetch_info"][xorb][0]
    fetched = httpx.get(
        fetch["url"], headers={"Range": f"bytes={fetch['url_range']['start']}-{fetch['url_range']['end']}"}
    )
    assert fetched.status_code == 500 and fetched.json()["code"] == "StoredContentMissing"
    log = (hub.data.parent / "data-server.log").read_text()
    assert "serving refused" in log and hashlib.sha256(cut).hexdigest() in log


def test_fsck_reports_each_problem_and_repairs_what_can_be_repaired(hub: Hub) -> None:
    hub.create_repo("m")
    cut, flipped, gone = binary(MIB, 4), binary(MIB, 5), binary(MIB, 6)
    head = hub.commit("admin/m", {"cut.bin": cut, "flipped.bin": flipped, "gone.bin": gone})
    _, xorb = _xet_file(hub, "admin/m", seed=7)
    code, output = hub.cli("fsck", "--hash")
    assert code == 0 and "clean" in output, output

    hub.blob_path(hashlib.sha256(cut).hexdigest()).write_bytes(cut[:1000])
    damaged = bytearray(flipped)
    damaged[1000] ^= 0xFF
    hub.blob_path(hashlib.sha256(flipped).hexdigest()).write_bytes(bytes(damaged))
    hub.blob_path(hashlib.sha256(gone).hexdigest()).unlink()
    (hub.data / "xorbs" / xorb[:2] / xorb).unlink()
    # A commit as an older version could leave it: landed, but its attestation never written.
    hub.sql("DELETE FROM commit_signatures WHERE commit_oid = ? AND kind = 'hub'", head)

    report = hub.cli_json("fsck", expect=1)
    kinds = sorted(p["kind"] for p in report["problems"])
    assert kinds == ["blob-missing", "blob-truncated", "unattested-commit", "xorb-missing"], kinds
    with_hash = sorted(p["kind"] for p in hub.cli_json("fsck", "--hash", expect=1)["problems"])
    assert with_hash == sorted([*kinds, "blob-corrupt"])
    pulled = httpx.get(f"{hub.url}/api/models/admin/m/signatures/{head}", headers=hub.headers).json()
    assert pulled["hub"] is None

    code, output = hub.cli("fsck", "--repair")
    assert code == 1, output
    assert "unattested-commit" in output and "[repaired]" in output
    assert "blob-missing" in output and "cannot be repaired here" in output
    assert httpx.get(f"{hub.url}/api/models/admin/m/signatures/{head}", headers=hub.headers).json()["hub"]
    remaining = sorted(p["kind"] for p in hub.cli_json("fsck", expect=1)["problems"])
    assert remaining == ["blob-missing", "blob-truncated", "xorb-missing"]


def test_fsck_reports_content_a_branch_names_without_a_record(hub: Hub) -> None:
    hub.create_repo("m")
    data = binary(MIB, 8)
    hub.commit("admin/m", {"w.bin": data})
    sha = hashlib.sha256(data).hexdigest()
    hub.sql("DELETE FROM blob_grants WHERE sha256 = ?", sha)
    hub.sql("DELETE FROM blobs WHERE sha256 = ?", sha)
    problems = {(p["kind"], p["subject"]) for p in hub.cli_json("fsck", expect=1)["problems"]}
    assert problems == {("content-missing", sha), ("file-without-row", sha)}


def test_every_way_of_making_a_commit_attests_it(hub: Hub) -> None:
    hub.create_repo("m")
    hub.commit("admin/m", {"w.bin": binary(MIB, 9)})
    squashed = httpx.post(
        f"{hub.url}/api/models/admin/m/super-squash/main", headers=hub.headers, json={"message": "squash"}
    )
    assert squashed.status_code == 200, squashed.text
    commits = httpx.get(f"{hub.url}/api/models/admin/m/commits/main", headers=hub.headers).json()
    assert len(commits) == 1
    for oid in (commits[0]["id"], *(row[0] for row in hub.sql("SELECT oid FROM commits"))):
        status = httpx.get(f"{hub.url}/api/models/admin/m/signatures/{oid}", headers=hub.headers).json()
        assert status["hub"] is not None, oid
    code, output = hub.cli("fsck")
    assert code == 0, output
