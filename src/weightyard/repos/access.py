"""Access requests to gated repos: users ask, repo admins accept, reject or grant directly."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from weightyard.auth import Action, Principal, audit, require, require_token_covers, user_id_of
from weightyard.db import MAX_ROW_ID, insert_ignore, tables, transaction, utcnow
from weightyard.errors import AccessAlreadyGranted, BadRequest, NotFound, Unauthorized
from weightyard.repos.service import Repo

STATUSES = ("pending", "accepted", "rejected")


@dataclass(frozen=True)
class AccessRequest:
    id: int
    user: str
    status: str
    fields: dict[str, Any] | None
    reason: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class AccessRequests:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def request(self, principal: Principal | None, repo: Repo, fields: dict[str, Any] | None = None) -> str:
        """Ask for access to a gated repo; returns the request's status ("accepted" at once when auto)."""
        if principal is None:
            raise Unauthorized("sign in to request access")
        require(principal, Action.READ, repo.ref)
        require_token_covers(principal, repo.ref, "ask for access")
        if not repo.gated:
            raise BadRequest(f"{repo.repo_id} is not gated")
        status = "accepted" if repo.gated == "auto" else "pending"
        now = utcnow()
        row: dict[str, object] = {
            "repo_id": repo.id,
            "user_id": principal.user_id,
            "status": status,
            "fields": json.dumps(fields) if fields else None,
            "created_at": now,
            "updated_at": now,
        }
        with transaction(self._engine) as conn:
            # One request per user and repo (a unique constraint): asking again answers with its status
            if not insert_ignore(conn, tables.access_requests, [row]):
                existing = conn.execute(
                    sa.select(tables.access_requests.c.status).where(
                        tables.access_requests.c.repo_id == repo.id,
                        tables.access_requests.c.user_id == principal.user_id,
                    )
                ).scalar_one()
                return str(existing)
            audit.record(conn, principal, "access.request", repo.repo_id, status=status)
        return status

    def list(self, principal: Principal | None, repo: Repo, status: str) -> list[AccessRequest]:
        require(principal, Action.ADMIN, repo.ref)
        if status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
        query = (
            sa.select(tables.access_requests, tables.users.c.name.label("user_name"))
            .join(tables.users, tables.users.c.id == tables.access_requests.c.user_id)
            .where(tables.access_requests.c.repo_id == repo.id, tables.access_requests.c.status == status)
            .order_by(tables.access_requests.c.id)
        )
        with self._engine.connect() as conn:
            return [
                AccessRequest(
                    id=row.id,
                    user=row.user_name,
                    status=row.status,
                    fields=json.loads(row.fields) if row.fields else None,
                    reason=row.reason,
                    created_at=row.created_at,
                    updated_at=row.updated_at,
                )
                for row in conn.execute(query)
            ]

    def handle(
        self,
        principal: Principal | None,
        repo: Repo,
        status: str,
        user: str | None = None,
        request_id: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Set an existing request's status (accept, reject, or back to pending)."""
        require(principal, Action.ADMIN, repo.ref)
        if status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
        with transaction(self._engine) as conn:
            where = [tables.access_requests.c.repo_id == repo.id]
            if user is not None:
                where.append(tables.access_requests.c.user_id == user_id_of(conn, user))
            elif request_id is not None:
                if request_id > MAX_ROW_ID:
                    raise NotFound("no such access request")
                where.append(tables.access_requests.c.id == request_id)
            else:
                raise BadRequest("name the request by 'user' or 'requestId'")
            current = conn.execute(sa.select(tables.access_requests.c.status).where(*where)).scalar()
            if current is None:
                raise NotFound("no such access request")
            if current == "accepted" and status == "accepted":
                # As on the Hub: accepting twice is a mistake worth telling, not a silent success.
                raise AccessAlreadyGranted(f"{user or 'this user'} already has access to {repo.repo_id}")
            conn.execute(
                sa.update(tables.access_requests)
                .where(*where)
                .values(status=status, reason=reason, updated_at=utcnow())
            )
            audit.record(
                conn, principal, "access.handle", repo.repo_id, user=user, request=request_id, status=status
            )

    def grant(self, principal: Principal | None, repo: Repo, user: str) -> None:
        """Give `user` access without a request of theirs."""
        require(principal, Action.ADMIN, repo.ref)
        now = utcnow()
        with transaction(self._engine) as conn:
            user_id = user_id_of(conn, user)
            existing = conn.execute(
                sa.select(tables.access_requests.c.status).where(
                    tables.access_requests.c.repo_id == repo.id, tables.access_requests.c.user_id == user_id
                )
            ).scalar()
            if existing == "accepted":
                raise AccessAlreadyGranted(f"{user} already has access to {repo.repo_id}")
            conn.execute(
                sa.delete(tables.access_requests).where(
                    tables.access_requests.c.repo_id == repo.id, tables.access_requests.c.user_id == user_id
                )
            )
            conn.execute(
                sa.insert(tables.access_requests).values(
                    repo_id=repo.id, user_id=user_id, status="accepted", created_at=now, updated_at=now
                )
            )
            audit.record(conn, principal, "access.grant", repo.repo_id, user=user)
