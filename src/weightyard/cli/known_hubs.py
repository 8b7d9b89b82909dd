"""The hub keys this user trusts, like SSH's `known_hosts`: one `ENDPOINT FINGERPRINT` line per hub.

`weightyard pull` checks every download against the hub's attestation, which is only worth something if the
key that made it is the hub's. A key fetched from the hub on each pull would be whatever a tampering proxy
or a hostile mirror chose to serve, so the key is pinned: given explicitly (`--hub-key FILE` or
`$WEIGHTYARD_HUB_KEY`), or trusted on first use and recorded here. A hub that later presents another key is
refused until the user trusts the new key with `weightyard hub trust ENDPOINT`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from weightyard.provenance import InvalidKey, UnsupportedKey, load_public_key, public_key_fingerprint

HUB_KEY_PATH = "/.well-known/weightyard/hub-key.pem"


class HubKeyError(Exception):
    """The hub's key is not the pinned one, or the pinned key cannot be read."""


@dataclass(frozen=True)
class TrustedKey:
    pem: bytes
    fingerprint: str
    note: str | None  # what the user should know: a key trusted for the first time


def known_hubs_path() -> Path:
    """`$XDG_CONFIG_HOME/weightyard/known_hubs` (`~/.config/weightyard/known_hubs` by default)."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "weightyard" / "known_hubs"


def _normal(endpoint: str) -> str:
    return endpoint.rstrip("/").lower()


def fingerprint_of(pem: bytes, what: str) -> str:
    try:
        return public_key_fingerprint(load_public_key(pem))
    except (InvalidKey, UnsupportedKey) as error:
        raise HubKeyError(f"{what} is not a usable public key: {error.message}") from None


def _read() -> dict[str, str]:
    path = known_hubs_path()
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise HubKeyError(f"cannot read {path}: {error.strerror}") from None
    known = {}
    for line in lines:
        fields = line.split()
        if len(fields) == 2 and not line.startswith("#"):
            known[fields[0]] = fields[1]
    return known


def remember(endpoint: str, fingerprint: str) -> Path:
    """Record (or replace) the trusted key of `endpoint`; the file is replaced whole, never half-written."""
    path = known_hubs_path()
    known = _read()
    known[_normal(endpoint)] = fingerprint
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".known_hubs.")
    with os.fdopen(handle, "w") as file:
        file.write("# weightyard: hub keys trusted by this user (endpoint, sha256 of the key's PEM)\n")
        file.writelines(f"{hub} {value}\n" for hub, value in sorted(known.items()))
    os.replace(temporary, path)
    return path


def trusted_hub_key(endpoint: str, served_pem: bytes, pinned_pem: bytes | None) -> TrustedKey:
    """The key to check `endpoint`'s attestations with, given the key it serves now and an explicitly pinned
    one; raises HubKeyError when the served key is not the one trusted."""
    served = fingerprint_of(served_pem, f"the key served by {endpoint}")
    if pinned_pem is not None:
        pinned = fingerprint_of(pinned_pem, "the key given with --hub-key / $WEIGHTYARD_HUB_KEY")
        if served != pinned:
            raise HubKeyError(
                f"the hub at {endpoint} presents key {served}, not the pinned key {pinned}: "
                "its answers cannot be trusted"
            )
        return TrustedKey(pinned_pem, pinned, None)
    known = _read().get(_normal(endpoint))
    if known is None:
        path = remember(endpoint, served)
        return TrustedKey(
            served_pem, served, f"trusting the key {served} of {endpoint} on first use ({path})"
        )
    if known != served:
        raise HubKeyError(
            f"the hub at {endpoint} presents key {served}, not the key {known} trusted before "
            f"({known_hubs_path()}); if its operator confirms the key was replaced, run "
            f"`weightyard hub trust {endpoint}`"
        )
    return TrustedKey(served_pem, served, None)
