"""Accounts, tokens, the audit log and the one permission check: `can(principal, action, repo)`."""

from weightyard.auth.accounts import (
    TOKEN_PREFIX,
    AccountService,
    Membership,
    Profile,
    TokenInfo,
    User,
    hash_secret,
    user_id_of,
)
from weightyard.auth.audit import AuditEntry, AuditLog
from weightyard.auth.limits import RateLimiter
from weightyard.auth.permissions import (
    Action,
    RepoRef,
    access_level,
    can,
    can_create_in,
    namespaces_with,
    require,
    require_create_in,
    require_self_or_site_admin,
    require_site_admin,
    require_token_covers,
    require_unlimited_token,
)
from weightyard.auth.principal import LOCAL_ADMIN, ROLES, SCOPES, Principal
from weightyard.auth.signing import Signer

__all__ = [
    "LOCAL_ADMIN",
    "ROLES",
    "SCOPES",
    "TOKEN_PREFIX",
    "AccountService",
    "Action",
    "AuditEntry",
    "AuditLog",
    "Membership",
    "Principal",
    "Profile",
    "RateLimiter",
    "RepoRef",
    "Signer",
    "TokenInfo",
    "User",
    "access_level",
    "can",
    "can_create_in",
    "hash_secret",
    "namespaces_with",
    "require",
    "require_create_in",
    "require_self_or_site_admin",
    "require_site_admin",
    "require_token_covers",
    "require_unlimited_token",
    "user_id_of",
]
