"""Users and access tokens. Only a hash of each token is stored; the secret is shown once."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from weightyard.db import tables, utcnow
from weightyard.errors import BadRequest, InvalidCredentials, NotFound, RefExists
from weightyard.validation import check_repo_segment

# A recognisable prefix lets secret scanners find leaked tokens.
TOKEN_PREFIX = "wy_"
SCOPES = ("read", "write")
ADMIN_USER = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is making a request: a user acting through a named token with a scope."""

    user_id: int
    name: str
    is_admin: bool
    scope: str
    token_name: str

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


class TokenService:
    """Users and tokens in the hub database."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def ensure_user(self, name: str, is_admin: bool = False) -> int:
        check_repo_segment(name, "user name")
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(tables.users.c.id).where(tables.users.c.name == name)).first()
            if row:
                return int(row.id)
            result = conn.execute(
                sa.insert(tables.users).values(name=name, is_admin=is_admin, created_at=utcnow())
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def create_token(
        self, user: str, name: str, scope: str = "write", expires_in_days: int | None = None
    ) -> str:
        """Create a token for `user` and return its secret (shown once, never stored).

        Example:
            >>> secret = service.create_token("admin", "laptop", scope="read")  # doctest: +SKIP
        """
        if scope not in SCOPES:
            raise BadRequest(f"unknown token scope {scope!r}; expected one of {', '.join(SCOPES)}")
        if not name or len(name) > 128:
            raise BadRequest("a token name is 1 to 128 characters")
        secret = new_secret()
        expires = utcnow() + datetime.timedelta(days=expires_in_days) if expires_in_days else None
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(tables.users.c.id).where(tables.users.c.name == user)).first()
            if row is None:
                raise NotFound(f"no user named {user!r}")
            exists = conn.execute(
                sa.select(tables.tokens.c.id).where(
                    tables.tokens.c.user_id == row.id, tables.tokens.c.name == name
                )
            ).first()
            if exists:
                raise RefExists(f"user {user!r} already has a token named {name!r}")
            conn.execute(
                sa.insert(tables.tokens).values(
                    user_id=row.id,
                    name=name,
                    secret_hash=hash_secret(secret),
                    scope=scope,
                    created_at=utcnow(),
                    expires_at=expires,
                )
            )
        return secret

    def authenticate(self, secret: str) -> Principal:
        """The principal behind a bearer token; raises `InvalidCredentials` for anything else."""
        digest = hash_secret(secret)
        query = (
            sa.select(
                tables.tokens.c.secret_hash,
                tables.tokens.c.name.label("token_name"),
                tables.tokens.c.scope,
                tables.tokens.c.expires_at,
                tables.tokens.c.revoked_at,
                tables.users.c.id,
                tables.users.c.name,
                tables.users.c.is_admin,
            )
            .join(tables.users, tables.users.c.id == tables.tokens.c.user_id)
            .where(tables.tokens.c.secret_hash == digest)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        # The lookup is by a hash of the secret, and the final comparison is constant-time, so response
        # times do not reveal how much of a guessed token was right.
        if row is None or not hmac.compare_digest(row.secret_hash, digest):
            raise InvalidCredentials("Invalid credentials in Authorization header")
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
            raise InvalidCredentials("Invalid credentials in Authorization header")
        return Principal(
            user_id=int(row.id),
            name=str(row.name),
            is_admin=bool(row.is_admin),
            scope=str(row.scope),
            token_name=str(row.token_name),
        )
