"""One storage model (`xet://`), `weightyard gc` and `weightyard stats` on a real hub."""

from __future__ import annotations

import datetime
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.support import database_url, loopback_request, run_python, start_server, stop_server
from tests.xet_hub.conftest import XetHub, cli_json, payload, sha256, upload_line

from weightyard.repos.gitattributes import DEFAULT_GITATTRIBUTES
from weightyard.xet import (
    FileTerm,
    Shard,
    chunk_file,
    hash_to_string,
    serialize_shard,
    serialize_xorb,
    verification_hash,
    xorb_hash,
)
from weightyard.xet.shard import ShardFile

pytestmark = pytest.mark.client

MIB = 1024 * 1024


def fresh_hub(tmp_path: Path, **env: str) -> XetHub:
    server = start_server(tmp_path / "data", env=env)
    return XetHub(server, {"admin": server.token})


@pytest.fixture
def packing_hub(tmp_path: Path) -> Iterator[XetHub]:
    hub = fresh_hub(tmp_path, WEIGHTYARD_BLOB_URL=f"xet://{tmp_path / 'data' / 'blobs'}")
    yield hub
    stop_server(hub.server)


@pytest.fixture
def plain_hub(tmp_path: Path) -> Iterator[XetHub]:
    hub = fresh_hub(tmp_path)
    yield hub
    stop_server(hub.server)


def test_with_xet_store_lfs_uploads_become_xorbs_that_a_later_xet_upload_dedups_against(
    packing_hub: XetHub, tmp_path: Path
) -> None:
    original = payload(8 * MIB, seed=3)
    changed = bytearray(original)
    changed[4 * MIB : 5 * MIB] = random.Random(4).randbytes(MIB)
    (tmp_path / "v1.bin").write_bytes(original)
    (tmp_path / "v2.bin").write_bytes(bytes(changed))
    url, token = packing_hub.url, packing_hub.server.token
    result = run_python(
        f"""
from huggingface_hub import HfApi
api = HfApi(endpoint={url!r}, token={token!r})
api.create_repo("admin/packed")
api.upload_file(path_or_fileobj={str(tmp_path / "v1.bin")!r}, path_in_repo="w.bin", repo_id="admin/packed")
api.upload_file(path_or_fileobj=b"hello", path_in_repo="README.md", repo_id="admin/packed")
""",
        {"HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "lfs-client")},
    )
    assert result.returncode == 0, result.stderr
    assert packing_hub.blob_files() == set(), "every upload is packed into xorbs"
    after_lfs = packing_hub.stored_xorb_bytes()
    assert 8 * MIB <= after_lfs < 8 * MIB + 64 * 1024
    packing_hub.run_client(
        "admin",
        upload_line(tmp_path / "v2.bin", "w.bin", "admin/packed"),
        tmp_path / "xet-client",
    )
    growth = packing_hub.stored_xorb_bytes() - after_lfs
    assert MIB <= growth < MIB + 512 * 1024, growth
    assert loopback_request("GET", f"{url}/admin/packed/resolve/main/w.bin").content == bytes(changed)
    assert loopback_request("GET", f"{url}/admin/packed/resolve/main/README.md").content == b"hello"
    stats = cli_json(packing_hub, "stats")
    assert stats["blob_bytes"] == 0 and stats["logical_bytes"] > stats["stored_bytes"]  # type: ignore[operator]


def test_with_xet_store_a_multipart_lfs_upload_is_packed_into_xorbs_once_complete(tmp_path: Path) -> None:
    hub = fresh_hub(
        tmp_path,
        WEIGHTYARD_BLOB_URL=f"xet://{tmp_path / 'data' / 'blobs'}",
        WEIGHTYARD_MULTIPART_CHUNK_SIZE=str(MIB),
    )
    try:
        data = payload(3 * MIB + 5, seed=9)
        (tmp_path / "w.bin").write_bytes(data)
        result = run_python(
            f"""
from huggingface_hub import HfApi
api = HfApi(endpoint={hub.url!r}, token={hub.server.token!r})
api.create_repo("admin/parts")
api.upload_file(path_or_fileobj={str(tmp_path / "w.bin")!r}, path_in_repo="w.bin", repo_id="admin/parts")
""",
            {"HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "lfs-client")},
        )
        assert result.returncode == 0, result.stderr
        assert hub.blob_files() == set(), "the staged parts became xorbs, not a whole blob"
        assert list((tmp_path / "data" / "blobs" / ".tmp" / "parts").rglob("*")) == []
        assert loopback_request("GET", f"{hub.url}/admin/parts/resolve/main/w.bin").content == data
    finally:
        stop_server(hub.server)


def _age_everything(hub: XetHub) -> None:
    # Test set-up: move the hub's Xet records past the 28-day grace period, which no command can do.
    engine = sa.create_engine(database_url(hub.server.data))
    past = datetime.datetime(2000, 1, 1)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE xet_xorbs SET last_used_at = :past, created_at = :past"), {"past": past})
        conn.execute(sa.text("UPDATE xet_files SET created_at = :past"), {"past": past})
    engine.dispose()


def test_gc_frees_only_unreachable_xorbs_past_the_grace_period_and_spares_uploads_in_flight(
    plain_hub: XetHub, tmp_path: Path
) -> None:
    keep, drop = payload(2 * MIB, seed=1), payload(3 * MIB, seed=2)
    (tmp_path / "keep.bin").write_bytes(keep)
    (tmp_path / "drop.bin").write_bytes(drop)
    plain_hub.run_client(
        "admin",
        f"""
api.create_repo("admin/keep")
api.upload_file(path_or_fileobj={str(tmp_path / "keep.bin")!r}, path_in_repo="keep.bin", repo_id="admin/keep")
api.create_repo("admin/drop")
api.upload_file(path_or_fileobj={str(tmp_path / "drop.bin")!r}, path_in_repo="drop.bin", repo_id="admin/drop")
api.delete_repo("admin/drop")
""",
        tmp_path / "client",
    )
    assert cli_json(plain_hub, "gc", "--dry-run")["xorbs"] == 0, "everything is within the grace period"
    _age_everything(plain_hub)
    # An upload in flight: a xorb sent just now, its shard not yet registered.
    token, cas = plain_hub.xet_token("admin", "admin/keep")
    body, info = serialize_xorb([random.Random(4).randbytes(50_000)])
    in_flight = hash_to_string(info.hash)
    response = loopback_request(
        "POST",
        f"{cas}/v1/xorbs/default/{in_flight}",
        content=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200

    before = plain_hub.xorb_files()
    planned = cli_json(plain_hub, "gc", "--dry-run")
    assert planned["dry_run"] is True and planned["xorbs"] >= 1
    assert 3 * MIB <= planned["bytes_freed"] < 3 * MIB + 64 * 1024  # type: ignore[operator]
    assert plain_hub.xorb_files() == before
    done = cli_json(plain_hub, "gc")
    assert (done["xorbs"], done["bytes_freed"]) == (planned["xorbs"], planned["bytes_freed"])
    after = plain_hub.xorb_files()
    assert sum(before.values()) - sum(after.values()) == done["bytes_freed"]
    assert in_flight in after
    # A client that still remembers a collected xorb (an old cached shard) is refused, not recorded broken.
    chunks = chunk_file([drop])
    collected = xorb_hash(chunks.chunk_refs())
    assert hash_to_string(collected) not in after
    terms = (FileTerm(collected, len(drop), 0, len(chunks.chunks)),)
    stale = ShardFile(
        chunks.file_hash,
        terms,
        (verification_hash(c.hash for c in chunks.chunks),),
        hashlib.sha256(drop).digest(),
    )
    refused = loopback_request(
        "POST",
        f"{cas}/v1/shards",
        content=serialize_shard(Shard((stale,), ())),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status_code == 400 and refused.json()["code"] == "XetUnknownXorb"
    assert loopback_request("GET", f"{plain_hub.url}/admin/keep/resolve/main/keep.bin").content == keep
    printed = plain_hub.run_client(
        "admin",
        """
from huggingface_hub import hf_hub_download
import hashlib
print(hashlib.sha256(open(hf_hub_download("admin/keep", "keep.bin"), "rb").read()).hexdigest())
""",
        tmp_path / "downloader",
    )
    assert printed.strip() == sha256(keep)
    assert cli_json(plain_hub, "gc")["xorbs"] == 0


def test_stats_reports_logical_and_stored_bytes_per_repo_and_for_the_hub(
    plain_hub: XetHub, tmp_path: Path
) -> None:
    data = payload(2 * MIB, seed=5)
    (tmp_path / "a.bin").write_bytes(data)
    plain_hub.run_client(
        "admin",
        f"""
api.create_repo("admin/twice")
for name in ("a.bin", "b.bin"):
    api.upload_file(path_or_fileobj={str(tmp_path / "a.bin")!r}, path_in_repo=name, repo_id="admin/twice")
""",
        tmp_path / "client",
    )
    stats = cli_json(plain_hub, "stats")
    (repo,) = stats["repos"]  # type: ignore[misc]
    # Commits: one with a.bin (2 MiB), one with a.bin and b.bin (4 MiB), each with the .gitattributes of the
    # initial commit; the bytes are stored once.
    logical = 6 * MIB + 3 * len(DEFAULT_GITATTRIBUTES)
    assert repo["repo_id"] == "admin/twice" and repo["logical_bytes"] == logical
    assert 2 * MIB <= repo["stored_bytes"] < 2 * MIB + 64 * 1024
    assert stats["logical_bytes"] == logical and stats["dedup_ratio"] > 2.9  # type: ignore[operator]
