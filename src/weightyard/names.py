"""Names the hub reserves, importable without the settings machinery (the CLI's start-up stays short)."""

from __future__ import annotations

# The bootstrap administrator every hub starts with (its token is kept in DATA/admin-token).
ADMIN_USER = "admin"
