"""Whole copies of Xet-stored files for plain-HTTP downloads, on a real hub with a small copy budget."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import sqlalchemy as sa
from tests.support import database_url, loopback_request, run_python, start_server, stop_server
from tests.xet_hub.conftest import XetHub, cli_json, payload, sha256, start_xet_hub, upload_line

pytestmark = pytest.mark.client

MIB = 1024 * 1024
# Room for two of the 1 MiB test files, not three.
BUDGET = 2 * MIB + MIB // 2
T = TypeVar("T")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XetHub]:
    instance = start_xet_hub(
        tmp_path_factory.mktemp("copies") / "data", env={"WEIGHTYARD_WHOLE_COPY_BUDGET": str(BUDGET)}
    )
    yield instance
    stop_server(instance.server)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll `check` until it answers (bounded: the copy thread works once a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def rows(hub: XetHub, query: str, **params: object) -> list[sa.Row[tuple[object, ...]]]:
    engine = sa.create_engine(database_url(hub.server.data))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(query), params).all())
    finally:
        engine.dispose()


def copy_of(hub: XetHub, sha: str) -> bool:
    recorded = rows(hub, "SELECT sha256 FROM whole_copies WHERE sha256 = :sha", sha=sha) != []
    return recorded and sha in hub.blob_files()


def job_state(hub: XetHub, sha: str) -> str | None:
    found = rows(hub, "SELECT state FROM copy_jobs WHERE sha256 = :sha", sha=sha)
    return str(found[0][0]) if found else None


def create_repo(hub: XetHub, user: str, repo: str, private: bool = False) -> None:
    loopback_request(
        "POST",
        f"{hub.url}/api/repos/create",
        headers=hub.headers(user),
        json={"name": repo, "private": private},
    ).raise_for_status()


def xet_upload(hub: XetHub, tmp_path: Path, user: str, repo: str, files: dict[str, bytes]) -> None:
    """Upload `files` through the stock client's Xet path, one repo created for them."""
    create_repo(hub, user, repo)
    code = ""
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        code += upload_line(tmp_path / name, name, repo)
    hub.run_client(user, code, tmp_path / f"client-{repo.replace('/', '-')}")


def get(hub: XetHub, repo: str, name: str, user: str | None = None) -> httpx.Response:
    headers = hub.headers(user) if user else {}
    return loopback_request("GET", f"{hub.url}/{repo}/resolve/main/{name}", headers=headers)


def test_a_plain_download_is_rebuilt_then_later_ones_come_from_a_whole_copy_that_xet_does_not_need(
    hub: XetHub, tmp_path: Path
) -> None:
    data = payload(MIB, seed=101)
    before = set(hub.xorb_files())
    xet_upload(hub, tmp_path, "alice", "alice/copied", {"w.bin": data})
    assert sha256(data) not in hub.blob_files(), "a Xet upload is kept as xorbs only"

    assert get(hub, "alice/copied", "w.bin").content == data  # rebuilt from the xorbs
    wait_for(lambda: copy_of(hub, sha256(data)), "the whole copy")
    assert next((hub.server.data / "blobs").rglob(sha256(data))).read_bytes() == data
    assert job_state(hub, sha256(data)) is None, "the job is done"

    # From now on the copy serves plain downloads: damage in the xorbs no longer reaches them.
    (xorb,) = set(hub.xorb_files()) - before
    stored = next((hub.server.data / "xorbs").rglob(xorb))
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    stored.write_bytes(damaged)
    assert get(hub, "alice/copied", "w.bin").content == data
    ranged = loopback_request(
        "GET", f"{hub.url}/alice/copied/resolve/main/w.bin", headers={"Range": "bytes=1000-2999"}
    )
    assert ranged.status_code == 206 and ranged.content == data[1000:3000]
    head = loopback_request("HEAD", f"{hub.url}/alice/copied/resolve/main/w.bin")
    assert "X-Xet-Hash" in head.headers, "Xet clients are still sent to the CAS"


def test_a_damaged_xorb_fails_the_copy_job_and_nothing_becomes_visible(hub: XetHub, tmp_path: Path) -> None:
    data = payload(MIB, seed=102)
    before = set(hub.xorb_files())
    xet_upload(hub, tmp_path, "alice", "alice/damaged", {"w.bin": data})
    (xorb,) = set(hub.xorb_files()) - before
    stored = next((hub.server.data / "xorbs").rglob(xorb))
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # same length: the checks before the headers pass
    stored.write_bytes(damaged)

    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("GET", f"{hub.url}/alice/damaged/resolve/main/w.bin") as r,
    ):
        for _ in r.iter_bytes():
            pass
    assert wait_for(lambda: job_state(hub, sha256(data)) == "failed", "the failed job")
    assert sha256(data) not in hub.blob_files()
    assert rows(hub, "SELECT sha256 FROM whole_copies WHERE sha256 = :sha", sha=sha256(data)) == []
    assert [p for p in (hub.server.data / "blobs" / ".tmp").glob("*") if p.is_file()] == [], "no scratch left"
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("GET", f"{hub.url}/alice/damaged/resolve/main/w.bin") as r,
    ):
        for _ in r.iter_bytes():
            pass


def test_the_budget_evicts_the_least_recently_served_copy_and_never_an_uploaded_blob(
    hub: XetHub, tmp_path: Path
) -> None:
    first, second, third = (payload(MIB, seed=s) for s in (111, 112, 113))
    xet_upload(hub, tmp_path, "alice", "alice/budget", {"a.bin": first, "b.bin": second, "c.bin": third})
    uploaded = payload(MIB, seed=114)
    (tmp_path / "lfs.bin").write_bytes(uploaded)
    result = run_python(
        f"""
from huggingface_hub import HfApi
api = HfApi(endpoint={hub.url!r}, token={hub.tokens["bob"]!r})
api.create_repo("bob/lfs")
api.upload_file(path_or_fileobj={str(tmp_path / "lfs.bin")!r}, path_in_repo="lfs.bin", repo_id="bob/lfs")
""",
        {"HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "lfs-client")},
    )
    assert result.returncode == 0, result.stderr
    assert sha256(uploaded) in hub.blob_files(), "an LFS upload is a whole blob"
    assert get(hub, "bob/lfs", "lfs.bin", "bob").content == uploaded

    def copies() -> set[str]:
        return {str(row[0]) for row in rows(hub, "SELECT sha256 FROM whole_copies")}

    for name, data in (("a.bin", first), ("b.bin", second)):
        assert get(hub, "alice/budget", name).content == data
        wait_for(lambda data=data: copy_of(hub, sha256(data)), f"the copy of {name}")  # type: ignore[misc]

    def served(data: bytes) -> object:
        return rows(hub, "SELECT last_served_at FROM whole_copies WHERE sha256 = :sha", sha=sha256(data))[0][
            0
        ]

    stamp = served(first)
    assert get(hub, "alice/budget", "a.bin").content == first  # now `second` is the least recently served
    wait_for(lambda: served(first) != stamp or None, "the serving time of the first copy")
    assert get(hub, "alice/budget", "c.bin").content == third
    wait_for(lambda: copy_of(hub, sha256(third)), "the copy of c.bin")

    assert sha256(second) not in copies() and sha256(second) not in hub.blob_files()
    assert {sha256(first), sha256(third)} <= copies() and {sha256(first), sha256(third)} <= hub.blob_files()
    total = rows(hub, "SELECT SUM(size) FROM whole_copies")[0][0]
    assert int(total) <= BUDGET  # type: ignore[call-overload]
    assert sha256(uploaded) in hub.blob_files() and sha256(uploaded) not in copies()
    assert get(hub, "alice/budget", "b.bin").content == second, "an evicted copy's content is rebuilt"
    assert get(hub, "bob/lfs", "lfs.bin", "bob").content == uploaded


def test_a_user_who_may_not_read_a_file_cannot_make_a_copy_of_it(hub: XetHub, tmp_path: Path) -> None:
    secret, control = payload(MIB // 2, seed=121), payload(MIB // 2, seed=122)
    create_repo(hub, "alice", "alice/secret", private=True)
    (tmp_path / "s.bin").write_bytes(secret)
    hub.run_client("alice", upload_line(tmp_path / "s.bin", "s.bin", "alice/secret"), tmp_path / "up")
    xet_upload(hub, tmp_path, "alice", "alice/control", {"c.bin": control})

    assert get(hub, "alice/secret", "s.bin", "bob").status_code == 404
    assert get(hub, "alice/secret", "s.bin").status_code in (401, 404)
    # A download noted after bob's refusal is written no earlier than one noted before it would have been.
    assert get(hub, "alice/control", "c.bin", "bob").content == control
    wait_for(lambda: copy_of(hub, sha256(control)), "the copy of the control file")
    assert job_state(hub, sha256(secret)) is None and not copy_of(hub, sha256(secret))
    assert sha256(secret) not in hub.blob_files()


def test_stats_counts_copies_apart_and_gc_removes_the_copy_of_unreferenced_content(
    hub: XetHub, tmp_path: Path
) -> None:
    data = payload(MIB // 2, seed=131)
    xet_upload(hub, tmp_path, "bob", "bob/dropped", {"d.bin": data})
    assert get(hub, "bob/dropped", "d.bin").content == data
    wait_for(lambda: copy_of(hub, sha256(data)), "the copy")

    stats = cli_json(hub, "stats")
    copies = {str(sha): int(size) for sha, size in rows(hub, "SELECT sha256, size FROM whole_copies")}  # type: ignore[call-overload]
    sizes = {str(sha): int(size) for sha, size in rows(hub, "SELECT sha256, size FROM blobs")}  # type: ignore[call-overload]
    uploaded_whole = sum(sizes[sha] for sha in hub.blob_files() - copies.keys())
    assert stats["copy_bytes"] == sum(copies.values()) and sha256(data) in copies
    assert stats["blob_bytes"] == uploaded_whole, "copies are not counted as stored whole blobs"
    assert stats["stored_bytes"] == stats["xorb_bytes"] + stats["blob_bytes"]  # type: ignore[operator]

    loopback_request(
        "DELETE", f"{hub.url}/api/repos/delete", headers=hub.headers("bob"), json={"name": "bob/dropped"}
    ).raise_for_status()
    cli_json(hub, "gc", "--uploads-older-than", "0s")
    assert not copy_of(hub, sha256(data))
    assert sha256(data) not in hub.blob_files()
    assert rows(hub, "SELECT sha256 FROM whole_copies WHERE sha256 = :sha", sha=sha256(data)) == []


def test_a_server_killed_between_publishing_a_copy_and_recording_it_leaves_a_job_the_next_one_finishes(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    quick = {"WEIGHTYARD_SCAN_LEASE": "1"}  # the dead process's claim lapses after a second
    crashing = start_xet_hub(data, env={**quick, "WEIGHTYARD_CRASH_AT": "copy.published"})
    content = payload(MIB // 2, seed=141)
    try:
        xet_upload(crashing, tmp_path, "alice", "alice/crashed", {"w.bin": content})
        assert get(crashing, "alice/crashed", "w.bin").content == content
        assert crashing.server.process.wait(timeout=60) == -9, "killed at the crash point"
    finally:
        stop_server(crashing.server)
    assert sha256(content) in crashing.blob_files(), "published before the kill"
    assert not copy_of(crashing, sha256(content)) and job_state(crashing, sha256(content)) == "running"
    # Caught between publishing and recording, the copy is not counted as an uploaded whole blob.
    stats = cli_json(crashing, "stats")
    assert stats["copy_bytes"] == 0
    assert stats["blob_bytes"] < len(content), "the copy was counted as an uploaded whole blob"  # type: ignore[operator]

    restarted = XetHub(start_server(data, env=quick), crashing.tokens)
    try:
        wait_for(lambda: copy_of(restarted, sha256(content)), "the copy recorded after the restart")
        assert job_state(restarted, sha256(content)) is None
        assert get(restarted, "alice/crashed", "w.bin").content == content
    finally:
        stop_server(restarted.server)
