"""The web pages in process: JSON views, search, card safety, access control, files and commits."""

from __future__ import annotations

import hashlib
import json
import math
import re

import pytest
import sqlalchemy as sa

from weightyard.api import web
from weightyard.api.web import SESSION_COOKIE
from weightyard.cards import render_markdown
from weightyard.db import tables
from weightyard.errors import InvalidCardMetadata

from .conftest import LocalHub, card

JSON = {"Accept": "application/json"}

DEMO_CARD = card(
    """
license: apache-2.0
pipeline_tag: sentence-similarity
base_model: nreimers/MiniLM-L6-H384-uncased
library_name: sentence-transformers
language: en
tags: [sentence-transformers, feature-extraction]
datasets: [s2orc, ms_marco]
""",
    "# Tiny MiniLM\n\nSee [the config](config.json) and ![diagram](docs/diagram.png).\n",
)


def safetensors_bytes(
    tensors: dict[str, tuple[str, list[int]]], metadata: dict[str, str] | None = None
) -> bytes:
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * 4
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + b"\0" * offset


@pytest.fixture
def demo(local: LocalHub) -> LocalHub:
    local.publish(
        "acme/tiny-minilm",
        {
            "README.md": DEMO_CARD,
            "config.json": b'{"hidden_size": 4}\n',
            "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}\n',
            "model.safetensors": safetensors_bytes(
                {"embeddings.weight": ("F32", [10, 4]), "pooler.bias": ("F32", [4])}, {"format": "pt"}
            ),
        },
    )
    return local


# ---------------------------------------------------------------------------------------------- JSON views


def test_every_page_is_json_with_the_suffix_and_with_the_accept_header(demo: LocalHub) -> None:
    pages = [
        "/",
        "/models",
        "/acme/tiny-minilm",
        "/acme/tiny-minilm/tree/main",
        "/acme/tiny-minilm/tree/main/1_Pooling",
        "/acme/tiny-minilm/blob/main/model.safetensors",
        "/acme/tiny-minilm/commits/main",
        "/sign-in",
    ]
    for url in pages:
        by_header = demo.client.get(url, headers=JSON)
        assert by_header.status_code == 200, url
        assert by_header.headers["content-type"] == "application/json", url
        suffixed = "/.json" if url == "/" else url + ".json"
        assert demo.client.get(suffixed).json() == by_header.json(), url
        assert demo.client.get(url).headers["content-type"].startswith("text/html"), url


def test_commit_page_is_json_with_the_suffix(demo: LocalHub) -> None:
    head = demo.client.get("/acme/tiny-minilm.json").json()["commit"]["id"]
    page = demo.client.get(f"/acme/tiny-minilm/commit/{head}.json")
    assert page.json()["commit"]["id"] == head


def test_a_file_named_json_is_shown_as_html_and_json_needs_a_second_suffix(demo: LocalHub) -> None:
    html = demo.client.get("/acme/tiny-minilm/blob/main/config.json")
    assert html.headers["content-type"].startswith("text/html")
    data = demo.client.get("/acme/tiny-minilm/blob/main/config.json.json").json()
    assert data["path"] == "config.json"
    assert data["view"] == {"kind": "text", "text": '{"hidden_size": 4}\n', "truncated": False}


def test_a_missing_page_is_a_json_error_when_json_was_asked_for(demo: LocalHub) -> None:
    response = demo.client.get("/acme/nothing-here.json")
    assert response.status_code == 404
    assert response.json()["code"] == "RepoNotFound"


# ---------------------------------------------------------------------------------------------- listing


def test_search_matches_name_author_tag_license_and_task(demo: LocalHub) -> None:
    demo.publish(
        "other/gpt-small", {"README.md": card("license: mit\npipeline_tag: text-generation\ntags: [llm]", "")}
    )
    demo.publish("other/no-card", {"config.json": b"{}"})

    def ids(query: str) -> list[str]:
        return [m["id"] for m in demo.client.get(f"/models.json?{query}").json()["models"]]

    assert ids("search=minilm") == ["acme/tiny-minilm"]
    assert ids("search=ACME") == ["acme/tiny-minilm"]
    assert ids("search=feature-extraction") == ["acme/tiny-minilm"]
    assert ids("search=mit") == ["other/gpt-small"]
    assert ids("search=text-generation") == ["other/gpt-small"]
    assert ids("search=tiny+apache") == ["acme/tiny-minilm"]
    assert ids("search=tiny+mit") == []
    assert ids("tag=llm") == ["other/gpt-small"]
    assert ids("license=apache-2.0") == ["acme/tiny-minilm"]
    assert ids("task=sentence-similarity") == ["acme/tiny-minilm"]
    assert sorted(ids("author=other")) == ["other/gpt-small", "other/no-card"]


def test_models_sort_by_name_downloads_and_recent(demo: LocalHub) -> None:
    popular = demo.publish("zeta/popular", {"config.json": b"{}"})
    for _ in range(3):
        demo.hub.repos.count_download(popular)
    demo.hub.repos.downloads.flush()  # what the server's background thread does every second
    demo.publish("beta/fresh", {"config.json": b"{}"})

    def ids(sort: str) -> list[str]:
        return [m["id"] for m in demo.client.get(f"/models.json?sort={sort}").json()["models"]]

    assert ids("name") == ["acme/tiny-minilm", "beta/fresh", "zeta/popular"]
    assert ids("downloads")[0] == "zeta/popular"
    assert ids("recent")[0] == "beta/fresh"
    assert demo.client.get("/models.json?sort=stars").status_code == 400


def test_models_are_paginated_with_links_that_keep_the_query(local: LocalHub) -> None:
    for index in range(25):
        local.create(f"acme/model-{index:02d}")
    first = local.client.get("/models.json?sort=name&search=model").json()
    assert first["total"] == 25
    assert len(first["models"]) == 20
    assert (first["page"], first["links"]["previous"]) == (1, None)
    assert first["links"]["next"].startswith("/models.json?sort=name&search=model&cursor=")
    second = local.client.get(first["links"]["next"]).json()
    assert [m["id"] for m in second["models"]] == [f"acme/model-{i}" for i in range(20, 25)]
    assert (second["page"], second["total"], second["links"]["next"]) == (2, 25, None)
    back = local.client.get(second["links"]["previous"]).json()
    assert (back["models"], back["page"], back["links"]["previous"]) == (first["models"], 1, None)
    assert local.client.get(back["links"]["next"]).json()["models"] == second["models"]
    for cursor in ("2", "junk", second["links"]["previous"].rsplit("=", 1)[1][:-1]):
        assert local.client.get(f"/models?sort=name&search=model&cursor={cursor}").status_code == 400
    # a cursor belongs to the order it was walked in
    assert local.client.get(first["links"]["next"].replace("sort=name", "sort=recent")).status_code == 400


# ---------------------------------------------------------------------------------------------- model page


def test_model_page_shows_card_facts_files_refs_and_snippets(demo: LocalHub) -> None:
    data = demo.client.get("/acme/tiny-minilm.json").json()
    assert data["card"]["facts"] == {
        "license": ["apache-2.0"],
        "base_model": ["nreimers/MiniLM-L6-H384-uncased"],
        "task": "sentence-similarity",
        "library": "sentence-transformers",
        "tags": ["sentence-transformers", "feature-extraction"],
        "datasets": ["s2orc", "ms_marco"],
        "languages": ["en"],
    }
    assert "<h1>Tiny MiniLM</h1>" in data["card"]["html"]
    assert [f["path"] for f in data["files"]] == [
        "1_Pooling",
        ".gitattributes",
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert data["refs"]["branches"][0]["name"] == "main"
    assert data["commitCount"] == 2
    assert (
        'snapshot_download("acme/tiny-minilm", endpoint="http://testserver")'
        in data["snippets"]["huggingface_hub"]
    )
    assert 'AutoModel.from_pretrained("acme/tiny-minilm")' in data["snippets"]["transformers"]
    assert data["snippets"]["weightyard"] == "weightyard pull acme/tiny-minilm --endpoint http://testserver\n"
    html = demo.client.get("/acme/tiny-minilm").text
    assert "sentence-similarity" in html
    assert "weightyard pull acme/tiny-minilm" in html


def test_base_models_link_to_this_hub_only_when_the_viewer_can_read_them(local: LocalHub) -> None:
    local.publish("acme/base", {"config.json": b"{}"})
    local.publish("acme/hidden-base", {"config.json": b"{}"}, private=True)
    local.publish(
        "acme/child",
        {"README.md": card("base_model: [acme/base, acme/hidden-base, elsewhere/model, not a repo id]", "")},
    )
    expected = [
        {"id": "acme/base", "url": "/acme/base"},
        {"id": "acme/hidden-base", "url": None},
        {"id": "elsewhere/model", "url": None},
        {"id": "not a repo id", "url": None},
    ]
    assert local.client.get("/acme/child.json").json()["baseModels"] == expected
    expected[1]["url"] = "/acme/hidden-base"
    assert local.client.get("/acme/child.json", headers=local.bearer).json()["baseModels"] == expected
    assert '<a href="/acme/base">acme/base</a>' in local.client.get("/acme/child").text


def test_scan_verdicts_and_signature_status_are_shown(demo: LocalHub) -> None:
    files = demo.client.get("/acme/tiny-minilm/tree/main.json").json()["files"]
    weights = next(f for f in files if f["path"] == "model.safetensors")
    assert weights["scan"] == "safe"
    assert weights["signature"] == "unsigned"
    checks = demo.client.get("/acme/tiny-minilm.json").json()["checks"]
    assert checks == {"scan": "safe", "signature": "unsigned"}
    for url in (
        "/acme/tiny-minilm",
        "/acme/tiny-minilm/tree/main",
        "/acme/tiny-minilm/blob/main/config.json",
    ):
        html = demo.client.get(url).text
        assert "not scanned yet" not in html
        assert "safe" in html
        assert "unsigned" in html


def test_relative_card_links_point_into_the_repo_and_remote_images_are_dropped() -> None:
    html = render_markdown(
        "[config](config.json) [up](../../etc/passwd) [site](https://example.org) ![local](img/a.png) "
        "![remote](https://tracker.example/pixel.gif) [anchor](#usage)",
        "/acme/tiny",
        "refs/pr/1",
    )
    assert 'href="/acme/tiny/blob/refs%2Fpr%2F1/config.json"' in html
    assert 'src="/acme/tiny/resolve/refs%2Fpr%2F1/img/a.png"' in html
    assert "etc/passwd" not in html
    assert 'href="https://example.org"' in html
    assert "tracker.example" not in html
    assert 'href="#usage"' in html


def test_card_yaml_is_data_only_and_unreadable_metadata_refuses_the_commit(local: LocalHub) -> None:
    repo = local.create("acme/yaml-object")
    for front_matter, reason in (
        ("license: !!python/object/apply:os.system ['true']", "not valid YAML"),
        ("- just\n- a list", "not a YAML mapping"),
    ):
        with pytest.raises(InvalidCardMetadata) as refused:
            local.commit(repo, {"README.md": card(front_matter, "Hi")})
        assert reason in refused.value.message
    assert local.client.get("/acme/yaml-object.json").json()["card"] is None


HOSTILE_CARD = b"""---
license: mit
tags: ['<script>alert(1)</script>']
---
# Innocent

<script>alert("card")</script>
<img src=x onerror="alert('img')">
<a href="javascript:alert('raw')">raw link</a>
[md link](javascript:alert('md'))
[spaced](  javascript:alert('spaced'))
[entity](jav&#x61;script:alert('entity'))
<iframe src="https://evil.example"></iframe>
<svg onload="alert('svg')"></svg>
"""


def test_hostile_card_is_rendered_inert(local: LocalHub) -> None:
    local.publish("acme/hostile", {"README.md": HOSTILE_CARD})
    html = local.client.get("/acme/hostile").text
    card_html = local.client.get("/acme/hostile.json").json()["card"]["html"]
    for page in (html, card_html):
        assert "<script>alert" not in page
        assert not re.search(r"<[^>]+\son\w+\s*=", page), "an event handler attribute survived"
        assert not re.search(r"<a\s[^>]*href\s*=\s*[\"']?\s*javascript:", page, re.IGNORECASE)
        assert "<iframe" not in page
        assert "<svg" not in page
    assert "&lt;script&gt;" in card_html  # shown as text, not dropped silently
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the tag from the YAML, escaped by the template


def test_pages_forbid_inline_scripts_and_remote_resources(demo: LocalHub) -> None:
    headers = demo.client.get("/acme/tiny-minilm").headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


# ---------------------------------------------------------------------------------------------- files


def test_tree_lists_a_subfolder_with_breadcrumbs(demo: LocalHub) -> None:
    data = demo.client.get("/acme/tiny-minilm/tree/main/1_Pooling.json").json()
    assert [f["path"] for f in data["files"]] == ["1_Pooling/config.json"]
    assert [c["name"] for c in data["breadcrumbs"]] == ["tiny-minilm", "1_Pooling"]
    assert demo.client.get("/acme/tiny-minilm/tree/main/missing").status_code == 404


def test_long_listings_are_cut_but_keep_their_totals(
    local: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "LIST_ROWS", 10)
    repo = local.create("acme/many-files")
    oid = local.commit(repo, {f"shard-{index:02d}.txt": str(index).encode() for index in range(12)})
    tree = local.client.get("/acme/many-files/tree/main.json").json()
    assert (len(tree["files"]), tree["fileCount"]) == (10, 13), "the shards and the .gitattributes"
    assert "Showing the first 10 of 13 entries." in local.client.get("/acme/many-files/tree/main").text
    commit = local.client.get(f"/acme/many-files/commit/{oid}.json").json()
    assert (len(commit["changes"]), commit["counts"]["added"]) == (10, 12)
    assert "Showing the first 10 of 12 changed files." in local.client.get(commit["commit"]["url"]).text


def test_a_branch_with_a_slash_is_one_percent_encoded_segment(demo: LocalHub) -> None:
    repo = demo.hub.repos.get_repo(demo.admin, "model", "acme", "tiny-minilm")
    demo.hub.repos.create_branch(demo.admin, repo, "feature/x", None)
    demo.commit(repo, {"new.txt": b"new\n"}, revision="feature/x")
    data = demo.client.get("/acme/tiny-minilm/tree/feature%2Fx.json").json()
    assert "new.txt" in [f["path"] for f in data["files"]]
    new = next(f for f in data["files"] if f["path"] == "new.txt")
    assert new["url"] == "/acme/tiny-minilm/blob/feature%2Fx/new.txt"
    assert demo.client.get(new["url"] + ".json").json()["view"]["text"] == "new\n"
    branches = demo.client.get("/acme/tiny-minilm.json").json()["refs"]["branches"]
    assert {"name": "feature/x", "url": "/acme/tiny-minilm/tree/feature%2Fx"}.items() <= branches[0].items()


def test_text_file_is_shown_escaped_with_a_download_link(local: LocalHub) -> None:
    local.publish("acme/texts", {"notes.html": b"<script>alert(1)</script>\n"})
    html = local.client.get("/acme/texts/blob/main/notes.html").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert 'href="/acme/texts/resolve/main/notes.html"' in html


def test_large_text_file_is_cut_at_the_preview_limit(local: LocalHub) -> None:
    local.publish("acme/big-text", {"big.txt": b"a" * (600 * 1024)})
    view = local.client.get("/acme/big-text/blob/main/big.txt.json").json()["view"]
    assert view["truncated"] is True
    assert len(view["text"]) == 512 * 1024


def test_safetensors_file_shows_its_tensor_list(demo: LocalHub) -> None:
    data = demo.client.get("/acme/tiny-minilm/blob/main/model.safetensors.json").json()
    assert data["view"]["format"] == "Safetensors"
    assert data["view"]["safetensors"] == {
        "tensorCount": 2,
        "parameters": 44,
        "tensors": [
            {"name": "embeddings.weight", "dtype": "F32", "shape": [10, 4], "parameters": 40},
            {"name": "pooler.bias", "dtype": "F32", "shape": [4], "parameters": 4},
        ],
        "truncated": False,
        "metadata": {"format": "pt"},
    }
    assert "embeddings.weight" in demo.client.get("/acme/tiny-minilm/blob/main/model.safetensors").text


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ((2**40).to_bytes(8, "little") + b"\0" * 8, "over the"),
        ((100).to_bytes(8, "little") + b"{}", "past the end"),
        ((4).to_bytes(8, "little") + b"\0nop", "not valid JSON"),
        ((2).to_bytes(8, "little") + b"[]", "not a JSON object"),
        ((29).to_bytes(8, "little") + b'{"t": {"shape": [-1, "big"]}}', "no valid shape"),
        ((119).to_bytes(8, "little") + b'{"t": {"shape": [' + b"1," * 49 + b"1]}}", "no valid shape"),
    ],
)
def test_malformed_safetensors_header_is_described_not_fatal(
    local: LocalHub, content: bytes, error: str
) -> None:
    local.publish("acme/broken", {"model.safetensors": content})
    response = local.client.get("/acme/broken/blob/main/model.safetensors.json")
    assert response.status_code == 200
    assert error in response.json()["view"]["safetensors"]["error"]
    assert local.client.get("/acme/broken/blob/main/model.safetensors").status_code == 200


def _tensor_rows(local: LocalHub, content: bytes) -> list[dict[str, object]]:
    sha256 = hashlib.sha256(content).hexdigest()
    with local.hub.engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.file_facts.c.data).where(
                tables.file_facts.c.sha256 == sha256, tables.file_facts.c.kind == "tensors"
            )
        ).scalars()
        return [json.loads(row) for row in rows]


def test_safetensors_page_shows_the_summary_stored_at_commit_and_parses_nothing(demo: LocalHub) -> None:
    marker = {
        "tensorCount": 7,
        "parameters": 123456789,
        "tensors": [{"name": "stored.at.commit", "dtype": "BF16", "shape": [3], "parameters": 3}],
        "truncated": True,
        "metadata": {"origin": "the stored row"},
    }
    # Test set-up: overwrite the stored summary; the page can show it only if it reads the stored row.
    with demo.hub.engine.begin() as conn:
        updated = conn.execute(
            sa.update(tables.file_facts)
            .where(tables.file_facts.c.kind == "tensors")
            .values(data=json.dumps(marker))
        )
        assert updated.rowcount == 1
    data = demo.client.get("/acme/tiny-minilm/blob/main/model.safetensors.json").json()
    assert data["view"]["safetensors"] == marker
    html = demo.client.get("/acme/tiny-minilm/blob/main/model.safetensors").text
    assert "stored.at.commit" in html
    assert "123,456,789 parameters" in html
    assert "embeddings.weight" not in html


def test_malformed_safetensors_header_error_is_stored_at_commit_and_shown(local: LocalHub) -> None:
    content = (29).to_bytes(8, "little") + b'{"t": {"shape": [-1, "big"]}}'
    local.publish("acme/broken", {"model.safetensors": content})
    error = {"error": "tensor 't' has no valid shape"}
    assert _tensor_rows(local, content) == [error]
    assert (
        local.client.get("/acme/broken/blob/main/model.safetensors.json").json()["view"]["safetensors"]
        == error
    )
    html = local.client.get("/acme/broken/blob/main/model.safetensors").text
    assert "The safetensors header could not be read: tensor &#39;t&#39; has no valid shape" in html


def test_safetensors_committed_before_summaries_were_stored_says_not_available_yet(demo: LocalHub) -> None:
    # Test set-up: forget the stored summary, as a hub from before tensor summaries would have it.
    with demo.hub.engine.begin() as conn:
        conn.execute(sa.delete(tables.file_facts).where(tables.file_facts.c.kind == "tensors"))
    data = demo.client.get("/acme/tiny-minilm/blob/main/model.safetensors.json").json()
    assert data["view"] == {"kind": "binary", "format": "Safetensors", "safetensors": None}
    html = demo.client.get("/acme/tiny-minilm/blob/main/model.safetensors").text
    assert "The tensor summary is not available yet" in html
    assert "embeddings.weight" not in html


def test_other_binary_files_are_described_by_format(local: LocalHub) -> None:
    local.publish(
        "acme/binaries", {"weights.bin": b"PK\x03\x04\0\0", "model.gguf": b"GGUF\0\0\0\3", "blob": b"\0\1"}
    )
    formats = {
        path: local.client.get(f"/acme/binaries/blob/main/{path}.json").json()["view"]["format"]
        for path in ("weights.bin", "model.gguf", "blob")
    }
    assert formats == {"weights.bin": "PyTorch checkpoint (pickle)", "model.gguf": "GGUF", "blob": "Binary"}


# ---------------------------------------------------------------------------------------------- commits


def test_commit_page_diffs_the_file_list_against_the_parent(demo: LocalHub) -> None:
    repo = demo.hub.repos.get_repo(demo.admin, "model", "acme", "tiny-minilm")
    oid = demo.commit(
        repo, {"config.json": b'{"hidden_size": 8}\n', "extra.txt": b"x"}, deletions=("README.md",)
    )
    data = demo.client.get(f"/acme/tiny-minilm/commit/{oid}.json").json()
    assert [(c["status"], c["path"]) for c in data["changes"]] == [
        ("removed", "README.md"),
        ("modified", "config.json"),
        ("added", "extra.txt"),
    ]
    assert data["counts"] == {"added": 1, "modified": 1, "removed": 1}
    removed = data["changes"][0]
    assert removed["url"] == f"/acme/tiny-minilm/blob/{data['parent']['id']}/README.md"
    assert demo.client.get(removed["url"]).status_code == 200


def test_commits_page_lists_history_newest_first(demo: LocalHub) -> None:
    data = demo.client.get("/acme/tiny-minilm/commits/main.json").json()
    assert [c["title"] for c in data["commits"]] == ["Add acme/tiny-minilm", "initial commit"]
    assert demo.client.get("/acme/tiny-minilm/commits/no-such-branch").status_code == 404


def test_a_new_repo_and_its_initial_commit_render_as_pages(local: LocalHub) -> None:
    local.create("acme/empty")
    first = local.client.get("/acme/empty.json").json()["commit"]["id"]
    assert "has no card" in local.client.get("/acme/empty").text
    tree = local.client.get("/acme/empty/tree/main.json").json()
    assert [f["path"] for f in tree["files"]] == [".gitattributes"]
    page = local.client.get(f"/acme/empty/commit/{first}")
    assert "none (first commit)" in page.text
    assert local.client.get(f"/acme/empty/commit/{first}.json").json()["counts"]["added"] == 1


# ---------------------------------------------------------------------------------------------- access


def test_private_repo_is_a_404_page_and_unlisted_for_anyone_without_access(local: LocalHub) -> None:
    local.publish("admin/secret", {"README.md": b"# Secret plans\n", "config.json": b"{}"}, private=True)
    urls = [
        "/admin/secret",
        "/admin/secret/tree/main",
        "/admin/secret/blob/main/README.md",
        "/admin/secret/commits/main",
    ]
    for url in urls:
        response = local.client.get(url)
        assert response.status_code == 404, url
        assert "Secret plans" not in response.text
        assert response.status_code == local.client.get("/admin/never-existed").status_code
    assert local.client.get("/models.json").json()["models"] == []
    assert "admin/secret" not in local.client.get("/models?search=secret").text
    for url in urls:
        assert local.client.get(url, headers=local.bearer).status_code == 200, url
    assert [m["id"] for m in local.client.get("/models.json", headers=local.bearer).json()["models"]] == [
        "admin/secret"
    ]


def test_another_users_token_cannot_see_a_private_repo(local: LocalHub) -> None:
    local.publish("admin/secret", {"README.md": b"# Secret\n"}, private=True)
    local.client.post("/sign-in", data={"token": local.user_token("bob")})
    assert local.client.get("/admin/secret").status_code == 404
    assert local.client.get("/sign-in.json").json()["user"] == "bob"


def test_gated_repo_shows_its_files_but_no_contents_until_access_is_granted(local: LocalHub) -> None:
    repo = local.publish(
        "acme/gated",
        {"README.md": card("license: llama3", "# Gated card"), "weights.txt": b"secret weights\n"},
    )
    local.hub.repos.update_settings(local.admin, repo, private=None, gated="auto")
    bob = {"Authorization": f"Bearer {local.user_token('bob')}"}

    page = local.client.get("/acme/gated.json", headers=bob).json()
    assert page["access"]["granted"] is False
    assert page["card"] is None
    assert [(f["path"], f["download"]) for f in page["files"]] == [
        (".gitattributes", None),
        ("README.md", None),
        ("weights.txt", None),
    ]
    assert local.client.get("/models.json", headers=bob).json()["models"][0]["license"] == []
    blob = local.client.get("/acme/gated/blob/main/weights.txt.json", headers=bob).json()
    assert blob["view"] == {"kind": "gated"}
    assert blob["file"]["size"] == 15
    for url in ("/acme/gated", "/acme/gated/blob/main/weights.txt", "/acme/gated/blob/main/README.md"):
        html = local.client.get(url, headers=bob).text
        assert "secret weights" not in html
        assert "Gated card" not in html
        assert "Request access" in html
    assert "to request access" in local.client.get("/acme/gated").text

    asked = local.client.post("/acme/gated/ask-access", headers=bob, follow_redirects=False)
    assert asked.status_code == 303
    assert asked.headers["location"] == "/acme/gated?requested=accepted"
    page = local.client.get("/acme/gated.json", headers=bob).json()
    assert page["access"]["granted"] is True
    assert "<h1>Gated card</h1>" in page["card"]["html"]
    assert local.client.get("/acme/gated/blob/main/weights.txt.json", headers=bob).json()["view"]["text"] == (
        "secret weights\n"
    )


def test_asking_for_access_needs_a_signed_in_viewer_and_a_gated_repo(local: LocalHub) -> None:
    local.publish("acme/open", {"config.json": b"{}"})
    assert local.client.post("/acme/open/ask-access").status_code == 401
    assert local.client.post("/acme/open/ask-access", headers=local.bearer).status_code == 400
    assert local.client.post("/acme/missing/ask-access", headers=local.bearer).status_code == 404


def test_sign_in_sets_an_httponly_lax_cookie_and_sign_out_clears_it(local: LocalHub) -> None:
    local.publish("admin/secret", {"README.md": b"# Secret plans\n"}, private=True)
    response = local.client.post(
        "/sign-in", data={"token": local.token, "next": "/admin/secret"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/secret"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    page = local.client.get("/admin/secret")
    assert page.status_code == 200
    assert "Secret plans" in page.text
    assert page.headers["cache-control"] == "private, no-store"
    assert "You are signed in as <strong>admin</strong>" in local.client.get("/sign-in").text
    signed_out = local.client.post("/sign-out", follow_redirects=False)
    assert signed_out.status_code == 303
    assert 'weightyard_token=""' in signed_out.headers["set-cookie"]
    assert local.client.get("/admin/secret").status_code == 404


def test_sign_in_with_a_wrong_token_is_refused_without_echoing_it(local: LocalHub) -> None:
    response = local.client.post("/sign-in", data={"token": "wy_not-a-real-token"})
    assert response.status_code == 401
    assert "not valid" in response.text
    assert "wy_not-a-real-token" not in response.text
    assert "set-cookie" not in response.headers


def test_sign_in_answers_json_to_scripts(local: LocalHub) -> None:
    response = local.client.post("/sign-in", data={"token": local.token}, headers=JSON)
    assert response.json() == {"signedIn": True, "user": "admin", "next": "/"}
    assert "HttpOnly" in response.headers["set-cookie"]
    refused = local.client.post("/sign-in", data={"token": "wy_wrong"}, headers=JSON)
    assert refused.status_code == 401
    assert refused.json()["error"] == "That token is not valid."


def test_sign_in_only_redirects_within_the_site(local: LocalHub) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = local.client.post(
            "/sign-in", data={"token": local.token, "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/", target


def test_sign_in_and_sign_out_refuse_forms_posted_from_another_site(local: LocalHub) -> None:
    cross = {"Origin": "https://evil.example"}
    assert local.client.post("/sign-in", data={"token": local.token}, headers=cross).status_code == 403
    local.client.post("/sign-in", data={"token": local.token})
    assert local.client.post("/sign-out", headers=cross).status_code == 403
    assert local.client.post("/sign-out", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert local.client.get("/sign-in.json").json()["signedIn"] is True
    same = {"Origin": "http://testserver"}
    assert local.client.post("/sign-out", headers=same, follow_redirects=False).status_code == 303


def test_a_stale_cookie_reads_as_signed_out(local: LocalHub) -> None:
    local.client.cookies.set(SESSION_COOKIE, "wy_revoked")
    page = local.client.get("/sign-in.json")
    assert page.status_code == 200
    assert page.json()["signedIn"] is False


# ---------------------------------------------------------------------------------------------- routing


def test_api_and_download_routes_are_not_shadowed_by_pages(demo: LocalHub) -> None:
    listing = demo.client.get("/api/models")
    assert listing.headers["content-type"] == "application/json"
    assert listing.json()[0]["id"] == "acme/tiny-minilm"
    download = demo.client.get("/acme/tiny-minilm/resolve/main/config.json")
    assert download.content == b'{"hidden_size": 4}\n'
    for url in ("/api/nothing", "/api/some/thing"):
        missing = demo.client.get(url)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/json"


def test_a_url_that_cannot_name_a_repo_is_not_found(local: LocalHub) -> None:
    for url in ("/-/x", "/a..b/c", "/ns/name--x", "/ns/bad%20name/tree/main"):
        assert local.client.get(url).status_code == 404, url


def test_static_files_are_served_and_nothing_else_from_the_folder(local: LocalHub) -> None:
    css = local.client.get("/-/static/web.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert local.client.get("/-/static/..%2Ftemplates%2Fbase.html").status_code == 404
    assert local.client.get("/-/static/nope.css").status_code == 404
