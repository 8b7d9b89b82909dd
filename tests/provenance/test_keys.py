from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from weightyard.provenance import (
    InvalidKey,
    UnsupportedKey,
    curve_name,
    generate_private_key,
    load_private_key,
    load_public_key,
    public_key_fingerprint,
    public_key_pem,
)

from ._support import KeyPair


def _private_pem(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


UNSUPPORTED_PRIVATE_KEYS = {
    "Ed25519": lambda: _private_pem(ed25519.Ed25519PrivateKey.generate()),
    "RSA-2048": lambda: _private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "P-192": lambda: _private_pem(ec.generate_private_key(ec.SECP192R1())),
    "secp256k1": lambda: _private_pem(ec.generate_private_key(ec.SECP256K1())),
}


@pytest.fixture(scope="module", params=sorted(UNSUPPORTED_PRIVATE_KEYS))
def unsupported_private_pem(request: pytest.FixtureRequest) -> bytes:
    return UNSUPPORTED_PRIVATE_KEYS[request.param]()


def test_fingerprint_is_the_sha256_of_the_pem_public_key_text_as_model_signing_hints(
    key_pair: KeyPair,
) -> None:
    assert public_key_fingerprint(key_pair[1]) == hashlib.sha256(key_pair[1]).hexdigest()


def test_fingerprint_ignores_line_endings_of_the_pem(key_pair: KeyPair) -> None:
    crlf = key_pair[1].replace(b"\n", b"\r\n") + b"\r\n"

    assert public_key_fingerprint(crlf) == public_key_fingerprint(key_pair[1])


def test_fingerprint_of_private_key_is_that_of_its_public_half(key_pair: KeyPair) -> None:
    assert public_key_fingerprint(load_private_key(key_pair[0])) == public_key_fingerprint(key_pair[1])


@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521"])
def test_generated_key_is_on_the_requested_curve(curve: str) -> None:
    assert curve_name(load_private_key(generate_private_key(curve))) == curve


def test_encrypted_key_loads_only_with_its_password() -> None:
    pem = generate_private_key(password=b"s3cret")

    assert curve_name(load_private_key(pem, b"s3cret")) == "P-256"
    with pytest.raises(InvalidKey):
        load_private_key(pem)
    with pytest.raises(InvalidKey):
        load_private_key(pem, b"wrong")


def test_unsupported_private_key_type_is_refused(unsupported_private_pem: bytes) -> None:
    with pytest.raises(UnsupportedKey, match="P-256, P-384 or P-521"):
        load_private_key(unsupported_private_pem)


def test_unsupported_public_key_type_is_refused(unsupported_private_pem: bytes) -> None:
    key = serialization.load_pem_private_key(unsupported_private_pem, None)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    with pytest.raises(UnsupportedKey):
        load_public_key(public_pem)


def test_unknown_curve_cannot_be_generated() -> None:
    with pytest.raises(UnsupportedKey):
        generate_private_key("P-192")


@pytest.mark.parametrize(
    "data", [b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_garbage_is_an_invalid_key(data: bytes) -> None:
    with pytest.raises(InvalidKey):
        load_public_key(data)
    with pytest.raises(InvalidKey):
        load_private_key(data)


def test_private_key_given_as_public_key_is_an_invalid_key(key_pair: KeyPair) -> None:
    with pytest.raises(InvalidKey):
        load_public_key(key_pair[0])


def test_public_key_pem_round_trips(key_pair: KeyPair) -> None:
    assert public_key_pem(load_public_key(key_pair[1])) == key_pair[1]
