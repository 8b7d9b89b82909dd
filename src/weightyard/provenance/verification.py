"""Verifying an OMS signature against a model folder or a set of known file digests.

Every outcome is a `VerificationResult`; nothing a signature file or a model folder contains makes
`verify_signature` raise. A result is valid only when the key, the signature, the statement and every
file check out, and that is decided in exactly one place (the end of `verify_signature`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from weightyard.provenance._format import (
    PAYLOAD_TYPE,
    Envelope,
    FormatError,
    Statement,
    decode_envelope,
    decode_statement,
    pae,
)
from weightyard.provenance._hashing import sha256_files, walk_model
from weightyard.provenance._paths import covering_paths, matching_ignore
from weightyard.provenance.errors import InvalidKey, InvalidManifest, UnreadableModel, UnsupportedKey
from weightyard.provenance.keys import load_public_key, public_key_fingerprint, signature_hash
from weightyard.provenance.manifest import DEFAULT_SIGNATURE_NAME, GIT_PATHS, Manifest, normalize_sha256

PublicKeys = bytes | ec.EllipticCurvePublicKey | Iterable[bytes | ec.EllipticCurvePublicKey]
Target = Manifest | Mapping[str, str] | str | os.PathLike[str]


class Verdict(StrEnum):
    VALID = "valid"
    INVALID = "invalid"


class Reason(StrEnum):
    """Why a signature is (in)valid. The values are stable: the hub stores them and scripts read them."""

    VALID = "valid"
    MALFORMED_BUNDLE = "malformed_bundle"
    UNSUPPORTED_FORMAT = "unsupported_format"
    INVALID_KEY = "invalid_key"
    UNSUPPORTED_KEY = "unsupported_key"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    MODEL_NAME_MISMATCH = "model_name_mismatch"
    UNSAFE_PATH = "unsafe_path"
    UNREADABLE_FILE = "unreadable_file"
    DIGEST_MISMATCH = "digest_mismatch"
    RENAMED_FILE = "renamed_file"
    MISSING_FILE = "missing_file"
    EXTRA_FILE = "extra_file"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a model against its signature; `path` names the file when there is one."""

    reason: Reason
    message: str
    path: str | None = None


@dataclass(frozen=True)
class VerificationResult:
    """The verdict on a signature, why, and what it covers.

    `files` lists the files the signature covers; it is filled only once the signature itself checked
    out, so it never repeats names from a forged statement. `unsigned_files` lists what the signer chose
    to leave out that is present (an ignored folder as `name/`), and `problems` every file-level finding.
    """

    verdict: Verdict
    reason: Reason
    message: str
    problems: tuple[Problem, ...] = ()
    files: tuple[str, ...] = ()
    unsigned_files: tuple[str, ...] = ()
    model_name: str | None = None
    root_digest: str | None = None
    key_fingerprint: str | None = None

    def __post_init__(self) -> None:
        if (self.verdict is Verdict.VALID) != (self.reason is Reason.VALID) or (
            self.verdict is Verdict.VALID and self.problems
        ):
            raise ValueError(f"inconsistent verification result: {self.verdict} with {self.reason}")

    @property
    def valid(self) -> bool:
        return self.verdict is Verdict.VALID

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, as `weightyard verify --json` prints it."""
        return asdict(self)


@dataclass(frozen=True)
class _Context:
    """What is known about the signature so far, carried into an invalid result."""

    files: tuple[str, ...] = ()
    unsigned_files: tuple[str, ...] = ()
    model_name: str | None = None
    root_digest: str | None = None
    key_fingerprint: str | None = None


def _load_keys(public_keys: PublicKeys) -> list[ec.EllipticCurvePublicKey]:
    given = [public_keys] if isinstance(public_keys, bytes | ec.EllipticCurvePublicKey) else list(public_keys)
    keys = []
    for key in given:
        loaded = load_public_key(key) if isinstance(key, bytes) else key
        signature_hash(loaded)  # refuses a loaded key on a curve outside the OMS registry
        keys.append(loaded)
    return keys


def _unsigned_entry(name: str, entry: str) -> str:
    return name if name == entry else f"{entry}/"


def _actual_files(
    target: Target, ignore_paths: frozenset[str], signature_name: str | None
) -> tuple[dict[str, str], list[str]]:
    """The target's files to compare (name to sha256) and the ignored entries present, signature excluded."""
    if isinstance(target, Manifest | Mapping):
        files = target.files if isinstance(target, Manifest) else target
        actual: dict[str, str] = {}
        ignored: set[str] = set()
        for name, digest in files.items():
            entry = matching_ignore(name, ignore_paths)
            if entry is not None:
                ignored.add(_unsigned_entry(name, entry))
                continue
            normalized = normalize_sha256(digest)
            if normalized is None:
                raise InvalidManifest(f"{name!r} has no valid sha256 digest: {digest!r}")
            actual[name] = normalized
        unsigned = sorted(ignored)
    else:
        root = Path(target)
        names, unsigned = walk_model(root, ignore_paths)
        actual = sha256_files(root, names)
    return actual, [name for name in unsigned if name.rstrip("/") != signature_name]


def _compare(signed: Mapping[str, str], actual: Mapping[str, str]) -> list[Problem]:
    problems = [
        Problem(Reason.DIGEST_MISMATCH, f"digest mismatch on {name}: the file is not the one signed", name)
        for name in signed
        if name in actual and actual[name] != signed[name]
    ]
    extra_by_digest: dict[str, list[str]] = {}
    for name in actual:
        if name not in signed:
            extra_by_digest.setdefault(actual[name], []).append(name)
    renamed_to: dict[str, str] = {}
    for name in signed:
        if name not in actual and extra_by_digest.get(signed[name]):
            renamed_to[name] = extra_by_digest[signed[name]].pop(0)
    problems += [
        Problem(Reason.RENAMED_FILE, f"renamed file: {name} was signed, the same bytes are now {new}", name)
        for name, new in renamed_to.items()
    ]
    problems += [
        Problem(Reason.MISSING_FILE, f"missing file: {name} is signed but absent", name)
        for name in signed
        if name not in actual and name not in renamed_to
    ]
    extra = sorted(name for names in extra_by_digest.values() for name in names)
    problems += [
        Problem(Reason.EXTRA_FILE, f"extra file: {name} is not covered by the signature", name)
        for name in extra
    ]
    return problems


def _summary(problems: Sequence[Problem]) -> str:
    more = len(problems) - 1
    return problems[0].message + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


class _Rejected(Exception):
    """Raised by a verification step; carries the invalid result to return."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        context: _Context | None = None,
        problems: tuple[Problem, ...] = (),
    ) -> None:
        super().__init__(message)
        known = asdict(context) if context is not None else {}
        self.result = VerificationResult(Verdict.INVALID, reason, message, problems, **known)


def _authenticate(bundle: bytes, public_keys: PublicKeys) -> tuple[Envelope, ec.EllipticCurvePublicKey]:
    """The bundle's envelope and the given key that signed it, or the reason there is none."""
    try:
        keys = _load_keys(public_keys)
    except UnsupportedKey as error:
        raise _Rejected(Reason.UNSUPPORTED_KEY, error.message) from None
    except InvalidKey as error:
        raise _Rejected(Reason.INVALID_KEY, error.message) from None
    if not keys:
        raise _Rejected(Reason.UNKNOWN_KEY, "no public key was given to verify with")
    try:
        envelope = decode_envelope(bundle)
    except FormatError as error:
        raise _Rejected(Reason(error.problem.value), error.message) from None
    if envelope.payload_type != PAYLOAD_TYPE:
        raise _Rejected(
            Reason.MALFORMED_BUNDLE, f"payloadType is {envelope.payload_type!r}, expected {PAYLOAD_TYPE!r}"
        )
    hinted = [key for key in keys if envelope.key_hint in (None, public_key_fingerprint(key))]
    if not hinted:
        given = "the given key" if len(keys) == 1 else f"any of the {len(keys)} given keys"
        raise _Rejected(Reason.UNKNOWN_KEY, f"signed with key {envelope.key_hint}, which is not {given}")
    signed = pae(envelope.payload_type, envelope.payload)
    for key in hinted:
        try:
            key.verify(envelope.signature, signed, ec.ECDSA(signature_hash(key)))
        except InvalidSignature:
            continue
        return envelope, key
    raise _Rejected(
        Reason.BAD_SIGNATURE,
        "bad signature: it does not match the signed statement under the given key "
        "(the signature file was altered or made with another key)",
    )


def _trusted_statement(payload: bytes, context: _Context) -> Statement:
    """Decode the authenticated payload, refusing any path that could leave the model folder."""
    try:
        statement, unsafe = decode_statement(payload)
    except FormatError as error:
        raise _Rejected(Reason(error.problem.value), error.message, context) from None
    if unsafe:
        escapes = tuple(
            Problem(
                Reason.UNSAFE_PATH,
                f"unsafe path in the signature (it could name a file outside the model folder): {why}",
                path,
            )
            for path, why in unsafe
        )
        raise _Rejected(Reason.UNSAFE_PATH, _summary(escapes), replace(context, files=()), escapes)
    return statement


def _check_files(
    statement: Statement, target: Target, signature_name: str | None, context: _Context
) -> tuple[str, ...]:
    """Compare the target with the signed files; return the unsigned entries present when they match."""
    # Whatever the signer listed stays checked even if an ignore rule would cover it; the git defaults are
    # tolerated as model_signing tolerates them, and the signature file is not part of what it signs.
    skipped = {*statement.ignore_paths, *GIT_PATHS, *((signature_name,) if signature_name else ())}
    signed_or_above = {path for name in statement.files for path in covering_paths(name)}
    try:
        actual, unsigned = _actual_files(target, frozenset(skipped - signed_or_above), signature_name)
    except UnreadableModel as error:
        raise _Rejected(Reason.UNREADABLE_FILE, error.message, context) from None
    problems = _compare(statement.files, actual)
    if problems:
        context = replace(context, unsigned_files=tuple(unsigned))
        raise _Rejected(problems[0].reason, _summary(problems), context, tuple(problems))
    return tuple(unsigned)


def verify_signature(
    bundle: bytes,
    target: Target,
    public_keys: PublicKeys,
    *,
    expected_model_name: str | None = None,
    signature_name: str | None = DEFAULT_SIGNATURE_NAME,
) -> VerificationResult:
    """Check a signature file against a model and the public key(s) trusted to have signed it.

    `target` is a model folder (every file is hashed), or the model's known digests as a `Manifest` or
    a mapping of relative path to hex sha256 (nothing is read). `public_keys` is one PEM public key or
    several (a publisher's registered keys); the bundle's key hint picks among them and
    `key_fingerprint` in the result says which one signed. `expected_model_name` rejects a signature
    made for another model (a replay); model_signing itself does not check the name, since a folder
    may be renamed. `signature_name` is the signature file's path inside the model, which is never
    part of what it covers.

    >>> result = verify_signature(Path("tiny-model/model.sig").read_bytes(), "tiny-model",
    ...                           Path("alice.pub").read_bytes())
    >>> result.verdict, result.reason
    (<Verdict.VALID: 'valid'>, <Reason.VALID: 'valid'>)
    """
    try:
        envelope, key = _authenticate(bundle, public_keys)
        context = _Context(key_fingerprint=public_key_fingerprint(key))
        statement = _trusted_statement(envelope.payload, context)
        context = replace(
            context,
            files=tuple(statement.files),
            model_name=statement.model_name,
            root_digest=statement.root_digest,
        )
        if expected_model_name is not None and statement.model_name != expected_model_name:
            raise _Rejected(
                Reason.MODEL_NAME_MISMATCH,
                f"the signature is for model {statement.model_name!r}, not {expected_model_name!r}",
                context,
            )
        unsigned = _check_files(statement, target, signature_name, context)
    except _Rejected as rejection:
        return rejection.result
    return VerificationResult(
        Verdict.VALID,
        Reason.VALID,
        f"valid: {len(statement.files)} files signed by key {context.key_fingerprint}",
        **asdict(replace(context, unsigned_files=unsigned)),
    )
