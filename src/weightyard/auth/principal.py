"""Who is making a request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Organisation roles, as on the Hub: a contributor writes to the repos they created only.
ROLES = ("read", "contributor", "write", "admin")
SCOPES = ("read", "write")


@dataclass(frozen=True)
class Principal:
    """A user acting through a named token: its scope, the repos it is limited to, and where it came from.

    `orgs` maps each organisation the user belongs to to the user's role there. `targets` is None for a
    token valid on everything the user can reach, else the repo ids (`ns/name`) and namespaces it may touch.
    """

    user_id: int
    name: str
    is_admin: bool
    scope: str
    token_name: str
    orgs: Mapping[str, str] = field(default_factory=dict)
    targets: tuple[str, ...] | None = None
    origin: str = ""
    # the hub token this principal authenticated with; grants issued on its behalf (Xet tokens, signed
    # URLs) name it, so they die with it
    token_id: int | None = None

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


# The operator at the machine, for commands run against the data folder (`weightyard user create …`).
LOCAL_ADMIN = Principal(
    user_id=0,
    name="(local admin)",
    is_admin=True,
    scope="write",
    token_name="cli",  # noqa: S106 - a label, not a secret
    origin="cli",
)
