"""The unmodified huggingface_hub client against a real hub on loopback."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import httpx
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from tests.support import CuttingProxy, Server, run_python

pytestmark = pytest.mark.client


def api_for(server: Server, token: str | None = "admin") -> HfApi:
    return HfApi(endpoint=server.url, token=server.token if token == "admin" else token)


def test_clients_in_subprocesses_import_the_same_client_generation_as_the_tests(
    stock_client_generation: str,
) -> None:
    result = run_python("import huggingface_hub; print(huggingface_hub.__version__)", {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(".", 1)[0] == stock_client_generation


def test_create_repo_public_and_private_and_exist_ok(server: Server, repo_name: str) -> None:
    api = api_for(server)
    url = api.create_repo(repo_name)
    assert url.repo_id == repo_name
    assert api.create_repo(repo_name, exist_ok=True).repo_id == repo_name
    private = api.create_repo(repo_name + "-p", private=True)
    assert api.model_info(private.repo_id).private is True
    assert api.model_info(repo_name).private is False
    assert re.fullmatch(r"[0-9a-f]{40}", api.model_info(repo_name).sha or "")


def test_upload_file_folder_and_download_are_byte_identical(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "sub" / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# hi\n")
    api.upload_folder(repo_id=repo_name, folder_path=folder)
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="notes/hello.txt", repo_id=repo_name)
    assert sorted(api.list_repo_files(repo_name)) == [
        ".gitattributes",
        "README.md",
        "config.json",
        "notes/hello.txt",
        "sub/weights.bin",
    ]
    path = hf_hub_download(repo_name, "sub/weights.bin", endpoint=server.url, cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == (folder / "sub" / "weights.bin").read_bytes()
    snapshot = snapshot_download(repo_name, endpoint=server.url, cache_dir=tmp_path / "cache2")
    assert (Path(snapshot) / "notes" / "hello.txt").read_bytes() == b"hello"
    assert (Path(snapshot) / "config.json").read_text() == '{"model_type": "bert"}'


def test_create_commit_with_additions_deletions_and_parent_commit(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    first = api.create_commit(
        repo_name,
        operations=[
            CommitOperationAdd("a.txt", b"a"),
            CommitOperationAdd("dir/b.txt", b"b"),
            CommitOperationAdd("dir/c.txt", b"c"),
        ],
        commit_message="first",
    )
    second = api.create_commit(
        repo_name,
        operations=[CommitOperationDelete("a.txt"), CommitOperationAdd("d.txt", b"d")],
        commit_message="second",
        parent_commit=first.oid,
    )
    assert sorted(api.list_repo_files(repo_name)) == [".gitattributes", "d.txt", "dir/b.txt", "dir/c.txt"]
    api.create_commit(repo_name, operations=[CommitOperationDelete("dir/")], commit_message="drop dir")
    assert api.list_repo_files(repo_name) == [".gitattributes", "d.txt"]
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(
            repo_name,
            operations=[CommitOperationAdd("e.txt", b"e")],
            commit_message="stale",
            parent_commit=first.oid,
        )
    assert stale.value.response.status_code == 412
    at_second = sorted(api.list_repo_files(repo_name, revision=second.oid))
    assert at_second == [".gitattributes", "d.txt", "dir/b.txt", "dir/c.txt"]
    api.delete_file("d.txt", repo_name)
    assert api.list_repo_files(repo_name) == [".gitattributes"]


def test_branches_tags_and_refs(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=repo_name)
    api.create_branch(repo_name, branch="dev")
    api.create_branch(repo_name, branch="dev", exist_ok=True)
    api.create_branch(repo_name, branch="feature/x")
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id=repo_name, revision="feature/x")
    api.create_tag(repo_name, tag="v1.0", tag_message="first")
    refs = api.list_repo_refs(repo_name)
    assert {b.name for b in refs.branches} == {"main", "dev", "feature/x"}
    assert [t.name for t in refs.tags] == ["v1.0"]
    main_sha = api.model_info(repo_name).sha
    assert refs.tags[0].target_commit == main_sha
    feature = hf_hub_download(
        repo_name, "f.txt", revision="feature/x", endpoint=server.url, token=server.token
    )
    assert Path(feature).read_bytes() == b"v2"
    tagged = hf_hub_download(repo_name, "f.txt", revision="v1.0", endpoint=server.url, token=server.token)
    assert Path(tagged).read_bytes() == b"v1"
    api.delete_tag(repo_name, tag="v1.0")
    api.delete_branch(repo_name, branch="dev")
    refs = api.list_repo_refs(repo_name)
    assert {b.name for b in refs.branches} == {"main", "feature/x"}
    assert refs.tags == []


def test_commits_are_listed_newest_first_with_stable_ids(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    oids = [
        api.upload_file(path_or_fileobj=str(i).encode(), path_in_repo=f"{i}.txt", repo_id=repo_name).oid
        for i in range(3)
    ]
    commits = api.list_repo_commits(repo_name)
    assert [c.commit_id for c in commits][:3] == oids[::-1]
    assert commits[-1].title == "initial commit"
    assert all(re.fullmatch(r"[0-9a-f]{40}", c.commit_id) for c in commits)
    assert [c.commit_id for c in api.list_repo_commits(repo_name)] == [c.commit_id for c in commits]


def test_tree_is_recursive_and_paginated(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    operations = [CommitOperationAdd(f"shards/{i:04d}.txt", str(i).encode()) for i in range(1205)]
    api.create_commit(repo_name, operations=operations, commit_message="many files")
    files = api.list_repo_files(repo_name)
    assert len(files) == 1206, "the shards and the .gitattributes of the initial commit"
    top = list(api.list_repo_tree(repo_name))
    assert [(e.path, type(e).__name__) for e in top] == [
        (".gitattributes", "RepoFile"),
        ("shards", "RepoFolder"),
    ]
    raw = httpx.get(f"{server.url}/api/models/{repo_name}/tree/main?recursive=true")
    assert raw.headers["link"].startswith(f"<{server.url}/")
    assert 'rel="next"' in raw.headers["link"]


def test_model_info_at_revision_and_files_metadata(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    data = os.urandom(2 * 1024 * 1024)
    first = api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id=repo_name)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo_name)
    info = api.model_info(repo_name, revision=first.oid, files_metadata=True)
    assert info.sha == first.oid
    attributes, sibling = info.siblings or []
    assert (attributes.rfilename, sibling.rfilename) == (".gitattributes", "model.safetensors")
    assert sibling.lfs is not None and sibling.lfs.sha256 == hashlib.sha256(data).hexdigest()
    assert sibling.size == len(data)
    assert sorted(s.rfilename for s in api.repo_info(repo_name).siblings or []) == [
        ".gitattributes",
        "config.json",
        "model.safetensors",
    ]


def test_list_models_search_author_and_sort(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name + "-zebra")
    api.create_repo(repo_name + "-aardvark")
    found = [m.id for m in api.list_models(search="zebra")]
    assert repo_name + "-zebra" in found
    assert repo_name + "-aardvark" not in found
    assert all(m.author == "admin" for m in api.list_models(author="admin"))
    recent = [m.id for m in api.list_models(author="admin", sort="last_modified")]
    assert recent.index(repo_name + "-aardvark") < recent.index(repo_name + "-zebra")


def test_whoami_reports_user_and_token_scope(server: Server) -> None:
    me = api_for(server).whoami()
    assert me["name"] == "admin"
    assert me["auth"]["accessToken"]["role"] == "write"


def test_downloads_by_branch_tag_and_commit_with_allow_patterns(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo_name)
    commit = api.upload_file(path_or_fileobj=b"x" * 100, path_in_repo="weights.bin", repo_id=repo_name)
    api.create_tag(repo_name, tag="release")
    for revision in ("main", "release", commit.oid):
        snap = snapshot_download(
            repo_name,
            revision=revision,
            allow_patterns=["*.json"],
            endpoint=server.url,
            cache_dir=tmp_path / revision,
        )
        assert sorted(p.name for p in Path(snap).iterdir()) == ["config.json"]
    assert api.file_exists(repo_name, "weights.bin")
    assert not api.file_exists(repo_name, "nope.bin")
    infos = api.get_paths_info(repo_name, ["config.json", "weights.bin", "missing"])
    assert sorted(i.path for i in infos) == ["config.json", "weights.bin"]


def test_interrupted_download_resumes_with_range(server: Server, repo_name: str, tmp_path: Path) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    data = os.urandom(25 * 1024 * 1024)
    api.upload_file(path_or_fileobj=data, path_in_repo="big.bin", repo_id=repo_name)
    proxy = CuttingProxy(int(server.url.rsplit(":", 1)[1]), cut_after=12 * 1024 * 1024)
    try:
        path = hf_hub_download(repo_name, "big.bin", endpoint=proxy.url, cache_dir=tmp_path / "cache")
    finally:
        proxy.close()
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    resumed = [line for line in proxy.requests if line.startswith("GET ") and line.endswith("[range]")]
    assert resumed, proxy.requests
    ranged = httpx.get(f"{server.url}/{repo_name}/resolve/main/big.bin", headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert ranged.content == data[100:200]
    past_end = httpx.get(
        f"{server.url}/{repo_name}/resolve/main/big.bin", headers={"Range": f"bytes={len(data)}-"}
    )
    assert past_end.status_code == 416


def test_delete_repo_then_it_is_not_found(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    api.delete_repo(repo_name)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo_name)
    api.delete_repo(repo_name, missing_ok=True)


def test_missing_things_raise_the_client_errors(server: Server, repo_name: str, tmp_path: Path) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    commit = api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo_name)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("admin/does-not-exist", "x", endpoint=server.url, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_name, "config.json", revision="nope", endpoint=server.url, cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_name, "missing.json", endpoint=server.url, cache_dir=tmp_path)
    missing = httpx.head(f"{server.url}/{repo_name}/resolve/main/missing.json")
    assert missing.status_code == 404
    assert missing.headers["x-error-code"] == "EntryNotFound"
    assert missing.headers["x-repo-commit"] == commit.oid
    tree = httpx.get(f"{server.url}/api/models/{repo_name}/tree/main/additional_chat_templates")
    assert tree.status_code == 404
    assert tree.headers["x-error-code"] == "EntryNotFound"


def test_private_repo_is_invisible_without_access(server: Server, repo_name: str, tmp_path: Path) -> None:
    api = api_for(server)
    api.create_repo(repo_name, private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id=repo_name)
    anonymous = HfApi(endpoint=server.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(repo_name)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_name, "s.txt", endpoint=server.url, token=False, cache_dir=tmp_path)
    assert repo_name not in [m.id for m in anonymous.list_models(author="admin")]
    for path in ("", "/tree/main", "/refs", "/commits/main", "/revision/main"):
        response = httpx.get(f"{server.url}/api/models/{repo_name}{path}")
        assert (response.status_code, response.headers["x-error-code"]) == (404, "RepoNotFound"), path


def test_read_token_cannot_write_and_anonymous_cannot_create(server: Server, repo_name: str) -> None:
    from tests.support import weightyard_cli

    created = weightyard_cli(
        "token",
        "create",
        "--name",
        f"ro-{repo_name[-8:]}",
        "--scope",
        "read",
        "--data",
        str(server.data),
        env=server.env,
    )
    assert created.returncode == 0, created.stderr
    read_token = created.stdout.strip()
    assert read_token.startswith("wy_")
    api_for(server).create_repo(repo_name)
    reader = HfApi(endpoint=server.url, token=read_token)
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError) as denied:
        reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_name)
    assert denied.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as anonymous:
        HfApi(endpoint=server.url, token=False).create_repo(repo_name + "-anon")
    assert anonymous.value.response.status_code == 401
    bad = httpx.get(f"{server.url}/api/whoami-v2", headers={"Authorization": "Bearer wy_not-a-token"})
    assert bad.status_code == 401
