"""Gated repos, as the Hugging Face client drives them: access requests and their handling."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from weightyard.api.bodies import AskAccessBody, GrantAccessBody, HandleAccessBody, read_json
from weightyard.api.common import PLURAL_TYPES, hub_of, iso, principal_of
from weightyard.auth import Action
from weightyard.errors import NotFound
from weightyard.repos import AccessRequest, Repo

router = APIRouter()


def _repo(request: Request, plural: str, namespace: str, name: str, action: Action = Action.READ) -> Repo:
    repo_type = PLURAL_TYPES.get(plural)
    if repo_type is None:
        raise NotFound(f"unknown repo type {plural!r}")
    return hub_of(request).repos.get_repo(principal_of(request), repo_type, namespace, name, action)


def _request_json(item: AccessRequest) -> dict[str, Any]:
    return {
        "requestId": str(item.id),
        "user": {"user": item.user, "fullname": item.user, "email": None},
        "status": item.status,
        "timestamp": iso(item.created_at),
        "fields": item.fields,
    }


@router.post("/api/{plural}/{namespace}/{name}/ask-access")
async def ask_access(request: Request, plural: str, namespace: str, name: str) -> dict[str, Any]:
    fields = (await read_json(request, AskAccessBody, empty=True)).fields

    def ask() -> str:
        repo = _repo(request, plural, namespace, name)
        return hub_of(request).access.request(principal_of(request), repo, fields)

    return {"status": await run_in_threadpool(ask)}


@router.get("/api/{plural}/{namespace}/{name}/user-access-request/{status}")
def list_access_requests(
    request: Request, plural: str, namespace: str, name: str, status: str
) -> JSONResponse:
    repo = _repo(request, plural, namespace, name)
    items = hub_of(request).access.list(principal_of(request), repo, status)
    return JSONResponse([_request_json(item) for item in items])


@router.post("/api/{plural}/{namespace}/{name}/user-access-request/handle")
async def handle_access_request(request: Request, plural: str, namespace: str, name: str) -> dict[str, Any]:
    payload = await read_json(request, HandleAccessBody, empty=True)
    request_id = payload.requestId

    def handle() -> None:
        repo = _repo(request, plural, namespace, name)
        hub_of(request).access.handle(
            principal_of(request),
            repo,
            payload.status,
            user=payload.user,
            request_id=int(request_id) if request_id is not None else None,
            reason=payload.rejectionReason,
        )

    await run_in_threadpool(handle)
    return {"success": True}


@router.post("/api/{plural}/{namespace}/{name}/user-access-request/grant")
async def grant_access(request: Request, plural: str, namespace: str, name: str) -> dict[str, Any]:
    user = (await read_json(request, GrantAccessBody, empty=True)).user

    def grant() -> None:
        repo = _repo(request, plural, namespace, name)
        hub_of(request).access.grant(principal_of(request), repo, user)

    await run_in_threadpool(grant)
    return {"success": True}
