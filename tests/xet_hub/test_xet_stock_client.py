"""The stock client in its default configuration uploads and downloads through Xet with `weightyard serve`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tests.support import CuttingProxy, loopback_request, run_python
from tests.xet_hub.conftest import XetHub, cli_json, payload, sha256, upload_line

from weightyard.repos.gitattributes import DEFAULT_GITATTRIBUTES

pytestmark = pytest.mark.client

MIB = 1024 * 1024


def test_upload_file_is_stored_as_xorbs_and_downloads_identically_through_xet_and_plain_http(
    xet_hub: XetHub, tmp_path: Path
) -> None:
    data = payload(5 * MIB + 123)
    (tmp_path / "weights.bin").write_bytes(data)
    created = loopback_request(
        "POST",
        f"{xet_hub.url}/api/repos/create",
        headers=xet_hub.headers("alice"),
        json={"name": "alice/single"},
    )
    created.raise_for_status()
    xet_hub.run_client(
        "alice", upload_line(tmp_path / "weights.bin", "weights.bin", "alice/single"), tmp_path / "uploader"
    )
    assert sha256(data) not in xet_hub.blob_files(), "a Xet upload is kept as xorbs, not as a whole blob"
    tree = loopback_request(
        "GET", f"{xet_hub.url}/api/models/alice/single/tree/main", headers=xet_hub.headers("alice")
    ).json()
    attributes, entry = tree
    assert attributes["path"] == ".gitattributes"
    assert entry["lfs"]["oid"] == sha256(data) and len(entry["xetHash"]) == 64
    head = loopback_request("HEAD", f"{xet_hub.url}/alice/single/resolve/main/weights.bin")
    assert head.headers["X-Xet-Hash"] == entry["xetHash"]
    assert 'rel="xet-auth"' in head.headers["Link"] and "/xet-read-token/" in head.headers["Link"]

    proxy = CuttingProxy(int(xet_hub.url.rsplit(":", 1)[1]), cut_after=1 << 62)
    try:
        printed = xet_hub.run_client(
            "alice",
            """
from huggingface_hub import hf_hub_download
import hashlib
path = hf_hub_download("alice/single", "weights.bin")
print(hashlib.sha256(open(path, "rb").read()).hexdigest())
""",
            tmp_path / "downloader",
            HF_ENDPOINT=proxy.url,
        )
    finally:
        proxy.close()
    assert printed.strip() == sha256(data)
    assert any("/xet-cas/v" in line and "/reconstructions/" in line for line in proxy.requests)
    assert any("/xet-cas/v1/fetch/" in line for line in proxy.requests)

    plain = loopback_request("GET", f"{xet_hub.url}/alice/single/resolve/main/weights.bin")
    assert plain.content == data
    ranged = loopback_request(
        "GET",
        f"{xet_hub.url}/alice/single/resolve/main/weights.bin",
        headers={"Range": "bytes=3000000-4500000"},
    )
    assert ranged.status_code == 206 and ranged.content == data[3000000:4500001]
    anonymous_download = """
from huggingface_hub import hf_hub_download
import hashlib
print(hashlib.sha256(open(hf_hub_download("alice/single", "weights.bin"), "rb").read()).hexdigest())
"""
    for name, env in (("xet", {}), ("no-xet", {"HF_HUB_DISABLE_XET": "1"})):
        home = tmp_path / f"anonymous-{name}"
        environment = {"HF_ENDPOINT": xet_hub.url, "HF_HOME": str(home), "HF_XET_CACHE": str(home / "xet")}
        result = run_python(anonymous_download, {**environment, **env})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == sha256(data)


def test_upload_folder_and_create_commit_carry_empty_tiny_text_and_binary_files(
    xet_hub: XetHub, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    files = {
        "weights.bin": payload(2 * MIB + 5),
        "sub/empty.bin": b"",
        "sub/one.bin": b"\x00",
        "config.json": b'{"model_type": "bert"}',
        "zeros.bin": bytes(3 * MIB),
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    extra = payload(700_000)
    (tmp_path / "extra.bin").write_bytes(extra)
    xet_hub.run_client(
        "alice",
        f"""
from huggingface_hub import CommitOperationAdd
api.create_repo("alice/folder")
api.upload_folder(folder_path={str(folder)!r}, repo_id="alice/folder")
api.create_commit(
    "alice/folder",
    operations=[
        CommitOperationAdd("extra/from-bytes.bin", open({str(tmp_path / "extra.bin")!r}, "rb").read()),
        CommitOperationAdd("extra/from-path.bin", {str(folder / "weights.bin")!r}),
    ],
    commit_message="more",
)
""",
        tmp_path / "uploader",
    )
    expected = {
        **files,
        "extra/from-bytes.bin": extra,
        "extra/from-path.bin": files["weights.bin"],
        ".gitattributes": DEFAULT_GITATTRIBUTES,
    }
    printed = xet_hub.run_client(
        "alice",
        """
from huggingface_hub import snapshot_download
import hashlib, os
root = snapshot_download("alice/folder")
for base, _, names in os.walk(root):
    for name in names:
        path = os.path.join(base, name)
        if ".cache" not in path:
            print(os.path.relpath(path, root), hashlib.sha256(open(path, "rb").read()).hexdigest())
""",
        tmp_path / "downloader",
    )
    downloaded = dict(line.split(" ") for line in printed.strip().splitlines())
    assert downloaded == {name: sha256(content) for name, content in expected.items()}
    for name, content in expected.items():
        assert loopback_request("GET", f"{xet_hub.url}/alice/folder/resolve/main/{name}").content == content


def test_second_machine_uploading_a_few_changed_mib_stores_only_the_new_chunks(
    xet_hub: XetHub, tmp_path: Path
) -> None:
    original = payload(24 * MIB, seed=7)
    changed = bytearray(original)
    changed[10 * MIB : 12 * MIB] = random.Random(8).randbytes(2 * MIB)
    (tmp_path / "v1.bin").write_bytes(original)
    (tmp_path / "v2.bin").write_bytes(bytes(changed))
    upload = """
api.upload_file(path_or_fileobj={path!r}, path_in_repo="weights.bin", repo_id="alice/versions")
"""
    xet_hub.run_client(
        "alice",
        'api.create_repo("alice/versions")\n' + upload.format(path=str(tmp_path / "v1.bin")),
        tmp_path / "m1",
    )
    before = xet_hub.stored_xorb_bytes()
    # Another machine: an empty client cache, so only the server's dedup answers can spare the old chunks.
    xet_hub.run_client("alice", upload.format(path=str(tmp_path / "v2.bin")), tmp_path / "m2")
    growth = xet_hub.stored_xorb_bytes() - before
    assert 2 * MIB <= growth < 2 * MIB + 512 * 1024, growth
    assert loopback_request("GET", f"{xet_hub.url}/alice/versions/resolve/main/weights.bin").content == bytes(
        changed
    )
    first = loopback_request("GET", f"{xet_hub.url}/api/models/alice/versions/commits/main").json()[-2]["id"]
    old = loopback_request("GET", f"{xet_hub.url}/alice/versions/resolve/{first}/weights.bin").content
    assert old == original

    stats = cli_json(xet_hub, "stats")
    (repo,) = [r for r in stats["repos"] if r["repo_id"] == "alice/versions"]  # type: ignore[union-attr]
    # Three commits each hold the .gitattributes of the initial commit.
    assert repo["logical_bytes"] == 48 * MIB + 3 * len(DEFAULT_GITATTRIBUTES)
    assert 24 * MIB <= repo["stored_bytes"] < 27 * MIB
    assert repo["dedup_ratio"] > 1.7


def test_reconstruction_pages_by_range_and_refuses_a_range_past_the_end(
    xet_hub: XetHub, tmp_path: Path
) -> None:
    data = payload(3 * MIB)
    (tmp_path / "f.bin").write_bytes(data)
    xet_hub.run_client(
        "alice",
        f"""
api.create_repo("alice/ranges")
api.upload_file(path_or_fileobj={str(tmp_path / "f.bin")!r}, path_in_repo="f.bin", repo_id="alice/ranges")
""",
        tmp_path / "up",
    )
    head = loopback_request("HEAD", f"{xet_hub.url}/alice/ranges/resolve/main/f.bin")
    commit = head.headers["X-Repo-Commit"]
    token, cas = xet_hub.xet_token("alice", "alice/ranges", "read", commit)
    url = f"{cas}/v1/reconstructions/{head.headers['X-Xet-Hash']}"
    auth = {"Authorization": f"Bearer {token}"}
    page = loopback_request("GET", url, headers={**auth, "Range": "bytes=1000000-1999999"})
    assert page.status_code == 200
    body = page.json()
    assert body["offset_into_first_range"] > 0 and body["terms"] and body["fetch_info"]
    (_, ranges), *_ = body["fetch_info"].items()
    fetched = loopback_request(
        "GET",
        ranges[0]["url"],
        headers={"Range": f"bytes={ranges[0]['url_range']['start']}-{ranges[0]['url_range']['end']}"},
    )
    assert fetched.status_code == 206
    assert loopback_request("GET", url, headers={**auth, "Range": f"bytes={len(data)}-"}).status_code == 416
