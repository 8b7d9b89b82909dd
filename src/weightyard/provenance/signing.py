"""Producing OMS signatures from a manifest, with no dependency on model_signing or sigstore."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from weightyard.provenance._format import PAYLOAD_TYPE, encode_bundle, encode_statement, pae
from weightyard.provenance.keys import load_private_key, public_key_fingerprint, signature_hash
from weightyard.provenance.manifest import Manifest


def sign_manifest(
    manifest: Manifest, private_key: bytes | ec.EllipticCurvePrivateKey, *, password: bytes | None = None
) -> bytes:
    """Sign a manifest and return the signature file's bytes (a Sigstore bundle v0.3, JSON).

    `private_key` is a PEM private key (ECDSA on P-256, P-384 or P-521) or an already loaded one, which
    saves re-deriving an encrypted key's password on every call. The result verifies with
    `model_signing verify key MODEL --signature FILE --public_key PUB.pem`.

    >>> manifest = manifest_from_digests(stored_digests, model_name="alice/tiny-model")
    >>> Path("model.sig").write_bytes(sign_manifest(manifest, Path("hub.key").read_bytes()))
    """
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        key = private_key
    else:
        key = load_private_key(private_key, password)
    payload = encode_statement(manifest)
    signature = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(signature_hash(key)))
    return encode_bundle(payload, signature, public_key_fingerprint(key))
