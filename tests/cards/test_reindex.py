"""`weightyard reindex` fills in what commits derive, for repos committed before a hub version derived it."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from tests.support import weightyard_cli

from weightyard.config import Settings
from weightyard.db import tables
from weightyard.hub import Hub
from weightyard.repos import AddFile
from weightyard.repos.listing import ListQuery, list_page

HEADER = b'{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}'
WEIGHTS = len(HEADER).to_bytes(8, "little") + HEADER + b"\0" * 24
BRANCH_WEIGHTS = (4).to_bytes(8, "little") + b"[1 ]"


def test_reindex_restores_cards_facts_tensor_summaries_and_the_listing_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    hub = Hub.open(Settings(data=data))
    admin = hub.accounts.authenticate(hub.admin_token())
    repo = hub.repos.create_repo(admin, "model", "admin", "old", private=False)
    operations = []
    for path, content in {
        "README.md": b"---\nlicense: mit\n---\n# Old\n",
        "config.json": b'{"model_type": "bert"}',
        "model.safetensors": WEIGHTS,
    }.items():
        ingest = hub.repos.start_ingest()
        ingest.write(content)
        add = hub.repos.record_content(admin, ingest.finish())
        operations.append(AddFile(path, add.sha256, add.size, add.lfs))
    hub.repos.commit(admin, repo, "main", operations, "before facts were derived")
    hub.repos.create_branch(admin, repo, "dev", None)
    ingest = hub.repos.start_ingest()
    ingest.write(BRANCH_WEIGHTS)
    add = hub.repos.record_content(admin, ingest.finish())
    hub.repos.commit(admin, repo, "dev", [AddFile("dev.safetensors", add.sha256, add.size, add.lfs)], "dev")
    weights = hub.repos.files(hub.repos.resolve(repo, "main"))["model.safetensors"]
    assert hub.facts.tensor_summary(weights.sha256) is not None
    assert hub.facts.tensor_summary(add.sha256) is not None
    # Test set-up: forget everything derived, as a hub from before these tables would have it.
    with hub.engine.begin() as conn:
        for table in (tables.cards, tables.file_facts, tables.repo_tags):
            conn.execute(sa.delete(table))
        conn.execute(sa.update(tables.repos).values(card_sha256=None, library_name=None))
    query = ListQuery("model", tags=("license:mit",))
    assert list_page(hub.engine, None, query, lambda repo: True).items == []

    result = weightyard_cli("reindex", "--data", str(data))
    assert result.returncode == 0, result.stderr
    assert "Reindexed 1 repos" in result.stdout
    [listed] = list_page(hub.engine, None, query, lambda repo: True).items
    assert listed.repo.repo_id == "admin/old"
    assert listed.library_name == "transformers"
    facts = hub.facts.describe(hub.repos.files(hub.repos.resolve(repo, "main")))
    assert facts.config == {"model_type": "bert"}
    assert facts.card_data == {"license": "mit"}
    assert facts.safetensors == {"parameters": {"F32": 6}, "total": 6}
    weights = hub.repos.files(hub.repos.resolve(repo, "main"))["model.safetensors"]
    assert hub.facts.tensor_summary(weights.sha256) == {
        "tensorCount": 1,
        "parameters": 6,
        "tensors": [{"name": "w", "dtype": "F32", "shape": [2, 3], "parameters": 6}],
        "truncated": False,
        "metadata": {},
    }
    # Other branches' files get their file facts too: their file pages show the tensor summary.
    assert hub.facts.tensor_summary(add.sha256) == {"error": "the header is not a JSON object"}
