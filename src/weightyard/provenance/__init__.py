"""Model signatures in the OpenSSF model-signing (OMS) format, made and checked without model_signing.

A signature covers a manifest (each file's relative path and sha256). The hub builds manifests from the
digests it recorded at ingest; the CLI hashes a folder. Signatures interoperate with
`model_signing sign key` / `model_signing verify key` (ECDSA on NIST P-256, P-384, P-521).

>>> manifest = manifest_from_digests({"model.safetensors": "cbcb9e0a…"}, model_name="alice/tiny")
>>> bundle = sign_manifest(manifest, private_key_pem)
>>> verify_signature(bundle, manifest, [public_key_pem]).valid
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weightyard.provenance.errors import (
        InvalidKey,
        InvalidManifest,
        ProvenanceError,
        UnreadableModel,
        UnsupportedKey,
    )
    from weightyard.provenance.keys import (
        CURVES,
        DEFAULT_CURVE,
        REVOKED_KEY,
        curve_name,
        generate_private_key,
        load_private_key,
        load_public_key,
        public_key_fingerprint,
        public_key_pem,
        revoked_key_message,
    )
    from weightyard.provenance.manifest import (
        DEFAULT_IGNORE,
        DEFAULT_SIGNATURE_NAME,
        GIT_PATHS,
        Manifest,
        manifest_from_digests,
        manifest_from_folder,
    )
    from weightyard.provenance.signing import sign_manifest
    from weightyard.provenance.verification import (
        Problem,
        Reason,
        Verdict,
        VerificationResult,
        verify_signature,
    )

# The module each public name comes from. They are imported on first use (PEP 562): a constant, an error class
# or the manifest code does not load `cryptography` (30-60 ms at every start of the CLI, whose help texts name
# `DEFAULT_SIGNATURE_NAME`); the keys, signing and verification load it when first used.
_HOMES = {
    "errors": ("InvalidKey", "InvalidManifest", "ProvenanceError", "UnreadableModel", "UnsupportedKey"),
    "keys": (
        "CURVES",
        "DEFAULT_CURVE",
        "REVOKED_KEY",
        "curve_name",
        "generate_private_key",
        "load_private_key",
        "load_public_key",
        "public_key_fingerprint",
        "public_key_pem",
        "revoked_key_message",
    ),
    "manifest": (
        "DEFAULT_IGNORE",
        "DEFAULT_SIGNATURE_NAME",
        "GIT_PATHS",
        "Manifest",
        "manifest_from_digests",
        "manifest_from_folder",
    ),
    "signing": ("sign_manifest",),
    "verification": ("Problem", "Reason", "Verdict", "VerificationResult", "verify_signature"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "CURVES",
    "DEFAULT_CURVE",
    "DEFAULT_IGNORE",
    "DEFAULT_SIGNATURE_NAME",
    "GIT_PATHS",
    "REVOKED_KEY",
    "InvalidKey",
    "InvalidManifest",
    "Manifest",
    "Problem",
    "ProvenanceError",
    "Reason",
    "UnreadableModel",
    "UnsupportedKey",
    "Verdict",
    "VerificationResult",
    "curve_name",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "manifest_from_digests",
    "manifest_from_folder",
    "public_key_fingerprint",
    "public_key_pem",
    "revoked_key_message",
    "sign_manifest",
    "verify_signature",
]
