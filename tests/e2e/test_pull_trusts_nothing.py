"""`weightyard pull` against a hostile hub or a tampering proxy: it opens only files it wrote, and checks
attestations with a pinned hub key (trusted on first use, or given), never with the key of the moment."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.proxy import Rewrite, RewritingProxy
from tests.support import Server, weightyard_cli

from weightyard.provenance import (
    generate_private_key,
    load_private_key,
    manifest_from_digests,
    public_key_pem,
    sign_manifest,
)


@pytest.fixture
def proxy(server: Server) -> Iterator[RewritingProxy]:
    instance = RewritingProxy(server.url)
    yield instance
    instance.close()


MODEL = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"\x00weights" * 1000}
TAMPERED_CONFIG = b'{"model_type": "bert", "trust_remote_code": true}'


def push_model(server: Server, repo: str, folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    pushed = weightyard_cli(
        "push",
        str(folder),
        repo,
        env={"HF_TOKEN": server.token, "WEIGHTYARD_ENDPOINT": server.url},
        timeout=120,
    )
    assert pushed.returncode == 0, pushed.stderr


def pull(
    repo: str,
    endpoint: str,
    token: str,
    target: Path,
    config: Path,
    *extra: str,
    env: dict[str, str] | None = None,
) -> object:
    return weightyard_cli(
        "pull",
        repo,
        "--to",
        str(target),
        "--endpoint",
        endpoint,
        "--token",
        token,
        *extra,
        env={"XDG_CONFIG_HOME": str(config), **(env or {})},
        timeout=120,
    )


def forge(repo: str, tamper: bool = True) -> tuple[bytes, Rewrite]:
    """A tampering proxy's rewrite: its own hub key, a config.json of its choosing, and an attestation of
    that config.json re-signed with its key (with `tamper=False`, the genuine files attested with another key,
    as after a real change of the hub's key). Returns the new public key and the rewrite."""
    private = generate_private_key()
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in MODEL.items()}
    if tamper:
        digests["config.json"] = hashlib.sha256(TAMPERED_CONFIG).hexdigest()
    bundle = sign_manifest(manifest_from_digests(digests, model_name=repo), private).decode()
    public = public_key_pem(load_private_key(private))

    def rewrite(method: str, path: str, body: bytes) -> bytes:
        if path == "/.well-known/weightyard/hub-key.pem":
            return public
        if path.startswith(f"/api/models/{repo}/signatures/"):
            status = json.loads(body)
            status["hub"]["bundle"] = bundle
            return json.dumps(status).encode()
        if tamper and "/resolve/" in path and path.endswith("/config.json") and method == "GET":
            return TAMPERED_CONFIG
        return body

    return public, rewrite


def test_a_proxy_that_serves_its_own_hub_key_is_refused_once_the_key_is_known(
    server: Server, proxy: RewritingProxy, repo_name: str, tmp_path: Path
) -> None:
    push_model(server, repo_name, tmp_path / "m", MODEL)
    config = tmp_path / "config"
    first = pull(repo_name, proxy.url, server.token, tmp_path / "first", config)
    assert first.returncode == 0, first.stderr  # type: ignore[attr-defined]
    assert "on first use" in first.stderr  # type: ignore[attr-defined]
    assert proxy.url in (config / "weightyard" / "known_hubs").read_text()
    _, proxy.rewrite = forge(repo_name)
    tampered = pull(repo_name, proxy.url, server.token, tmp_path / "second", config)
    assert tampered.returncode == 1, tampered.stdout  # type: ignore[attr-defined]
    assert "not the key" in tampered.stderr  # type: ignore[attr-defined]
    assert f"weightyard hub trust {proxy.url}" in tampered.stderr  # type: ignore[attr-defined]
    assert "verified" not in tampered.stdout  # type: ignore[attr-defined]
    assert not (tmp_path / "second").exists()
    assert not (tmp_path / ".second.partial").exists()


def test_an_explicitly_pinned_hub_key_refuses_a_re_signed_attestation(
    server: Server, proxy: RewritingProxy, repo_name: str, tmp_path: Path
) -> None:
    push_model(server, repo_name, tmp_path / "m", MODEL)
    real = httpx.get(f"{server.url}/.well-known/weightyard/hub-key.pem").content
    (tmp_path / "hub.pem").write_bytes(real)
    _, proxy.rewrite = forge(repo_name)
    by_option = pull(
        repo_name,
        proxy.url,
        server.token,
        tmp_path / "a",
        tmp_path / "c1",
        "--hub-key",
        str(tmp_path / "hub.pem"),
    )
    by_env = pull(
        repo_name,
        proxy.url,
        server.token,
        tmp_path / "b",
        tmp_path / "c2",
        env={"WEIGHTYARD_HUB_KEY": str(tmp_path / "hub.pem")},
    )
    for refused in (by_option, by_env):
        assert refused.returncode == 1, refused.stdout  # type: ignore[attr-defined]
        assert "not the pinned key" in refused.stderr  # type: ignore[attr-defined]
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()
    direct = pull(
        repo_name,
        server.url,
        server.token,
        tmp_path / "d",
        tmp_path / "c3",
        "--hub-key",
        str(tmp_path / "hub.pem"),
    )
    assert direct.returncode == 0, direct.stderr  # type: ignore[attr-defined]
    assert (tmp_path / "d" / "config.json").read_bytes() == MODEL["config.json"]


def test_hub_trust_re_trusts_a_changed_key_on_purpose(
    server: Server, proxy: RewritingProxy, repo_name: str, tmp_path: Path
) -> None:
    push_model(server, repo_name, tmp_path / "m", MODEL)
    config = tmp_path / "config"
    assert pull(repo_name, proxy.url, server.token, tmp_path / "one", config).returncode == 0  # type: ignore[attr-defined]
    new_key, proxy.rewrite = forge(repo_name, tamper=False)
    (tmp_path / "new.pem").write_bytes(new_key)
    changed = pull(repo_name, proxy.url, server.token, tmp_path / "two", config)
    assert changed.returncode == 1  # type: ignore[attr-defined]
    # The operator confirmed the new key out of band: trust it as a key file, or as the hub serves it.
    for how in (["--key", str(tmp_path / "new.pem")], []):
        trusted = weightyard_cli("hub", "trust", proxy.url, *how, env={"XDG_CONFIG_HOME": str(config)})
        assert trusted.returncode == 0, trusted.stderr
        assert trusted.stdout.startswith("Trusting key ")
    again = pull(repo_name, proxy.url, server.token, tmp_path / "two", config)
    assert again.returncode == 0, again.stderr  # type: ignore[attr-defined]
    wrong = weightyard_cli(
        "hub", "trust", server.url, "--key", str(tmp_path / "new.pem"), env={"XDG_CONFIG_HOME": str(config)}
    )
    assert wrong.returncode == 1  # a key file the hub does not serve is not recorded
    assert "presents key" in wrong.stderr


@pytest.mark.parametrize("named", ["absolute", "climbing"])
def test_a_signature_path_naming_a_local_fifo_is_refused_without_opening_it(
    server: Server, proxy: RewritingProxy, repo_name: str, tmp_path: Path, named: str
) -> None:
    push_model(server, repo_name, tmp_path / "m", {**MODEL, "model.sig": b"{}"})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    hostile = str(fifo) if named == "absolute" else "../fifo"

    def rewrite(method: str, path: str, body: bytes) -> bytes:
        if path.startswith(f"/api/models/{repo_name}/signatures/"):
            status = json.loads(body)
            for item in status["signatures"]:
                item["path"] = hostile
            return json.dumps(status).encode()
        return body

    proxy.rewrite = rewrite
    # A pull that opened the FIFO would block until the timeout; the verdict must come first.
    refused = pull(repo_name, proxy.url, server.token, tmp_path / "copy", tmp_path / "config")
    assert refused.returncode == 1, refused.stdout  # type: ignore[attr-defined]
    assert f"names a signature {hostile!r} that is not among the files pulled" in refused.stderr  # type: ignore[attr-defined]
    assert not (tmp_path / "copy").exists()


def test_a_tree_listing_a_path_outside_the_target_is_refused(
    server: Server, proxy: RewritingProxy, repo_name: str, tmp_path: Path
) -> None:
    push_model(server, repo_name, tmp_path / "m", MODEL)

    def rewrite(method: str, path: str, body: bytes) -> bytes:
        if "/tree/" in path:
            entries = json.loads(body)
            for entry in entries:
                if entry["path"] == "config.json":
                    entry["path"] = "../outside.json"
            return json.dumps(entries).encode()
        return body

    proxy.rewrite = rewrite
    refused = pull(repo_name, proxy.url, server.token, tmp_path / "copy", tmp_path / "config")
    assert refused.returncode == 1, refused.stdout  # type: ignore[attr-defined]
    assert "unsafe path '../outside.json'" in refused.stderr  # type: ignore[attr-defined]
    assert not (tmp_path / "outside.json").exists()
    assert not (tmp_path / "copy").exists()
