"""Repo listings answered from indexed columns: filters, sorts and pages as the Hub's `/api/models` has them.

Everything a listing filters or sorts on is a column or the `repo_tags` index, kept in step with each repo's
`main` head by `FactsService.after_commit`; a page costs one query plus one for the tags of its repos. Each
sort key has an index the page walks in order, and searches (any part of a repo id or tag, as the Hub
matches them) go through a trigram index: FTS5 `repo_search` on SQLite, GIN `pg_trgm` on PostgreSQL (migration
0014_listing_search). A search word shorter than a trigram cannot use it and scans the repos instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from weightyard.auth import Action, Principal, can
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
    offset: int = 0
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
    has_more: bool
    # how many repos match in all, when asked for
    total: int | None = None


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
    if dialect == "sqlite" and len(word) >= _TRIGRAM:
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
    matches a filter on what its files say (that would tell its tags)."""
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
    statement = sa.select(repos, head).where(repos.c.type == query.repo_type, _visible(principal))
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
    column = SORTS[query.sort]
    # Ties (times have second resolution) fall back to creation order, in the same direction.
    order = (column.desc(), repos.c.id.desc()) if query.descending else (column.asc(), repos.c.id.asc())
    statement = statement.order_by(*order)
    statement = statement.offset(query.offset).limit(query.limit + 1)
    with engine.connect() as conn:
        total = int(conn.execute(counted).scalar() or 0) if with_total else None
        rows = conn.execute(statement).all()
        page = rows[: query.limit]
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
    return ListPage(items=items, has_more=len(rows) > query.limit, total=total)
