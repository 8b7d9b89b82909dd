"""Behaviours of the Hub that the stock client relies on: LFS classification, `.gitattributes`, `.gitignore`,
repo ids and revisions. Each is checked through the unmodified `huggingface_hub` client (both generations)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from tests.support import Server

pytestmark = pytest.mark.client

# The Hub's default .gitattributes: 35 `filter=lfs` rules, 1519 bytes, this git blob id.
HUB_GITATTRIBUTES_BLOB_ID = "a6344aac8c09253b3b630fb776ae94478aa0275b"
PNG_RULE = b"*.png filter=lfs diff=lfs merge=lfs -text\n"


def api_for(server: Server) -> HfApi:
    return HfApi(endpoint=server.url, token=server.token)


def auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def test_new_repo_starts_with_an_initial_commit_adding_the_hubs_gitattributes(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    (commit,) = api.list_repo_commits(repo_name)
    assert commit.title == "initial commit"
    (entry,) = api.list_repo_tree(repo_name)
    assert (entry.path, entry.blob_id, entry.size, entry.lfs) == (
        ".gitattributes",
        HUB_GITATTRIBUTES_BLOB_ID,
        1519,
        None,
    )
    text = Path(
        hf_hub_download(repo_name, ".gitattributes", endpoint=server.url, cache_dir=tmp_path)
    ).read_text()
    lines = text.splitlines()
    assert len(lines) == 35 and all(line.endswith(" filter=lfs diff=lfs merge=lfs -text") for line in lines)
    assert {"*.safetensors", "*.bin", "saved_model/**/*", "*tfevents*"} <= {line.split()[0] for line in lines}


def test_files_named_by_gitattributes_rules_are_lfs_files_whatever_their_size_or_content(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    digits = b"0123456789" * (1024 * 1024 // 10)
    attributes = Path(hf_hub_download(repo_name, ".gitattributes", endpoint=server.url, cache_dir=tmp_path))
    small_bins = [CommitOperationAdd(f"shards/{index:03d}.bin", b"%d\n" % index) for index in range(300)]
    api.create_commit(
        repo_name,
        operations=[
            CommitOperationAdd("digits.bin", digits),
            CommitOperationAdd("lfs.bin", b"7 bytes"),
            CommitOperationAdd("notes.txt", b"plain text"),
            # a rule added in the same commit applies to that commit's files
            CommitOperationAdd(".gitattributes", attributes.read_bytes() + PNG_RULE),
            CommitOperationAdd("images/logo.png", b"not really a png, but named like one"),
            *small_bins,
        ],
        commit_message="files the rules name",
    )
    tree = {entry.path: entry for entry in api.list_repo_tree(repo_name, recursive=True)}
    for path in ("digits.bin", "lfs.bin", "images/logo.png", "shards/000.bin", "shards/299.bin"):
        lfs = tree[path].lfs  # type: ignore[union-attr]
        assert lfs is not None, path
    assert tree["digits.bin"].lfs.sha256 == hashlib.sha256(digits).hexdigest()  # type: ignore[union-attr]
    assert tree["notes.txt"].lfs is None and tree[".gitattributes"].lfs is None  # type: ignore[union-attr]
    infos = {info.path: info for info in api.get_paths_info(repo_name, ["lfs.bin", "notes.txt"])}
    assert infos["lfs.bin"].lfs is not None and infos["notes.txt"].lfs is None  # type: ignore[union-attr]
    # with an `lfs` entry, a download to a local folder can check the sha256
    local = hf_hub_download(repo_name, "lfs.bin", endpoint=server.url, local_dir=tmp_path / "local")
    assert Path(local).read_bytes() == b"7 bytes"


def test_preupload_answers_lfs_for_rules_of_the_revision_and_of_the_same_request(
    server: Server, repo_name: str
) -> None:
    api_for(server).create_repo(repo_name)

    def modes(files: dict[str, bytes]) -> dict[str, str]:
        answer = httpx.post(
            f"{server.url}/api/models/{repo_name}/preupload/main",
            headers=auth(server),
            json={
                "files": [
                    {"path": path, "size": len(data), "sample": base64.b64encode(data[:512]).decode()}
                    for path, data in files.items()
                ]
            },
        )
        assert answer.status_code == 200, answer.text
        return {item["path"]: item["uploadMode"] for item in answer.json()["files"]}

    assert modes({"lfs.bin": b"7 bytes", "a.png": b"text", "a.txt": b"text", "empty.bin": b""}) == {
        "lfs.bin": "lfs",
        "a.png": "regular",
        "a.txt": "regular",
        "empty.bin": "regular",  # the client sends empty files inline whatever the answer
    }
    assert modes({".gitattributes": PNG_RULE, "a.png": b"text"})["a.png"] == "lfs"


def test_gitignore_of_the_commit_or_of_the_revision_keeps_files_out(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    folder = tmp_path / "model"
    (folder / "build").mkdir(parents=True)
    (folder / "logs").mkdir()
    (folder / ".gitignore").write_text("*.log\nbuild/\n!keep.log\n")
    (folder / "config.json").write_text("{}")
    (folder / "run.log").write_text("noise")
    (folder / "keep.log").write_text("kept")
    (folder / "logs" / "deep.log").write_text("noise")
    (folder / "build" / "out.txt").write_text("artefact")
    api.upload_folder(repo_id=repo_name, folder_path=folder)
    assert sorted(api.list_repo_files(repo_name)) == [
        ".gitattributes",
        ".gitignore",
        "config.json",
        "keep.log",
    ]
    # later commits honour the .gitignore now in the repo
    api.create_commit(
        repo_name,
        operations=[CommitOperationAdd("later.log", b"noise"), CommitOperationAdd("later.txt", b"kept")],
        commit_message="later",
    )
    assert "later.log" not in api.list_repo_files(repo_name)
    assert "later.txt" in api.list_repo_files(repo_name)
