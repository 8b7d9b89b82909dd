"""model_info and list_models through the stock client: what the Hub derives from files, and its filters."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
import uuid

import httpx
import pytest
import sqlalchemy as sa
from huggingface_hub import CommitOperationAdd, HfApi
from tests.support import Server, database_url, start_server, stop_server, weightyard_cli

pytestmark = pytest.mark.client

README = b"""---
license: mit
tags: [llm, tiny]
pipeline_tag: text-generation
language: en
datasets: [wikitext]
base_model: acme/base
---
# Tiny
"""


def downloads_once_saved(api: HfApi, repo: str, expected: int) -> int | None:
    """The repo's download count once it reaches `expected`, or as it stands after 30 s: each server process
    saves the downloads it counted every second (repos/downloads.py)."""
    deadline = time.monotonic() + 30
    while True:
        count = api.model_info(repo).downloads
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


CONFIG = b'{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": 2, "_name_or_path": "/x"}'


def safetensors(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A real safetensors file: the header, then zero bytes for the data."""
    sizes = {"F32": 4, "BF16": 2, "I64": 8}
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        length = sizes[dtype]
        for dim in shape:
            length *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + length]}
        offset += length
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


@pytest.fixture
def namespace(server: Server) -> str:
    """A fresh user namespace, so listings of it hold only this test's repos."""
    name = f"u{uuid.uuid4().hex[:10]}"
    result = weightyard_cli("user", "create", name, "--data", str(server.data))
    assert result.returncode == 0, result.stderr
    return name


def test_model_info_reports_what_the_hub_derives_from_the_files(server: Server, repo_name: str) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    first = api.upload_file(path_or_fileobj=CONFIG, path_in_repo="config.json", repo_id=repo_name).oid
    weights = safetensors({"wte": ("F32", [10, 4]), "ln": ("BF16", [4]), "pos": ("I64", [3])})
    api.create_commit(
        repo_name,
        [
            CommitOperationAdd("README.md", README),
            CommitOperationAdd("model.safetensors", weights),
        ],
        commit_message="card and weights",
    )
    info = api.model_info(repo_name, files_metadata=True)
    assert info.card_data is not None and info.card_data.license == "mit"
    assert info.card_data.to_dict()["datasets"] == ["wikitext"]
    assert info.pipeline_tag == "text-generation"
    assert info.library_name == "transformers"
    assert info.tags is not None
    for tag in (
        "transformers",
        "safetensors",
        "llm",
        "tiny",
        "gpt2",
        "text-generation",
        "en",
        "dataset:wikitext",
        "license:mit",
        "base_model:acme/base",
        "base_model:finetune:acme/base",
    ):
        assert tag in info.tags
    assert info.config == {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}
    assert info.safetensors is not None
    assert info.safetensors.parameters == {"F32": 40, "BF16": 4, "I64": 3}
    assert info.safetensors.total == 47
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert siblings["model.safetensors"].size == len(weights)
    assert siblings["model.safetensors"].lfs is not None
    assert siblings["config.json"].lfs is None and siblings["config.json"].size == len(CONFIG)
    assert (info.downloads, info.likes, info.gated, info.private, info.disabled) == (
        0,
        0,
        False,
        False,
        False,
    )
    assert info.created_at is not None and info.last_modified is not None
    assert info.created_at <= info.last_modified
    # Each revision reports its own files: before the card there was no card, license or weights.
    before = api.model_info(repo_name, revision=first)
    assert before.card_data is None
    assert before.safetensors is None
    assert before.tags is not None and "license:mit" not in before.tags and "gpt2" in before.tags


def test_model_info_derives_nothing_in_the_request(server: Server, repo_name: str) -> None:
    # Facts are stored at commit time: changing the stored safetensors counts changes the answer, so the
    # answer cannot have come from reading the file.
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    weights = safetensors({"w": ("F32", [7])})
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id=repo_name)
    engine = sa.create_engine(database_url(server.data))
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE file_facts SET data = :d WHERE sha256 = :s AND kind = 'safetensors'"),
            {
                "d": json.dumps({"parameters": {"F32": 1234}, "total": 1234}),
                "s": hashlib.sha256(weights).hexdigest(),
            },
        )
    engine.dispose()
    # Asked of a second process on the same hub: the first keeps the facts it has read in memory (facts never
    # change for their content), so only a process that has not read these shows the changed row.
    second = start_server(server.data)
    try:
        info = HfApi(endpoint=second.url, token=server.token).model_info(repo_name)
    finally:
        stop_server(second)
    assert info.safetensors is not None and info.safetensors.total == 1234


def test_model_info_expand_returns_the_fields_asked_for_and_refuses_unknown_ones(
    server: Server, repo_name: str
) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    api.upload_file(path_or_fileobj=README, path_in_repo="README.md", repo_id=repo_name)
    info = api.model_info(repo_name, expand=["tags", "cardData"])
    assert info.tags is not None and "license:mit" in info.tags
    assert info.card_data is not None
    assert info.downloads is None and info.siblings is None  # not asked for
    refused = httpx.get(f"{server.url}/api/models/{repo_name}", params={"expand": "nonsense"})
    assert (refused.status_code, refused.headers["x-error-code"]) == (400, "BadRequest")


def test_list_models_filters_and_sorts_from_the_index(server: Server, namespace: str) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    cards = {
        "alpha": "license: mit\ntags: [llm]\npipeline_tag: text-generation\nlibrary_name: transformers",
        "beta": "license: apache-2.0\ntags: [vision]\npipeline_tag: image-classification\nlanguage: fr",
        "gamma": "license: mit\ntags: [llm, tiny]\npipeline_tag: text-generation\nlibrary_name: gguf",
    }
    for name, metadata in cards.items():
        readme = f"---\n{metadata}\n---\n".encode()
        api.create_repo(f"{namespace}/{name}")
        api.upload_file(path_or_fileobj=readme, path_in_repo="README.md", repo_id=f"{namespace}/{name}")

    def ids(**kwargs: object) -> list[str]:
        return [m.id.split("/")[1] for m in api.list_models(author=namespace, **kwargs)]  # type: ignore[arg-type]

    assert sorted(ids()) == ["alpha", "beta", "gamma"]
    assert sorted(ids(filter="license:mit")) == ["alpha", "gamma"]
    assert ids(filter=["llm", "tiny"]) == ["gamma"]
    assert ids(filter="fr") == ["beta"]
    assert ids(filter="gguf") == ["gamma"]
    assert ids(pipeline_tag="image-classification") == ["beta"]
    assert ids(search=f"{namespace}/al") == ["alpha"]
    assert ids(sort="created_at") == ["gamma", "beta", "alpha"]
    assert ids(sort="last_modified") == ["gamma", "beta", "alpha"]
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=f"{namespace}/beta")
    for _ in range(2):  # as on the Hub, a fetch of config.json counts as a download of the model
        assert httpx.get(f"{server.url}/{namespace}/beta/resolve/main/config.json").status_code == 200
    assert downloads_once_saved(api, f"{namespace}/beta", 2) == 2
    assert ids(sort="downloads")[0] == "beta"
    listed = {m.id: m for m in api.list_models(author=namespace, cardData=True)}
    card = listed[f"{namespace}/alpha"].card_data
    assert card is not None and card.license == "mit"
    full = next(iter(api.list_models(author=namespace, search="gamma", full=True)))
    assert [s.rfilename for s in full.siblings or []] == [".gitattributes", "README.md"]
    expanded = next(iter(api.list_models(author=namespace, search="beta", expand=["tags", "likes"])))
    assert expanded.likes == 0 and expanded.tags is not None and "license:apache-2.0" in expanded.tags
    raw = httpx.get(
        f"{server.url}/api/models", params={"author": namespace, "sort": "createdAt", "direction": "1"}
    )
    assert [m["id"].split("/")[1] for m in raw.json()] == ["alpha", "beta", "gamma"]
    for params in ({"license": "mit"}, {"library": "transformers"}, {"language": "fr"}):
        answer = httpx.get(f"{server.url}/api/models", params={"author": namespace, **params}).json()
        assert answer, params
    unknown = httpx.get(f"{server.url}/api/models", params={"expand": "nonsense"})
    assert unknown.status_code == 400


def test_a_private_repo_is_listed_only_for_those_who_may_read_it(server: Server, namespace: str) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(f"{namespace}/hidden", private=True)
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n", path_in_repo="README.md", repo_id=f"{namespace}/hidden"
    )
    anonymous = HfApi(endpoint=server.url, token=False)
    assert [m.id for m in anonymous.list_models(author=namespace, filter="license:mit")] == []
    assert [m.id for m in api.list_models(author=namespace, filter="license:mit")] == [f"{namespace}/hidden"]


def test_past_a_gate_only_what_anyone_may_see_is_reported(server: Server, namespace: str) -> None:
    # A card and a config are file content: behind a gate the caller has not passed, model_info and
    # listings keep them back (and a filter on them does not match), as /resolve keeps the files back.
    api = HfApi(endpoint=server.url, token=server.token)
    repo = f"{namespace}/gated"
    api.create_repo(repo)
    api.create_commit(
        repo,
        [
            CommitOperationAdd("README.md", README),
            CommitOperationAdd("config.json", CONFIG),
            CommitOperationAdd("model.safetensors", safetensors({"w": ("F32", [3])})),
        ],
        commit_message="gated model",
    )
    api.update_repo_settings(repo, gated="manual")
    token = weightyard_cli("token", "create", "--user", namespace, "--name", "t", "--data", str(server.data))
    assert token.returncode == 0, token.stderr
    owner = HfApi(endpoint=server.url, token=token.stdout.strip().splitlines()[-1])
    anonymous = HfApi(endpoint=server.url, token=False)
    info = anonymous.model_info(repo)
    assert (info.card_data, info.config, info.safetensors, info.pipeline_tag) == (None, None, None, None)
    assert info.tags == ["safetensors"]
    assert [m.id for m in anonymous.list_models(author=namespace, filter="license:mit")] == []
    [listed] = list(anonymous.list_models(author=namespace, cardData=True))
    assert listed.card_data is None and listed.tags == ["safetensors"]
    # The user whose namespace holds the repo is past the gate.
    info = owner.model_info(repo)
    assert info.card_data is not None and info.safetensors is not None and info.safetensors.total == 3
    assert [m.id for m in owner.list_models(author=namespace, filter="license:mit")] == [repo]


def test_concurrent_downloads_are_all_counted(server: Server, repo_name: str) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo_name)
    url = f"{server.url}/{repo_name}/resolve/main/config.json"
    statuses: list[int] = []

    def fetch() -> None:
        for _ in range(4):
            statuses.append(httpx.get(url).status_code)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert statuses == [200] * 24
    assert downloads_once_saved(api, repo_name, 24) == 24
