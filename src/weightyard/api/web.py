"""The web pages: server-rendered HTML over the same domain calls as the API, each page also as JSON.

Every page is built as one JSON-ready dict; the HTML is that dict rendered by a Jinja2 template (autoescaped),
and `.json` or `Accept: application/json` returns the dict itself, so the two views never disagree.

Pages read the caller from `Authorization: Bearer` (scripts) or from the sign-in cookie (browsers), which
holds the same token; both go through `TokenService.authenticate` and the one permission check, so a private
repo the caller cannot read is a 404 page, exactly as it is a 404 in the API.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from weightyard.api.common import (
    SESSION_COOKIE,
    base_url,
    error_response,
    hub_of,
    iso,
    principal_of,
    raw_segments,
    split_revision,
)
from weightyard.auth import Principal
from weightyard.cards import CARD_PATH, StoredCard
from weightyard.errors import (
    BadRequest,
    EntryNotFound,
    Forbidden,
    InvalidCredentials,
    InvalidRepoId,
    NotFound,
    WeightyardError,
)
from weightyard.formatting import human_size
from weightyard.provenance import REVOKED_KEY
from weightyard.repos import Commit, DirEntry, FileEntry, Repo, RepoService, check_repo_id, check_repo_segment
from weightyard.repos.access import STATUSES as ACCESS_STATUSES
from weightyard.repos.facts import FactsService, public_tags
from weightyard.repos.ingest import looks_binary
from weightyard.repos.listing import ListedRepo, ListPage, ListQuery, Position, list_page
from weightyard.repos.scanning import scan_state, shown_verdict, worst
from weightyard.scan import Verdict

router = APIRouter()

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_PREFIX = "/-/static/"
JSON_SUFFIX = ".json"

MODELS_PAGE = 20
COMMITS_PAGE = 50
RECENT_COMMITS = 5
SEARCH_LIMIT = 200

# Bounds on what a page reads from an uploaded file: these bytes come from anyone who can push.
TEXT_LIMIT = 512 * 1024
# Rows of a folder listing or a commit's changed files on one page; the JSON keeps the totals.
LIST_ROWS = 1000
SNIFF_BYTES = 512
READ_CHUNK = 1024 * 1024
FORM_LIMIT = 16 * 1024

SORTS = {"recent": ("lastModified", True), "downloads": ("downloads", True), "name": ("id", False)}
CARD_FILTERS = ("tag", "license", "task")

SECURITY_HEADERS = {
    # No inline script or style and nothing from elsewhere: the pages work offline and a card that slipped
    # past the sanitiser still could not run code or phone home.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "same-origin",
}

# Formats recognised by name, and by magic bytes when the name says nothing.
BINARY_FORMATS = {
    ".safetensors": "Safetensors",
    ".gguf": "GGUF",
    ".bin": "PyTorch checkpoint (pickle)",
    ".pt": "PyTorch checkpoint (pickle)",
    ".pth": "PyTorch checkpoint (pickle)",
    ".ckpt": "Checkpoint (pickle)",
    ".pkl": "Python pickle",
    ".pickle": "Python pickle",
    ".onnx": "ONNX",
    ".npy": "NumPy array",
    ".npz": "NumPy archive (zip)",
    ".h5": "HDF5 (Keras)",
    ".msgpack": "Flax msgpack",
    ".tflite": "TensorFlow Lite",
    ".zip": "Zip archive",
}
MAGIC_FORMATS = (
    (b"GGUF", "GGUF"),
    (b"PK\x03\x04", "Zip archive (for example a PyTorch checkpoint)"),
    (b"\x89HDF\r\n\x1a\n", "HDF5"),
    (b"\x93NUMPY", "NumPy array"),
    (b"\x80\x02", "Python pickle"),
    (b"\x80\x03", "Python pickle"),
    (b"\x80\x04", "Python pickle"),
    (b"\x80\x05", "Python pickle"),
)

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(WEB_DIR / "templates"),
    autoescape=True,
    auto_reload=False,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_STATIC_FILES = {path.name: path for path in (WEB_DIR / "static").iterdir() if path.is_file()}
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


_templates.filters["size"] = human_size
_templates.filters["thousands"] = lambda number: f"{number:,}"
_templates.filters["segment"] = lambda value: quote(str(value), safe="")


@dataclass
class Page:
    template: str
    data: dict[str, Any]
    title: str
    status: int = 200


# ---------------------------------------------------------------------------------------------- URLs


def _repo_url(repo: Repo) -> str:
    return f"/{repo.namespace}/{repo.name}"


def _quote_path(path: str) -> str:
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


def _rev_url(repo: Repo, verb: str, revision: str, path: str = "") -> str:
    """A revision is one URL segment (its `/` percent-encoded), as the Hub and `raw_segments` expect."""
    url = f"{_repo_url(repo)}/{verb}/{quote(revision, safe='')}"
    return f"{url}/{_quote_path(path)}" if path else url


def _local_target(value: str | None) -> str:
    """Where to go after signing in: a path on this site only, so the form cannot redirect elsewhere."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


# ---------------------------------------------------------------------------------------------- model cards


def _stored_card(request: Request, commit: Commit) -> StoredCard | None:
    """The card of a commit as stored when its README was committed; pages never parse or render one."""
    try:
        entry = hub_of(request).repos.file(commit, CARD_PATH)
    except EntryNotFound:
        return None
    return hub_of(request).cards.get(entry.sha256)


def _may_read_card(repos: RepoService, viewer: Principal | None, repo: Repo, commit: Commit) -> bool:
    """Whether the gate lets the viewer receive the README (a card is file content like any other)."""
    try:
        entry = repos.file(commit, CARD_PATH)
    except EntryNotFound:
        return True
    return repos.gate.may_serve_file(viewer, repo, CARD_PATH, entry)


# ---------------------------------------------------------------------------------------------- files


def _verdicts(request: Request, repo: Repo, commit: Commit, files: list[dict[str, Any]]) -> None:
    """Per-file scan verdict (with the folder's context) and signature status: "signed by USER" when a valid
    publisher signature covers the file, "invalid signature" when only invalid ones do, else "unsigned"."""
    hub = hub_of(request)
    reports = hub.repos.scans.reports(hub.repos.files(commit))
    signatures = hub.provenance.status(repo, commit)["signatures"]
    for item in files:
        if item["type"] != "file":
            continue
        report = reports.get(item["path"])
        item["scan"] = shown_verdict(report) if report else None
        covering = [s for s in signatures if item["path"] in s["files"] or item["path"] == s["path"]]
        valid = sorted({s["signer"] or "unknown key" for s in covering if s["verdict"] == "valid"})
        revoked = [s.get("keyRevoked", {}).get("at", "?") for s in covering if s["reason"] == REVOKED_KEY]
        if valid:
            item["signature"] = "signed by " + ", ".join(valid)
        elif revoked:
            item["signature"] = f"{REVOKED_KEY}: the key was revoked on {min(revoked)}"
        else:
            item["signature"] = "invalid signature" if covering else "unsigned"


def _commit_checks(request: Request, repo: Repo, commit: Commit) -> dict[str, Any]:
    """The scan verdict of a commit (its worst file) and its signature status: "signed" (every publisher
    signature valid), "invalid" or "unsigned", with the signers."""
    hub = hub_of(request)
    provenance = hub.provenance.status(repo, commit)
    signers = sorted({item["signer"] for item in provenance["signatures"] if item.get("signer")})
    signature = provenance["status"] + (f" by {', '.join(signers)}" if signers else "")
    reports = hub.repos.scans.reports(hub.repos.files(commit))
    rescanning = any(scan_state(report) != "current" for report in reports.values())
    scan = worst(reports).value + (" (rescan pending)" if rescanning else "")
    return {"scan": scan, "signature": signature}


def _entry_json(
    repo: Repo, revision: str, path: str, entry: FileEntry | DirEntry, granted: bool
) -> dict[str, Any]:
    name = path.rsplit("/", 1)[-1]
    if isinstance(entry, DirEntry):
        return {
            "type": "directory",
            "path": path,
            "name": name,
            "url": _rev_url(repo, "tree", revision, path),
        }
    return {
        "type": "file",
        "path": path,
        "name": name,
        "size": entry.size,
        "lfs": entry.lfs,
        "sha256": entry.sha256,
        "url": _rev_url(repo, "blob", revision, path),
        "download": _rev_url(repo, "resolve", revision, path) if granted else None,
    }


def _listing(
    request: Request,
    viewer: Principal | None,
    repo: Repo,
    revision: str,
    commit: Commit,
    path: str,
    granted: bool,
) -> dict[str, Any]:
    """A folder's entries, folders first as file browsers do, at most `LIST_ROWS` of them. A download link
    is offered where the gate serves the file: `granted` (the repo-level answer) settles it for a file
    scanned safe; any other (unsafe, not scanned yet, or suspicious) is asked about on its own."""
    items = hub_of(request).repos.tree(commit, path)
    items.sort(key=lambda item: (not isinstance(item.entry, DirEntry), item.path))
    shown = [_entry_json(repo, revision, item.path, item.entry, granted) for item in items[:LIST_ROWS]]
    _verdicts(request, repo, commit, shown)
    gate = hub_of(request).repos.gate
    for item, data in zip(items, shown, strict=False):
        if (
            data.get("download")
            and data.get("scan") != Verdict.SAFE.value
            and isinstance(item.entry, FileEntry)
            and not gate.may_serve_file(viewer, repo, item.path, item.entry)
        ):
            data["download"] = None
    return {"files": shown, "fileCount": len(items)}


def _file_format(path: str, head: bytes) -> str:
    suffix = posixpath.splitext(path)[1].lower()
    if suffix in BINARY_FORMATS:
        return BINARY_FORMATS[suffix]
    for magic, name in MAGIC_FORMATS:
        if head.startswith(magic):
            return name
    return "Binary"


def _decode_text(data: bytes, truncated: bool) -> str | None:
    """The bytes as UTF-8 text, or None when they are not text. A cut at the preview limit may split the last
    character, which is not a reason to call the file binary."""
    if looks_binary(data[:SNIFF_BYTES]):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8", "replace")
        return None


def _file_view(repos: RepoService, facts: FactsService, path: str, entry: FileEntry) -> dict[str, Any]:
    limit = min(entry.size, TEXT_LIMIT)
    data = b"".join(repos.read(entry, 0, limit, READ_CHUNK)) if limit else b""
    truncated = entry.size > limit
    text = _decode_text(data, truncated)
    if text is not None:
        return {"kind": "text", "text": text, "truncated": truncated}
    view: dict[str, Any] = {"kind": "binary", "format": _file_format(path, data[:16])}
    if view["format"] == "Safetensors":
        # Stored when the content was committed: the header is never parsed while a page answers. None
        # (shown as "not available yet") for content committed before the hub stored tensor summaries.
        view["safetensors"] = facts.tensor_summary(entry.sha256)
    return view


# ---------------------------------------------------------------------------------------------- pages


def _withheld(granted: bool) -> dict[str, Any]:
    """The view of a file the gate does not release: gated (ask for access) or quarantined (unsafe)."""
    return {"kind": "quarantined" if granted else "gated"}


def _viewer(request: Request) -> Principal | None:
    """Scripts authenticate with a bearer token; browsers with the sign-in cookie holding one. A stale
    cookie (revoked or expired token) reads as signed out rather than as an error page."""
    if request.headers.get("authorization"):
        return principal_of(request)
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    try:
        return _authenticate(request, secret)
    except InvalidCredentials:
        return None


def _authenticate(request: Request, secret: str) -> Principal:
    origin = request.client.host if request.client else ""
    return hub_of(request).accounts.authenticate(secret, origin=origin)


def _repo_json(repo: Repo) -> dict[str, Any]:
    return {
        "id": repo.repo_id,
        "namespace": repo.namespace,
        "name": repo.name,
        "private": repo.private,
        "downloads": repo.downloads,
        "lastModified": iso(repo.updated_at),
        "createdAt": iso(repo.created_at),
        "url": _repo_url(repo),
    }


def _commit_json(repo: Repo, commit: Commit) -> dict[str, Any]:
    return {
        "id": commit.oid,
        "short": commit.oid[:8],
        "title": commit.title,
        "message": commit.message,
        "author": commit.author,
        "date": iso(commit.created_at),
        "parent": commit.parent_oid,
        "url": f"{_repo_url(repo)}/commit/{commit.oid}",
    }


def _refs_json(repos: RepoService, repo: Repo, verb: str) -> dict[str, list[dict[str, str]]]:
    result: dict[str, list[dict[str, str]]] = {"branches": [], "tags": []}
    for ref in repos.refs(repo):
        kind = (
            "branches"
            if ref.name.startswith("refs/heads/")
            else "tags"
            if ref.name.startswith("refs/tags/")
            else ""
        )
        if kind:
            result[kind].append(
                {"name": ref.short_name, "commit": ref.target, "url": _rev_url(repo, verb, ref.short_name)}
            )
    return result


def _load(request: Request, viewer: Principal | None, namespace: str, name: str) -> Repo:
    try:
        check_repo_segment(namespace, "namespace")
        check_repo_segment(name)
    except InvalidRepoId:
        raise NotFound("Not found") from None  # a URL that cannot name a repo names nothing
    return hub_of(request).repos.get_repo(viewer, "model", namespace, name)


def _may_download(repos: RepoService, viewer: Principal | None, repo: Repo) -> bool:
    """Whether the viewer may see file contents at all: the repo-level half of the one gate, which differs
    from reading the repo only for a gated repo whose gate the viewer has not passed. Each file shown is
    then checked on its own (`may_serve_file`), so a quarantined file stays hidden."""
    return repos.gate.may_download(viewer, repo)


def _summary(item: ListedRepo) -> dict[str, Any]:
    """A listing entry from the listing index; past a gate the viewer has not passed, no card facts."""
    tags = item.tags if item.content_visible else public_tags(item.tags)
    return {
        **_repo_json(item.repo),
        "license": [tag.removeprefix("license:") for tag in tags if tag.startswith("license:")],
        "task": item.pipeline_tag if item.content_visible else None,
        "tags": [tag for tag in tags if ":" not in tag and tag != item.pipeline_tag],
    }


def _page_number(request: Request) -> int:
    value = request.query_params.get("p", "1")
    if not value.isdigit() or int(value) < 1:
        raise BadRequest("the page number 'p' is a whole number from 1")
    return int(value)


def _page_links(request: Request, number: int, has_next: bool) -> dict[str, str | None]:
    params = [(key, value) for key, value in request.query_params.multi_items() if key != "p"]

    def link(target: int) -> str:
        return f"{request.url.path}?{urlencode([*params, ('p', str(target))])}"

    return {
        "previous": link(number - 1) if number > 1 else None,
        "next": link(number + 1) if has_next else None,
    }


def _cursor_links(request: Request, page: ListPage) -> dict[str, str | None]:
    """The pages before and after a listing page, each a keyset position (see repos/listing.py)."""
    params = [(key, value) for key, value in request.query_params.multi_items() if key != "cursor"]
    cursors = hub_of(request).cursors

    def link(position: Position | None) -> str | None:
        if position is None:
            return None
        return f"{request.url.path}?{urlencode([*params, ('cursor', cursors.encode(position))])}"

    return {"previous": link(page.previous), "next": link(page.next)}


def models_page(request: Request, viewer: Principal | None, segments: list[str]) -> Page:
    repos = hub_of(request).repos
    query = request.query_params
    search = query.get("search", "").strip()[:SEARCH_LIMIT]
    sort = query.get("sort", "recent")
    if sort not in SORTS:
        raise BadRequest(f"cannot sort by {sort[:50]!r}; use {', '.join(SORTS)}")
    author = query.get("author", "").strip() or None
    filters = {key: query.get(key, "").strip() for key in CARD_FILTERS}
    cursor = query.get("cursor")
    sort_key, descending = SORTS[sort]
    listing = ListQuery(
        repo_type="model",
        author=author,
        tags=tuple(
            tag
            for tag in (filters["tag"], f"license:{filters['license']}" if filters["license"] else "")
            if tag
        ),
        pipeline_tag=filters["task"] or None,
        words=tuple(search.split()),
        sort=sort_key,
        descending=descending,
        after=hub_of(request).cursors.decode(cursor) if cursor is not None else None,
        limit=MODELS_PAGE,
    )
    found = list_page(
        hub_of(request).engine,
        viewer,
        listing,
        lambda repo: repos.gate.may_download(viewer, repo),
        with_total=True,
    )
    total, models = found.total or 0, [_summary(item) for item in found.items]
    data = {
        "search": search,
        "sort": sort,
        "sorts": list(SORTS),
        "filters": {"author": author or "", **filters},
        "total": total,
        "page": found.index + 1,
        "pageSize": MODELS_PAGE,
        "models": models,
        "links": _cursor_links(request, found),
    }
    title = f"Models matching “{search}”" if search else "Models"
    return Page("models.html", data, title)


def _snippets(request: Request, repo: Repo) -> dict[str, str]:
    endpoint = base_url(request)
    token_hint = "  # and HF_TOKEN=<your token>: the repo is private" if repo.private else ""
    return {
        "huggingface_hub": (
            "from huggingface_hub import snapshot_download\n\n"
            f'folder = snapshot_download("{repo.repo_id}", endpoint="{endpoint}"){token_hint}\n'
        ),
        "transformers": (
            "import os\n\n"
            f'os.environ["HF_ENDPOINT"] = "{endpoint}"  # before importing transformers{token_hint}\n'
            "from transformers import AutoModel, AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{repo.repo_id}")\n'
            f'model = AutoModel.from_pretrained("{repo.repo_id}")\n'
        ),
        "weightyard": f"weightyard pull {repo.repo_id} --endpoint {endpoint}"
        + (" --token $HF_TOKEN" if repo.private else "")
        + "\n",
    }


def _base_models(
    repos: RepoService, viewer: Principal | None, names: list[str]
) -> list[dict[str, str | None]]:
    """The models a card says it descends from, linked when this hub holds one the viewer may read."""
    result: list[dict[str, str | None]] = []
    for name in names:
        url: str | None
        try:
            namespace, repo_name = check_repo_id(name)
            url = _repo_url(repos.get_repo(viewer, "model", namespace, repo_name))
        except WeightyardError:
            url = None  # named in the card but not on this hub, or not visible to the viewer
        result.append({"id": name, "url": url})
    return result


def _access_json(request: Request, repo: Repo, granted: bool) -> dict[str, Any]:
    """Gating as the page shows it; `requested` echoes the status the access form just got back."""
    requested = request.query_params.get("requested")
    return {
        "gated": repo.gated,
        "granted": granted,
        "requested": requested if requested in ACCESS_STATUSES else None,
        "requestUrl": f"{_repo_url(repo)}/ask-access",
    }


def _card_json(card: StoredCard, repo: Repo) -> dict[str, Any]:
    return {
        "facts": card.facts.to_dict(),
        # Sanitised when the README was committed (cards.render_markdown), so it is markup as stored.
        "html": Markup(card.html_in(_repo_url(repo))),  # noqa: S704
        "metadataError": card.metadata_error,
        "plainText": card.note,
    }


def model_page(request: Request, viewer: Principal | None, segments: list[str]) -> Page:
    repos = hub_of(request).repos
    repo = _load(request, viewer, segments[0], segments[1])
    revision = "main"
    commit = repos.resolve(repo, revision)
    granted = _may_download(repos, viewer, repo)
    card = _stored_card(request, commit) if granted and _may_read_card(repos, viewer, repo, commit) else None
    history = repos.history(repo, revision, 0, RECENT_COMMITS)
    data = {
        "repo": _repo_json(repo),
        "revision": revision,
        "commit": _commit_json(repo, commit),
        "access": _access_json(request, repo, granted),
        "checks": _commit_checks(request, repo, commit),
        "card": _card_json(card, repo) if card else None,
        "baseModels": _base_models(repos, viewer, card.facts.base_model) if card else [],
        **_listing(request, viewer, repo, revision, commit, "", granted),
        "size": sum(entry.size for entry in repos.files(commit).values()),
        "refs": _refs_json(repos, repo, "tree"),
        "commitCount": repos.history_length(repo, revision),
        "recentCommits": [_commit_json(repo, c) for c in history],
        "snippets": _snippets(request, repo),
        "links": {"files": _rev_url(repo, "tree", revision), "commits": _rev_url(repo, "commits", revision)},
    }
    return Page("model.html", data, repo.repo_id)


def _breadcrumbs(repo: Repo, revision: str, path: str) -> list[dict[str, str]]:
    crumbs = [{"name": repo.name, "url": _rev_url(repo, "tree", revision)}]
    parts = path.split("/") if path else []
    for index, part in enumerate(parts):
        crumbs.append({"name": part, "url": _rev_url(repo, "tree", revision, "/".join(parts[: index + 1]))})
    return crumbs


def tree_page(request: Request, viewer: Principal | None, segments: list[str]) -> Page:
    repos = hub_of(request).repos
    repo = _load(request, viewer, segments[0], segments[1])
    revision, rest = split_revision(segments[3:])
    path = "/".join(part for part in rest if part)
    commit = repos.resolve(repo, revision)
    data = {
        "repo": _repo_json(repo),
        "revision": revision,
        "path": path,
        "commit": _commit_json(repo, commit),
        "breadcrumbs": _breadcrumbs(repo, revision, path),
        **_listing(request, viewer, repo, revision, commit, path, _may_download(repos, viewer, repo)),
        "refs": _refs_json(repos, repo, "tree"),
    }
    return Page("tree.html", data, f"{repo.repo_id} · {path or 'files'} at {revision}")


def blob_page(request: Request, viewer: Principal | None, segments: list[str]) -> Page:
    repos = hub_of(request).repos
    repo = _load(request, viewer, segments[0], segments[1])
    revision, rest = split_revision(segments[3:])
    path = "/".join(rest)
    commit = repos.resolve(repo, revision)
    entry = repos.file(commit, path)
    granted = _may_download(repos, viewer, repo)
    served = granted and repos.gate.may_serve_file(viewer, repo, path, entry)
    file_json = _entry_json(repo, revision, path, entry, served)
    file_json["gitOid"] = entry.git_oid
    _verdicts(request, repo, commit, [file_json])
    parent, _, _ = path.rpartition("/")
    data = {
        "repo": _repo_json(repo),
        "revision": revision,
        "path": path,
        "commit": _commit_json(repo, commit),
        "breadcrumbs": _breadcrumbs(repo, revision, parent),
        "file": file_json,
        "access": _access_json(request, repo, granted),
        "view": _file_view(repos, hub_of(request).facts, path, entry) if served else _withheld(granted),
    }
    return Page("blob.html", data, f"{repo.repo_id} · {path} at {revision}")


def commits_page(request: Request, viewer: Principal | None, segments: list[str]) -> Page:
    repos = hub_of(request).repos
    repo = _load(request, viewer, segments[0], segments[1])
    revision, _ = split_revision(segments[3:])
    number = _page_number(request)
    start = (number - 1) * COMMITS_PAGE
    history = repos.history(repo, revision, start, COMMITS_PAGE + 1)
    data = {
        "repo": _repo_json(repo),
        "revision": revision,
        "total": repos.history_length(repo, revision),
        "page": number,
        "commits": [_commit_json(repo, c) for c in history[:COMMITS_PAGE]],
        "refs": _refs_json(repos, repo, "commits"),
        "links": _page_links(request, number, len(history) > COMMITS_PAGE),
    }
    return Page("commits.html", data, f"{repo.repo_id} · commits on {revision}")


def _changes(
    repo: Repo, commit: Commit, new: dict[str, FileEntry], old: dict[str, FileEntry]
) -> list[dict[str, Any]]:
    changes = []
    for path in sorted(new.keys() | old.keys()):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        status = "added" if before is None else "removed" if after is None else "modified"
        revision = commit.oid if after is not None else str(commit.parent_oid)
        changes.append(
            {
                "path": path,
                "status": status,
                "oldSize": before.size if before else None,
                "newSize": after.size if after else None,
                "url": _rev_url(repo, "blob", revision, path),
            }
        )
    return changes


def commit_page(request: Request, viewer: Principal | None, segments: list[str]) -> Page:
    repos = hub_of(request).repos
    repo = _load(request, viewer, segments[0], segments[1])
    if len(segments) != 4:
        raise NotFound("Not found")
    commit = repos.resolve(repo, segments[3])
    parent = repos.resolve(repo, commit.parent_oid) if commit.parent_oid else None
    changes = _changes(repo, commit, repos.files(commit), repos.files(parent) if parent else {})
    counts = {
        status: sum(c["status"] == status for c in changes) for status in ("added", "modified", "removed")
    }
    data = {
        "repo": _repo_json(repo),
        "commit": _commit_json(repo, commit),
        "parent": _commit_json(repo, parent) if parent else None,
        "changes": changes[:LIST_ROWS],
        "counts": counts,
        "links": {"files": _rev_url(repo, "tree", commit.oid)},
    }
    return Page("commit.html", data, f"{repo.repo_id} · {commit.title}")


def sign_in_page(request: Request, viewer: Principal | None, segments: list[str]) -> Page:
    target = _local_target(request.query_params.get("next"))
    data = {
        "signedIn": viewer is not None,
        "user": viewer.name if viewer else None,
        "next": target,
        "error": None,
    }
    return Page("sign_in.html", data, "Sign in")


# ---------------------------------------------------------------------------------------------- responses


def _wants_json(request: Request) -> bool:
    if request.url.path.startswith("/api/"):
        return True  # an API URL no API route took is an API error, not a page
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _render(request: Request, page: Page, viewer: Principal | None, as_json: bool) -> Response:
    # Pages differ by who is asking; a signed-in page may show private repos and must not be stored.
    headers = {
        "Vary": "Accept, Authorization, Cookie",
        "Cache-Control": "private, no-store" if viewer else "no-cache",
    }
    if as_json:
        return JSONResponse(page.data, status_code=page.status, headers=headers)
    html = _templates.get_template(page.template).render(
        page=page.data,
        title=page.title,
        viewer=viewer,
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        search=request.query_params.get("search", "") if page.template == "models.html" else "",
        static=STATIC_PREFIX,
    )
    return HTMLResponse(html, status_code=page.status, headers={**headers, **SECURITY_HEADERS})


def _error(request: Request, exc: WeightyardError, viewer: Principal | None, as_json: bool) -> Response:
    if as_json:
        return error_response(exc, base_url(request))
    title = "Not found" if exc.status == 404 else "Something went wrong"
    page = Page(
        "error.html",
        {"error": exc.message_at(base_url(request)), "code": exc.code, "status": exc.status},
        title,
        exc.status,
    )
    return _render(request, page, viewer, as_json=False)


PageBuilder = Callable[[Request, Principal | None, list[str]], Page]


def serve(
    request: Request, build: PageBuilder, json_suffix: bool = True, as_json: bool | None = None
) -> Response:
    """Build a page from the raw path segments and answer with HTML or JSON.

    The literal URL wins: `/blob/main/config.json` is the page of `config.json`. Only when the literal URL
    names nothing is a trailing `.json` read as the JSON suffix (`/blob/main/config.json.json`), and then
    the answer is JSON, found or not.
    """
    wants_json = _wants_json(request) if as_json is None else as_json
    viewer: Principal | None = None
    segments = raw_segments(request)
    try:
        viewer = _viewer(request)
        try:
            return _render(request, build(request, viewer, segments), viewer, wants_json)
        except WeightyardError as exc:
            if not (json_suffix and exc.status == 404 and segments[-1].endswith(JSON_SUFFIX)):
                raise
            stripped = [*segments[:-1], segments[-1][: -len(JSON_SUFFIX)]]
            try:
                return _render(request, build(request, viewer, stripped), viewer, as_json=True)
            except WeightyardError as retry:
                # Neither reading names anything; a caller that typed `.json` most likely wants JSON.
                return _error(request, retry, viewer, as_json=True)
    except WeightyardError as exc:
        return _error(request, exc, viewer, wants_json)


@router.get("/", include_in_schema=False)
@router.get("/models", include_in_schema=False)
def models(request: Request) -> Response:
    return serve(request, models_page, json_suffix=False)


@router.get("/.json", include_in_schema=False)
@router.get("/models.json", include_in_schema=False)
def models_json(request: Request) -> Response:
    return serve(request, models_page, json_suffix=False, as_json=True)


@router.get("/{namespace}/{name}", include_in_schema=False)
def model(request: Request, namespace: str, name: str) -> Response:
    return serve(request, model_page)


@router.get("/{namespace}/{name}/tree/{rest:path}", include_in_schema=False)
def tree(request: Request, namespace: str, name: str, rest: str) -> Response:
    return serve(request, tree_page)


@router.get("/{namespace}/{name}/blob/{rest:path}", include_in_schema=False)
def blob(request: Request, namespace: str, name: str, rest: str) -> Response:
    return serve(request, blob_page)


@router.get("/{namespace}/{name}/commits/{rest:path}", include_in_schema=False)
def commits(request: Request, namespace: str, name: str, rest: str) -> Response:
    return serve(request, commits_page)


@router.get("/{namespace}/{name}/commit/{rest:path}", include_in_schema=False)
def commit(request: Request, namespace: str, name: str, rest: str) -> Response:
    return serve(request, commit_page)


# ---------------------------------------------------------------------------------------------- sign-in


@router.get("/sign-in", include_in_schema=False)
def sign_in_form(request: Request) -> Response:
    return serve(request, sign_in_page, json_suffix=False)


@router.get("/sign-in.json", include_in_schema=False)
def sign_in_json(request: Request) -> Response:
    return serve(request, sign_in_page, json_suffix=False, as_json=True)


def _check_same_origin(request: Request) -> None:
    """Refuse a form posted from another site (CSRF). Browsers send `Origin` on every cross-origin POST,
    and `Sec-Fetch-Site` where they support it; the SameSite=Lax cookie is the second line."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden("this form can only be sent from this site")
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = {f"{request.url.scheme}://{request.url.netloc}", base_url(request)}
    if origin.rstrip("/") not in own:
        raise Forbidden("this form can only be sent from this site")


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise BadRequest("the form is too large")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


@router.post("/sign-in", include_in_schema=False)
async def sign_in(request: Request) -> Response:
    as_json = _wants_json(request)
    try:
        _check_same_origin(request)
        form = await _form(request)
    except WeightyardError as exc:
        return _error(request, exc, None, as_json)
    token = form.get("token", "").strip()
    target = _local_target(form.get("next"))
    try:
        viewer = await run_in_threadpool(_authenticate, request, token) if token else None
    except InvalidCredentials:
        viewer = None
    if viewer is None:
        data = {"signedIn": False, "user": None, "next": target, "error": "That token is not valid."}
        return _render(request, Page("sign_in.html", data, "Sign in", status=401), None, as_json)
    response: Response
    if as_json:
        response = JSONResponse({"signedIn": True, "user": viewer.name, "next": target})
    else:
        response = RedirectResponse(target, status_code=303)
    # The cookie holds the token itself: HttpOnly keeps it from page scripts, SameSite=Lax from other sites'
    # forms; it lasts as long as the browser session.
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/"
    )
    return response


@router.post("/sign-out", include_in_schema=False)
def sign_out(request: Request) -> Response:
    as_json = _wants_json(request)
    try:
        _check_same_origin(request)
    except WeightyardError as exc:
        return _error(request, exc, None, as_json)
    response: Response = (
        JSONResponse({"signedIn": False}) if as_json else RedirectResponse("/", status_code=303)
    )
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


@router.post("/{namespace}/{name}/ask-access", include_in_schema=False)
async def ask_access(request: Request, namespace: str, name: str) -> Response:
    """The "Request access" button of a gated model, for a signed-in viewer."""
    as_json = _wants_json(request)

    def ask() -> str:
        viewer = _viewer(request)
        repo = _load(request, viewer, namespace, name)
        return hub_of(request).access.request(viewer, repo)

    try:
        _check_same_origin(request)
        await _form(request)
        status = await run_in_threadpool(ask)
    except WeightyardError as exc:
        return _error(request, exc, None, as_json)
    if as_json:
        return JSONResponse({"status": status})
    return RedirectResponse(f"/{namespace}/{name}?{urlencode({'requested': status})}", status_code=303)


@router.get(STATIC_PREFIX + "{name}", include_in_schema=False)
def static(name: str) -> Response:
    path = _STATIC_FILES.get(name)
    if path is None:
        raise NotFound("Not found")
    media_type = _STATIC_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})
