"""Helpers shared by the provenance tests: deterministic model files, key pairs, a payload signer."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from weightyard.provenance import (
    generate_private_key,
    load_private_key,
    public_key_fingerprint,
    public_key_pem,
)
from weightyard.provenance._format import PAYLOAD_TYPE, encode_bundle, pae

KeyPair = tuple[bytes, bytes]

# Deterministic contents: the same model every run, with a nested folder, a name that sorts differently by
# code point than by path components (`a-b` vs `a/b`), non-ASCII, and the git metadata model_signing skips.
MODEL_FILES: dict[str, bytes] = {
    "config.json": b'{"hidden_size": 8}\n',
    "model.safetensors": bytes(range(256)) * 512,
    "tokenizer/tokenizer.json": b'{"vocab": {"a": 0}}\n',
    "a-b.txt": b"dash\n",
    "a/b.txt": b"slash\n",
    "notes/é.md": b"accent\n",
    ".gitattributes": b"*.safetensors filter=lfs\n",
}
SIGNED_NAMES = sorted(name for name in MODEL_FILES if name != ".gitattributes")


def make_key_pair(curve: str = "P-256") -> KeyPair:
    private_pem = generate_private_key(curve)
    return private_pem, public_key_pem(load_private_key(private_pem))


def write_model(folder: Path, files: dict[str, bytes] = MODEL_FILES) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return folder


def sign_payload(payload: bytes, private_pem: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """A correctly signed bundle around arbitrary payload bytes, to reach the checks after the signature."""
    key = load_private_key(private_pem)
    assert isinstance(key.curve, ec.SECP256R1)
    signature = key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    bundle = encode_bundle(payload, signature, public_key_fingerprint(key))
    return bundle.replace(PAYLOAD_TYPE.encode(), payload_type.encode())
