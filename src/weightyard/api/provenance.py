"""Provenance over HTTP: the hub's public key, each commit's signatures and attestation, publishers' keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from weightyard.api.bodies import AddKeyBody, RevokeKeyBody, read_json
from weightyard.api.common import PLURAL_TYPES, hub_of, principal_of, raw_segments, split_revision
from weightyard.errors import NotFound
from weightyard.repos import Commit, Repo

router = APIRouter()
HUB_KEY_PATH = "/.well-known/weightyard/hub-key.pem"


@router.get(HUB_KEY_PATH)
def hub_key(request: Request) -> Response:
    """The public key the hub signs every commit's manifest with (ECDSA P-256, PEM)."""
    return Response(hub_of(request).provenance.hub_public_key, media_type="application/x-pem-file")


def _commit(request: Request, plural: str, namespace: str, name: str) -> tuple[Repo, Commit]:
    repo_type = PLURAL_TYPES.get(plural)
    if repo_type is None:
        raise NotFound(f"unknown repo type {plural!r}")
    hub = hub_of(request)
    repo = hub.repos.get_repo(principal_of(request), repo_type, namespace, name)
    revision, _ = split_revision(raw_segments(request)[5:])
    return repo, hub.repos.resolve(repo, revision)


@router.get("/api/{plural}/{namespace}/{name}/signatures/{rest:path}")
def signatures(request: Request, plural: str, namespace: str, name: str, rest: str) -> dict[str, Any]:
    """The hub's attestation and the publisher signatures of a commit, as verified when it landed."""
    repo, commit = _commit(request, plural, namespace, name)
    return hub_of(request).provenance.status(repo, commit)


@router.get("/api/{plural}/{namespace}/{name}/attestation/{rest:path}")
def attestation(request: Request, plural: str, namespace: str, name: str, rest: str) -> Response:
    """The hub's OMS signature over a commit's files (`model_signing verify key` accepts it)."""
    repo, commit = _commit(request, plural, namespace, name)
    hub = hub_of(request).provenance.status(repo, commit)["hub"]
    if hub is None:
        raise NotFound(f"commit {commit.oid} has no attestation (it predates provenance)")
    return Response(hub["bundle"], media_type="application/json")


@router.get("/api/keys")
def list_keys(request: Request, user: str | None = None) -> list[dict[str, Any]]:
    """Registered public keys (public by nature), with their revocation state."""
    return [key.to_dict() for key in hub_of(request).keys.list_keys(user)]


@router.post("/api/admin/users/{user}/keys")
async def add_key(request: Request, user: str) -> dict[str, Any]:
    pem = (await read_json(request, AddKeyBody)).publicKey
    key = await run_in_threadpool(lambda: hub_of(request).keys.add(principal_of(request), user, pem.encode()))
    return key.to_dict()


@router.post("/api/admin/users/{user}/keys/{fingerprint}/revoke")
async def revoke_key(request: Request, user: str, fingerprint: str) -> dict[str, Any]:
    reason = (await read_json(request, RevokeKeyBody)).reason
    key = await run_in_threadpool(
        lambda: hub_of(request).keys.revoke(principal_of(request), user, fingerprint, reason)
    )
    return key.to_dict()
