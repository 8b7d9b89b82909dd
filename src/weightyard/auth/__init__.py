"""Principals, tokens and the one permission check, `can(principal, action, repo)`."""

from weightyard.auth.permissions import Action, RepoRef, can, require
from weightyard.auth.tokens import (
    TOKEN_PREFIX,
    Principal,
    TokenService,
    hash_secret,
)

__all__ = [
    "TOKEN_PREFIX",
    "Action",
    "Principal",
    "RepoRef",
    "TokenService",
    "can",
    "hash_secret",
    "require",
]
