"""Cards on the hub: each README content is parsed and rendered once, when a commit adds it, and stored.

Pages, `model_info` and listings read the stored result by the README's sha256; nothing in a request parses
or renders a card.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from weightyard.cards.metadata import CardFacts, card_facts, load_metadata, split_front_matter
from weightyard.cards.render import place_in_repo, render_card
from weightyard.cards.validation import CardCheck, check_metadata
from weightyard.content_cache import ContentCache
from weightyard.db import tables, transaction, utcnow
from weightyard.errors import InvalidCardMetadata
from weightyard.repos.content import ContentStore

CARD_PATH = "README.md"
# The most of a README the hub reads; the rest of a larger file is not part of its card.
CARD_LIMIT = 1024 * 1024
# Bumped when rendering changes in a way stored cards should follow.
RENDERER_VERSION = 1
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredCard:
    sha256: str
    metadata: dict[str, Any]
    metadata_error: str | None
    html: str
    plain: bool
    note: str | None
    created_at: datetime.datetime

    @property
    def facts(self) -> CardFacts:
        return card_facts(self.metadata)

    def check(self) -> CardCheck:
        return check_metadata(self.metadata, self.metadata_error)

    def html_in(self, repo_path: str) -> str:
        """The rendering with its file links pointing into the repo at `repo_path` (`/namespace/name`)."""
        return place_in_repo(self.html, repo_path)


_CACHED_CARDS = 4096
_CACHED_CARD_BYTES = 32 * 1024 * 1024


def _row_weight(row: sa.Row[tuple[object, ...]]) -> int:
    return sum(len(value) for value in row if isinstance(value, str)) + 256


def _from_row(row: sa.Row[tuple[object, ...]]) -> StoredCard:
    m = row._mapping
    return StoredCard(
        sha256=m["sha256"],
        metadata=json.loads(m["metadata"]) if m["metadata"] else {},
        metadata_error=m["metadata_error"],
        html=m["html"],
        plain=bool(m["plain"]),
        note=m["note"],
        created_at=m["created_at"],
    )


def build_card(raw: bytes) -> dict[str, Any]:
    """The stored form of a README: metadata as JSON, why it could not be read, and the rendered body."""
    block, body = split_front_matter(raw.decode("utf-8", "replace"))
    metadata, error = load_metadata(block)
    try:
        # default=str: YAML dates become their ISO text, as on the Hub.
        encoded = json.dumps(metadata, default=str) if metadata else None
    except (TypeError, ValueError):
        encoded, error = None, "the metadata block holds values that are not plain data"
    rendering = render_card(body)
    return {
        "metadata": encoded,
        "metadata_error": error,
        "html": rendering.html,
        "plain": rendering.plain,
        "note": rendering.note,
    }


class AddedFile(Protocol):
    """A file a commit adds (the commit's `AddFile` operation)."""

    @property
    def path(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...


class CardService:
    """Stored cards by README sha256.

    Example:
        >>> cards.prepare(sha256, size).facts.license  # doctest: +SKIP
        ['mit']
    """

    def __init__(self, engine: sa.Engine, store: ContentStore) -> None:
        self._engine = engine
        self._store = store
        # Stored cards by README sha256 (this renderer's): content-derived, so the same in every process.
        # The row is kept, not the card, so that no caller can change what the next one reads.
        self._rows: ContentCache[str, sa.Row[tuple[object, ...]]] = ContentCache(
            _CACHED_CARDS, _CACHED_CARD_BYTES, _row_weight
        )

    def get(self, sha256: str) -> StoredCard | None:
        return self.get_many([sha256]).get(sha256)

    def get_many(self, hashes: Iterable[str]) -> dict[str, StoredCard]:
        found: dict[str, sa.Row[tuple[object, ...]]] = {}
        wanted = []
        for sha256 in sorted(set(hashes)):
            row = self._rows.get(sha256)
            if row is None:
                wanted.append(sha256)
            else:
                found[sha256] = row
        for row in self._read(wanted):
            self._rows.put(row.sha256, row)
            found[row.sha256] = row
        return {sha256: _from_row(row) for sha256, row in found.items()}

    def _read(self, hashes: list[str]) -> list[sa.Row[tuple[object, ...]]]:
        if not hashes:
            return []
        with self._engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(tables.cards).where(
                        tables.cards.c.sha256.in_(hashes), tables.cards.c.renderer == RENDERER_VERSION
                    )
                ).all()
            )

    def prepare(self, sha256: str, size: int) -> StoredCard:
        """The stored card of README content `sha256`, parsing and rendering it now if it is new."""
        # Past the cache: what a commit stores and checks is read from the database, and pages fill the cache.
        stored = self._read([sha256])
        if stored:
            return _from_row(stored[0])
        raw = b"".join(self._store.iter_range(sha256, 0, min(size, CARD_LIMIT), _READ_CHUNK))
        values = build_card(raw)
        with transaction(self._engine) as conn:
            exists = conn.execute(
                sa.select(tables.cards.c.sha256).where(
                    tables.cards.c.sha256 == sha256, tables.cards.c.renderer == RENDERER_VERSION
                )
            ).first()
            if exists is None:
                conn.execute(sa.delete(tables.cards).where(tables.cards.c.sha256 == sha256))
                conn.execute(
                    sa.insert(tables.cards).values(
                        sha256=sha256, renderer=RENDERER_VERSION, created_at=utcnow(), **values
                    )
                )
        [row] = self._read([sha256])
        return _from_row(row)

    def before_commit(self, added: Sequence[AddedFile]) -> None:
        """Prepare the card of a README a commit adds, so it is stored before the commit is visible; refuse
        the commit, as the Hub does, when the card's metadata has errors."""
        for item in added:
            if item.path == CARD_PATH:
                check = self.prepare(item.sha256, item.size).check()
                if check.errors:
                    raise InvalidCardMetadata(check.errors, check.warnings)
