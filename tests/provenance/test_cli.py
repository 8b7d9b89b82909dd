from __future__ import annotations

import importlib
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from typer.testing import CliRunner

import weightyard.cli  # noqa: F401  (registers every command module on the app)
from weightyard.cli.app import app

from ._support import SIGNED_NAMES, KeyPair

runner = CliRunner()


@pytest.fixture
def key_files(tmp_path: Path, key_pair: KeyPair) -> tuple[Path, Path]:
    private_path, public_path = tmp_path / "signing.key", tmp_path / "signing.pub"
    private_path.write_bytes(key_pair[0])
    public_path.write_bytes(key_pair[1])
    return private_path, public_path


def test_sign_then_verify_in_place_exits_zero(model_dir: Path, key_files: tuple[Path, Path]) -> None:
    signed = runner.invoke(app, ["sign", str(model_dir), "--key", str(key_files[0])])
    verified = runner.invoke(app, ["verify", str(model_dir), "--key", str(key_files[1])])

    assert signed.exit_code == 0, signed.output
    assert (model_dir / "model.sig").is_file()
    assert verified.exit_code == 0, verified.output
    assert "Valid" in verified.output


def test_verify_json_lists_the_covered_files(model_dir: Path, key_files: tuple[Path, Path]) -> None:
    runner.invoke(app, ["sign", str(model_dir), "--key", str(key_files[0])])

    result = runner.invoke(app, ["verify", str(model_dir), "--key", str(key_files[1]), "--json"])

    report = json.loads(result.stdout)
    assert result.exit_code == 0
    assert report["verdict"] == "valid"
    assert report["files"] == SIGNED_NAMES


def test_tampered_model_exits_one_with_the_reason(model_dir: Path, key_files: tuple[Path, Path]) -> None:
    runner.invoke(app, ["sign", str(model_dir), "--key", str(key_files[0])])
    (model_dir / "config.json").write_text('{"hidden_size": 9}\n')

    result = runner.invoke(app, ["verify", str(model_dir), "--key", str(key_files[1]), "--json"])

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["verdict"], report["reason"]) == ("invalid", "digest_mismatch")
    assert report["problems"][0]["path"] == "config.json"


def test_signature_written_outside_the_model_is_found_with_signature_option(
    model_dir: Path, key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    signature = tmp_path / "tiny-model.sig"
    runner.invoke(app, ["sign", str(model_dir), "--key", str(key_files[0]), "--signature", str(signature)])

    result = runner.invoke(
        app, ["verify", str(model_dir), "--key", str(key_files[1]), "--signature", str(signature)]
    )

    assert result.exit_code == 0, result.output
    assert not (model_dir / "model.sig").exists()


def test_verify_with_another_key_exits_one(
    model_dir: Path, key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    runner.invoke(app, ["sign", str(model_dir), "--key", str(key_files[0])])
    runner.invoke(app, ["keygen", str(tmp_path / "other.key")])

    result = runner.invoke(app, ["verify", str(model_dir), "--key", str(tmp_path / "other.pub")])

    assert result.exit_code == 1
    assert "unknown_key" in result.output


def test_verify_with_expected_name_rejects_a_signature_for_another_model(
    model_dir: Path, key_files: tuple[Path, Path]
) -> None:
    runner.invoke(app, ["sign", str(model_dir), "--key", str(key_files[0]), "--name", "alice/model-a"])

    other = runner.invoke(
        app, ["verify", str(model_dir), "--key", str(key_files[1]), "--name", "bob/model-b"]
    )
    same = runner.invoke(
        app, ["verify", str(model_dir), "--key", str(key_files[1]), "--name", "alice/model-a"]
    )

    assert other.exit_code == 1
    assert "model_name_mismatch" in other.output
    assert same.exit_code == 0


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    result = runner.invoke(app, ["keygen", str(tmp_path / "signing.key"), "--curve", "P-384", "--json"])

    report = json.loads(result.stdout)
    assert result.exit_code == 0
    assert report["curve"] == "P-384"
    assert stat.S_IMODE((tmp_path / "signing.key").stat().st_mode) == 0o600
    assert (tmp_path / "signing.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_keygen_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    runner.invoke(app, ["keygen", str(tmp_path / "signing.key")])
    before = (tmp_path / "signing.key").read_bytes()

    result = runner.invoke(app, ["keygen", str(tmp_path / "signing.key")])

    assert result.exit_code == 2
    assert (tmp_path / "signing.key").read_bytes() == before


def test_encrypted_key_signs_with_the_password_from_the_environment(model_dir: Path, tmp_path: Path) -> None:
    env = {"WEIGHTYARD_KEY_PASSWORD": "s3cret"}
    runner.invoke(app, ["keygen", str(tmp_path / "signing.key")], env=env)

    without = runner.invoke(app, ["sign", str(model_dir), "--key", str(tmp_path / "signing.key")])
    with_password = runner.invoke(
        app, ["sign", str(model_dir), "--key", str(tmp_path / "signing.key")], env=env
    )

    assert without.exit_code == 2
    assert with_password.exit_code == 0, with_password.output


@pytest.mark.parametrize(
    "arguments",
    [
        ["verify", "{model}"],
        ["verify", "{model}/absent", "--key", "{pub}"],
        ["verify", "{model}", "--key", "{pub}", "--signature", "{model}/absent.sig"],
        ["verify", "{model}", "--key", "{model}/config.json"],
        ["sign", "{model}", "--key", "{model}/config.json"],
        ["sign", "{model}/absent", "--key", "{key}"],
        ["sign", "{model}", "--key", "{model}/absent.key"],
    ],
)
def test_usage_and_input_errors_exit_two(
    model_dir: Path, key_files: tuple[Path, Path], arguments: list[str]
) -> None:
    runner.invoke(app, ["sign", str(model_dir), "--key", str(key_files[0])])
    values = {"model": str(model_dir), "key": str(key_files[0]), "pub": str(key_files[1])}

    result = runner.invoke(app, [argument.format(**values) for argument in arguments])

    assert result.exit_code == 2, result.output


def test_signing_with_an_ed25519_key_is_an_input_error_naming_the_key_type(
    model_dir: Path, tmp_path: Path
) -> None:
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ed.key").write_bytes(key)

    result = runner.invoke(app, ["sign", str(model_dir), "--key", str(tmp_path / "ed.key")])

    assert result.exit_code == 2
    assert "Ed25519" in result.output


def test_the_cli_starts_without_loading_the_signing_code() -> None:
    # Keys, signing and verification (cryptography) are imported by the commands that use them; every other
    # command starts without them.
    probe = "import sys, weightyard.cli;print(sorted(m for m in sys.modules if m.startswith('cryptography')))"
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"


def test_every_public_name_of_the_provenance_package_is_the_one_of_its_module() -> None:
    import weightyard.provenance as provenance

    homes = provenance._HOMES
    assert sorted(name for names in homes.values() for name in names) == sorted(provenance.__all__)
    for module, names in homes.items():
        defined = importlib.import_module(f"weightyard.provenance.{module}")
        for name in names:
            assert getattr(provenance, name) is getattr(defined, name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        provenance.nothing_here  # noqa: B018
