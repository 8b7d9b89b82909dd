"""The weightyard CLI and the `hf` CLI against a real hub."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from huggingface_hub import HfApi
from tests.support import Server, weightyard_cli


def client_env(server: Server) -> dict[str, str]:
    return {"HF_TOKEN": server.token, "WEIGHTYARD_ENDPOINT": server.url}


def make_model(folder: Path) -> dict[str, bytes]:
    files = {
        "config.json": b'{"model_type": "bert"}',
        "model.safetensors": os.urandom(12 * 1024 * 1024),
        "tokenizer/vocab.txt": b"[PAD]\n[UNK]\n",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def test_push_pull_ls_log_round_trip(server: Server, repo_name: str, tmp_path: Path) -> None:
    files = make_model(tmp_path / "model")
    env = client_env(server)
    pushed = weightyard_cli("push", str(tmp_path / "model"), repo_name, "--message", "first push", env=env)
    assert pushed.returncode == 0, pushed.stderr
    listing = weightyard_cli("ls", repo_name, "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    rows = {row["path"]: row for row in json.loads(listing.stdout)}
    assert sorted(rows) == sorted([".gitattributes", *files])
    assert rows["model.safetensors"]["sha256"] == hashlib.sha256(files["model.safetensors"]).hexdigest()
    repos = weightyard_cli("ls", "--json", env=env)
    assert repo_name in [row["id"] for row in json.loads(repos.stdout)]
    history = weightyard_cli("log", repo_name, "--json", env=env)
    assert [c["title"] for c in json.loads(history.stdout)] == ["first push", "initial commit"]
    pulled = weightyard_cli("pull", repo_name, "--to", str(tmp_path / "copy"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    for name, data in files.items():
        assert (tmp_path / "copy" / name).read_bytes() == data
    human = weightyard_cli("ls", repo_name, env=env)
    assert "model.safetensors" in human.stdout + human.stderr


def test_push_to_a_branch_and_private_repo(server: Server, repo_name: str, tmp_path: Path) -> None:
    make_model(tmp_path / "model")
    env = client_env(server)
    pushed = weightyard_cli(
        "push", str(tmp_path / "model"), repo_name, "--revision", "dev", "--private", env=env
    )
    assert pushed.returncode == 0, pushed.stderr
    api = HfApi(endpoint=server.url, token=server.token)
    assert api.model_info(repo_name).private
    assert api.list_repo_files(repo_name) == [".gitattributes"]
    assert len(api.list_repo_files(repo_name, revision="dev")) == 4
    anonymous = weightyard_cli("ls", repo_name, env={"WEIGHTYARD_ENDPOINT": server.url, "HF_TOKEN": ""})
    assert anonymous.returncode == 1


def test_cli_usage_errors_exit_2(server: Server, tmp_path: Path) -> None:
    env = client_env(server)
    assert weightyard_cli("push", str(tmp_path / "missing"), "admin/x", env=env).returncode == 2
    assert weightyard_cli("push", str(tmp_path), "not a repo", env=env).returncode == 2
    assert weightyard_cli("ls", "bad/../id", env=env).returncode == 2
    bad_scope = weightyard_cli(
        "token", "create", "--name", "x", "--scope", "root", "--data", str(server.data)
    )
    assert bad_scope.returncode == 2


def test_hf_cli_upload_and_download(server: Server, repo_name: str, tmp_path: Path) -> None:
    hf = shutil.which("hf", path=str(Path(sys.executable).parent))
    assert hf is not None, "the hf CLI ships with huggingface_hub"
    files = make_model(tmp_path / "model")
    env = {
        **os.environ,
        "HF_ENDPOINT": server.url,
        "HF_TOKEN": server.token,
        "HF_HOME": str(tmp_path / "home"),
    }
    import subprocess

    HfApi(endpoint=server.url, token=server.token).create_repo(repo_name)
    upload = subprocess.run(
        [hf, "upload", repo_name, str(tmp_path / "model"), "."],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert upload.returncode == 0, upload.stderr
    download = subprocess.run(
        [hf, "download", repo_name, "--local-dir", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert download.returncode == 0, download.stderr
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data
