"""Model signatures in the OpenSSF model-signing (OMS) format, made and checked without model_signing.

A signature covers a manifest (each file's relative path and sha256). The hub builds manifests from the
digests it recorded at ingest; the CLI hashes a folder. Signatures interoperate with
`model_signing sign key` / `model_signing verify key` (ECDSA on NIST P-256, P-384, P-521).

>>> manifest = manifest_from_digests({"model.safetensors": "cbcb9e0a…"}, model_name="alice/tiny")
>>> bundle = sign_manifest(manifest, private_key_pem)
>>> verify_signature(bundle, manifest, [public_key_pem]).valid
True
"""

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
