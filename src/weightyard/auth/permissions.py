"""The one place that decides who may do what to a repo."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from weightyard.auth.tokens import Principal
from weightyard.errors import Forbidden, RepoNotFound, Unauthorized


class Action(enum.Enum):
    READ = "read"
    WRITE = "write"
    # create a repo in a namespace, or delete / reconfigure one
    ADMIN = "admin"


@dataclass(frozen=True)
class RepoRef:
    """What the permission check needs to know about a repo (or a namespace, for creation)."""

    type: str
    namespace: str
    name: str
    private: bool

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


def _is_owner(principal: Principal, repo: RepoRef) -> bool:
    return principal.is_admin or principal.name == repo.namespace


def can(principal: Principal | None, action: Action, repo: RepoRef) -> bool:
    """Whether `principal` (None when anonymous) may perform `action` on `repo`.

    Example:
        >>> can(None, Action.READ, RepoRef("model", "alice", "tiny", private=False))
        True
    """
    if action is Action.READ:
        return not repo.private or (principal is not None and _is_owner(principal, repo))
    if principal is None or not principal.can_write:
        return False
    return _is_owner(principal, repo)


def require(principal: Principal | None, action: Action, repo: RepoRef) -> None:
    """Raise the error a client should see when `can` says no.

    A repo the principal cannot read is reported as missing (404), so its existence does not leak.
    """
    if can(principal, action, repo):
        return
    if not can(principal, Action.READ, repo):
        raise RepoNotFound(f"Repository {repo.id} not found")
    if principal is None:
        raise Unauthorized(f"You must be authenticated to {action.value} {repo.id}")
    if not principal.can_write:
        raise Forbidden(f"Token {principal.token_name!r} has read scope; {action.value} needs write scope")
    raise Forbidden(f"{principal.name} may not {action.value} {repo.id}")
