"""What the Hub derives from a repo's files, derived here once at commit time and stored.

Per content (by sha256, before the commit lands): the allowed subset of a `config.json`, and the parameter
counts and the file page's tensor summary (repos/tensors.py) of a `.safetensors` file, read from its header
only. Per commit: `describe` composes those stored facts
with the stored card into `model_info`'s `cardData`, `tags`, `pipeline_tag`, `library_name`, `config` and
`safetensors`, reading no file. When a commit moves `main`, the listing columns and tags of the repo are
updated, so `list_models` filters and sorts with indexes instead of opening repos.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from weightyard.cards import CARD_PATH, CardService, StoredCard, strings
from weightyard.cards.service import AddedFile
from weightyard.content_cache import ContentCache
from weightyard.db import insert_ignore, tables, transaction, utcnow
from weightyard.repos.content import ContentStore
from weightyard.repos.objects import FileEntry
from weightyard.repos.service import DEFAULT_BRANCH, HEADS, Commit, Repo, RepoService
from weightyard.repos.tensors import (
    SAFETENSORS_HEADER_LIMIT,
    TENSOR_DIMS,
    HeaderProblem,
    summary_error,
    tensor_summary,
)

CONFIG_PATH = "config.json"
CONFIG_LIMIT = 1024 * 1024
SAFETENSORS_SUFFIX = ".safetensors"
# The file_facts kind of a safetensors file's tensor summary for its file page.
TENSORS_KIND = "tensors"
TAG_CHARS = 200
MAX_TAGS = 200
# config.json keys model_info reports, as the Hub does; the rest of the file is not repeated.
CONFIG_KEYS = ("architectures", "model_type", "auto_map")
_READ_CHUNK = 1024 * 1024
_CACHED_FACTS = 16384
_CACHED_FACT_BYTES = 16 * 1024 * 1024

# Weight formats by file suffix, reported as tags as on the Hub.
FORMAT_TAGS = {
    ".safetensors": "safetensors",
    ".gguf": "gguf",
    ".onnx": "onnx",
    ".bin": "pytorch",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".h5": "tf",
    ".msgpack": "jax",
}
# Libraries recognised from the files when the card does not name one (the first match wins).
LIBRARY_FILES = (
    ("config_sentence_transformers.json", "sentence-transformers"),
    ("model_index.json", "diffusers"),
    ("adapter_config.json", "peft"),
)
BASE_MODEL_RELATIONS = ("adapter", "merge", "quantized", "finetune")


@dataclass(frozen=True)
class _StoredFile:
    """A file already in a commit, presented as the commit hooks see the files a commit adds."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class RepoFacts:
    """`model_info` fields derived from a commit's files."""

    card_data: dict[str, Any] | None
    tags: list[str]
    pipeline_tag: str | None
    library_name: str | None
    config: dict[str, Any] | None
    safetensors: dict[str, Any] | None
    card_sha256: str | None


def _config_subset(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    subset: dict[str, Any] = {}
    architectures = strings(data.get("architectures")) if isinstance(data.get("architectures"), list) else []
    if architectures:
        subset["architectures"] = architectures
    if isinstance(data.get("model_type"), str):
        subset["model_type"] = data["model_type"][:TAG_CHARS]
    auto_map = data.get("auto_map")
    if isinstance(auto_map, dict):
        subset["auto_map"] = {
            str(key)[:TAG_CHARS]: value[:TAG_CHARS]
            for key, value in list(auto_map.items())[:50]
            if isinstance(value, str)
        }
    return subset


def parameter_counts(header: object) -> dict[str, Any]:
    """Parameters by dtype and in total from a safetensors header, or `{"error": why}`."""
    if not isinstance(header, dict):
        return {"error": "the header is not a JSON object"}
    by_dtype: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if (
            not isinstance(shape, list)
            or len(shape) > TENSOR_DIMS
            or not all(isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape)
            or not isinstance(dtype, str)
        ):
            return {"error": "a tensor has no valid shape or dtype"}
        key = dtype[:16]
        by_dtype[key] = by_dtype.get(key, 0) + math.prod(shape)
    return {"parameters": by_dtype, "total": sum(by_dtype.values())}


def _fact_kinds(path: str) -> list[str]:
    """The file_facts kinds derived from a file at `path`. The page names a file Safetensors by its suffix
    in any case; model_info counts the files the Hub counts, `*.safetensors`."""
    kinds = []
    if path == CONFIG_PATH:
        kinds.append("config")
    if path.endswith(SAFETENSORS_SUFFIX):
        kinds.append("safetensors")
    if path.lower().endswith(SAFETENSORS_SUFFIX):
        kinds.append(TENSORS_KIND)
    return kinds


def _header_fact(kind: str, header: object | HeaderProblem) -> dict[str, Any]:
    """The `kind` fact of a safetensors header, or of the problem that kept it from being parsed."""
    if kind == TENSORS_KIND:
        return summary_error(header) if isinstance(header, HeaderProblem) else tensor_summary(header)
    if not isinstance(header, HeaderProblem):
        return parameter_counts(header)
    if header.kind == "too_large":
        return {"error": f"the header is over {SAFETENSORS_HEADER_LIMIT} bytes and was not read"}
    return summary_error(header)


def _tag(value: str) -> str:
    return value[:TAG_CHARS]


def _base_model_relation(metadata: Mapping[str, Any], bases: list[str], paths: Iterable[str]) -> str:
    stated = metadata.get("base_model_relation")
    if isinstance(stated, str) and stated in BASE_MODEL_RELATIONS:
        return stated
    names = set(paths)
    if "adapter_config.json" in names:
        return "adapter"
    if len(bases) > 1:
        return "merge"
    if any(path.endswith(".gguf") for path in names):
        return "quantized"
    return "finetune"


def public_tags(tags: Iterable[str]) -> list[str]:
    """The tags that come from file names alone (weight formats), which anyone who sees the repo may see."""
    formats = set(FORMAT_TAGS.values())
    return [tag for tag in tags if tag in formats]


def derive(
    files: Mapping[str, FileEntry],
    card: StoredCard | None,
    config: dict[str, Any] | None,
    safetensors: Sequence[dict[str, Any]],
) -> RepoFacts:
    """Compose the stored facts of a commit's files into what `model_info` reports (pure, reads nothing)."""
    metadata = card.metadata if card is not None else {}
    facts = card.facts if card is not None else None
    library = facts.library if facts else None
    if library is None:
        library = next((name for path, name in LIBRARY_FILES if path in files), None)
    if library is None and config and config.get("model_type"):
        library = "transformers"
    if library is None and any(path.endswith(".gguf") for path in files):
        library = "gguf"
    tags: list[str] = []
    if library:
        tags.append(library)
    suffixes = {posixpath.splitext(path)[1].lower() for path in files}
    tags += [tag for suffix, tag in FORMAT_TAGS.items() if suffix in suffixes]
    if facts:
        tags += facts.tags
    if config and isinstance(config.get("model_type"), str):
        tags.append(config["model_type"])
    pipeline_tag = facts.task if facts else None
    if pipeline_tag:
        tags.append(pipeline_tag)
    if facts:
        tags += facts.languages
        tags += [f"dataset:{name}" for name in facts.datasets]
        tags += [f"license:{name}" for name in facts.license]
        if facts.base_model:
            relation = _base_model_relation(metadata, facts.base_model, files)
            for base in facts.base_model:
                tags += [f"base_model:{base}", f"base_model:{relation}:{base}"]
    counted = [item for item in safetensors if "total" in item]
    weights = None
    if counted:
        by_dtype: dict[str, int] = {}
        for item in counted:
            for dtype, count in item["parameters"].items():
                by_dtype[dtype] = by_dtype.get(dtype, 0) + count
        weights = {"parameters": by_dtype, "total": sum(by_dtype.values())}
    return RepoFacts(
        card_data=metadata if card is not None else None,
        tags=list(dict.fromkeys(_tag(tag) for tag in tags if tag))[:MAX_TAGS],
        pipeline_tag=pipeline_tag,
        library_name=library,
        config=config or None,
        safetensors=weights,
        card_sha256=card.sha256 if card is not None else None,
    )


class FactsService:
    """File facts stored at commit time, `describe` for `model_info`, and the listing index of `main`.

    Example:
        >>> facts.describe(repos.files(repos.resolve(repo, "main"))).tags  # doctest: +SKIP
        ['transformers', 'safetensors', 'bert', 'license:mit']
    """

    def __init__(
        self, engine: sa.Engine, store: ContentStore, repos: RepoService, cards: CardService
    ) -> None:
        self._engine = engine
        self._store = store
        self._repos = repos
        self._cards = cards
        # Stored facts (JSON) by (sha256, kind): content-derived, so the same in every process; parsed anew
        # on each use, so that no caller can change what the next one reads.
        self._facts: ContentCache[tuple[str, str], str] = ContentCache(_CACHED_FACTS, _CACHED_FACT_BYTES, len)

    # ------------------------------------------------------------------ per content, before a commit lands

    def _stored(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        wanted = set(pairs)
        found = {pair: data for pair in wanted if (data := self._facts.get(pair)) is not None}
        hashes = sorted({sha for sha, kind in wanted if (sha, kind) not in found})
        if hashes:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    sa.select(tables.file_facts).where(tables.file_facts.c.sha256.in_(hashes))
                ).all()
            for row in rows:
                if (row.sha256, row.kind) in wanted:
                    self._facts.put((row.sha256, row.kind), row.data)
                    found[(row.sha256, row.kind)] = row.data
        return {pair: json.loads(data) for pair, data in found.items()}

    def _store_fact(self, sha256: str, kind: str, data: dict[str, Any]) -> None:
        row: dict[str, object] = {
            "sha256": sha256,
            "kind": kind,
            "data": json.dumps(data),
            "created_at": utcnow(),
        }
        with transaction(self._engine) as conn:
            insert_ignore(conn, tables.file_facts, [row])

    def _read(self, sha256: str, start: int, end: int) -> bytes:
        return b"".join(self._store.iter_range(sha256, start, end, _READ_CHUNK))

    def _safetensors_header(self, sha256: str, size: int) -> object | HeaderProblem:
        """The parsed JSON header of a safetensors file, read from the header only, never the weights."""
        if size < 8:
            return HeaderProblem("short")
        length = int.from_bytes(self._read(sha256, 0, 8), "little")
        if length > SAFETENSORS_HEADER_LIMIT:
            return HeaderProblem("too_large", length)
        if 8 + length > size:
            return HeaderProblem("past_end")
        try:
            header: object = json.loads(self._read(sha256, 8, 8 + length))
        except (ValueError, RecursionError):
            return HeaderProblem("not_json")
        return header

    def before_commit(self, added: Sequence[AddedFile]) -> None:
        """Derive the facts of the config and weights a commit adds, once per content: the config subset,
        and for a safetensors file its parameter counts (model_info) and tensor summary (the file page)."""
        for item in added:
            kinds = _fact_kinds(item.path)
            stored = self._stored((item.sha256, kind) for kind in kinds)
            missing = [kind for kind in kinds if (item.sha256, kind) not in stored]
            if not missing:
                continue
            if missing == ["config"]:
                raw = self._read(item.sha256, 0, min(item.size, CONFIG_LIMIT))
                self._store_fact(
                    item.sha256, "config", _config_subset(raw) if item.size <= CONFIG_LIMIT else {}
                )
                continue
            header = self._safetensors_header(item.sha256, item.size)
            for kind in missing:
                self._store_fact(item.sha256, kind, _header_fact(kind, header))

    def tensor_summary(self, sha256: str) -> dict[str, Any] | None:
        """The tensor summary stored for a safetensors content at commit time (see repos/tensors.py), or None
        for content committed before this hub version stored one (`weightyard reindex` derives it)."""
        return self._stored([(sha256, TENSORS_KIND)]).get((sha256, TENSORS_KIND))

    # ------------------------------------------------------------------ per commit, from what is stored

    def describe(
        self,
        files: Mapping[str, FileEntry],
        released: Callable[[Mapping[str, FileEntry]], set[str]] | None = None,
    ) -> RepoFacts:
        """The facts of a commit's files, from the stored card and file facts; nothing is parsed here.

        What comes from a file's content is used only for the files `released` says the one gate lets the
        caller receive (a card or a config is content like any other); names and sizes are public. It is
        asked once, about every file whose content would be used."""
        read = {
            path: entry
            for path, entry in files.items()
            if path in (CARD_PATH, CONFIG_PATH) or path.endswith(SAFETENSORS_SUFFIX)
        }
        allowed = set(read) if released is None else released(read)

        def usable(path: str) -> FileEntry | None:
            return files.get(path) if path in allowed else None

        card_entry = usable(CARD_PATH)
        card = self._cards.get(card_entry.sha256) if card_entry is not None else None
        config_entry = usable(CONFIG_PATH)
        weights = [
            entry.sha256
            for path, entry in files.items()
            if path.endswith(SAFETENSORS_SUFFIX) and usable(path) is not None
        ]
        pairs = [(sha, "safetensors") for sha in weights]
        if config_entry is not None:
            pairs.append((config_entry.sha256, "config"))
        stored = self._stored(pairs)
        config = stored.get((config_entry.sha256, "config")) if config_entry is not None else None
        safetensors = [stored[(sha, "safetensors")] for sha in weights if (sha, "safetensors") in stored]
        return derive(files, card, config, safetensors)

    def after_commit(self, repo: Repo, commit: Commit) -> None:
        """Bring the listing index up to date when `commit` is the head of `main`. The index holds what the
        files say; listings show it only to callers the gate lets read the files (see listing.py)."""
        facts = self.describe(self._repos.files(commit))
        with transaction(self._engine) as conn:
            # Checked in the write transaction, which commits also take: a later commit's index is never
            # overwritten by this one's.
            head = conn.execute(
                sa.select(tables.refs.c.target_oid).where(
                    tables.refs.c.repo_id == repo.id, tables.refs.c.name == HEADS + DEFAULT_BRANCH
                )
            ).scalar()
            if head != commit.oid:
                return
            conn.execute(
                sa.update(tables.repos)
                .where(tables.repos.c.id == repo.id)
                .values(
                    pipeline_tag=facts.pipeline_tag[:64] if facts.pipeline_tag else None,
                    library_name=facts.library_name[:64] if facts.library_name else None,
                    card_sha256=facts.card_sha256,
                )
            )
            conn.execute(sa.delete(tables.repo_tags).where(tables.repo_tags.c.repo_id == repo.id))
            if facts.tags:
                conn.execute(
                    sa.insert(tables.repo_tags), [{"repo_id": repo.id, "tag": tag} for tag in facts.tags]
                )

    def reindex(self, repo: Repo) -> None:
        """Store what a commit to `main` would have stored (card, file facts, listing index), for a repo
        committed before this hub version derived them. Cards are stored as they are, errors included. The
        files of the other branches and tags get their file facts too, which their file pages show."""
        head = self._repos.resolve(repo, DEFAULT_BRANCH)
        files = self._repos.files(head)
        if CARD_PATH in files:
            self._cards.prepare(files[CARD_PATH].sha256, files[CARD_PATH].size)
        self.before_commit([_StoredFile(path, entry.sha256, entry.size) for path, entry in files.items()])
        for target in sorted({ref.target for ref in self._repos.refs(repo)} - {head.oid}):
            other = self._repos.files(self._repos.resolve(repo, target))
            self.before_commit([_StoredFile(path, entry.sha256, entry.size) for path, entry in other.items()])
        self.after_commit(repo, head)
