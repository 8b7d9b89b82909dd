"""`weightyard serve --workers 2`, on SQLite (with its data folder) and on PostgreSQL with an S3 store: any
process answers any request, and nothing that matters lives in one process's memory. Connections are pinned
to a worker by finding, in /proc, which worker process holds the server end of each one, so every test knows
which process answered what.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from huggingface_hub import HfApi, snapshot_download
from tests.s3 import SeaweedServer, credentials_env, fresh_prefix
from tests.support import (
    Server,
    start_server,
    stop_server,
    wait_for_workers,
    weightyard_cli,
    weightyard_environment,
    worker_of,
    worker_pids,
)

from weightyard.db import create_engine, schema_state

RATE_LIMIT = 100  # requests per minute per token, on both servers
PART_SIZE = 256 * 1024  # LFS multipart part size, so a small object takes several parts
_PROBES = 200  # most fresh connections opened while looking for one to a given worker


def _answer(conn: http.client.HTTPConnection) -> tuple[int, bytes]:
    response = conn.getresponse()
    return response.status, response.read()


def _call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    return _answer(conn)


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


@dataclass
class Workers:
    server: Server
    database: dict[str, str]  # the environment that names the hub's database

    @property
    def port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.token}"}

    def pids(self) -> list[int]:
        return worker_pids(self.server)

    def connect(self) -> tuple[int, http.client.HTTPConnection]:
        """A fresh connection that has had one answer, and the worker process holding its server end."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        status, _ = _call(conn, "GET", "/api/whoami-v2")  # anonymous: counts against no token's limit
        assert status == 401
        assert conn.sock is not None
        return worker_of(self.server, conn.sock.getsockname()[1]), conn

    def pinned(self, per_worker: int) -> dict[int, list[http.client.HTTPConnection]]:
        """`per_worker` open connections to each worker."""
        workers = self.pids()
        held: dict[int, list[http.client.HTTPConnection]] = {pid: [] for pid in workers}
        for _ in range(_PROBES):
            if all(len(conns) >= per_worker for conns in held.values()):
                break
            pid, conn = self.connect()
            if pid in held and len(held[pid]) < per_worker:
                held[pid].append(conn)
            else:
                conn.close()
        assert all(len(conns) == per_worker for conns in held.values()), {p: len(c) for p, c in held.items()}
        return held

    def create_repo(self, name: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        body = json.dumps({"name": name, "organization": "admin"}).encode()
        status, answer = _call(conn, "POST", "/api/repos/create", body, self.headers)
        assert status == 200, answer
        return f"admin/{name}"

    def get_json(self, conn: http.client.HTTPConnection, path: str) -> Any:
        status, answer = _call(conn, "GET", path, headers=self.headers)
        assert status == 200, answer
        return json.loads(answer)

    def commit(
        self,
        conn: http.client.HTTPConnection,
        repo: str,
        files: dict[str, bytes],
        parent: str | None = None,
        lfs: dict[str, tuple[str, int]] | None = None,
    ) -> tuple[int, bytes]:
        header: dict[str, Any] = {"summary": f"add {', '.join(files) or ', '.join(lfs or {})}"}
        if parent is not None:
            header["parentCommit"] = parent
        lines: list[dict[str, Any]] = [{"key": "header", "value": header}]
        for path, data in files.items():
            content = base64.b64encode(data).decode()
            lines.append({"key": "file", "value": {"path": path, "content": content, "encoding": "base64"}})
        for path, (oid, size) in (lfs or {}).items():
            lines.append(
                {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}}
            )
        body = "\n".join(json.dumps(line) for line in lines).encode()
        headers = {**self.headers, "Content-Type": "application/x-ndjson"}
        return _call(conn, "POST", f"/api/models/{repo}/commit/main", body, headers)


@pytest.fixture(scope="module", params=["sqlite", "postgresql+s3"])
def workers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    env = {
        "WEIGHTYARD_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
        "WEIGHTYARD_MULTIPART_CHUNK_SIZE": str(PART_SIZE),
    }
    data = tmp_path_factory.mktemp(f"workers-{request.param}") / "data"
    if request.param == "postgresql+s3":
        # The team deployment: PostgreSQL and the content in an S3 bucket (SeaweedFS), nothing shared on disk.
        database = {"WEIGHTYARD_DATABASE_URL": request.getfixturevalue("postgres_url")}
        seaweed: SeaweedServer = request.getfixturevalue("seaweed")
        env.update(credentials_env(), WEIGHTYARD_BLOB_URL=seaweed.url(fresh_prefix()))
    else:
        database = {"WEIGHTYARD_DATA": str(data)}
    server = start_server(data, env={**env, **database}, args=("--workers", "2"))
    try:
        wait_for_workers(server, 2)  # the first answers before the second has built its app
        yield Workers(server, database)
    finally:
        stop_server(server)


def _at_once(actions: list[Any]) -> list[Any]:
    """Run each action on its own thread, released together; their results in order."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait(timeout=30)
        results[index] = actions[index]()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_requests_land_on_every_worker(workers: Workers) -> None:
    pids = workers.pids()
    seen: set[int] = set()
    for _ in range(_PROBES):
        pid, conn = workers.connect()
        conn.close()
        seen.add(pid)
        if seen == set(pids):
            break

    assert len(pids) == 2
    assert seen == set(pids)


def test_commits_through_both_workers_without_parent_all_land(workers: Workers) -> None:
    repo = workers.create_repo("no-parent")
    conns = [conn for held in workers.pinned(2).values() for conn in held]

    answers = _at_once(
        [partial(workers.commit, conn, repo, {f"f{i}.txt": str(i).encode()}) for i, conn in enumerate(conns)]
    )

    assert [status for status, _ in answers] == [200] * 4, answers
    tree = workers.get_json(conns[0], f"/api/models/{repo}/tree/main")
    assert sorted(entry["path"] for entry in tree) == [
        ".gitattributes",
        "f0.txt",
        "f1.txt",
        "f2.txt",
        "f3.txt",
    ]
    assert len(workers.get_json(conns[-1], f"/api/models/{repo}/commits/main")) == 5


def test_commits_through_both_workers_on_one_parent_one_wins(workers: Workers) -> None:
    repo = workers.create_repo("one-parent")
    conns = [conn for held in workers.pinned(2).values() for conn in held]
    for round_ in range(3):
        parent = workers.get_json(conns[0], f"/api/models/{repo}")["sha"]

        answers = _at_once(
            [
                partial(workers.commit, conn, repo, {f"r{round_}-{i}.txt": b"x"}, parent=parent)
                for i, conn in enumerate(conns)
            ]
        )

        assert sorted(status for status, _ in answers) == [200, 412, 412, 412], answers
        history = workers.get_json(conns[-1], f"/api/models/{repo}/commits/main")
        assert len(history) == round_ + 2
        assert history[1]["id"] == parent


def test_rate_limit_holds_across_workers(workers: Workers) -> None:
    (first, [a]), (second, [b]) = workers.pinned(1).items()
    for attempt in range(2):  # a second run only when the first straddled a clock minute (the window)
        window = time.time() // 60
        conn = http.client.HTTPConnection("127.0.0.1", workers.port, timeout=60)
        body = json.dumps({"name": f"limited-{attempt}-{time.time_ns()}", "scope": "read"}).encode()
        status, answer = _call(conn, "POST", "/api/admin/users/admin/tokens", body, workers.headers)
        assert status == 200, answer
        caller = {"Authorization": f"Bearer {json.loads(answer)['token']}"}

        statuses = [
            _call(a if index % 2 == 0 else b, "GET", "/api/whoami-v2", headers=caller)[0]
            for index in range(RATE_LIMIT + 10)
        ]
        if time.time() // 60 == window:
            break

    assert first != second
    assert statuses == [200] * RATE_LIMIT + [429] * 10


def test_worker_killed_mid_upload_the_other_serves_and_the_retry_succeeds(workers: Workers) -> None:
    repo = workers.create_repo("killed")
    data = os.urandom(PART_SIZE * 2 + PART_SIZE // 2)  # three parts
    oid = hashlib.sha256(data).hexdigest()
    (victim, [doomed]), (survivor, [alive]) = workers.pinned(1).items()
    batch = json.dumps(
        {
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": [{"oid": oid, "size": len(data)}],
        }
    ).encode()
    status, answer = _call(alive, "POST", f"/{repo}.git/info/lfs/objects/batch", batch, workers.headers)
    assert status == 200, answer
    upload = json.loads(answer)["objects"][0]["actions"]["upload"]
    parts = {int(key): _path_of(url) for key, url in upload["header"].items() if key.isdigit()}
    assert sorted(parts) == [1, 2, 3]

    def part(number: int) -> bytes:
        return data[(number - 1) * PART_SIZE : number * PART_SIZE]

    assert _call(doomed, "PUT", parts[1], part(1))[0] == 200
    assert _call(alive, "PUT", parts[2], part(2))[0] == 200
    # Part 3 half sent to the victim, which dies with it.
    doomed.putrequest("PUT", parts[3])
    doomed.putheader("Content-Length", str(len(part(3))))
    doomed.endheaders()
    doomed.send(part(3)[: len(part(3)) // 2])
    os.kill(victim, signal.SIGKILL)

    assert workers.get_json(alive, f"/api/models/{repo}")["id"] == repo
    refused, _ = workers.commit(alive, repo, {}, lfs={"weights.bin": (oid, len(data))})
    assert 400 <= refused < 500
    missing, _ = _call(alive, "HEAD", f"/{repo}/resolve/main/weights.bin", headers=workers.headers)
    assert missing == 404

    assert _call(alive, "PUT", parts[3], part(3))[0] == 200
    done = json.dumps({"oid": oid, "parts": []}).encode()
    assert _call(alive, "POST", _path_of(upload["href"]), done)[0] == 200
    assert workers.commit(alive, repo, {}, lfs={"weights.bin": (oid, len(data))})[0] == 200
    status, served = _call(alive, "GET", f"/{repo}/resolve/main/weights.bin", headers=workers.headers)
    assert status == 200
    assert served == data
    # The supervisor replaces the dead worker.
    pids = wait_for_workers(workers.server, 2)
    assert victim not in pids and survivor in pids


def test_admin_commands_act_on_the_configured_database_without_a_data_folder(
    workers: Workers, tmp_path: Path
) -> None:
    name = f"ops-{time.time_ns()}"

    issued = weightyard_cli(
        "token", "create", "--name", name, "--scope", "read", env=workers.database, cwd=tmp_path, timeout=120
    )

    assert issued.returncode == 0, issued.stdout + issued.stderr
    token = issued.stdout.strip()
    for conns in workers.pinned(1).values():
        status, answer = _call(
            conns[0], "GET", "/api/whoami-v2", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200, answer
        assert json.loads(answer)["auth"]["accessToken"]["displayName"] == name
    assert list(tmp_path.iterdir()) == []  # nothing created where the commands ran


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_migrations_started_together_run_once(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    if database == "postgresql":
        # `weightyard db upgrade` as an operator runs it, from three hosts at once: no data folder needed.
        url = request.getfixturevalue("postgres_cluster").create_database(f"weightyard_race_{os.getpid()}")
        command = [sys.executable, "-m", "weightyard", "db", "upgrade"]
    else:
        # A fresh SQLite file, which `db upgrade` does not create: the migration itself, as three hubs
        # starting on one folder run it.
        url = f"sqlite:///{tmp_path / 'weightyard.db'}"
        command = [
            sys.executable,
            "-c",
            f"from weightyard.db import create_engine, migrate; migrate(create_engine({url!r}))",
        ]
    env = weightyard_environment({"WEIGHTYARD_DATABASE_URL": url})

    processes = [subprocess.Popen(command, env=env, cwd=work, stderr=subprocess.PIPE) for _ in range(3)]
    errors = [process.communicate(timeout=120)[1].decode() for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], errors
    assert list(work.iterdir()) == []  # no data folder made where the command ran
    engine = create_engine(url)
    try:
        assert schema_state(engine).up_to_date
    finally:
        engine.dispose()


def test_stock_client_uploads_and_downloads_through_the_workers(workers: Workers, tmp_path: Path) -> None:
    # The client's connections (its own pool, and hf_xet's for the Xet transfers) land on either worker.
    api = HfApi(endpoint=workers.server.url, token=workers.server.token)
    repo = api.create_repo("admin/stock-client").repo_id
    weights = os.urandom(3 * 1024 * 1024)
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id=repo)
    api.upload_file(path_or_fileobj=b'{"model_type": "bert"}', path_in_repo="config.json", repo_id=repo)

    folder = Path(
        snapshot_download(repo, endpoint=workers.server.url, token=workers.server.token, cache_dir=tmp_path)
    )

    assert (folder / "model.safetensors").read_bytes() == weights
    assert (folder / "config.json").read_bytes() == b'{"model_type": "bert"}'
    assert len(api.list_repo_commits(repo)) == 3


def test_a_worker_on_an_outdated_schema_refuses_to_start_and_names_the_command(
    postgres_cluster: Any, tmp_path: Path
) -> None:
    # The app factory as any ASGI server would run it, on a database no `weightyard db upgrade` has migrated.
    url = postgres_cluster.create_database(f"weightyard_unmigrated_{os.getpid()}")
    env = weightyard_environment({"WEIGHTYARD_DATABASE_URL": url, "WEIGHTYARD_DATA": str(tmp_path / "data")})

    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "weightyard.server:app_factory", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 3, result.stdout + result.stderr
    assert "run `weightyard db upgrade` first" in result.stderr
