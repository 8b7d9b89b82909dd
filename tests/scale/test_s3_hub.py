"""A hub whose blob store is S3 (SeaweedFS): the stock client's LFS and Xet uploads land in the bucket (none
in the data folder), and downloads, ranged and resumed ones included, read from it; once as a team runs it
(two workers on PostgreSQL, bytes streamed through the hub), once on SQLite with presigned redirects."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.s3 import SeaweedServer, credentials_env, fresh_prefix
from tests.support import CuttingProxy, Server, run_python, start_server, stop_server, weightyard_cli

from weightyard.cli.transfer import Sent, TransferRefused, upload_file
from weightyard.storage import BLOBS, XORBS
from weightyard.storage.s3 import S3Location, S3ObjectStore

pytestmark = pytest.mark.client

MIB = 1024 * 1024


@dataclass
class S3Hub:
    server: Server
    store: S3ObjectStore  # the hub's bucket prefix, seen from the test
    env: dict[str, str]  # what the hub runs with (the CLI needs the same)

    def client(self, code: str, home: Path, **env: str) -> str:
        """Run `code` with the stock client in a fresh interpreter (own caches); returns its stdout."""
        environment = {
            "HF_ENDPOINT": self.server.url,
            "HF_TOKEN": self.server.token,
            "HF_HOME": str(home),
            "HF_XET_CACHE": str(home / "xet"),
            **env,
        }
        result = run_python(code, environment, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout


@pytest.fixture(scope="module")
def s3_hub(
    seaweed: SeaweedServer, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Hub]:
    """The team deployment: two workers on PostgreSQL, content in the bucket, streamed through the hub."""
    url = seaweed.url(fresh_prefix())
    data = tmp_path_factory.mktemp("s3-hub") / "data"
    env = {
        **credentials_env(),
        "WEIGHTYARD_DATABASE_URL": postgres_url,
        "WEIGHTYARD_BLOB_URL": url,
        # Parts of S3's minimum size: a completed LFS upload is assembled by a server-side copy.
        "WEIGHTYARD_MULTIPART_CHUNK_SIZE": str(5 * MIB),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in credentials_env().items():
            patch.setenv(name, value)
        store = S3ObjectStore(S3Location.parse(url), tmp_path_factory.mktemp("s3-hub-scratch"))
        server = start_server(data, env=env, args=("--workers", "2"))
        try:
            yield S3Hub(server, store, env)
        finally:
            stop_server(server)


def _upload(name: str, repo: str) -> str:
    return f"""
from huggingface_hub import HfApi
api = HfApi()
api.create_repo({repo!r}, exist_ok=True)
api.upload_file(path_or_fileobj={name!r}, path_in_repo="weights.bin", repo_id={repo!r})
"""


_DOWNLOAD = """
import hashlib
from huggingface_hub import hf_hub_download
path = hf_hub_download({repo!r}, "weights.bin")
print(hashlib.sha256(open(path, "rb").read()).hexdigest())
"""


def _local_blobs(server: Server) -> list[Path]:
    root = server.data / "blobs"
    return (
        [path for path in root.rglob("*") if path.is_file() and ".tmp" not in path.parts]
        if root.exists()
        else []
    )


def test_an_lfs_upload_lands_in_the_bucket_and_a_cut_download_resumes_from_it(
    s3_hub: S3Hub, tmp_path: Path
) -> None:
    data = os.urandom(15 * MIB + 7)
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / "weights.bin").write_bytes(data)
    s3_hub.client(
        _upload(str(tmp_path / "weights.bin"), "admin/lfs-s3"), tmp_path / "up", HF_HUB_DISABLE_XET="1"
    )
    assert s3_hub.store.size(BLOBS, sha) == len(data)
    assert list(s3_hub.store.list_uploads()) == [], "the staged parts are gone once the blob is in place"
    assert _local_blobs(s3_hub.server) == []

    proxy = CuttingProxy(
        int(s3_hub.server.url.rsplit(":", 1)[1]), cut_after=11 * MIB
    )  # the client keeps what it received in 10 MiB chunks
    try:
        printed = s3_hub.client(
            _DOWNLOAD.format(repo="admin/lfs-s3"),
            tmp_path / "down",
            HF_HUB_DISABLE_XET="1",
            HF_ENDPOINT=proxy.url,
        )
    finally:
        proxy.close()
    assert printed.strip() == sha
    assert any(line.startswith("GET ") and line.endswith("[range]") for line in proxy.requests), (
        proxy.requests
    )
    ranged = httpx.get(
        f"{s3_hub.server.url}/admin/lfs-s3/resolve/main/weights.bin",
        headers={"Range": "bytes=5242870-5242889", "Authorization": f"Bearer {s3_hub.server.token}"},
    )
    assert ranged.status_code == 206
    assert ranged.content == data[5242870:5242890]


def test_a_xet_upload_stores_xorbs_in_the_bucket_and_downloads_through_xet_and_plain_http(
    s3_hub: S3Hub, tmp_path: Path
) -> None:
    data = os.urandom(3 * MIB + 11)
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / "weights.bin").write_bytes(data)
    xorbs_before = {item.key for item in s3_hub.store.list(XORBS)}
    s3_hub.client(_upload(str(tmp_path / "weights.bin"), "admin/xet-s3"), tmp_path / "up")
    assert {item.key for item in s3_hub.store.list(XORBS)} - xorbs_before, "the xorbs are in the bucket"
    assert _local_blobs(s3_hub.server) == []
    assert not (s3_hub.server.data / "xorbs").exists() or not any((s3_hub.server.data / "xorbs").rglob("*"))

    assert s3_hub.client(_DOWNLOAD.format(repo="admin/xet-s3"), tmp_path / "down").strip() == sha
    plain = httpx.get(
        f"{s3_hub.server.url}/admin/xet-s3/resolve/main/weights.bin",
        headers={"Range": "bytes=1000-2999999", "Authorization": f"Bearer {s3_hub.server.token}"},
    )
    assert plain.status_code == 206
    assert plain.content == data[1000:3000000]

    # Plain downloads through both workers at once end in one whole copy, recorded once, in the bucket.
    def fetch(_: int) -> bytes:
        with httpx.Client(headers={"Authorization": f"Bearer {s3_hub.server.token}"}) as client:
            return client.get(f"{s3_hub.server.url}/admin/xet-s3/resolve/main/weights.bin").content

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(fetch, range(8))) == [data] * 8
    engine = sa.create_engine(s3_hub.env["WEIGHTYARD_DATABASE_URL"])

    def recorded() -> list[object]:
        with engine.connect() as conn:
            query = sa.text("SELECT sha256 FROM whole_copies WHERE sha256 = :s")
            return list(conn.execute(query, {"s": sha}).all())

    try:
        deadline = time.monotonic() + 30
        while not recorded():  # bounded: each worker's copy thread works once a second
            assert time.monotonic() < deadline, "no whole copy recorded"
            time.sleep(0.1)
        assert recorded() == [(sha,)]
    finally:
        engine.dispose()
    assert [item.key for item in s3_hub.store.list(BLOBS, sha)] == [sha]
    assert s3_hub.store.size(BLOBS, sha) == len(data) and _local_blobs(s3_hub.server) == []


def test_eight_concurrent_uploads_of_one_content_through_two_workers_make_one_object(
    s3_hub: S3Hub,
) -> None:
    hub = s3_hub.server
    auth = {"Authorization": f"Bearer {hub.token}"}
    httpx.post(f"{hub.url}/api/repos/create", headers=auth, json={"name": "same"}).raise_for_status()
    data = os.urandom(3 * MIB)  # under one part: one conditional PUT each
    sha = hashlib.sha256(data).hexdigest()
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": sha, "size": len(data)}]}
    urls = []
    for _ in range(8):  # every client is told to upload: none has completed yet
        answer = httpx.post(
            f"{hub.url}/admin/same.git/info/lfs/objects/batch",
            headers={**auth, "Content-Type": "application/vnd.git-lfs+json"},
            json=batch,
        )
        (obj,) = answer.json()["objects"]
        urls.append(obj["actions"]["upload"]["href"])
    barrier = threading.Barrier(8)

    def put(url: str) -> int:
        barrier.wait(30)
        return httpx.put(url, content=data, timeout=120).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(put, urls))
    assert statuses == [200] * 8
    assert [item.key for item in s3_hub.store.list(BLOBS, sha)] == [sha]
    assert list(s3_hub.store.list_scratch()) == []


@pytest.fixture(scope="module")
def presigned_hub(seaweed: SeaweedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Hub]:
    """A hub on S3 that sends downloads and LFS parts to presigned URLs of the bucket."""
    url = seaweed.url(fresh_prefix())
    env = {
        **credentials_env(),
        "WEIGHTYARD_BLOB_URL": url,
        "WEIGHTYARD_BLOB_REDIRECT": "presigned",
        "WEIGHTYARD_MULTIPART_CHUNK_SIZE": str(5 * MIB),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in credentials_env().items():
            patch.setenv(name, value)
        store = S3ObjectStore(
            S3Location.parse(url), tmp_path_factory.mktemp("presigned-scratch"), part_size=5 * MIB
        )
        server = start_server(tmp_path_factory.mktemp("presigned-hub") / "data", env=env)
        try:
            yield S3Hub(server, store, env)
        finally:
            stop_server(server)


def test_presigned_redirects_send_lfs_parts_and_downloads_straight_to_the_bucket(
    presigned_hub: S3Hub, seaweed: SeaweedServer, tmp_path: Path
) -> None:
    hub = presigned_hub.server
    auth = {"Authorization": f"Bearer {hub.token}"}
    data = os.urandom(10 * MIB + 3)
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / "weights.bin").write_bytes(data)
    presigned_hub.client(
        _upload(str(tmp_path / "weights.bin"), "admin/presigned"), tmp_path / "up", HF_HUB_DISABLE_XET="1"
    )
    assert presigned_hub.store.size(BLOBS, sha) == len(data)
    batch = httpx.post(
        f"{hub.url}/admin/presigned.git/info/lfs/objects/batch",
        headers={**auth, "Content-Type": "application/vnd.git-lfs+json"},
        json={
            "operation": "upload",
            "transfers": ["multipart"],
            "objects": [{"oid": "0" * 64, "size": len(data)}],
        },
    )
    (obj,) = batch.json()["objects"]
    parts = [value for key, value in obj["actions"]["upload"]["header"].items() if key.isdigit()]
    assert len(parts) == 3 and all(url.startswith(seaweed.endpoint + "/") for url in parts)

    resolve = f"{hub.url}/admin/presigned/resolve/main/weights.bin"
    for method in ("HEAD", "GET"):
        answer = httpx.request(method, resolve, headers=auth)
        assert answer.status_code == 302
        assert answer.headers["Location"].startswith(seaweed.endpoint + "/")
        assert answer.headers["X-Linked-Etag"] == f'"{sha}"'
        assert answer.headers["X-Linked-Size"] == str(len(data))
        assert len(answer.headers["X-Repo-Commit"]) == 40
    proxy = CuttingProxy(int(hub.url.rsplit(":", 1)[1]), cut_after=1 << 62)
    try:
        printed = presigned_hub.client(
            _DOWNLOAD.format(repo="admin/presigned"),
            tmp_path / "down",
            HF_HUB_DISABLE_XET="1",
            HF_ENDPOINT=proxy.url,
        )
    finally:
        proxy.close()
    assert printed.strip() == sha
    assert proxy.requests == ["HEAD /admin/presigned/resolve/main/weights.bin HTTP/1.1"], (
        "no byte via the hub"
    )

    # The gate decides first: once the repo is private, no one without access is redirected anywhere.
    made_private = httpx.put(
        f"{hub.url}/api/models/admin/presigned/settings", headers=auth, json={"private": True}
    )
    assert made_private.status_code == 200
    refused = httpx.get(resolve)
    assert refused.status_code in (401, 404) and "Location" not in refused.headers


def test_presigned_xet_fetches_redirect_to_the_xorb_in_the_bucket(
    presigned_hub: S3Hub, seaweed: SeaweedServer, tmp_path: Path
) -> None:
    hub = presigned_hub.server
    auth = {"Authorization": f"Bearer {hub.token}"}
    data = os.urandom(2 * MIB + 5)
    (tmp_path / "weights.bin").write_bytes(data)
    presigned_hub.client(_upload(str(tmp_path / "weights.bin"), "admin/presigned-xet"), tmp_path / "up")
    head = httpx.head(f"{hub.url}/admin/presigned-xet/resolve/main/weights.bin", headers=auth)
    assert head.status_code == 200, "content kept as xorbs has no whole object to redirect to"
    token = httpx.get(f"{hub.url}/api/models/admin/presigned-xet/xet-read-token/main", headers=auth).json()
    plan = httpx.get(
        f"{token['casUrl']}/v1/reconstructions/{head.headers['X-Xet-Hash']}",
        headers={"Authorization": f"Bearer {token['accessToken']}"},
    ).json()
    fetches = [fetch for per_xorb in plan["fetch_info"].values() for fetch in per_xorb]
    for fetch in fetches:
        wanted = {"Range": f"bytes={fetch['url_range']['start']}-{fetch['url_range']['end']}"}
        answer = httpx.get(fetch["url"], headers=wanted)
        assert answer.status_code == 302
        assert answer.headers["Location"].startswith(seaweed.endpoint + "/")
        bytes_from_bucket = httpx.get(answer.headers["Location"], headers=wanted)
        assert bytes_from_bucket.status_code == 206
        assert len(bytes_from_bucket.content) == fetch["url_range"]["end"] - fetch["url_range"]["start"] + 1
    assert presigned_hub.client(_DOWNLOAD.format(repo="admin/presigned-xet"), tmp_path / "down").strip() == (
        hashlib.sha256(data).hexdigest()
    )


def test_a_plain_download_of_xet_content_makes_a_whole_copy_in_the_bucket_that_later_ones_redirect_to(
    presigned_hub: S3Hub, seaweed: SeaweedServer, tmp_path: Path
) -> None:
    hub = presigned_hub.server
    auth = {"Authorization": f"Bearer {hub.token}"}
    data = os.urandom(MIB + 9)
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / "weights.bin").write_bytes(data)
    presigned_hub.client(_upload(str(tmp_path / "weights.bin"), "admin/copied-s3"), tmp_path / "up")
    resolve = f"{hub.url}/admin/copied-s3/resolve/main/weights.bin"
    first = httpx.get(resolve, headers=auth)
    assert first.status_code == 200 and first.content == data, "rebuilt by the hub: no whole object yet"
    deadline = time.monotonic() + 30
    while presigned_hub.store.size(BLOBS, sha) is None:  # bounded: the copy thread works once a second
        assert time.monotonic() < deadline, "no whole copy in the bucket"
        time.sleep(0.1)
    later = httpx.get(resolve, headers=auth)
    assert later.status_code == 302 and later.headers["Location"].startswith(seaweed.endpoint + "/")
    assert httpx.get(later.headers["Location"]).content == data
    assert _local_blobs(hub) == []


def test_gc_clears_what_dead_writers_and_abandoned_uploads_left_in_the_bucket(presigned_hub: S3Hub) -> None:
    store = presigned_hub.store
    kept = {item.key for item in store.list(BLOBS)}
    dead = store.blob_writer()
    dead.write(os.urandom(5 * MIB + 1))  # a writer that died here left its multipart upload
    sealed = store.blob_writer()
    sealed.write(os.urandom(5 * MIB + 1))
    sealed.seal()  # and one that died here its verified staging object
    orphan = b"content no row names"
    orphan_sha = hashlib.sha256(orphan).hexdigest()
    store.put_object(store.object_key(BLOBS, orphan_sha), orphan)
    abandoned = store.open_upload("abandoned", orphan_sha, 10, 5 * MIB)
    part = abandoned.part_writer(1)
    part.write(b"0123456789")
    part.finish()
    assert len(list(store.list_scratch())) == 2 and [u.key for u in store.list_uploads()] == ["abandoned"]

    data = str(presigned_hub.server.data)
    result = weightyard_cli("gc", "--uploads-older-than", "0s", "--data", data, env=presigned_hub.env)
    assert result.returncode == 0, result.stderr
    assert list(store.list_scratch()) == []
    assert list(store.list_uploads()) == []
    assert store.size(BLOBS, orphan_sha) is None
    assert {item.key for item in store.list(BLOBS)} == kept, "committed content stays"


def test_an_upload_session_with_presigned_parts_is_checked_when_completed(
    presigned_hub: S3Hub, seaweed: SeaweedServer, tmp_path: Path
) -> None:
    hub = presigned_hub.server
    headers = {"Authorization": f"Bearer {hub.token}"}
    httpx.post(
        f"{hub.url}/api/repos/create", headers=headers, json={"name": "admin/session"}
    ).raise_for_status()
    opened = httpx.post(
        f"{hub.url}/api/models/admin/session/uploads", headers=headers, json={"size": 11 * MIB}
    )
    assert all(url.startswith(seaweed.endpoint + "/") for url in opened.json()["parts"])
    httpx.delete(opened.json()["abandon"]).raise_for_status()

    def claim(sha256: str) -> Future[str]:
        future: Future[str] = Future()
        future.set_result(sha256)
        return future

    data = os.urandom(11 * MIB)
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    wrong = hashlib.sha256(data + b"!").hexdigest()
    with pytest.raises(TransferRefused):
        upload_file(hub.url, headers, "models", "admin/session", path, claim(wrong), lambda n: None)
    assert presigned_hub.store.size(BLOBS, wrong) is None and presigned_hub.store.size(BLOBS, sha) is None
    sent = upload_file(hub.url, headers, "models", "admin/session", path, claim(sha), lambda n: None)
    assert sent is Sent.SESSION
    assert presigned_hub.store.size(BLOBS, sha) == len(data)
