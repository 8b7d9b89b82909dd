"""ECDSA keys for model signatures: loading, checking the curve, fingerprints, generation.

The OMS algorithm registry allows ECDSA on NIST P-256, P-384 and P-521 only, each with the hash that
matches its size; every other key type is refused with `UnsupportedKey`, both when signing and when
verifying.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from weightyard.provenance.errors import InvalidKey, UnsupportedKey

DEFAULT_CURVE = "P-256"
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_CURVE_NAMES = {curve.name: name for name, curve in CURVES.items()}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA on {key.curve.name}"
    return type(key).__name__.removesuffix("PrivateKey").removesuffix("PublicKey")


def _check_curve(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> None:
    if key.curve.name not in _HASHES:
        raise UnsupportedKey(
            f"unsupported key: ECDSA on {key.curve.name}; model signatures use NIST P-256, P-384 or P-521"
        )


def _unsupported(key: object) -> UnsupportedKey:
    return UnsupportedKey(
        f"unsupported key type: {_describe(key)}; model signatures use ECDSA on NIST P-256, P-384 or P-521"
    )


def load_private_key(pem: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PEM private key (PKCS#8 or SEC1, optionally encrypted) that can sign model signatures.

    >>> key = load_private_key(open("signing.key", "rb").read())
    """
    try:
        key = serialization.load_pem_private_key(pem, password)
    except TypeError as error:
        # cryptography raises TypeError for a missing password on an encrypted key, or the reverse.
        raise InvalidKey(f"cannot load the private key: {error}") from error
    except (ValueError, UnsupportedAlgorithm) as error:
        raise InvalidKey(
            f"cannot load the private key (not a PEM key, or a wrong password): {error}"
        ) from error
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _unsupported(key)
    _check_curve(key)
    return key


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """Load a PEM public key (SubjectPublicKeyInfo) that can verify model signatures.

    >>> key = load_public_key(open("signing.pub", "rb").read())
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise InvalidKey(f"cannot load the public key (not a PEM public key): {error}") from error
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise _unsupported(key)
    _check_curve(key)
    return key


def public_key_pem(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The canonical PEM SubjectPublicKeyInfo text of a key (of the public half, for a private key)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_fingerprint(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey | bytes) -> str:
    """Hex sha256 of the key's canonical PEM SubjectPublicKeyInfo text.

    This is exactly the `publicKey.hint` that model_signing writes into a bundle and checks on verify
    (a hash of the PEM *text*, not of the DER), so it doubles as the key id of a key registry: a bundle
    names its key by this value. PEM input is re-encoded first, so line endings or a trailing newline
    do not change the fingerprint.

    >>> public_key_fingerprint(open("signing.pub", "rb").read())
    'fbf70202e6443616034ffacf2986f9d8703e4193ccf34a0ad076302adee6d4ea'
    """
    loaded = load_public_key(key) if isinstance(key, bytes) else key
    return hashlib.sha256(public_key_pem(loaded)).hexdigest()


def curve_name(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> str:
    """The NIST name of the key's curve: `P-256`, `P-384` or `P-521`."""
    _check_curve(key)
    return _CURVE_NAMES[key.curve.name]


def signature_hash(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    """The hash ECDSA uses with this key's curve (P-256 → SHA-256, P-384 → SHA-384, P-521 → SHA-512)."""
    _check_curve(key)
    return _HASHES[key.curve.name]()


def generate_private_key(curve: str = DEFAULT_CURVE, password: bytes | None = None) -> bytes:
    """A new private key as PKCS#8 PEM, encrypted when a password is given.

    >>> pem = generate_private_key("P-384")
    >>> public_key_pem(load_private_key(pem)).startswith(b"-----BEGIN PUBLIC KEY-----")
    True
    """
    if curve not in CURVES:
        raise UnsupportedKey(f"unsupported curve {curve!r}; choose one of {', '.join(CURVES)}")
    key = ec.generate_private_key(CURVES[curve])
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


# A key's owner revokes it when it may be in other hands. An OMS key signature carries no trusted time, so a
# signature made with a revoked key cannot be told apart from one a thief made and backdated: a revoked key is
# trusted by no one, for any signature, whenever it was made. Every verifier (the hub's status, pull, verify
# --trust, the web pages) reports it with this reason and this wording.
REVOKED_KEY = "revoked_key"


def revoked_key_message(fingerprint: str | None, revoked_at: str, reason: str | None) -> str:
    """The one wording of a signature made with a revoked key; `revoked_at` as the API writes it."""
    why = f" ({reason})" if reason else ""
    return f"the key {fingerprint} was revoked on {revoked_at}{why}; a revoked key is trusted for nothing"
