"""`weightyard backup DIR` while the hub serves, then the documented restore: the restored hub serves the
same bytes, with their attestations, and `fsck` finds it clean."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import httpx
from tests.ops.conftest import MIB, Hub, binary
from tests.ops.test_fsck_and_damage import _xet_file
from tests.support import start_server, stop_server, weightyard_cli


def test_backup_of_a_serving_hub_restores_to_the_same_content(hub: Hub, tmp_path: Path) -> None:
    hub.create_repo("m")
    files = {"README.md": b"# kept\n", "weights.bin": binary(3 * MIB, 1)}
    head = hub.commit("admin/m", files)
    xet_data, _ = _xet_file(hub, "admin/m", seed=2)
    files["xet.bin"] = xet_data
    target = tmp_path / "backup"

    first = hub.cli_json("backup", str(target))
    assert first["files_copied"] >= 2 and first["files_present"] == 0
    again = hub.cli_json("backup", str(target))
    assert again["files_copied"] == 0 and again["files_present"] == first["files_copied"], (
        "only new files copy"
    )
    refused = weightyard_cli("backup", str(tmp_path), "--data", str(hub.data))
    assert (
        refused.returncode == 2 and "neither empty nor an earlier backup" in refused.stdout + refused.stderr
    )

    # Restore as docs/operations.md says: stop the hub, put the backup in place of the data folder, start.
    stop_server(hub.server)
    shutil.rmtree(hub.data)
    shutil.copytree(target, hub.data)
    hub.server = start_server(hub.data, env=hub.env)
    commits = httpx.get(f"{hub.url}/api/models/admin/m/commits/main", headers=hub.headers).json()
    assert commits[1]["id"] == head
    for path, data in files.items():
        served = httpx.get(f"{hub.url}/admin/m/resolve/main/{path}", headers=hub.headers)
        assert (
            served.status_code == 200
            and hashlib.sha256(served.content).digest() == hashlib.sha256(data).digest()
        )
    pulled = weightyard_cli(
        "pull", "admin/m", "--to", str(tmp_path / "copy"), "--endpoint", hub.url, "--token", hub.server.token
    )
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    code, output = hub.cli("fsck", "--hash")
    assert code == 0 and "clean" in output, output


def test_backup_refuses_its_own_data_folder(hub: Hub) -> None:
    result = weightyard_cli("backup", str(hub.data), "--data", str(hub.data))
    assert result.returncode == 2 and "own data folder" in result.stdout + result.stderr
