"""Provenance on the hub: every commit attested by the hub, publisher signatures verified on push, key
revocation, and `weightyard pull` verifying what it downloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, snapshot_download
from tests.support import Server, TamperingProxy, weightyard_cli

from weightyard.provenance import (
    generate_private_key,
    load_private_key,
    manifest_from_folder,
    public_key_pem,
    sign_manifest,
    verify_signature,
)


def env_for(server: Server, endpoint: str | None = None) -> dict[str, str]:
    return {"HF_TOKEN": server.token, "WEIGHTYARD_ENDPOINT": endpoint or server.url}


def make_model(folder: Path, weights: bytes = b"\x00weights" * 1000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def sign_folder(folder: Path, private_pem: bytes, model_name: str, ignore: tuple[str, ...] = ()) -> None:
    manifest = manifest_from_folder(folder, model_name=model_name, ignore=["model.sig", *ignore])
    (folder / "model.sig").write_bytes(sign_manifest(manifest, private_pem))


@pytest.fixture
def publisher(server: Server, tmp_path: Path) -> tuple[bytes, str]:
    """A fresh key pair registered for the admin user; returns the private key and the fingerprint."""
    private = generate_private_key()
    (tmp_path / "pub.pem").write_bytes(public_key_pem(load_private_key(private)))
    added = weightyard_cli("key", "add", "admin", str(tmp_path / "pub.pem"), "--data", str(server.data))
    assert added.returncode == 0, added.stderr
    keys = json.loads(weightyard_cli("key", "list", "admin", "--json", "--data", str(server.data)).stdout)
    return private, keys[-1]["fingerprint"]


def status(server: Server, repo: str, revision: str = "main") -> dict[str, object]:
    response = httpx.get(
        f"{server.url}/api/models/{repo}/signatures/{revision}",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    response.raise_for_status()
    result: dict[str, object] = response.json()
    return result


def push(server: Server, folder: Path, repo: str) -> None:
    pushed = weightyard_cli("push", str(folder), repo, env=env_for(server))
    assert pushed.returncode == 0, pushed.stderr


def test_every_commit_is_attested_and_verifies_against_a_download(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    push(server, make_model(tmp_path / "m"), repo_name)
    hub_key = httpx.get(f"{server.url}/.well-known/weightyard/hub-key.pem").content
    bundle = httpx.get(f"{server.url}/api/models/{repo_name}/attestation/main").content
    snapshot = Path(snapshot_download(repo_name, endpoint=server.url, local_dir=tmp_path / "download"))
    shutil.rmtree(snapshot / ".cache")  # the client's own bookkeeping, not part of the model
    result = verify_signature(bundle, snapshot, hub_key, expected_model_name=repo_name, signature_name=None)
    assert result.valid, result.message
    assert sorted(result.files) == ["config.json", "model.safetensors"]
    info = HfApi(endpoint=server.url, token=server.token).model_info(repo_name)
    assert info.signatureStatus == {"status": "unsigned", "attested": True, "signers": []}  # type: ignore[attr-defined]


def test_publisher_signature_is_verified_on_push_and_unsigned_files_are_reported(
    server: Server, repo_name: str, tmp_path: Path, publisher: tuple[bytes, str]
) -> None:
    private, fingerprint = publisher
    folder = make_model(tmp_path / "m")
    (folder / "notes.txt").write_text("not covered")
    sign_folder(folder, private, repo_name, ignore=("notes.txt",))
    push(server, folder, repo_name)
    result = status(server, repo_name)
    assert result["status"] == "signed"
    (signature,) = result["signatures"]  # type: ignore[misc]
    assert signature["signer"] == "admin"
    assert signature["keyFingerprint"] == fingerprint
    assert sorted(signature["files"]) == ["config.json", "model.safetensors"]
    assert "notes.txt" in signature["unsignedFiles"]


def test_a_later_commit_that_changes_signed_files_is_invalid(
    server: Server, repo_name: str, tmp_path: Path, publisher: tuple[bytes, str]
) -> None:
    private, _ = publisher
    folder = make_model(tmp_path / "m")
    sign_folder(folder, private, repo_name)
    push(server, folder, repo_name)
    signed_commit = HfApi(endpoint=server.url, token=server.token).model_info(repo_name).sha
    (folder / "model.safetensors").write_bytes(b"\x00tampered" * 1000)
    push(server, folder, repo_name)
    (signature,) = status(server, repo_name)["signatures"]  # type: ignore[misc]
    assert (signature["verdict"], signature["reason"]) == ("invalid", "digest_mismatch")
    assert status(server, repo_name, signed_commit or "")["status"] == "signed"


def test_unknown_key_and_replayed_signature_are_invalid(
    server: Server, repo_name: str, tmp_path: Path, publisher: tuple[bytes, str]
) -> None:
    stranger = make_model(tmp_path / "stranger")
    sign_folder(stranger, generate_private_key(), repo_name)
    push(server, stranger, repo_name)
    (signature,) = status(server, repo_name)["signatures"]  # type: ignore[misc]
    assert (signature["verdict"], signature["reason"]) == ("invalid", "unknown_key")
    private, _ = publisher
    replay = make_model(tmp_path / "replay")
    sign_folder(replay, private, "admin/some-other-repo")
    push(server, replay, repo_name + "-b")
    (signature,) = status(server, repo_name + "-b")["signatures"]  # type: ignore[misc]
    assert (signature["verdict"], signature["reason"]) == ("invalid", "model_name_mismatch")


def test_a_revoked_key_is_trusted_for_no_signature_before_or_after_its_revocation(
    server: Server, repo_name: str, tmp_path: Path, publisher: tuple[bytes, str]
) -> None:
    private, fingerprint = publisher
    folder = make_model(tmp_path / "m")
    sign_folder(folder, private, repo_name)
    push(server, folder, repo_name)
    earlier = HfApi(endpoint=server.url, token=server.token).model_info(repo_name).sha
    (public,) = [
        k for k in httpx.get(f"{server.url}/api/keys?user=admin").json() if k["fingerprint"] == fingerprint
    ]
    (tmp_path / "signer.pub").write_text(public["publicKey"])
    assert (
        weightyard_cli("pull", repo_name, "--to", str(tmp_path / "before"), env=env_for(server)).returncode
        == 0
    )
    revoked = weightyard_cli(
        "key", "revoke", "admin", fingerprint, "--reason", "laptop stolen", "--data", str(server.data)
    )
    assert revoked.returncode == 0, revoked.stderr
    (old,) = status(server, repo_name, earlier or "")["signatures"]  # type: ignore[misc]
    assert (old["verdict"], old["reason"]) == ("invalid", "revoked_key")
    assert old["keyRevoked"]["reason"] == "laptop stolen"
    revoked_on = old["keyRevoked"]["at"]
    assert f"was revoked on {revoked_on} (laptop stolen)" in old["message"]
    # The same answer, in the same words, from every verifier: pull (with or without requiring the signer),
    # verify --trust, and the web page.
    for extra in (
        [],
        ["--require-signature", "admin"],
        ["--require-signature", str(tmp_path / "signer.pub")],
    ):
        pulled = weightyard_cli(
            "pull", repo_name, "--to", str(tmp_path / "after"), *extra, env=env_for(server)
        )
        assert pulled.returncode == 1, pulled.stdout
        assert f"revoked_key: the key {fingerprint} was revoked on {revoked_on}" in pulled.stderr
        assert not (tmp_path / "after").exists()
    trusted = weightyard_cli("verify", str(tmp_path / "before"), "--trust", "admin", env=env_for(server))
    assert trusted.returncode == 1
    assert f"Invalid (revoked_key): the key {fingerprint} was revoked on {revoked_on}" in trusted.stderr
    page = httpx.get(
        f"{server.url}/{repo_name}/tree/{earlier}", headers={"Accept": "application/json"}
    ).json()
    (config,) = [f for f in page["files"] if f["path"] == "config.json"]
    assert config["signature"] == f"revoked_key: the key was revoked on {revoked_on}"
    (folder / "config.json").write_text('{"model_type": "bert", "v": 2}')
    sign_folder(folder, private, repo_name)
    push(server, folder, repo_name)
    (new,) = status(server, repo_name)["signatures"]  # type: ignore[misc]
    assert (new["verdict"], new["reason"]) == ("invalid", "revoked_key")
    log = json.loads(weightyard_cli("audit-log", "--json", "--data", str(server.data)).stdout)
    assert {"key.add", "key.revoke"} <= {entry["action"] for entry in log}


def test_pull_verifies_and_requires_signatures(
    server: Server, repo_name: str, tmp_path: Path, publisher: tuple[bytes, str]
) -> None:
    private, _ = publisher
    folder = make_model(tmp_path / "m")
    sign_folder(folder, private, repo_name)
    push(server, folder, repo_name)
    pulled = weightyard_cli(
        "pull", repo_name, "--to", str(tmp_path / "ok"), "--require-signature", "admin", env=env_for(server)
    )
    assert pulled.returncode == 0, pulled.stderr
    assert "signed by admin" in pulled.stdout + pulled.stderr
    assert (tmp_path / "ok" / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    unsigned = repo_name + "-unsigned"
    push(server, make_model(tmp_path / "u"), unsigned)
    refused = weightyard_cli(
        "pull",
        unsigned,
        "--to",
        str(tmp_path / "refused"),
        "--require-signature",
        "admin",
        env=env_for(server),
    )
    assert refused.returncode == 1
    assert "no valid signature" in refused.stdout + refused.stderr
    assert not (tmp_path / "refused").exists()
    assert not (tmp_path / ".refused.partial").exists()
    assert (
        weightyard_cli("pull", unsigned, "--to", str(tmp_path / "plain"), env=env_for(server)).returncode == 0
    )


def test_pull_through_a_tampering_network_fails_and_keeps_nothing(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    push(server, make_model(tmp_path / "m"), repo_name)
    proxy = TamperingProxy(int(server.url.rsplit(":", 1)[1]), "model.safetensors")
    try:
        pulled = weightyard_cli(
            "pull", repo_name, "--to", str(tmp_path / "copy"), env=env_for(server, proxy.url)
        )
    finally:
        proxy.close()
    assert proxy.tampered >= 1
    assert pulled.returncode == 1
    assert "differ from what the hub recorded" in pulled.stdout + pulled.stderr
    assert not (tmp_path / "copy").exists()
    assert not (tmp_path / ".copy.partial").exists()


def test_keys_of_unsupported_types_are_refused(server: Server, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "ed.pem").write_bytes(pem)
    refused = weightyard_cli("key", "add", "admin", str(tmp_path / "ed.pem"), "--data", str(server.data))
    assert refused.returncode == 2
    api = httpx.post(
        f"{server.url}/api/admin/users/admin/keys",
        headers={"Authorization": f"Bearer {server.token}"},
        json={"publicKey": pem.decode()},
    )
    assert api.status_code == 400


def test_model_signing_interoperates_with_the_hub_in_both_directions(server: Server, tmp_path: Path) -> None:
    from tests.provenance._model_signing import ensure_model_signing, model_signing

    cli = ensure_model_signing()
    private = generate_private_key()
    (tmp_path / "signing.key").write_bytes(private)
    (tmp_path / "signing.pub").write_bytes(public_key_pem(load_private_key(private)))
    assert (
        weightyard_cli(
            "key", "add", "admin", str(tmp_path / "signing.pub"), "--data", str(server.data)
        ).returncode
        == 0
    )
    # model_signing names the model after its folder, so the folder is named like the repo.
    folder = make_model(tmp_path / "interop-model")
    signed = model_signing(
        cli,
        "sign",
        "key",
        folder,
        "--private_key",
        tmp_path / "signing.key",
        "--signature",
        folder / "model.sig",
    )
    assert signed.returncode == 0, signed.stderr
    push(server, folder, "admin/interop-model")
    result = status(server, "admin/interop-model")
    assert result["status"] == "signed", result
    download = Path(
        snapshot_download("admin/interop-model", endpoint=server.url, local_dir=tmp_path / "download")
    )
    shutil.rmtree(download / ".cache")
    (tmp_path / "attestation.sig").write_bytes(
        httpx.get(f"{server.url}/api/models/admin/interop-model/attestation/main").content
    )
    (tmp_path / "hub.pem").write_bytes(httpx.get(f"{server.url}/.well-known/weightyard/hub-key.pem").content)
    verified = model_signing(
        cli,
        "verify",
        "key",
        download,
        "--signature",
        tmp_path / "attestation.sig",
        "--public_key",
        tmp_path / "hub.pem",
        "--ignore-paths",
        download / "model.sig",
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
