"""Users, organisations, memberships and access tokens. Only a hash of each token is stored."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from weightyard.auth import audit
from weightyard.auth.permissions import (
    require_org_admin,
    require_self_or_site_admin,
    require_site_admin,
    require_unlimited_token,
)
from weightyard.auth.principal import ROLES, SCOPES, Principal
from weightyard.config import ADMIN_USER
from weightyard.db import insert_ignore, tables, transaction, utcnow
from weightyard.errors import BadRequest, InvalidCredentials, NamespaceInUse, NotFound, RefExists
from weightyard.validation import check_repo_id, check_repo_segment, invisible_character

# A recognisable prefix lets secret scanners find leaked tokens.
TOKEN_PREFIX = "wy_"  # noqa: S105 - a prefix, not a secret
_INVALID = "Invalid credentials in Authorization header"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def user_id_of(conn: sa.Connection, name: str) -> int:
    """The id of the user called `name`; `NotFound` when there is none."""
    user_id = conn.execute(sa.select(tables.users.c.id).where(tables.users.c.name == name)).scalar()
    if user_id is None:
        raise NotFound(f"no user named {name!r}")
    return int(user_id)


def _name_taken(name: str) -> NamespaceInUse:
    return NamespaceInUse(f"the name {name!r} is already taken by a user or an organisation")


@dataclass(frozen=True)
class TokenInfo:
    user: str
    name: str
    scope: str
    targets: tuple[str, ...] | None
    created_at: datetime.datetime
    expires_at: datetime.datetime | None
    revoked_at: datetime.datetime | None


@dataclass(frozen=True)
class User:
    name: str
    is_admin: bool
    orgs: dict[str, str]
    fullname: str | None = None


@dataclass(frozen=True)
class Membership:
    org: str
    fullname: str | None
    role: str


@dataclass(frozen=True)
class Profile:
    """What `whoami` tells a user about themself: display name and organisations."""

    name: str
    fullname: str | None
    orgs: list[Membership]


FULLNAME_LIMIT = 100


def check_fullname(value: str | None) -> str | None:
    """A display name: 1 to 100 characters, none of them invisible (see `invisible_character`)."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > FULLNAME_LIMIT:
        raise BadRequest(f"a display name is 1 to {FULLNAME_LIMIT} characters")
    hidden = invisible_character(value)
    if hidden is not None:
        raise BadRequest(f"a display name may not contain control or invisible characters ({hidden})")
    return value


def _check_targets(targets: list[str] | None) -> tuple[str, ...] | None:
    if not targets:
        return None
    checked = []
    for target in targets:
        if "/" in target:
            check_repo_id(target)
        else:
            check_repo_segment(target, "namespace")
        checked.append(target)
    return tuple(checked)


# Deletes the repos of a namespace inside the caller's transaction and returns their ids (`namespace/name`).
NamespaceRepoDeleter = Callable[[sa.Connection, Principal | None, str], list[str]]


class AccountService:
    """Everything about who exists and how they authenticate.

    `delete_namespace_repos` is how deleting a user with `delete_repos=True` removes their repos, in the
    same transaction (the repos package owns what a repo is made of; see `Hub.open`).
    """

    def __init__(self, engine: sa.Engine, delete_namespace_repos: NamespaceRepoDeleter) -> None:
        self._engine = engine
        self._delete_namespace_repos = delete_namespace_repos

    # ------------------------------------------------------------------ users and orgs

    def _check_name_free(self, conn: sa.Connection, name: str) -> None:
        """A new user or organisation takes a namespace no one has and nothing points at. Names are compared
        case-insensitively: `Victim` is the namespace `victim`."""
        lowered = name.lower()
        for table in (tables.users, tables.orgs):
            if conn.execute(sa.select(table.c.id).where(sa.func.lower(table.c.name) == lowered)).first():
                raise _name_taken(name)
        owner_of = conn.execute(
            sa.select(tables.repos.c.namespace, tables.repos.c.name)
            .where(sa.func.lower(tables.repos.c.namespace) == lowered)
            .limit(1)
        ).first()
        if owner_of is not None:
            raise NamespaceInUse(
                f"the name {name!r} owns repos (e.g. {owner_of.namespace}/{owner_of.name}); "
                "it cannot be given to a new user or organisation"
            )
        retired = conn.execute(
            sa.select(tables.retired_names.c.name).where(tables.retired_names.c.name_lower == lowered)
        ).first()
        if retired is not None:
            raise NamespaceInUse(
                f"the name {name!r} belonged to a deleted user and is retired; choose another name"
            )

    def _org_id(self, conn: sa.Connection, name: str) -> int:
        org_id = conn.execute(sa.select(tables.orgs.c.id).where(tables.orgs.c.name == name)).scalar()
        if org_id is None:
            raise NotFound(f"no organisation named {name!r}")
        return int(org_id)

    def create_user(
        self, actor: Principal | None, name: str, is_admin: bool = False, fullname: str | None = None
    ) -> None:
        require_site_admin(actor, "create users")
        check_repo_segment(name, "user name")
        fullname = check_fullname(fullname)
        row: dict[str, object] = {
            "name": name,
            "is_admin": is_admin,
            "fullname": fullname,
            "created_at": utcnow(),
        }
        with transaction(self._engine) as conn:
            self._check_name_free(conn, name)
            if not insert_ignore(conn, tables.users, [row]):
                raise _name_taken(name)
            audit.record(conn, actor, "user.create", user=name, admin=is_admin)

    def update_user(self, actor: Principal | None, name: str, fullname: str) -> None:
        """Set a user's display name (the user themself, or a site administrator)."""
        require_self_or_site_admin(actor, name, "change a display name")
        checked = check_fullname(fullname)
        with transaction(self._engine) as conn:
            user_id = user_id_of(conn, name)
            conn.execute(sa.update(tables.users).where(tables.users.c.id == user_id).values(fullname=checked))
            audit.record(conn, actor, "user.update", user=name, fullname=checked)

    def update_org(self, actor: Principal | None, name: str, fullname: str) -> None:
        """Set an organisation's display name (its admins, or a site administrator)."""
        require_org_admin(actor, name, f"change the settings of {name!r}")
        checked = check_fullname(fullname)
        with transaction(self._engine) as conn:
            org_id = self._org_id(conn, name)
            conn.execute(sa.update(tables.orgs).where(tables.orgs.c.id == org_id).values(fullname=checked))
            audit.record(conn, actor, "org.update", org=name, fullname=checked)

    def profile(self, principal: Principal) -> Profile:
        with self._engine.connect() as conn:
            fullname = conn.execute(
                sa.select(tables.users.c.fullname).where(tables.users.c.id == principal.user_id)
            ).scalar()
            rows = conn.execute(
                sa.select(tables.orgs.c.name, tables.orgs.c.fullname, tables.memberships.c.role)
                .join(tables.orgs, tables.orgs.c.id == tables.memberships.c.org_id)
                .where(tables.memberships.c.user_id == principal.user_id)
                .order_by(tables.orgs.c.name)
            ).all()
        return Profile(
            principal.name, fullname, [Membership(row.name, row.fullname, row.role) for row in rows]
        )

    def ensure_admin_user(self) -> None:
        """Create the bootstrap `admin` user on a fresh hub."""
        with transaction(self._engine) as conn:
            row: dict[str, object] = {"name": ADMIN_USER, "is_admin": True, "created_at": utcnow()}
            if insert_ignore(conn, tables.users, [row]):
                audit.record(conn, None, "user.create", user=ADMIN_USER, admin=True, bootstrap=True)

    def delete_user(self, actor: Principal | None, name: str, delete_repos: bool = False) -> list[str]:
        """Delete a user; their tokens, memberships and access grants go with them, and their name is retired
        for good. A user who owns repos is refused unless `delete_repos` says to delete those repos too (so
        no one can later take the namespace over); returns the ids of the repos deleted."""
        require_site_admin(actor, "delete users")
        with transaction(self._engine) as conn:
            user_id = user_id_of(conn, name)
            owned = conn.execute(
                sa.select(sa.func.count())
                .select_from(tables.repos)
                .where(sa.func.lower(tables.repos.c.namespace) == name.lower())
            ).scalar_one()
            if owned and not delete_repos:
                raise NamespaceInUse(
                    f"{name} owns {owned} repo(s); delete or move them first, or delete them with the user "
                    "(`--delete-repos`, or `?deleteRepos=true` over HTTP)"
                )
            deleted = self._delete_namespace_repos(conn, actor, name) if owned else []
            # Grants go too (xorb grants have no foreign key): a later user given the same id inherits none.
            for table in (
                tables.tokens,
                tables.memberships,
                tables.access_requests,
                tables.blob_grants,
                tables.xet_xorb_grants,
            ):
                conn.execute(sa.delete(table).where(table.c.user_id == user_id))
            # A later user may get the same id; they must not inherit the contributor's rights on these repos.
            conn.execute(
                sa.update(tables.repos).where(tables.repos.c.created_by == user_id).values(created_by=None)
            )
            conn.execute(sa.delete(tables.users).where(tables.users.c.id == user_id))
            conn.execute(
                sa.insert(tables.retired_names).values(
                    name_lower=name.lower(), name=name, retired_at=utcnow()
                )
            )
            audit.record(conn, actor, "user.delete", user=name, repos_deleted=deleted)
        return deleted

    def list_users(self, actor: Principal | None) -> list[User]:
        require_site_admin(actor, "list users", write=False)
        with self._engine.connect() as conn:
            users = conn.execute(sa.select(tables.users).order_by(tables.users.c.name)).all()
            roles = conn.execute(
                sa.select(tables.memberships.c.user_id, tables.memberships.c.role, tables.orgs.c.name).join(
                    tables.orgs, tables.orgs.c.id == tables.memberships.c.org_id
                )
            ).all()
        orgs: dict[int, dict[str, str]] = {}
        for user_id, role, org in roles:
            orgs.setdefault(user_id, {})[org] = role
        return [User(u.name, bool(u.is_admin), orgs.get(u.id, {}), u.fullname) for u in users]

    def create_org(self, actor: Principal | None, name: str, fullname: str | None = None) -> None:
        """Create an organisation. A user (not the local operator) who creates one becomes its admin."""
        actor = require_unlimited_token(actor, "create an organisation")
        check_repo_segment(name, "organisation name")
        fullname = check_fullname(fullname)
        row: dict[str, object] = {"name": name, "fullname": fullname, "created_at": utcnow()}
        with transaction(self._engine) as conn:
            self._check_name_free(conn, name)
            if not insert_ignore(conn, tables.orgs, [row]):
                raise _name_taken(name)
            org_id = self._org_id(conn, name)
            if actor.user_id:
                conn.execute(
                    sa.insert(tables.memberships).values(
                        org_id=org_id, user_id=actor.user_id, role="admin", created_at=utcnow()
                    )
                )
            audit.record(conn, actor, "org.create", org=name)

    def set_member(self, actor: Principal | None, org: str, user: str, role: str) -> None:
        """Add `user` to `org` with `role`, or change their role."""
        if role not in ROLES:
            raise BadRequest(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        require_org_admin(actor, org, f"manage the members of {org!r}")
        with transaction(self._engine) as conn:
            org_id, user_id = self._org_id(conn, org), user_id_of(conn, user)
            conn.execute(
                sa.delete(tables.memberships).where(
                    tables.memberships.c.org_id == org_id, tables.memberships.c.user_id == user_id
                )
            )
            conn.execute(
                sa.insert(tables.memberships).values(
                    org_id=org_id, user_id=user_id, role=role, created_at=utcnow()
                )
            )
            audit.record(conn, actor, "org.member.set", org=org, user=user, role=role)

    def remove_member(self, actor: Principal | None, org: str, user: str) -> None:
        require_org_admin(actor, org, f"manage the members of {org!r}")
        with transaction(self._engine) as conn:
            org_id, user_id = self._org_id(conn, org), user_id_of(conn, user)
            removed = conn.execute(
                sa.delete(tables.memberships).where(
                    tables.memberships.c.org_id == org_id, tables.memberships.c.user_id == user_id
                )
            )
            if removed.rowcount == 0:
                raise NotFound(f"{user!r} is not a member of {org!r}")
            audit.record(conn, actor, "org.member.remove", org=org, user=user)

    def is_org(self, name: str) -> bool:
        with self._engine.connect() as conn:
            return (
                conn.execute(sa.select(tables.orgs.c.id).where(tables.orgs.c.name == name)).first()
                is not None
            )

    # ------------------------------------------------------------------ tokens

    def create_token(
        self,
        actor: Principal | None,
        user: str,
        name: str,
        scope: str = "write",
        targets: list[str] | None = None,
        expires_in_days: int | None = None,
    ) -> str:
        """Create a token for `user` and return its secret (shown once, never stored).

        Example:
            >>> secret = accounts.create_token(LOCAL_ADMIN, "alice", "laptop", scope="read")  # doctest: +SKIP
        """
        require_self_or_site_admin(actor, user, "create tokens")
        if scope not in SCOPES:
            raise BadRequest(f"unknown token scope {scope!r}; expected one of {', '.join(SCOPES)}")
        if not name or len(name) > 128:
            raise BadRequest("a token name is 1 to 128 characters")
        if invisible_character(name):
            raise BadRequest(
                f"a token name may not contain invisible or control characters ({invisible_character(name)})"
            )
        if expires_in_days is not None and expires_in_days <= 0:
            raise BadRequest("--expires-in must be a positive number of days")
        checked_targets = _check_targets(targets)
        secret = new_secret()
        expires = utcnow() + datetime.timedelta(days=expires_in_days) if expires_in_days else None
        with transaction(self._engine) as conn:
            user_id = user_id_of(conn, user)
            row: dict[str, object] = {
                "user_id": user_id,
                "name": name,
                "secret_hash": hash_secret(secret),
                "scope": scope,
                "targets": json.dumps(list(checked_targets)) if checked_targets else None,
                "created_at": utcnow(),
                "expires_at": expires,
            }
            if not insert_ignore(conn, tables.tokens, [row]):  # the (user, name) constraint decides
                raise RefExists(f"user {user!r} already has a token named {name!r}")
            audit.record(
                conn,
                actor,
                "token.create",
                user=user,
                token=name,
                scope=scope,
                targets=checked_targets,
                expires=expires,
            )
        return secret

    def revoke_token(self, actor: Principal | None, user: str, name: str) -> None:
        require_self_or_site_admin(actor, user, "revoke tokens")
        with transaction(self._engine) as conn:
            user_id = user_id_of(conn, user)
            revoked = conn.execute(
                sa.update(tables.tokens)
                .where(
                    tables.tokens.c.user_id == user_id,
                    tables.tokens.c.name == name,
                    tables.tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
            if revoked.rowcount == 0:
                raise NotFound(f"user {user!r} has no active token named {name!r}")
            audit.record(conn, actor, "token.revoke", user=user, token=name)

    def list_tokens(self, actor: Principal | None, user: str) -> list[TokenInfo]:
        require_self_or_site_admin(actor, user, "list tokens", write=False)
        with self._engine.connect() as conn:
            user_id = user_id_of(conn, user)
            rows = conn.execute(
                sa.select(tables.tokens)
                .where(tables.tokens.c.user_id == user_id)
                .order_by(tables.tokens.c.name)
            ).all()
        return [
            TokenInfo(
                user=user,
                name=row.name,
                scope=row.scope,
                targets=tuple(json.loads(row.targets)) if row.targets else None,
                created_at=row.created_at,
                expires_at=row.expires_at,
                revoked_at=row.revoked_at,
            )
            for row in rows
        ]

    def authenticate(self, secret: str, origin: str = "") -> Principal:
        """The principal behind a bearer token; raises `InvalidCredentials` for anything else."""
        digest = hash_secret(secret)
        principal = self._principal_where(tables.tokens.c.secret_hash == digest, origin, digest)
        if principal is None:
            raise InvalidCredentials(_INVALID)
        return principal

    def principal_for_token(self, token_id: int, origin: str = "") -> Principal:
        """The principal of a hub token as it stands now, for grants issued on its behalf (Xet tokens, signed
        URLs): `InvalidCredentials` once the token is revoked or expired or its user deleted, and the user's
        current memberships otherwise. Token ids are never reused: a grant never passes to another token."""
        principal = self._principal_where(tables.tokens.c.id == token_id, origin, None)
        if principal is None:
            raise InvalidCredentials("the token this grant was issued for is no longer valid")
        return principal

    def _principal_where(
        self, condition: sa.ColumnElement[bool], origin: str, digest: str | None
    ) -> Principal | None:
        query = (
            sa.select(
                tables.tokens.c.id.label("token_id"),
                tables.tokens.c.secret_hash,
                tables.tokens.c.name.label("token_name"),
                tables.tokens.c.scope,
                tables.tokens.c.targets,
                tables.tokens.c.expires_at,
                tables.tokens.c.revoked_at,
                tables.users.c.id,
                tables.users.c.name,
                tables.users.c.is_admin,
            )
            .join(tables.users, tables.users.c.id == tables.tokens.c.user_id)
            .where(condition)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
            # The lookup is by a hash of the secret and the final comparison is constant-time, so response
            # times do not reveal how much of a guessed token was right.
            if row is None or (digest is not None and not hmac.compare_digest(row.secret_hash, digest)):
                return None
            if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
                return None
            memberships = conn.execute(
                sa.select(tables.orgs.c.name, tables.memberships.c.role)
                .join(tables.orgs, tables.orgs.c.id == tables.memberships.c.org_id)
                .where(tables.memberships.c.user_id == row.id)
            ).all()
        return Principal(
            user_id=int(row.id),
            name=str(row.name),
            is_admin=bool(row.is_admin),
            scope=str(row.scope),
            token_name=str(row.token_name),
            orgs=dict(memberships),
            targets=tuple(json.loads(row.targets)) if row.targets else None,
            origin=origin,
            token_id=int(row.token_id),
        )
