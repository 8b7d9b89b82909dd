"""Repository management routes of the Hub beyond create/delete/settings: move (rename or transfer), the
access check and super-squash."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from weightyard.api.bodies import MoveRepoBody, SquashBody, read_json
from weightyard.api.common import PLURAL_TYPES, hub_of, principal_of, raw_segments, repo_url
from weightyard.auth import Action
from weightyard.errors import RepoNotFound
from weightyard.repos import check_repo_id

router = APIRouter()


@router.post("/api/repos/move")
async def move_repo(request: Request) -> dict[str, Any]:
    payload = await read_json(request, MoveRepoBody)

    def move() -> dict[str, Any]:
        source, target = check_repo_id(payload.fromRepo), check_repo_id(payload.toRepo)
        repo = hub_of(request).repos.move_repo(principal_of(request), payload.type, source, target)
        return {"url": repo_url(request, repo.type, repo.repo_id), "id": repo.repo_id}

    return await run_in_threadpool(move)


@router.get("/api/{plural}/{namespace}/{name}/auth-check")
def auth_check(request: Request, plural: str, namespace: str, name: str) -> dict[str, Any]:
    """200 when the caller may download the repo's files; else 404 RepoNotFound or 401/403 GatedRepo."""
    repo_type = PLURAL_TYPES.get(plural)
    if repo_type is None:
        raise RepoNotFound(f"Repository {namespace}/{name} not found")
    hub_of(request).repos.get_repo(principal_of(request), repo_type, namespace, name, Action.DOWNLOAD)
    return {"success": True}


@router.post("/api/{plural}/{namespace}/{name}/super-squash/{rest:path}")
async def super_squash(request: Request, plural: str, namespace: str, name: str, rest: str) -> dict[str, Any]:
    payload = await read_json(request, SquashBody, empty=True)
    branch = "/".join(raw_segments(request)[5:])  # the client quotes `/` inside the branch name

    def squash() -> dict[str, Any]:
        repo_type = PLURAL_TYPES.get(plural)
        if repo_type is None:
            raise RepoNotFound(f"Repository {namespace}/{name} not found")
        hub = hub_of(request)
        principal = principal_of(request)
        repo = hub.repos.get_repo(principal, repo_type, namespace, name, Action.WRITE)
        commit = hub.repos.squash_branch(principal, repo, branch, payload.message)
        return {"success": True, "commitOid": commit.oid}

    return await run_in_threadpool(squash)
