"""Xet routes: the hub's token endpoints and the CAS the stock `hf_xet` client uploads to and downloads from.

The CAS lives on the same server under `/xet-cas` (the `casUrl` handed out with every token). Routes the
client probes first and we do not implement (`/v2/shards`, `/v1/xorb-grants`) answer 404, which makes it fall
back to `/v1/shards` and direct xorb uploads (docs/xet.md).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from weightyard import zero_copy
from weightyard.api.body_limit import allow_body
from weightyard.api.common import (
    PLURAL_TYPES,
    SegmentResponse,
    base_url,
    hub_of,
    principal_async,
    pump_body,
)
from weightyard.auth import Action
from weightyard.errors import NotFound, PayloadTooLarge
from weightyard.repos import Commit, FileEntry, Repo
from weightyard.repos.xet import READ, WRITE, FetchGrant, XetService
from weightyard.xet import MAX_XORB_LEN, ShardTooLarge, XorbTooLarge, string_to_hash
from weightyard.xet.shard import MAX_SHARD_LEN

router = APIRouter()

CAS_PREFIX = "/xet-cas"
# Every refusal on the CAS routes is logged with its reason: a client's failed upload is explained in the log.
_log = logging.getLogger("weightyard.cas")
# A xorb body goes to the worker thread in batches this large: 4 MiB took about a tenth less server CPU
# than 1 MiB (fewer thread hand-offs); at most `common.DIRECT_BUFFERS` batches per upload are held.
_BODY_BATCH = 4 * 1024 * 1024
_TYPE_PLURAL = {singular: plural for plural, singular in PLURAL_TYPES.items()}


def log_refusal(request: Request, status: int, code: str, message: str) -> None:
    """Log a 4xx answer of a CAS route (other routes are left alone)."""
    if request.url.path.startswith(CAS_PREFIX + "/") and 400 <= status < 500:
        _log.warning("CAS %s %s -> %d %s: %s", request.method, request.url.path, status, code, message)


def _xet(request: Request) -> XetService:
    xet = hub_of(request).xet
    if xet is None:
        raise NotFound("Xet storage is turned off on this hub")
    return xet


def cas_url(request: Request) -> str:
    return base_url(request) + CAS_PREFIX


def resolve_headers(request: Request, repo: Repo, commit: Commit, entry: FileEntry) -> dict[str, str]:
    """What `/resolve` adds for a file stored as xorbs, so Xet clients download it through the CAS."""
    xet = hub_of(request).xet
    file_hash = xet.xet_hash(entry.sha256) if xet is not None and entry.lfs else None
    if file_hash is None:
        return {}
    token_url = (
        f"{base_url(request)}/api/{_TYPE_PLURAL[repo.type]}/{repo.repo_id}/xet-read-token/{commit.oid}"
    )
    return {"X-Xet-Hash": file_hash, "Link": f'<{token_url}>; rel="xet-auth"'}


def add_xet_hashes(request: Request, items: list[dict[str, Any]]) -> None:
    """Give tree entries of files stored as xorbs their `xetHash` (the client may skip a HEAD with it)."""
    xet = hub_of(request).xet
    if xet is None:
        return
    shas = [str(item["lfs"]["oid"]) for item in items if isinstance(item.get("lfs"), dict)]
    hashes = xet.xet_hashes(shas)
    for item in items:
        lfs = item.get("lfs")
        if isinstance(lfs, dict) and str(lfs["oid"]) in hashes:
            item["xetHash"] = hashes[str(lfs["oid"])]


# ---------------------------------------------------------------------------------------------- tokens


async def _token(
    request: Request, plural: str, namespace: str, name: str, rev: str, scope: str
) -> JSONResponse:
    xet = _xet(request)
    hub = hub_of(request)
    principal = await principal_async(request)
    repo_type = PLURAL_TYPES.get(plural)
    if repo_type is None:
        raise NotFound(f"unknown repo type {plural!r}")

    def issue() -> JSONResponse:
        action = Action.WRITE if scope == WRITE else Action.DOWNLOAD
        repo = hub.repos.get_repo(principal, repo_type, namespace, name, action)
        revision = rev if scope == WRITE else hub.repos.resolve(repo, rev).oid
        token = xet.issue_token(principal, repo, scope, revision, cas_url(request))
        headers = {
            "X-Xet-Cas-Url": token.cas_url,
            "X-Xet-Access-Token": token.access_token,
            "X-Xet-Token-Expiration": str(token.expires),
        }
        body = {"accessToken": token.access_token, "exp": token.expires, "casUrl": token.cas_url}
        return JSONResponse(body, headers=headers)

    return await run_in_threadpool(issue)


@router.get("/api/{plural}/{namespace}/{name}/xet-write-token/{rev:path}")
async def xet_write_token(request: Request, plural: str, namespace: str, name: str, rev: str) -> JSONResponse:
    return await _token(request, plural, namespace, name, rev, WRITE)


@router.get("/api/{plural}/{namespace}/{name}/xet-read-token/{rev:path}")
async def xet_read_token(request: Request, plural: str, namespace: str, name: str, rev: str) -> JSONResponse:
    return await _token(request, plural, namespace, name, rev, READ)


# ---------------------------------------------------------------------------------------------- CAS uploads


async def _drain(request: Request) -> None:
    """Read the rest of a refused body, so the client gets our error rather than a reset connection."""
    async for _ in request.stream():
        pass


@router.post(CAS_PREFIX + "/v1/xorbs/{prefix}/{xorb}")
async def upload_xorb(request: Request, prefix: str, xorb: str) -> dict[str, bool]:
    allow_body(request, MAX_XORB_LEN)
    xet = _xet(request)
    token = await run_in_threadpool(xet.authenticate, request.headers.get("authorization"))
    upload = await run_in_threadpool(xet.begin_xorb, token, string_to_hash(xorb))
    try:
        # A refused body is still read to its end, so the client gets our error rather than a reset.
        await pump_body(request, upload.feed, _BODY_BATCH, drain_on_error=True, in_place=upload.feed)
        return {"was_inserted": await run_in_threadpool(upload.finish, token)}
    except PayloadTooLarge:
        upload.abort()
        raise XorbTooLarge(f"xorb body exceeds {MAX_XORB_LEN} bytes") from None
    except BaseException:
        upload.abort()
        raise


@router.post(CAS_PREFIX + "/v1/shards")
async def upload_shard(request: Request) -> dict[str, int]:
    allow_body(request, MAX_SHARD_LEN)
    xet = _xet(request)
    token = await run_in_threadpool(xet.authenticate, request.headers.get("authorization"))
    try:
        body = await request.body()
    except PayloadTooLarge:
        raise ShardTooLarge(f"shard body exceeds {MAX_SHARD_LEN} bytes") from None
    new = await run_in_threadpool(xet.register_shard, token, body)
    return {"result": 1 if new else 0}


@router.post(CAS_PREFIX + "/v2/shards")
@router.post(CAS_PREFIX + "/v1/xorb-grants/{prefix}/{xorb}")
async def not_implemented(request: Request) -> Response:
    # 404 is the client's signal to fall back to the v1 routes; drain so it reads the answer cleanly.
    allow_body(request, MAX_XORB_LEN)
    await _drain(request)
    log_refusal(request, 404, "NotImplemented", "the client falls back to the v1 routes")
    return Response(status_code=404)


# ---------------------------------------------------------------------------------------------- CAS reads


@router.get(CAS_PREFIX + "/v1/chunks/{prefix}/{chunk}")
async def dedup_query(request: Request, prefix: str, chunk: str) -> Response:
    xet = _xet(request)

    def answer() -> Response:
        token = xet.authenticate(request.headers.get("authorization"))
        body = xet.dedup_answer(token, string_to_hash(chunk))
        if body is None:
            log_refusal(request, 404, "NoDedupAnswer", f"no chunk {chunk} the uploader may read")
            return Response(status_code=404)
        return Response(body, media_type="application/octet-stream")

    return await run_in_threadpool(answer)


@router.get(CAS_PREFIX + "/v{version}/reconstructions/{file_hash}")
async def reconstruction(request: Request, version: int, file_hash: str) -> JSONResponse:
    xet = _xet(request)
    if version not in (1, 2):
        raise NotFound("no such reconstruction API version")

    def answer() -> JSONResponse:
        token = xet.authenticate(request.headers.get("authorization"))
        plan = xet.reconstruction(
            token, string_to_hash(file_hash), request.headers.get("range"), version, cas_url(request)
        )
        return JSONResponse(plan)

    return await run_in_threadpool(answer)


@router.get(CAS_PREFIX + "/v1/fetch/{xorb}")
def fetch_xorb_range(request: Request, xorb: str, r: str, exp: int, f: str, t: int, sig: str) -> Response:
    """Serialized bytes of a xorb through a signed URL (the client sends no Authorization here)."""
    grant = FetchGrant(xorb, r, exp, f, t)
    sends_itself = zero_copy.EXTENSION in request.scope.get("extensions", {})
    fetched = _xet(request).open_fetch(grant, sig, request.headers.get("range"), segments=sends_itself)
    if fetched.location is not None:
        # From the object store, after the gate: the client asks it for the same Range.
        return Response(status_code=302, headers={"Location": fetched.location})
    headers = {
        "Content-Range": f"bytes {fetched.start}-{fetched.end - 1}/{fetched.size}",
        "Content-Length": str(fetched.end - fetched.start),
    }
    if fetched.segments is not None:
        headers["Content-Type"] = "application/octet-stream"
        return SegmentResponse(fetched.segments, 206, headers)
    return StreamingResponse(
        fetched.pieces, status_code=206, headers=headers, media_type="application/octet-stream"
    )
