"""The audit log: every write, with who, when, what and from where. The application only ever appends."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from weightyard.auth.principal import Principal
from weightyard.db import tables, utcnow


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime.datetime
    actor: str | None
    token_name: str | None
    origin: str | None
    action: str
    repo: str | None
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "actor": self.actor,
            "token": self.token_name,
            "origin": self.origin,
            "action": self.action,
            "repo": self.repo,
            "details": self.details,
        }


def record(
    conn: sa.Connection, actor: Principal | None, action: str, repo: str | None = None, **details: Any
) -> None:
    """Append one entry, inside the caller's transaction so the entry exists exactly when the write does."""
    conn.execute(
        sa.insert(tables.audit_log).values(
            at=utcnow(),
            actor=actor.name if actor else None,
            token_name=actor.token_name if actor else None,
            origin=actor.origin if actor else None,
            action=action,
            repo=repo,
            details=json.dumps(details, sort_keys=True, default=str),
        )
    )


class AuditLog:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def entries(
        self, repo: str | None = None, limit: int = 1000, before: int | None = None
    ) -> list[AuditEntry]:
        """Newest first; `before` is an entry id to page backwards from."""
        query = sa.select(tables.audit_log).order_by(tables.audit_log.c.id.desc()).limit(limit)
        if repo:
            query = query.where(tables.audit_log.c.repo == repo)
        if before is not None:
            query = query.where(tables.audit_log.c.id < before)
        with self._engine.connect() as conn:
            return [
                AuditEntry(
                    id=row.id,
                    at=row.at,
                    actor=row.actor,
                    token_name=row.token_name,
                    origin=row.origin,
                    action=row.action,
                    repo=row.repo,
                    details=json.loads(row.details),
                )
                for row in conn.execute(query)
            ]
