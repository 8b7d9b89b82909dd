"""The OMS signature format: a Sigstore bundle v0.3 holding a DSSE envelope of an in-toto statement.

Encoding is straightforward; decoding treats every byte as hostile and turns any deviation into a
`FormatError` that names what is wrong, so the verifier can report it instead of crashing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from weightyard.provenance._paths import path_problem
from weightyard.provenance.manifest import Manifest, normalize_sha256, root_digest

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
SERIALIZATION_METHOD = "files"
HASH_TYPE = "sha256"
# A bundle grows by about 240 bytes per file; this admits models of over 100 000 files and stops a
# hostile upload from making the verifier parse gigabytes.
MAX_BUNDLE_BYTES = 32 * 1024 * 1024


class FormatProblem(StrEnum):
    MALFORMED = "malformed_bundle"
    UNSUPPORTED = "unsupported_format"
    UNSAFE_PATH = "unsafe_path"


class FormatError(Exception):
    def __init__(self, problem: FormatProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


@dataclass(frozen=True)
class Envelope:
    """The parts of a bundle a key-based verifier needs, not yet verified."""

    key_hint: str | None
    payload_type: str
    payload: bytes
    signature: bytes


@dataclass(frozen=True)
class Statement:
    """A decoded, self-consistent statement (its root digest matches its resources)."""

    model_name: str
    root_digest: str
    files: Mapping[str, str]
    ignore_paths: tuple[str, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes the signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def encode_statement(manifest: Manifest) -> bytes:
    """The in-toto statement of a manifest, as the DSSE payload bytes."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.model_name, "digest": {"sha256": manifest.root_digest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": SERIALIZATION_METHOD,
                "hash_type": HASH_TYPE,
                "allow_symlinks": False,
                "ignore_paths": list(manifest.ignore_paths),
            },
            "resources": [
                {"name": name, "algorithm": HASH_TYPE, "digest": digest}
                for name, digest in manifest.files.items()
            ],
        },
    }
    return json.dumps(statement, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_bundle(payload: bytes, signature: bytes, key_hint: str) -> bytes:
    """A Sigstore bundle v0.3 in the key flow: the key named by its hint, no transparency log entries."""
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode("ascii")


def _malformed(message: str) -> FormatError:
    return FormatError(FormatProblem.MALFORMED, message)


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise _malformed(f"the {what} is not JSON: {error}") from None


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(f"{where} is not a JSON object")
    return value


def _field(container: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = container.get(key)
    # bool is an int in Python; a JSON `true` must not pass where a string or a list is expected.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _malformed(f"{where}.{key} is missing or not a JSON {kind.__name__}")
    return value


def _base64(text: str, where: str) -> bytes:
    # DSSE lets producers use either the standard or the URL-safe alphabet.
    standard = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{where} is not base64") from None


def decode_envelope(data: bytes) -> Envelope:
    """Check the bundle's structure and pull out the key hint, payload and signature."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise _malformed(f"the bundle is {len(data)} bytes, more than the {MAX_BUNDLE_BYTES} allowed")
    bundle = _object(_load_json(data, "bundle"), "the bundle")
    media_type = bundle.get("mediaType")
    if media_type != BUNDLE_MEDIA_TYPE:
        raise _malformed(f"mediaType is {media_type!r}, expected {BUNDLE_MEDIA_TYPE!r}")
    material = _object(bundle.get("verificationMaterial"), "verificationMaterial")
    if "publicKey" not in material:
        if {"x509CertificateChain", "certificate"} & material.keys():
            raise FormatError(
                FormatProblem.UNSUPPORTED,
                "the bundle is signed with a certificate; only key-signed bundles are supported",
            )
        raise _malformed("verificationMaterial names no public key")
    public_key = _object(material["publicKey"], "verificationMaterial.publicKey")
    hint = public_key.get("hint")
    if hint is not None and not isinstance(hint, str):
        raise _malformed("verificationMaterial.publicKey.hint is not a string")
    envelope = _object(bundle.get("dsseEnvelope"), "dsseEnvelope")
    signatures = _field(envelope, "signatures", list, "dsseEnvelope")
    if len(signatures) != 1:
        # model_signing reads only the first one; accepting more would let two verifiers disagree.
        raise _malformed(f"dsseEnvelope holds {len(signatures)} signatures, expected exactly one")
    signature = _object(signatures[0], "dsseEnvelope.signatures[0]")
    return Envelope(
        key_hint=hint.lower() if hint else None,
        payload_type=_field(envelope, "payloadType", str, "dsseEnvelope"),
        payload=_base64(_field(envelope, "payload", str, "dsseEnvelope"), "dsseEnvelope.payload"),
        signature=_base64(_field(signature, "sig", str, "dsseEnvelope.signatures[0]"), "the signature"),
    )


def _resources(predicate: dict[str, Any]) -> dict[str, str]:
    files: dict[str, str] = {}
    for index, item in enumerate(_field(predicate, "resources", list, "predicate")):
        where = f"predicate.resources[{index}]"
        resource = _object(item, where)
        name = _field(resource, "name", str, where)
        algorithm = resource.get("algorithm")
        if algorithm != HASH_TYPE:
            raise FormatError(FormatProblem.UNSUPPORTED, f"{where} uses digest algorithm {algorithm!r}")
        digest = normalize_sha256(resource.get("digest"))
        if digest is None:
            raise _malformed(f"{where}.digest is not a hex sha256")
        if name in files:
            raise _malformed(f"{name!r} is listed twice")
        files[name] = digest
    return files


def decode_statement(payload: bytes) -> tuple[Statement, list[tuple[str, str]]]:
    """Decode a verified payload into a statement, plus the unsafe paths it names (path, why).

    Unsafe paths are returned rather than raised so that the verifier can report every one of them.
    """
    statement = _object(_load_json(payload, "signed statement"), "the signed statement")
    if statement.get("_type") != STATEMENT_TYPE:
        raise _malformed(f"_type is {statement.get('_type')!r}, expected {STATEMENT_TYPE!r}")
    predicate_type = statement.get("predicateType")
    if predicate_type != PREDICATE_TYPE:
        raise FormatError(
            FormatProblem.UNSUPPORTED, f"predicateType is {predicate_type!r}, expected {PREDICATE_TYPE!r}"
        )
    subjects = _field(statement, "subject", list, "the statement")
    if len(subjects) != 1:
        raise _malformed(f"the statement has {len(subjects)} subjects, expected exactly one")
    subject = _object(subjects[0], "subject[0]")
    model_name = _field(subject, "name", str, "subject[0]")
    signed_root = normalize_sha256(_object(subject.get("digest"), "subject[0].digest").get("sha256"))
    if signed_root is None:
        raise _malformed("subject[0].digest.sha256 is not a hex sha256")
    predicate = _object(statement.get("predicate"), "predicate")
    serialization = _object(predicate.get("serialization"), "predicate.serialization")
    method, hash_type = serialization.get("method"), serialization.get("hash_type")
    if method != SERIALIZATION_METHOD or hash_type != HASH_TYPE:
        raise FormatError(
            FormatProblem.UNSUPPORTED,
            f"serialization is {method!r} with {hash_type!r}; only 'files' with 'sha256' is supported",
        )
    if not isinstance(serialization.get("allow_symlinks", False), bool):
        raise _malformed("predicate.serialization.allow_symlinks is not a boolean")
    raw_ignore = serialization.get("ignore_paths", [])
    if not isinstance(raw_ignore, list) or not all(isinstance(entry, str) for entry in raw_ignore):
        raise _malformed("predicate.serialization.ignore_paths is not a list of strings")
    ignore_paths = tuple(entry.rstrip("/") for entry in raw_ignore)
    files = _resources(predicate)
    if root_digest(files.values()) != signed_root:
        raise _malformed("the subject digest does not match the listed resources")
    unsafe = [(name, why) for name in (*files, *ignore_paths) if (why := path_problem(name)) is not None]
    return Statement(model_name, signed_root, files, ignore_paths), unsafe
