"""The Git LFS batch API and the signed upload URLs it hands out; Weightyard's upload sessions (an upload
whose sha256 is named at completion, for `weightyard push`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from weightyard.api.bodies import (
    LfsBatchBody,
    LfsCompleteBody,
    LfsVerifyBody,
    UploadSessionBody,
    UploadSessionCompleteBody,
    read_json,
)
from weightyard.api.body_limit import allow_body
from weightyard.api.common import PLURAL_TYPES, base_url, hub_of, principal_async, principal_of, pump_body
from weightyard.errors import BadRequest, NotFound
from weightyard.repos.lfs import UploadSession

router = APIRouter()
LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
UPLOAD_BATCH = 4 * 1024 * 1024


def _batch(
    request: Request, repo_type: str, namespace: str, name: str, payload: LfsBatchBody
) -> dict[str, Any]:
    hub = hub_of(request)
    if payload.operation != "upload":
        raise BadRequest("only the 'upload' operation is supported; download through /resolve")
    if payload.hash_algo != "sha256":
        raise BadRequest("only sha256 objects are supported")
    objects = [(item.oid, item.size) for item in payload.objects]
    principal = principal_of(request)
    repo = hub.repos.get_repo(principal, repo_type, namespace, name)
    base = base_url(request)
    answers = []
    transfer = "basic"
    for action in hub.lfs.batch(principal, repo, objects, base):
        entry: dict[str, Any] = {"oid": action.sha256, "size": action.size, "authenticated": True}
        if action.error is not None:
            entry["error"] = {"code": 413, "message": action.error}
        elif action.upload_url is not None:
            verify = {"href": f"{base}/api/lfs/verify", "header": {}}
            if action.part_urls:
                transfer = "multipart"
                header = {"chunk_size": str(action.part_size)}
                header.update({str(number): url for number, url in enumerate(action.part_urls, start=1)})
                entry["actions"] = {"upload": {"href": action.upload_url, "header": header}, "verify": verify}
            else:
                entry["actions"] = {"upload": {"href": action.upload_url, "header": {}}, "verify": verify}
        answers.append(entry)
    return {"transfer": transfer, "objects": answers, "hash_algo": "sha256"}


async def _batch_route(request: Request, repo_type: str, namespace: str, name: str) -> JSONResponse:
    payload = await read_json(request, LfsBatchBody)
    if not name.endswith(".git"):
        raise NotFound("not an LFS endpoint")
    answer = await run_in_threadpool(_batch, request, repo_type, namespace, name[: -len(".git")], payload)
    return JSONResponse(answer, media_type=LFS_MEDIA_TYPE)


@router.post("/{namespace}/{name}/info/lfs/objects/batch")
async def batch_model(request: Request, namespace: str, name: str) -> JSONResponse:
    return await _batch_route(request, "model", namespace, name)


@router.post("/{prefix}/{namespace}/{name}/info/lfs/objects/batch")
async def batch_typed(request: Request, prefix: str, namespace: str, name: str) -> JSONResponse:
    if prefix not in PLURAL_TYPES or prefix == "models":
        raise NotFound(f"no route for /{prefix}/…")
    return await _batch_route(request, PLURAL_TYPES[prefix], namespace, name)


def _int_param(request: Request, name: str) -> int:
    value = request.query_params.get(name, "")
    if not value.isdigit():
        raise BadRequest(f"missing or invalid '{name}' parameter")
    return int(value)


@router.put("/api/lfs/objects/{oid}")
async def upload_object(request: Request, oid: str) -> Response:
    lfs = hub_of(request).lfs
    size, expires = _int_param(request, "size"), _int_param(request, "exp")
    token, repo = _int_param(request, "token"), _int_param(request, "repo")
    allow_body(request, None)  # pump_body holds it to the announced size
    writer, principal = await run_in_threadpool(
        lfs.open_upload, oid, size, token, repo, expires, request.query_params.get("sig", "")
    )
    try:
        await pump_body(request, writer.write, UPLOAD_BATCH, limit=size, in_place=writer.write)
        await run_in_threadpool(lfs.finish_upload, writer, oid, size, principal)
    except (Exception, ClientDisconnect):
        await run_in_threadpool(writer.abort)
        raise
    return Response(status_code=200)


@router.put("/api/lfs/uploads/{upload_id}/parts/{number}")
async def upload_part(request: Request, upload_id: str, number: int) -> Response:
    lfs = hub_of(request).lfs
    writer = await run_in_threadpool(
        lfs.open_part, upload_id, number, _int_param(request, "exp"), request.query_params.get("sig", "")
    )
    allow_body(request, None)  # pump_body holds it to the part's size
    try:
        await pump_body(request, writer.write, UPLOAD_BATCH, limit=writer.expected, in_place=writer.write)
        await run_in_threadpool(writer.finish)
    except (Exception, ClientDisconnect):
        await run_in_threadpool(writer.abort)
        raise
    return Response(status_code=200, headers={"ETag": f'"{upload_id}-{number}-{writer.expected}"'})


@router.post("/api/lfs/uploads/{upload_id}/complete")
async def complete_upload(request: Request, upload_id: str) -> Response:
    payload = await read_json(request, LfsCompleteBody)
    lfs = hub_of(request).lfs
    await run_in_threadpool(
        lfs.complete,
        upload_id,
        _int_param(request, "exp"),
        request.query_params.get("sig", ""),
        payload.oid,
    )
    return Response(status_code=200)


@router.post("/api/lfs/verify")
async def verify_object(request: Request) -> Response:
    payload = await read_json(request, LfsVerifyBody)
    principal = await principal_async(request)
    await run_in_threadpool(hub_of(request).lfs.verify, principal, payload.oid, payload.size)
    return Response(status_code=200)


@router.post("/api/{plural}/{namespace}/{name}/uploads")
async def open_upload_session(request: Request, plural: str, namespace: str, name: str) -> JSONResponse:
    payload = await read_json(request, UploadSessionBody)
    if plural not in PLURAL_TYPES:
        raise NotFound(f"unknown repo type {plural!r}")

    def open_session() -> UploadSession:
        hub = hub_of(request)
        principal = principal_of(request)
        repo = hub.repos.get_repo(principal, PLURAL_TYPES[plural], namespace, name)
        return hub.lfs.open_session(principal, repo, payload.size, base_url(request))

    session = await run_in_threadpool(open_session)
    return JSONResponse(
        {
            "id": session.upload_id,
            "size": session.size,
            "part_size": session.part_size,
            "parts": list(session.part_urls),
            "complete": session.complete_url,
            "abandon": session.abandon_url,
            "expires_at": session.expires,
        }
    )


@router.post("/api/uploads/{upload_id}/complete")
async def complete_upload_session(request: Request, upload_id: str) -> JSONResponse:
    payload = await read_json(request, UploadSessionCompleteBody)
    stored = await run_in_threadpool(
        hub_of(request).lfs.complete_session,
        upload_id,
        _int_param(request, "exp"),
        request.query_params.get("sig", ""),
        payload.oid,
        payload.if_stored,
    )
    return JSONResponse({"stored": stored})


@router.delete("/api/uploads/{upload_id}")
async def abandon_upload_session(request: Request, upload_id: str) -> Response:
    await run_in_threadpool(
        hub_of(request).lfs.abandon_session,
        upload_id,
        _int_param(request, "exp"),
        request.query_params.get("sig", ""),
    )
    return Response(status_code=204)
