"""`weightyard gc` removes what abandoned uploads, killed processes and deleted repos leave behind, and never
anything a commit still reaches."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import random
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest
from tests.ops.conftest import MIB, Hub, binary
from tests.support import database_url, weightyard_cli

from weightyard.xet import hash_to_string, serialize_xorb


def _xet_write_token(hub: Hub, repo: str) -> tuple[str, str]:
    response = httpx.get(f"{hub.url}/api/models/{repo}/xet-write-token/main", headers=hub.headers)
    response.raise_for_status()
    return response.json()["accessToken"], response.json()["casUrl"]


def _upload_xorb(hub: Hub, repo: str, seed: int) -> tuple[str, int]:
    token, cas = _xet_write_token(hub, repo)
    source = random.Random(seed)
    body, info = serialize_xorb([source.randbytes(100_000) for _ in range(3)])
    name = hash_to_string(info.hash)
    response = httpx.post(
        f"{cas}/v1/xorbs/default/{name}", content=body, headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    return name, len(body)


def test_killed_multipart_and_basic_uploads_are_removed_by_gc_and_kept_by_default(hub: Hub) -> None:
    hub.create_repo("m")
    # A multipart upload: one part of three arrives, then the server is killed.
    data = binary(3 * MIB, seed=1)
    action = hub.lfs_batch("admin/m", data)
    part_urls = [url for key, url in action["actions"]["upload"]["header"].items() if key.isdigit()]
    assert len(part_urls) == 3
    httpx.put(part_urls[0], content=data[:MIB]).raise_for_status()
    # A basic upload (one PUT: parts are 64 MiB now) cut off mid-body by the kill: its partial blob stays.
    hub.restart(WEIGHTYARD_MULTIPART_CHUNK_SIZE=str(64 * MIB))
    partial = binary(8 * MIB, seed=2)
    href = urlparse(hub.lfs_batch("admin/m", partial)["actions"]["upload"]["href"])
    sock = socket.create_connection((href.hostname, href.port))
    sock.sendall(
        f"PUT {href.path}?{href.query} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(partial)}\r\n\r\n".encode()
        + partial[: 6 * MIB]
    )
    temporary = hub.data / "blobs" / ".tmp"
    deadline = time.monotonic() + 30
    while not any(p.is_file() and p.stat().st_size > 0 for p in temporary.iterdir()):
        assert time.monotonic() < deadline, "the upload never reached the disk"
        time.sleep(0.05)
    hub.kill()
    sock.close()
    hub.restart()
    parts = hub.files_under("blobs/.tmp/parts")
    leftovers = {p for p in hub.files_under("blobs/.tmp") if p not in parts}
    # the multipart upload's staging file, written at each part's offset, and the marker of its part 1
    assert {p.name for p in parts} == {"data", "1"} and len(leftovers) == 1
    assert len(hub.sql("SELECT id FROM lfs_uploads")) == 1

    kept = hub.cli_json("gc")
    assert kept["uploads"] == 0, "a day has not passed: the uploads may still be completed"
    planned = hub.cli_json("gc", "--uploads-older-than", "0s", "--dry-run")
    assert planned["dry_run"] is True and planned["uploads"] == 2
    assert planned["upload_bytes"] >= 5 * MIB
    assert hub.files_under("blobs/.tmp") == parts | leftovers, "a dry run removes nothing"
    done = hub.cli_json("gc", "--uploads-older-than", "0s")
    assert (done["uploads"], done["upload_bytes"]) == (planned["uploads"], planned["upload_bytes"])
    assert hub.files_under("blobs/.tmp") == set()
    assert hub.sql("SELECT id FROM lfs_uploads") == []


def test_an_abandoned_upload_session_is_removed_by_gc(hub: Hub) -> None:
    hub.create_repo("m")
    opened = httpx.post(f"{hub.url}/api/models/admin/m/uploads", headers=hub.headers, json={"size": 3 * MIB})
    opened.raise_for_status()
    httpx.put(opened.json()["parts"][0], content=binary(MIB, seed=9)).raise_for_status()
    assert len(hub.sql("SELECT id FROM lfs_uploads WHERE sha256 IS NULL")) == 1
    assert hub.cli_json("gc")["uploads"] == 0, "a day has not passed: the session may still be completed"
    done = hub.cli_json("gc", "--uploads-older-than", "0s")
    assert done["uploads"] == 1 and done["upload_bytes"] >= MIB
    assert hub.files_under("blobs/.tmp") == set()
    assert hub.sql("SELECT id FROM lfs_uploads") == []


def test_a_kill_between_placing_a_file_and_its_row_leaves_an_orphan_that_fsck_and_gc_find(hub: Hub) -> None:
    hub.create_repo("m")
    kept_blobs = {p for p in hub.files_under("blobs") if ".tmp" not in p.parts}  # the repo's .gitattributes
    kept_rows = hub.sql("SELECT sha256 FROM blobs")
    hub.restart(WEIGHTYARD_CRASH_AT="xorb.placed")
    with contextlib.suppress(httpx.HTTPError):
        _upload_xorb(hub, "admin/m", seed=3)
    assert hub.server.process.wait(timeout=30) == -9
    hub.restart(WEIGHTYARD_CRASH_AT="blob.placed")
    with contextlib.suppress(httpx.HTTPError):
        hub.lfs_upload("admin/m", binary(MIB, seed=4))
    assert hub.server.process.wait(timeout=30) == -9
    hub.restart()
    xorbs = hub.files_under("xorbs")
    blobs = {p for p in hub.files_under("blobs") if ".tmp" not in p.parts} - kept_blobs
    assert len(xorbs) == 1 and len(blobs) == 1, "the files were in place when the process died"
    assert hub.sql("SELECT hash FROM xet_xorbs") == [] and hub.sql("SELECT sha256 FROM blobs") == kept_rows

    code, output = hub.cli("fsck")
    assert code == 1 and output.count("file-without-row") == 2, output
    planned = hub.cli_json("gc", "--dry-run", "--uploads-older-than", "0s")
    assert planned["orphans"] == 2
    assert planned["orphan_bytes"] == sum(p.stat().st_size for p in xorbs | blobs)
    assert hub.cli_json("gc", "--uploads-older-than", "0s")["orphans"] == 2
    assert hub.files_under("xorbs") == set()
    assert {p for p in hub.files_under("blobs") if ".tmp" not in p.parts} == kept_blobs
    code, output = hub.cli("fsck")
    assert code == 0 and "clean" in output, output


def test_blobs_only_a_deleted_repo_or_an_uncommitted_upload_used_are_collected(hub: Hub) -> None:
    shared, only_gone, never_committed = binary(MIB, 5), binary(MIB, 6), binary(MIB, 7)
    for name in ("kept", "gone"):
        hub.create_repo(name)
    hub.commit("admin/kept", {"shared.bin": shared})
    hub.commit("admin/gone", {"shared.bin": shared, "only.bin": only_gone})
    pending = hub.lfs_upload("admin/kept", never_committed)
    httpx.request(
        "DELETE",
        f"{hub.url}/api/repos/delete",
        headers=hub.headers,
        json={"name": "gone", "organization": "admin"},
    ).raise_for_status()

    assert hub.cli_json("gc")["blobs"] == 0, "everything was uploaded within the day"
    planned = hub.cli_json("gc", "--uploads-older-than", "0s", "--dry-run")
    assert (planned["blobs"], planned["blob_bytes"]) == (2, 2 * MIB)
    done = hub.cli_json("gc", "--uploads-older-than", "0s")
    assert (done["blobs"], done["blob_bytes"]) == (2, 2 * MIB)
    gone = hashlib.sha256(only_gone).hexdigest()
    for sha in (gone, pending):
        assert not hub.blob_path(sha).exists()
        assert hub.sql("SELECT sha256 FROM blobs WHERE sha256 = ?", sha) == []
    assert hub.blob_path(hashlib.sha256(shared).hexdigest()).exists()
    assert httpx.get(f"{hub.url}/admin/kept/resolve/main/shared.bin").content == shared
    # Content collected after an upload check is refused at commit, never recorded as a dangling reference.
    late = {"key": "lfsFile", "value": {"path": "late.bin", "algo": "sha256", "oid": pending, "size": MIB}}
    refused = httpx.post(
        f"{hub.url}/api/models/admin/kept/commit/main",
        headers={**hub.headers, "Content-Type": "application/x-ndjson"},
        content=b'{"key":"header","value":{"summary":"late"}}\n' + json.dumps(late).encode(),
    )
    assert refused.status_code == 422 and refused.json()["code"] == "BlobNotFound"
    code, output = hub.cli("fsck")
    assert code == 0, output


def test_xorbs_of_an_abandoned_xet_upload_wait_28_days_unless_an_age_is_given(hub: Hub) -> None:
    hub.create_repo("m")
    name, size = _upload_xorb(hub, "admin/m", seed=8)
    assert hub.cli_json("gc")["xorbs"] == 0
    assert hub.cli_json("gc", "--uploads-older-than", "1d")["xorbs"] == 0
    done = hub.cli_json("gc", "--uploads-older-than", "0s")
    assert (done["xorbs"], done["xorb_bytes"]) == (1, size)
    assert hub.files_under("xorbs") == set()
    del name


def test_a_malformed_age_is_a_usage_error(hub: Hub) -> None:
    code, output = hub.cli("gc", "--uploads-older-than", "soon")
    assert code == 2 and "duration" in output


def test_a_multipart_upload_interrupted_by_a_kill_completes_after_the_restart(hub: Hub) -> None:
    hub.create_repo("m")
    data = binary(3 * MIB + 11, seed=5)
    oid = hashlib.sha256(data).hexdigest()
    upload = hub.lfs_batch("admin/m", data)["actions"]["upload"]
    urls = {int(key): url for key, url in upload["header"].items() if key.isdigit()}
    assert sorted(urls) == [1, 2, 3, 4]
    for number in (2, 1):
        httpx.put(urls[number], content=data[(number - 1) * MIB : number * MIB]).raise_for_status()
    # The hash of parts 1 and 2 dies with the process; their bytes and markers are on disk.
    before = hub.url
    hub.kill()
    hub.restart()  # on another port: the signed path and query of each URL stay valid
    for number in (4, 3):
        url = urls[number].replace(before, hub.url)
        httpx.put(url, content=data[(number - 1) * MIB : number * MIB]).raise_for_status()
    complete = upload["href"].replace(before, hub.url)
    httpx.post(complete, json={"oid": oid, "parts": []}).raise_for_status()
    blob = hub.data / "blobs" / oid[:2] / oid[2:4] / oid
    assert blob.read_bytes() == data
    assert hub.files_under("blobs/.tmp/parts") == set()


def _age_blob(hub: Hub, sha256: str) -> None:
    # Test set-up: make an upload two days old, which no command can do in the past.
    hub.sql("UPDATE blobs SET created_at = '2000-01-01 00:00:00' WHERE sha256 = ?", sha256)


def _commit_lfs(hub: Hub, repo: str, path: str, sha256: str, size: int) -> httpx.Response:
    line = {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": sha256, "size": size}}
    return httpx.post(
        f"{hub.url}/api/models/{repo}/commit/main",
        headers={**hub.headers, "Content-Type": "application/x-ndjson"},
        content=b'{"key":"header","value":{"summary":"add"}}\n' + json.dumps(line).encode(),
    )


def test_content_a_batch_answered_as_already_stored_survives_gc_until_committed(hub: Hub) -> None:
    hub.create_repo("m")
    data = binary(MIB, seed=8)
    sha = hub.lfs_upload("admin/m", data)
    _age_blob(hub, sha)

    answer = hub.lfs_batch("admin/m", data)
    collected = hub.cli_json("gc", "--uploads-older-than", "1h")

    assert "actions" not in answer, "the client is told to upload nothing"
    assert collected["blobs"] == 0
    assert _commit_lfs(hub, "admin/m", "late.bin", sha, MIB).status_code == 200
    assert httpx.get(f"{hub.url}/admin/m/resolve/main/late.bin").content == data


def test_a_gc_killed_after_removing_rows_leaves_files_without_rows_for_the_next_gc(hub: Hub) -> None:
    hub.create_repo("m")
    sha = hub.lfs_upload("admin/m", binary(MIB, seed=9))
    _age_blob(hub, sha)

    killed = weightyard_cli(
        "gc",
        "--uploads-older-than",
        "1h",
        "--data",
        str(hub.data),
        env={"WEIGHTYARD_CRASH_AT": "gc.rows_deleted"},
    )

    assert killed.returncode == -9
    assert hub.sql("SELECT sha256 FROM blobs WHERE sha256 = ?", sha) == []
    assert hub.blob_path(sha).exists(), "never a row without its file: the file goes after the row"
    code, output = hub.cli("fsck")
    assert code == 1 and output.count("file-without-row") == 1, output
    assert hub.cli_json("gc", "--uploads-older-than", "0s")["orphans"] == 1
    assert not hub.blob_path(sha).exists()


def test_an_upload_of_the_same_content_while_gc_removes_it_keeps_file_and_row(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from weightyard.config import Settings
    from weightyard.hub import Hub as LocalHub
    from weightyard.maintenance import gc

    hub.create_repo("m")
    data = binary(MIB, seed=10)
    sha = hub.lfs_upload("admin/m", data)
    _age_blob(hub, sha)
    uploaded: list[str] = []

    def upload_again_after_the_rows_went(name: str) -> None:
        # The moment gc has removed the rows, before it removes the files: a client uploads the same content.
        if name == "gc.rows_deleted":
            assert hub.sql("SELECT sha256 FROM blobs WHERE sha256 = ?", sha) == []
            uploaded.append(hub.lfs_upload("admin/m", data))

    monkeypatch.setattr(gc, "crash_point", upload_again_after_the_rows_went)
    local = LocalHub.open(Settings(data=hub.data, database_url=database_url(hub.data)))
    try:
        report = gc.collect(local, datetime.timedelta(hours=1))
    finally:
        local.close()

    assert uploaded == [sha] and report.blobs == 0
    assert hub.blob_path(sha).read_bytes() == data
    assert _commit_lfs(hub, "admin/m", "again.bin", sha, MIB).status_code == 200
    assert httpx.get(f"{hub.url}/admin/m/resolve/main/again.bin").content == data
    code, output = hub.cli("fsck")
    assert code == 0, output
