"""Start-up checks: each bad state is refused with one line and a documented exit status, never a traceback;
only `serve` and `init` create a data folder; several servers may start at once on a fresh folder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.support import free_port, start_server, stop_server, weightyard_cli

EXIT_USAGE, EXIT_CANNOT_START = 2, 3


def _serve(
    data: Path, port: int | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run `weightyard serve` on a folder expected to be refused; it must exit on its own."""
    command = [
        sys.executable,
        "-m",
        "weightyard",
        "serve",
        "--port",
        str(port or free_port()),
        "--data",
        str(data),
    ]
    return subprocess.run(
        [*prefix, *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )


def _one_line_error(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert len(output.strip().splitlines()) == 1, output
    for phrase in phrases:
        assert phrase in output, output


def test_admin_commands_outside_a_hub_folder_refuse_and_create_nothing(tmp_path: Path) -> None:
    for args in (["user", "list"], ["token", "create", "--name", "x"], ["gc", "--dry-run"], ["audit-log"]):
        result = subprocess.run(
            [sys.executable, "-m", "weightyard", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**{k: v for k, v in os.environ.items() if k != "WEIGHTYARD_DATA"}, "COLUMNS": "400"},
        )
        assert result.returncode == EXIT_USAGE, (args, result.stdout, result.stderr)
        _one_line_error(result, str(tmp_path / ".weightyard"), "weightyard init")
        assert list(tmp_path.iterdir()) == [], "nothing was created"


def test_init_creates_the_folder_that_admin_commands_and_serve_then_use(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    created = weightyard_cli("init", "--data", str(data))
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("wy_") and (data / "admin-token").read_text().strip() == token
    assert weightyard_cli("user", "create", "alice", "--data", str(data)).returncode == 0
    server = start_server(data)
    try:
        assert server.token == token
        who = httpx.get(f"{server.url}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})
        assert who.status_code == 200 and who.json()["name"] == "admin"
    finally:
        stop_server(server)


def test_four_servers_started_at_once_on_a_fresh_folder_all_serve_with_one_admin_token(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    ports: list[int] = []
    while len(ports) < 4:  # four different ports (each is free when probed, and not held after)
        if (port := free_port()) not in ports:
            ports.append(port)
    logs = [open(tmp_path / f"server-{i}.log", "wb") for i in range(4)]  # noqa: SIM115
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "weightyard", "serve", "--port", str(port), "--data", str(data)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for port, log in zip(ports, logs, strict=True)
    ]
    try:
        ready: set[int] = set()
        deadline = time.monotonic() + 120
        while len(ready) < 4 and time.monotonic() < deadline:
            for index, (port, process) in enumerate(zip(ports, processes, strict=True)):
                assert process.poll() is None, (tmp_path / f"server-{index}.log").read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=1).status_code == 200:
                        ready.add(port)
                except httpx.HTTPError:
                    time.sleep(0.1)
        assert len(ready) == 4
        token = (data / "admin-token").read_text().strip()
        for port in ports:
            who = httpx.get(
                f"http://127.0.0.1:{port}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"}
            )
            assert who.status_code == 200
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        for log in logs:
            log.close()


def test_unwritable_data_folder_is_refused_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert weightyard_cli("init", "--data", str(data)).returncode == 0
    data.chmod(0o555)
    # root writes anywhere: run the server as root without the capability that overrides permissions.
    prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    try:
        result = _serve(data, prefix=prefix)
    finally:
        data.chmod(0o755)
    assert result.returncode == EXIT_CANNOT_START
    _one_line_error(result, str(data), "not writable")


def test_damaged_database_is_refused_with_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "weightyard.db").write_bytes(b"this is not a database" * 400)
    result = _serve(garbage)
    assert result.returncode == EXIT_CANNOT_START
    _one_line_error(result, "not a database", "backup")

    damaged = tmp_path / "damaged"
    assert weightyard_cli("init", "--data", str(damaged)).returncode == 0
    database = damaged / "weightyard.db"
    conn = sqlite3.connect(database)
    conn.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO filler (body) VALUES (?)", [(f"{i:06d}" * 80,) for i in range(2000)])
    conn.execute("CREATE INDEX filler_body ON filler (body)")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    content = bytearray(database.read_bytes())
    middle = (len(content) // page // 2) * page
    content[middle : middle + page] = os.urandom(page)
    database.write_bytes(bytes(content))
    result = _serve(damaged)
    assert result.returncode == EXIT_CANNOT_START
    _one_line_error(
        result, "damaged" if "damaged" in result.stdout + result.stderr else "malformed", "backup"
    )


def test_database_from_a_newer_weightyard_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert weightyard_cli("init", "--data", str(data)).returncode == 0
    with sqlite3.connect(data / "weightyard.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    result = _serve(data)
    assert result.returncode == EXIT_CANNOT_START
    _one_line_error(result, "9999_from_the_future", "newer")


def test_deleted_database_with_blobs_left_is_refused_instead_of_starting_empty(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        httpx.post(
            f"{server.url}/api/repos/create", headers=headers, json={"name": "m", "organization": "admin"}
        )
        httpx.post(
            f"{server.url}/api/models/admin/m/commit/main",
            headers={**headers, "Content-Type": "application/x-ndjson"},
            content=b'{"key":"header","value":{"summary":"add"}}\n'
            b'{"key":"file","value":{"path":"w.txt","content":"aGVsbG8=","encoding":"base64"}}\n',
        ).raise_for_status()
    finally:
        stop_server(server)
    for leftover in data.glob("weightyard.db*"):
        leftover.unlink()
    result = _serve(data)
    assert result.returncode == EXIT_CANNOT_START
    _one_line_error(result, "weightyard.db is missing", "backup")
    assert not (data / "weightyard.db").exists()


def test_port_in_use_exits_3_with_one_line(tmp_path: Path) -> None:
    server = start_server(tmp_path / "first")
    try:
        result = _serve(tmp_path / "second", port=int(server.url.rsplit(":", 1)[1]))
    finally:
        stop_server(server)
    assert result.returncode == EXIT_CANNOT_START
    _one_line_error(result, "address already in use")


def test_clean_stop_leaves_everything_in_the_database_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    headers = {"Authorization": f"Bearer {server.token}"}
    httpx.post(
        f"{server.url}/api/repos/create", headers=headers, json={"name": "kept", "organization": "admin"}
    ).raise_for_status()
    stop_server(server)
    wal = data / "weightyard.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    alone = tmp_path / "alone.db"
    alone.write_bytes((data / "weightyard.db").read_bytes())
    with sqlite3.connect(alone) as conn:
        assert conn.execute("SELECT name FROM repos").fetchall() == [("kept",)]


@pytest.fixture(autouse=True)
def _no_stray_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEIGHTYARD_DATA", raising=False)


def _database_at(path: Path, revision: str) -> None:
    """A database whose schema stops at `revision`, as an older Weightyard left it."""
    from weightyard.db import create_engine, migrate

    engine = create_engine(f"sqlite:///{path}")
    migrate(engine, revision)
    engine.dispose()


def test_db_upgrade_brings_an_old_schema_to_the_head_and_refuses_a_folder_without_a_hub(
    tmp_path: Path,
) -> None:
    from weightyard.db import create_engine, schema_state

    data = tmp_path / "data"
    data.mkdir()
    _database_at(data / "weightyard.db", "0005")
    upgraded = weightyard_cli("db", "upgrade", "--data", str(data))
    assert upgraded.returncode == 0, upgraded.stderr
    state = schema_state(create_engine(f"sqlite:///{data / 'weightyard.db'}"))
    assert state.current == state.head != "0005"
    assert f"0005 -> {state.head}" in upgraded.stdout + upgraded.stderr
    missing = weightyard_cli("db", "upgrade", "--data", str(tmp_path / "nothing"))
    assert missing.returncode == EXIT_USAGE and not (tmp_path / "nothing").exists()


def test_serve_upgrades_an_old_sqlite_schema_itself(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _database_at(data / "weightyard.db", "0005")
    server = start_server(data)
    try:
        assert httpx.get(f"{server.url}/api/models").status_code == 200
    finally:
        stop_server(server)
