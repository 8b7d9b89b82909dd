"""The administration API: users, organisations, tokens and the audit log.

Each route checks its own rule through the auth package: users and the audit log need a site administrator;
organisation members can be managed by that organisation's admins; anyone may manage their own tokens.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from weightyard.api.bodies import CreateOrgBody, CreateTokenBody, CreateUserBody, MemberBody, read_json
from weightyard.api.common import hub_of, iso, principal_of
from weightyard.auth import Action, TokenInfo, require_site_admin
from weightyard.db import MAX_ROW_ID
from weightyard.validation import check_repo_id

router = APIRouter(prefix="/api/admin")


def _token_json(token: TokenInfo) -> dict[str, Any]:
    return {
        "user": token.user,
        "name": token.name,
        "scope": token.scope,
        "repos": list(token.targets) if token.targets else None,
        "createdAt": iso(token.created_at),
        "expiresAt": iso(token.expires_at) if token.expires_at else None,
        "revokedAt": iso(token.revoked_at) if token.revoked_at else None,
    }


@router.get("/users")
def list_users(request: Request) -> list[dict[str, Any]]:
    users = hub_of(request).accounts.list_users(principal_of(request))
    return [{"name": u.name, "fullname": u.fullname, "isAdmin": u.is_admin, "orgs": u.orgs} for u in users]


@router.post("/users")
async def create_user(request: Request) -> dict[str, Any]:
    payload = await read_json(request, CreateUserBody)
    name, admin, fullname = payload.name, payload.admin, payload.fullname
    await run_in_threadpool(
        lambda: hub_of(request).accounts.create_user(principal_of(request), name, admin, fullname)
    )
    return {"name": name, "isAdmin": admin, "fullname": fullname}


@router.delete("/users/{name}")
def delete_user(request: Request, name: str, deleteRepos: bool = False) -> dict[str, Any]:
    deleted = hub_of(request).accounts.delete_user(principal_of(request), name, delete_repos=deleteRepos)
    return {"success": True, "deletedRepos": deleted}


@router.post("/orgs")
async def create_org(request: Request) -> dict[str, Any]:
    name = (await read_json(request, CreateOrgBody)).name
    await run_in_threadpool(lambda: hub_of(request).accounts.create_org(principal_of(request), name))
    return {"name": name}


@router.put("/orgs/{org}/members/{user}")
async def set_member(request: Request, org: str, user: str) -> dict[str, Any]:
    role = (await read_json(request, MemberBody)).role
    await run_in_threadpool(
        lambda: hub_of(request).accounts.set_member(principal_of(request), org, user, role)
    )
    return {"org": org, "user": user, "role": role}


@router.delete("/orgs/{org}/members/{user}")
def remove_member(request: Request, org: str, user: str) -> dict[str, Any]:
    hub_of(request).accounts.remove_member(principal_of(request), org, user)
    return {"success": True}


@router.get("/users/{user}/tokens")
def list_tokens(request: Request, user: str) -> list[dict[str, Any]]:
    tokens = hub_of(request).accounts.list_tokens(principal_of(request), user)
    return [_token_json(token) for token in tokens]


@router.post("/users/{user}/tokens")
async def create_token(request: Request, user: str) -> dict[str, Any]:
    payload = await read_json(request, CreateTokenBody)

    def create() -> str:
        return hub_of(request).accounts.create_token(
            principal_of(request), user, payload.name, payload.scope, payload.repos, payload.expiresInDays
        )

    return {"user": user, "name": payload.name, "token": await run_in_threadpool(create)}


@router.delete("/users/{user}/tokens/{name}")
def revoke_token(request: Request, user: str, name: str) -> dict[str, Any]:
    hub_of(request).accounts.revoke_token(principal_of(request), user, name)
    return {"success": True}


@router.get("/audit-log")
def audit_log(
    request: Request,
    repo: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=0, le=MAX_ROW_ID)] = None,
) -> list[dict[str, Any]]:
    """Site admins read everything; a repo's admins may read that repo's entries."""
    principal = principal_of(request)
    if repo is None:
        require_site_admin(principal, "read the hub's audit log", write=False)
    else:
        namespace, name = check_repo_id(repo)
        repo_type = request.query_params.get("type", "model")
        hub_of(request).repos.get_repo(principal, repo_type, namespace, name, Action.ADMIN)
    return [entry.to_dict() for entry in hub_of(request).audit.entries(repo, limit, before)]
