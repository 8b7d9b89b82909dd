"""Repo listings answered from indexed columns: filters, sorts and pages as the Hub's `/api/models` has them.

Everything a listing filters or sorts on is a column or the `repo_tags` index, kept in step with each repo's
`main` head by `FactsService.after_commit`; a page costs one query plus one for the tags of its repos. Each
sort key has an index the page walks in order from a keyset position (the sort key and row id of the last repo
the previous page read, never an offset, so a deep page costs what the first one does), and searches (any part
of a repo id or tag, as the Hub matches them) go through a trigram index: FTS5 `repo_search` on SQLite, GIN
`pg_trgm` on PostgreSQL (migration 0014_listing_search). A search word shorter than a trigram cannot use it
and scans the repos instead.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from weightyard.auth import Action, Principal, Signer, can
from weightyard.db import tables
from weightyard.errors import BadRequest
from weightyard.repos.service import DEFAULT_BRANCH, HEADS, Repo, _repo_from_row

# Sort keys as the Hub spells them; `trendingScore` has no separate measure here and follows downloads.
SORTS = {
    "lastModified": tables.repos.c.updated_at,
    "createdAt": tables.repos.c.created_at,
    "downloads": tables.repos.c.downloads,
    "likes": tables.repos.c.likes,
    "trendingScore": tables.repos.c.downloads,
    "id": tables.full_repo_id,
}
MAX_FILTERS = 20
# The sorts whose key is unique (one repo id per type), so they need no row id to break ties.
_UNIQUE_SORTS = {"id"}
_DATE_SORTS = {"lastModified", "createdAt"}
# A cursor longer than this was not issued here (the longest key is a repo id of 193 characters).
_MAX_CURSOR = 1024
_PURPOSE = "listing-cursor"
# Row ids and page counts are SQL integers.
_MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class Position:
    """Where a page starts: just after the repo whose sort key is `key` and whose row id is `row` (`backward`:
    just before it, walking back towards the first page), `index` pages from the first page. Bound to the sort
    and direction it was walked in."""

    sort: str
    descending: bool
    key: datetime | int | str
    row: int
    backward: bool = False
    index: int = 0


@dataclass(frozen=True)
class ListQuery:
    repo_type: str
    search: str | None = None
    author: str | None = None
    # every one of these tags (card tags, library, `license:…`, `dataset:…`, languages, formats)
    tags: tuple[str, ...] = ()
    pipeline_tag: str | None = None
    # words each found in the repo id or in one of its tags (the web search box)
    words: tuple[str, ...] = ()
    gated: bool | None = None
    sort: str = "lastModified"
    descending: bool = True
    # where the page starts (a `Position` this listing handed out, of the same sort); None: the first page
    after: Position | None = None
    limit: int = 1000


@dataclass(frozen=True)
class ListedRepo:
    repo: Repo
    head: str | None
    pipeline_tag: str | None
    library_name: str | None
    card_sha256: str | None
    tags: list[str] = field(default_factory=list)
    # Whether the caller may see what the files say (the tags, task, library and card of a gated repo are
    # its files' content): False past a gate the caller has not passed.
    content_visible: bool = True


@dataclass(frozen=True)
class ListPage:
    items: list[ListedRepo]
    # how many repos match in all, when asked for
    total: int | None = None
    # the page after this one, when there is one
    next: Position | None = None
    # the page before this one, when this is not the first
    previous: Position | None = None
    # pages before this one
    index: int = 0


class Cursors:
    """The `cursor` of a listing's `Link: rel="next"`: a `Position`, signed, so that a cursor this hub did not
    hand out (edited, forged, from another hub) is refused rather than walked. Not secret: a position names
    only a row the caller's own page ended on, and every page filters what the caller may read again."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def encode(self, position: Position) -> str:
        key = position.key.isoformat() if isinstance(position.key, datetime) else position.key
        fields = [position.sort, position.descending, key, position.row, position.backward, position.index]
        body = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).rstrip(b"=")
        return f"{body.decode()}.{self._signer.sign(_PURPOSE, body.decode())}"

    def decode(self, cursor: str) -> Position:
        """The position `cursor` names; `BadRequest` for anything this hub did not issue."""
        body, _, signature = cursor.partition(".")
        if not (len(cursor) <= _MAX_CURSOR and cursor.isascii()) or not self._signer.verify(
            signature, _PURPOSE, body
        ):
            raise BadRequest("invalid cursor: follow the Link header of the previous page")
        try:
            fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            return _position(*fields)
        except (binascii.Error, ValueError, TypeError) as exc:  # signed, but by another version of the hub
            raise BadRequest("invalid cursor: follow the Link header of the previous page") from exc


def _position(sort: Any, descending: Any, key: Any, row: Any, backward: Any, index: Any) -> Position:
    """A position from a cursor's fields, each of the type it was written with (ValueError otherwise)."""
    if sort not in SORTS or not all(isinstance(flag, bool) for flag in (descending, backward)):
        raise ValueError("sort")
    if not all(type(number) is int and 0 <= number <= _MAX_INT for number in (row, index)):
        raise ValueError("row")
    if type(key) is not (str if sort in _DATE_SORTS | _UNIQUE_SORTS else int):
        raise ValueError("key")
    if sort in _DATE_SORTS:
        key = datetime.fromisoformat(str(key))
    return Position(sort, descending, key, row, backward, index)


def _visible(principal: Principal | None) -> sa.ColumnElement[bool]:
    """The SQL form of can(READ): public repos, and private ones the caller's role and token reach."""
    repos = tables.repos
    public = repos.c.private.is_(False)
    if principal is None:
        return public
    reach: list[sa.ColumnElement[bool]] = []
    if not principal.is_admin:
        reach.append(repos.c.namespace.in_([principal.name, *principal.orgs]))
    if principal.targets is not None:
        targets = list(principal.targets)
        reach.append(sa.or_(repos.c.namespace.in_(targets), tables.full_repo_id.in_(targets)))
    return sa.or_(public, sa.and_(sa.true(), *reach))


def _like(word: str) -> str:
    return "%" + word.lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"


# The shortest word a trigram index can answer.
_TRIGRAM = 3


def _contains(dialect: str, word: str, with_tags: bool) -> sa.ColumnElement[bool]:
    """Repos whose id (and, `with_tags`, one of whose tags) contains `word`, ignoring case."""
    repos = tables.repos
    # FTS5 cannot parse a phrase holding a NUL (no repo id holds one: LIKE then finds nothing).
    if dialect == "sqlite" and len(word) >= _TRIGRAM and "\x00" not in word:
        # An FTS5 phrase of the word's trigrams: exactly the texts that contain it.
        column = tables.repo_search.c.body if with_tags else tables.repo_search.c.name
        phrase = '"' + word.replace('"', '""') + '"'
        return repos.c.id.in_(sa.select(tables.repo_search.c.rowid).where(column.match(phrase)))
    pattern = _like(word)
    in_id = sa.func.lower(tables.full_repo_id).like(pattern, escape="\\")
    if not with_tags:
        return in_id
    tagged = sa.select(tables.repo_tags.c.repo_id).where(
        sa.func.lower(tables.repo_tags.c.tag).like(pattern, escape="\\")
    )
    return sa.or_(in_id, repos.c.id.in_(tagged))


def list_page(
    engine: sa.Engine,
    principal: Principal | None,
    query: ListQuery,
    may_download: Callable[[Repo], bool],
    with_total: bool = False,
) -> ListPage:
    """One page of the repos `principal` may read that match `query`. `may_download` is the gate's
    repo-level answer: a gated repo the caller has not passed shows only what anyone may see, and never
    matches a filter on what its files say (that would tell its tags). The page's `next` and `previous`
    positions are those of the first and last rows the query read, shown or not, so no row is read twice.

    Example:
        >>> query = ListQuery("model", limit=50)
        >>> first = list_page(hub.engine, None, query, lambda repo: True)  # doctest: +SKIP
        >>> second = list_page(hub.engine, None, replace(query, after=first.next), ...)  # doctest: +SKIP
    """
    if query.sort not in SORTS:
        raise BadRequest(f"cannot sort by {query.sort[:50]!r}; use {', '.join(SORTS)}")
    if len(query.tags) > MAX_FILTERS:
        raise BadRequest(f"at most {MAX_FILTERS} filters")
    repos = tables.repos
    head = (
        sa.select(tables.refs.c.target_oid)
        .where(tables.refs.c.repo_id == repos.c.id, tables.refs.c.name == HEADS + DEFAULT_BRANCH)
        .scalar_subquery()
        .label("head_oid")
    )
    column = SORTS[query.sort]
    statement = sa.select(repos, head, column.label("sort_key")).where(
        repos.c.type == query.repo_type, _visible(principal)
    )
    dialect = engine.dialect.name
    if query.search:
        statement = statement.where(_contains(dialect, query.search, with_tags=False))
    for word in query.words:
        statement = statement.where(_contains(dialect, word, with_tags=True))
    if query.author:
        statement = statement.where(repos.c.namespace == query.author)
    for tag in query.tags:
        tagged = sa.select(tables.repo_tags.c.repo_id).where(tables.repo_tags.c.tag == tag)
        statement = statement.where(repos.c.id.in_(tagged))
    if query.pipeline_tag:
        statement = statement.where(repos.c.pipeline_tag == query.pipeline_tag)
    if query.gated is not None:
        statement = statement.where(repos.c.gated.is_not(None) if query.gated else repos.c.gated.is_(None))
    counted = sa.select(sa.func.count()).select_from(statement.subquery())
    after = query.after
    if after is not None and (after.sort != query.sort or after.descending != query.descending):
        raise BadRequest("this cursor belongs to a listing in another order")
    with engine.connect() as conn:
        total = int(conn.execute(counted).scalar() or 0) if with_total else None
        rows = conn.execute(_from(statement, query, after)).all()
        if after is not None and after.backward and not rows:
            # Whatever stood before the position has gone since: the first page is the one before it.
            after = None
            rows = conn.execute(_from(statement, query, after)).all()
        page = list(rows[: query.limit])
        ids = [row.id for row in page]
        tag_rows = (
            conn.execute(
                sa.select(tables.repo_tags.c.repo_id, tables.repo_tags.c.tag).where(
                    tables.repo_tags.c.repo_id.in_(ids)
                )
            ).all()
            if ids
            else []
        )
    more = len(rows) > query.limit
    backward = after is not None and after.backward
    if backward:
        page.reverse()
    # The page's own number; a page walked back to with nothing before it is the first, whatever it said.
    index = 0 if after is None or (backward and not more) else max(after.index, 1 if backward else 0)

    def position(row: sa.Row[Any], back: bool, to: int) -> Position:
        return Position(query.sort, query.descending, row.sort_key, row.id, back, to)

    follows = more or backward
    precedes = more if backward else after is not None
    tags: dict[int, list[str]] = {}
    for repo_id, tag in tag_rows:
        tags.setdefault(repo_id, []).append(tag)
    items = []
    for row in page:
        repo = _repo_from_row(row)
        # The SQL filter mirrors the permission check; the check itself still has the last word.
        if not can(principal, Action.READ, repo.ref):
            continue
        visible = repo.gated is None or may_download(repo)
        if not visible and (query.tags or query.pipeline_tag):
            continue
        if not visible and not all(word.lower() in repo.repo_id.lower() for word in query.words):
            continue  # it matched on a tag the caller may not see
        items.append(
            ListedRepo(
                repo=repo,
                head=row.head_oid,
                pipeline_tag=row.pipeline_tag,
                library_name=row.library_name,
                card_sha256=row.card_sha256,
                tags=sorted(tags.get(row.id, [])),
                content_visible=visible,
            )
        )
    return ListPage(
        items=items,
        total=total,
        next=position(page[-1], False, index + 1) if follows and page else None,
        previous=position(page[0], True, index - 1) if precedes and page else None,
        index=index,
    )


def _from(statement: sa.Select[Any], query: ListQuery, after: Position | None) -> sa.Select[Any]:
    """`statement` in the order of `query`, one row more than a page from `after` on (walking back: before
    it, nearest first)."""
    column = SORTS[query.sort]
    # Ties (times have second resolution) fall back to creation order, in the same direction.
    row_id = tables.repos.c.id
    keys = [column] if query.sort in _UNIQUE_SORTS else [column, row_id]
    descending = query.descending != (after is not None and after.backward)
    size = query.limit + 1

    def ordered(select: sa.Select[Any], *by: sa.ColumnElement[Any]) -> sa.Select[Any]:
        return select.order_by(*(key.desc() if descending else key.asc() for key in by)).limit(size)

    if after is None:
        return ordered(statement, *keys)
    # A keyset seek: the index on (type, key, id) starts the walk at the position, whatever its depth. The
    # repos tied with the position on the key and those beyond it are two seeks: SQLite walks a row-value
    # comparison `(key, id) < (?, ?)` after `type = ?` by its key only, through every tie.
    mark = sa.bindparam(None, after.key, column.type)
    beyond = statement.where(column < mark if descending else column > mark)
    if query.sort in _UNIQUE_SORTS:
        return ordered(beyond, column)
    row = sa.bindparam(None, after.row, sa.Integer)
    tied = statement.where(column == mark, row_id < row if descending else row_id > row)
    both = sa.union_all(*(sa.select(ordered(part, *keys).subquery()) for part in (tied, beyond))).subquery()
    return ordered(sa.select(both), both.c.sort_key, both.c.id)
