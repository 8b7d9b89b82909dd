"""Behaviours of the Hub that the stock client relies on: LFS classification, `.gitattributes`, `.gitignore`,
repo ids and revisions. Each is checked through the unmodified `huggingface_hub` client (both generations)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    RepoFile,
    RepoFolder,
    hf_hub_download,
)
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from tests.support import Server, database_url

from weightyard.db import tables, utcnow

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


# ------------------------------------------------------------------------------------ repo ids and revisions


def test_a_one_segment_id_is_a_missing_repo_on_every_route(server: Server) -> None:
    api = api_for(server)
    assert api.repo_exists("gpt2") is False
    assert api.revision_exists("gpt2", "main") is False
    assert api.file_exists("gpt2", "config.json") is False
    with pytest.raises(RepositoryNotFoundError):
        api.list_repo_commits("gpt2")
    with pytest.raises(RepositoryNotFoundError):
        api.list_repo_refs("gpt2")
    for method, path in [
        ("GET", "/api/models/gpt2/refs"),
        ("GET", "/api/datasets/gpt2/tree/main"),
        ("POST", "/api/models/gpt2/preupload/main"),
        ("HEAD", "/gpt2/resolve/main/config.json"),
    ]:
        response = httpx.request(method, f"{server.url}{path}", headers=auth(server))
        assert (response.status_code, response.headers["x-error-code"]) == (404, "RepoNotFound"), path
    # and no repo can be named like the route that follows a one-segment id
    with pytest.raises(HfHubHTTPError) as reserved:
        api.create_repo("admin/refs")
    assert reserved.value.response.status_code == 400


def test_repo_ids_resolve_whatever_their_case_and_are_unique_whatever_their_case(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    api = api_for(server)
    mixed = repo_name.replace("admin/", "admin/Mixed-")
    api.create_repo(mixed)
    api.upload_file(path_or_fileobj=b"hi", path_in_repo="a.txt", repo_id=mixed)
    assert api.model_info(mixed.upper().replace("ADMIN/", "admin/")).id == mixed
    assert api.repo_exists(mixed.lower())
    path = hf_hub_download(mixed.lower(), "a.txt", endpoint=server.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"hi"
    with pytest.raises(HfHubHTTPError) as taken:
        api.create_repo(mixed.lower())
    assert taken.value.response.status_code == 409
    assert api.create_repo(mixed.lower(), exist_ok=True).repo_id.lower() == mixed.lower()
    # the database itself refuses the other spelling: a unique index, not a check before the insert
    engine = sa.create_engine(database_url(server.data))
    namespace, name = mixed.lower().split("/")
    now = utcnow()
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.insert(tables.repos).values(
                type="model",
                namespace=namespace,
                name=name,
                private=False,
                created_at=now,
                updated_at=now,
                downloads=0,
            )
        )
    engine.dispose()


def test_short_commit_ids_are_revisions(server: Server, repo_name: str, tmp_path: Path) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="a.txt", repo_id=repo_name).oid
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="a.txt", repo_id=repo_name)
    short = first[:7]
    path = hf_hub_download(repo_name, "a.txt", revision=short, endpoint=server.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"v1"
    api.create_tag(repo_name, tag="v1", revision=short)
    api.create_branch(repo_name, branch="from-short", revision=first[:12])
    refs = api.list_repo_refs(repo_name)
    assert [tag.target_commit for tag in refs.tags] == [first]
    assert {b.name: b.target_commit for b in refs.branches}["from-short"] == first
    assert api.revision_exists(repo_name, short)
    assert not api.revision_exists(repo_name, "0000000")


def test_move_renames_and_transfers_and_the_old_id_keeps_answering(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    api.upload_file(path_or_fileobj=b"weights", path_in_repo="w.txt", repo_id=repo_name)
    moved = repo_name + "-moved"
    api.move_repo(repo_name, moved)
    assert api.model_info(moved).id == moved
    assert api.model_info(repo_name).id == moved, "the old id still answers, with the new id"
    path = hf_hub_download(repo_name, "w.txt", endpoint=server.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"weights"
    api.upload_file(path_or_fileobj=b"more", path_in_repo="x.txt", repo_id=repo_name)
    assert "x.txt" in api.list_repo_files(moved)
    other = repo_name + "-other"
    api.create_repo(other)
    with pytest.raises(HfHubHTTPError) as exists:
        api.move_repo(other, moved)
    assert exists.value.response.status_code == 409
    # a new repo may take the old id; the moved repo keeps its files under the new one
    api.create_repo(repo_name)
    assert api.list_repo_files(repo_name) == [".gitattributes"]
    assert "w.txt" in api.list_repo_files(moved)


def test_auth_check_answers_ok_not_found_or_gated(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    api.auth_check(repo_name)
    with pytest.raises(RepositoryNotFoundError):
        api.auth_check(repo_name + "-missing")
    private = api.create_repo(repo_name + "-private", private=True).repo_id
    anonymous = HfApi(endpoint=server.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.auth_check(private)
    api.update_repo_settings(repo_name, gated="manual")
    with pytest.raises(GatedRepoError):
        anonymous.auth_check(repo_name)
    api.auth_check(repo_name)


def test_a_deleted_file_operation_naming_a_folder_deletes_the_folder(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    api.create_commit(
        repo_name,
        operations=[CommitOperationAdd("dir/a.txt", b"a"), CommitOperationAdd("dir/sub/b.txt", b"b")],
        commit_message="add",
    )
    # `CommitOperationDelete("dir")` (no trailing slash) is sent as a `deletedFile`
    api.create_commit(repo_name, operations=[CommitOperationDelete("dir")], commit_message="drop")
    assert api.list_repo_files(repo_name) == [".gitattributes"]


def test_a_tag_on_a_missing_revision_is_revision_not_found_whatever_its_name(
    server: Server, repo_name: str
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    with pytest.raises(RevisionNotFoundError):
        api.create_tag(repo_name, tag="bad..name", revision="no-such-branch")


def test_invalid_paths_are_422_at_preupload_and_commit(server: Server, repo_name: str) -> None:
    api_for(server).create_repo(repo_name)
    preupload = httpx.post(
        f"{server.url}/api/models/{repo_name}/preupload/main",
        headers=auth(server),
        json={"files": [{"path": "../x", "size": 1, "sample": ""}]},
    )
    assert (preupload.status_code, preupload.headers["x-error-code"]) == (422, "InvalidPath")
    body = (
        b'{"key":"header","value":{"summary":"s"}}\n{"key":"file","value":{"path":"a\\\\b","content":""}}\n'
    )
    commit = httpx.post(
        f"{server.url}/api/models/{repo_name}/commit/main",
        headers={**auth(server), "Content-Type": "application/x-ndjson"},
        content=body,
    )
    assert (commit.status_code, commit.headers["x-error-code"]) == (422, "InvalidPath")


def test_commits_carry_formatted_fields_only_when_asked(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    (plain,) = api.list_repo_commits(repo_name)
    assert plain.formatted_title is None
    (formatted,) = api.list_repo_commits(repo_name, formatted=True)
    assert formatted.formatted_title == "initial commit"


def test_unknown_expand_values_are_refused_on_info_and_listing_routes(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    assert api.model_info(repo_name, expand=["sha", "private"]).sha  # type: ignore[list-item]
    with pytest.raises(HfHubHTTPError) as info:
        api.model_info(repo_name, expand=["nonsense"])  # type: ignore[list-item]
    assert info.value.response.status_code == 400
    with pytest.raises(HfHubHTTPError) as listing:
        list(api.list_models(expand=["nonsense"]))  # type: ignore[list-item]
    assert listing.value.response.status_code == 400


def test_super_squash_leaves_one_commit_with_the_same_files_and_spares_tags(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    for index in range(3):
        api.upload_file(path_or_fileobj=b"v%d" % index, path_in_repo="a.txt", repo_id=repo_name)
    tagged = api.list_repo_commits(repo_name)[1].commit_id
    api.create_tag(repo_name, tag="kept", revision=tagged)
    files_before = sorted(api.list_repo_files(repo_name))
    api.super_squash_history(repo_name, commit_message="one commit")
    (squashed,) = api.list_repo_commits(repo_name)
    assert squashed.title == "one commit"
    assert sorted(api.list_repo_files(repo_name)) == files_before
    path = hf_hub_download(repo_name, "a.txt", endpoint=server.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"v2"
    assert [tag.target_commit for tag in api.list_repo_refs(repo_name).tags] == [tagged]
    with pytest.raises(RevisionNotFoundError):
        api.super_squash_history(repo_name, branch="no-such-branch")


def test_lfs_files_are_listed_and_permanently_deleted_once_no_branch_holds_them(
    server: Server, repo_name: str
) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    api.upload_file(path_or_fileobj=b"old weights", path_in_repo="w.bin", repo_id=repo_name)
    api.upload_file(path_or_fileobj=b"new weights", path_in_repo="w.bin", repo_id=repo_name)
    api.upload_file(path_or_fileobj=b"notes", path_in_repo="notes.txt", repo_id=repo_name)
    listed = {item.file_oid: item for item in api.list_lfs_files(repo_name)}
    old, new = hashlib.sha256(b"old weights").hexdigest(), hashlib.sha256(b"new weights").hexdigest()
    assert set(listed) == {old, new}, "only LFS files, from every commit"
    assert (listed[old].filename, listed[old].size) == ("w.bin", len(b"old weights"))
    with pytest.raises(HfHubHTTPError) as held:
        api.permanently_delete_lfs_files(repo_name, [listed[new]])
    assert held.value.response.status_code == 409, "main still holds it"
    api.permanently_delete_lfs_files(repo_name, [listed[old]])
    assert [item.file_oid for item in api.list_lfs_files(repo_name)] == [new]
    first = api.list_repo_commits(repo_name)[-2].commit_id
    gone = httpx.get(f"{server.url}/{repo_name}/resolve/{first}/w.bin")
    assert (gone.status_code, gone.headers["x-error-code"]) == (422, "BlobNotFound")
    assert httpx.get(f"{server.url}/{repo_name}/resolve/main/w.bin").content == b"new weights"


def test_expanded_tree_and_paths_info_carry_each_entrys_last_commit(server: Server, repo_name: str) -> None:
    api = api_for(server)
    api.create_repo(repo_name)
    first = api.create_commit(
        repo_name,
        operations=[CommitOperationAdd("a.txt", b"a"), CommitOperationAdd("dir/b.txt", b"b")],
        commit_message="first",
    ).oid
    second = api.create_commit(
        repo_name, operations=[CommitOperationAdd("dir/c.txt", b"c")], commit_message="second"
    ).oid
    api.create_branch(repo_name, branch="side", revision=first)
    api.create_commit(
        repo_name, operations=[CommitOperationAdd("a.txt", b"a2")], commit_message="side", revision="side"
    )
    initial = api.list_repo_commits(repo_name)[-1].commit_id

    def lasts(entries: Iterable[RepoFile | RepoFolder], field: str = "oid") -> dict[str, str]:
        return {e.path: getattr(e.last_commit, field) for e in entries if e.last_commit is not None}

    entries = list(api.list_repo_tree(repo_name, expand=True))
    assert lasts(entries) == {".gitattributes": initial, "a.txt": first, "dir": second}
    assert lasts(entries, "title")["dir"] == "second"
    inside = lasts(api.list_repo_tree(repo_name, "dir", expand=True))
    assert inside == {"dir/b.txt": first, "dir/c.txt": second}
    at_first = api.get_paths_info(repo_name, ["a.txt", "dir/c.txt"], expand=True, revision=first)
    assert lasts(at_first) == {"a.txt": first}
    assert lasts(api.get_paths_info(repo_name, ["a.txt", "dir"], expand=True)) == {
        "a.txt": first,
        "dir": second,
    }
    side = lasts(api.list_repo_tree(repo_name, revision="side", expand=True), "title")
    assert side == {".gitattributes": "initial commit", "a.txt": "side", "dir": "first"}
