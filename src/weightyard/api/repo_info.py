"""`model_info` and `list_models` answers in the Hub's shape, from what was stored at commit time.

Every field is either a column, a stored fact (card, config, safetensors counts) or the commit's file list;
nothing in a request opens a file. `expand` picks fields as on the Hub (checked by repos/expand.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import Request

from weightyard.api.common import hub_of, iso, principal_of
from weightyard.cards import StoredCard
from weightyard.repos import Commit, FileEntry, Repo, lfs_pointer
from weightyard.repos.facts import RepoFacts, public_tags
from weightyard.repos.listing import ListedRepo

# `expand` values (see repos/expand.py) this hub has no data for answer null, as the Hub does for a model
# without them.
_NO_DATA = (
    "evalResults", "gguf", "inference", "inferenceProviderMapping", "mask_token", "resourceGroup",
    "transformersInfo", "widgetData",
)  # fmt: skip
# What a listing answers without `full` or `expand` (the Hub's default listing fields, and a few columns).
LIST_FIELDS = (
    "author", "createdAt", "downloads", "gated", "lastModified", "library_name", "likes", "pipeline_tag",
    "private", "sha", "tags", "trendingScore",
)  # fmt: skip
# `full=true` adds these; `cardData=true` adds cardData.
FULL_FIELDS = (*LIST_FIELDS, "disabled", "siblings")
# model_info without `expand`: everything this hub has.
INFO_FIELDS = (*FULL_FIELDS, "cardData", "config", "safetensors", "usedStorage", "spaces", "model-index")


def siblings(files: dict[str, FileEntry], blobs: bool) -> list[dict[str, Any]]:
    result = []
    for path, entry in files.items():
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            sibling["size"] = entry.size
            sibling["blobId"] = entry.git_oid
            if entry.lfs:
                pointer = lfs_pointer(entry.sha256, entry.size)
                sibling["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": len(pointer)}
        result.append(sibling)
    return result


def _base_models(facts: RepoFacts) -> dict[str, Any] | None:
    relations = [
        tag.split(":", 2) for tag in facts.tags if tag.startswith("base_model:") and tag.count(":") >= 2
    ]
    if not relations:
        return None
    return {"relation": relations[0][1], "models": [{"id": parts[2]} for parts in relations]}


def describe(
    repo: Repo,
    sha: str | None,
    fields: Iterable[str],
    files: Callable[[], dict[str, FileEntry]],
    facts: Callable[[], RepoFacts],
    blobs: bool = False,
) -> dict[str, Any]:
    """The repo's answer with `fields`; `files` and `facts` are called only when a field needs them."""
    wanted = list(fields)
    cache: dict[str, Any] = {}

    def the_files() -> dict[str, FileEntry]:
        if "files" not in cache:
            cache["files"] = files()
        result: dict[str, FileEntry] = cache["files"]
        return result

    def the_facts() -> RepoFacts:
        if "facts" not in cache:
            cache["facts"] = facts()
        result: RepoFacts = cache["facts"]
        return result

    values: dict[str, Callable[[], Any]] = {
        "author": lambda: repo.namespace,
        "sha": lambda: sha,
        "lastModified": lambda: iso(repo.updated_at),
        "createdAt": lambda: iso(repo.created_at),
        "private": lambda: repo.private,
        "gated": lambda: repo.gated or False,
        "disabled": lambda: False,
        "downloads": lambda: repo.downloads,
        "downloadsAllTime": lambda: repo.downloads,
        "likes": lambda: repo.likes,
        "trendingScore": lambda: 0,
        "tags": lambda: the_facts().tags,
        "pipeline_tag": lambda: the_facts().pipeline_tag,
        "library_name": lambda: the_facts().library_name,
        "cardData": lambda: the_facts().card_data,
        "model-index": lambda: (the_facts().card_data or {}).get("model-index"),
        "config": lambda: the_facts().config,
        "safetensors": lambda: the_facts().safetensors,
        "baseModels": lambda: _base_models(the_facts()),
        "siblings": lambda: siblings(the_files(), blobs),
        "usedStorage": lambda: sum(entry.size for entry in the_files().values()),
        "spaces": lambda: [],
        "childrenModelCount": lambda: 0,
        **{name: (lambda: None) for name in _NO_DATA},
    }
    answer: dict[str, Any] = {"_id": repo.repo_id, "id": repo.repo_id}
    if repo.type == "model":
        answer["modelId"] = repo.repo_id
    for name in wanted:
        # Dataset and space properties (`citation`, `sdk`, ...) have no data here either.
        answer[name] = values.get(name, lambda: None)()
    return answer


def model_info(
    request: Request, repo: Repo, commit: Commit, expand: list[str], blobs: bool
) -> dict[str, Any]:
    hub = hub_of(request)
    principal = principal_of(request)
    fields = expand or INFO_FIELDS

    def files() -> dict[str, FileEntry]:
        return hub.repos.files(commit)

    def released(candidates: Mapping[str, FileEntry]) -> set[str]:
        return hub.repos.gate.servable_files(principal, repo, candidates)

    return describe(repo, commit.oid, fields, files, lambda: hub.facts.describe(files(), released), blobs)


# The listing fields that show what the stored card says.
CARD_FIELDS = frozenset({"cardData", "model-index"})


def listed_info(
    request: Request, item: ListedRepo, fields: Iterable[str], cards: Mapping[str, StoredCard]
) -> dict[str, Any]:
    """A listing entry: columns and indexed tags; the commit's files only for `siblings` and the fields
    that need them (`config`, `safetensors`, `usedStorage`); the card from `cards`, the page's stored cards
    read together, when a field shows it (`CARD_FIELDS`)."""
    hub = hub_of(request)
    principal = principal_of(request)
    repo = item.repo

    def files() -> dict[str, FileEntry]:
        return hub.repos.files(hub.repos.resolve(repo, item.head)) if item.head else {}

    def released(candidates: Mapping[str, FileEntry]) -> set[str]:
        return hub.repos.gate.servable_files(principal, repo, candidates)

    def facts() -> RepoFacts:
        return hub.facts.describe(files(), released)

    def indexed() -> RepoFacts:
        # The index says what the files say: past a gate the caller has not passed, only file names show.
        if not item.content_visible:
            return RepoFacts(None, public_tags(item.tags), None, None, None, None, None)
        card = cards.get(item.card_sha256) if item.card_sha256 else None
        return RepoFacts(
            card_data=card.metadata if card else None,
            tags=item.tags,
            pipeline_tag=item.pipeline_tag,
            library_name=item.library_name,
            config=None,
            safetensors=None,
            card_sha256=item.card_sha256,
        )

    fields = list(fields)
    needs_files = {"config", "safetensors"} & set(fields)
    return describe(repo, item.head, fields, files, facts if needs_files else indexed)
