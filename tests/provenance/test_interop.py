"""Both directions against the real `model_signing` 1.1.x CLI (see _model_signing.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

import weightyard.cli  # noqa: F401  (registers every command module on the app)
from weightyard.cli.app import app
from weightyard.provenance import (
    Reason,
    load_private_key,
    manifest_from_digests,
    manifest_from_folder,
    sign_manifest,
    verify_signature,
)

from ._model_signing import model_signing
from ._support import MODEL_FILES, SIGNED_NAMES, KeyPair, make_key_pair, write_model

runner = CliRunner()


def _key_files(folder: Path, keys: KeyPair) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    (folder / "signing.key").write_bytes(keys[0])
    (folder / "signing.pub").write_bytes(keys[1])
    return folder / "signing.key", folder / "signing.pub"


def _sec1(private_pem: bytes) -> bytes:
    """The same key in OpenSSL's traditional `EC PRIVATE KEY` form, as `openssl ecparam -genkey` writes it."""
    return load_private_key(private_pem).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _assert_succeeded(outcome: subprocess.CompletedProcess[str], message: str) -> None:
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert message in outcome.stdout


@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521"])
def test_model_signing_verify_accepts_weightyard_signature(
    model_signing_cli: Path, model_dir: Path, tmp_path: Path, curve: str
) -> None:
    _, public = _key_files(tmp_path / "keys", make_key_pair(curve))
    private_pem = (tmp_path / "keys" / "signing.key").read_bytes()
    (model_dir / "model.sig").write_bytes(sign_manifest(manifest_from_folder(model_dir), private_pem))

    outcome = model_signing(
        model_signing_cli,
        "verify",
        "key",
        model_dir,
        "--signature",
        model_dir / "model.sig",
        "--public_key",
        public,
    )

    _assert_succeeded(outcome, "Verification succeeded")


def test_model_signing_verify_accepts_hub_signature_made_from_stored_digests(
    model_signing_cli: Path, model_dir: Path, tmp_path: Path, key_pair: KeyPair
) -> None:
    _, public = _key_files(tmp_path / "keys", key_pair)
    stored = {name: hashlib.sha256(content).hexdigest() for name, content in MODEL_FILES.items()}
    signature = tmp_path / "hub.sig"
    signature.write_bytes(
        sign_manifest(manifest_from_digests(stored, "alice/tiny-model@0123abcd"), key_pair[0])
    )

    outcome = model_signing(
        model_signing_cli, "verify", "key", model_dir, "--signature", signature, "--public_key", public
    )

    _assert_succeeded(outcome, "Verification succeeded")


def test_model_signing_verify_accepts_signature_from_weightyard_sign_command(
    model_signing_cli: Path, model_dir: Path, tmp_path: Path, key_pair: KeyPair
) -> None:
    private, public = _key_files(tmp_path / "keys", key_pair)
    signed = runner.invoke(app, ["sign", str(model_dir), "--key", str(private), "--ignore", "notes"])

    outcome = model_signing(
        model_signing_cli,
        "verify",
        "key",
        model_dir,
        "--signature",
        model_dir / "model.sig",
        "--public_key",
        public,
    )

    assert signed.exit_code == 0, signed.output
    _assert_succeeded(outcome, "Verification succeeded")


def test_model_signing_verify_rejects_weightyard_signature_of_a_tampered_or_grown_model(
    model_signing_cli: Path, model_dir: Path, tmp_path: Path, key_pair: KeyPair
) -> None:
    _, public = _key_files(tmp_path / "keys", key_pair)
    signature = tmp_path / "model.sig"
    signature.write_bytes(sign_manifest(manifest_from_folder(model_dir), key_pair[0]))
    (model_dir / "model.safetensors").write_bytes(MODEL_FILES["model.safetensors"][:-1] + b"\x00")
    (model_dir / "extra.bin").write_bytes(b"unsigned")

    outcome = model_signing(
        model_signing_cli, "verify", "key", model_dir, "--signature", signature, "--public_key", public
    )

    assert outcome.returncode == 1
    assert "Hash mismatch for 'model.safetensors'" in outcome.stderr
    assert "extra.bin" in outcome.stderr


def test_model_signing_verify_rejects_weightyard_signature_under_another_key(
    model_signing_cli: Path, model_dir: Path, tmp_path: Path, key_pair: KeyPair, other_key_pair: KeyPair
) -> None:
    _, other_public = _key_files(tmp_path / "other", other_key_pair)
    signature = tmp_path / "model.sig"
    signature.write_bytes(sign_manifest(manifest_from_folder(model_dir), key_pair[0]))

    outcome = model_signing(
        model_signing_cli, "verify", "key", model_dir, "--signature", signature, "--public_key", other_public
    )

    assert outcome.returncode == 1
    assert "Key mismatch" in outcome.stderr


@pytest.mark.parametrize(
    ("curve", "encoding"), [("P-256", "pkcs8"), ("P-256", "sec1"), ("P-384", "pkcs8"), ("P-521", "sec1")]
)
def test_weightyard_verifies_model_signing_signature(
    model_signing_cli: Path, model_dir: Path, tmp_path: Path, curve: str, encoding: str
) -> None:
    keys = make_key_pair(curve)
    private, public = _key_files(
        tmp_path / "keys", (keys[0] if encoding == "pkcs8" else _sec1(keys[0]), keys[1])
    )
    signed = model_signing(
        model_signing_cli,
        "sign",
        "key",
        model_dir,
        "--private_key",
        private,
        "--signature",
        model_dir / "model.sig",
    )
    _assert_succeeded(signed, "Signing succeeded")

    result = verify_signature((model_dir / "model.sig").read_bytes(), model_dir, public.read_bytes())
    cli = runner.invoke(app, ["verify", str(model_dir), "--key", str(public)])

    assert result.valid, result.message
    assert sorted(result.files) == SIGNED_NAMES
    assert result.model_name == "tiny-model"
    assert cli.exit_code == 0, cli.output


def test_weightyard_rejects_model_signing_signature_after_one_byte_tamper(
    model_signing_cli: Path, model_dir: Path, tmp_path: Path, key_pair: KeyPair
) -> None:
    private, public = _key_files(tmp_path / "keys", key_pair)
    signature = tmp_path / "model.sig"
    _assert_succeeded(
        model_signing(
            model_signing_cli, "sign", "key", model_dir, "--private_key", private, "--signature", signature
        ),
        "Signing succeeded",
    )
    content = bytearray((model_dir / "tokenizer" / "tokenizer.json").read_bytes())
    content[0] ^= 0x20
    (model_dir / "tokenizer" / "tokenizer.json").write_bytes(content)

    result = verify_signature(signature.read_bytes(), model_dir, public.read_bytes())
    cli = runner.invoke(app, ["verify", str(model_dir), "--key", str(public), "--signature", str(signature)])

    assert result.reason is Reason.DIGEST_MISMATCH
    assert result.problems[0].path == "tokenizer/tokenizer.json"
    assert cli.exit_code == 1


def test_both_tools_skip_the_same_ignored_paths(
    model_signing_cli: Path, tmp_path: Path, key_pair: KeyPair
) -> None:
    model = write_model(tmp_path / "model", {**MODEL_FILES, "README.md": b"draft", ".git/HEAD": b"ref: main"})
    private, public = _key_files(tmp_path / "keys", key_pair)
    signature = tmp_path / "model.sig"
    _assert_succeeded(
        model_signing(
            model_signing_cli,
            "sign",
            "key",
            model,
            "--private_key",
            private,
            "--signature",
            signature,
            "--ignore-paths",
            model / "README.md",
        ),
        "Signing succeeded",
    )
    (model / "README.md").write_text("rewritten after signing")

    result = verify_signature(signature.read_bytes(), model, public.read_bytes())

    assert result.valid, result.message
    assert result.unsigned_files == (".git/", ".gitattributes", "README.md")


def test_key_hint_is_the_same_in_both_tools(
    model_signing_cli: Path, model_dir: Path, tmp_path: Path, key_pair: KeyPair
) -> None:
    private, _ = _key_files(tmp_path / "keys", key_pair)
    theirs = tmp_path / "theirs.sig"
    model_signing(
        model_signing_cli, "sign", "key", model_dir, "--private_key", private, "--signature", theirs
    )
    ours = sign_manifest(manifest_from_folder(model_dir), key_pair[0])

    def hint(bundle: bytes) -> str:
        return str(json.loads(bundle)["verificationMaterial"]["publicKey"]["hint"])

    assert hint(ours) == hint(theirs.read_bytes())
