"""The README's sign -> push -> pull -> verify walk-through, command for command."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import Server, weightyard_cli


def test_readme_sign_push_pull_verify_walkthrough(server: Server, tmp_path: Path) -> None:
    data = ["--data", str(server.data)]
    assert weightyard_cli("user", "create", "alice", *data).returncode == 0
    token = weightyard_cli("token", "create", "--user", "alice", "--name", "laptop", *data).stdout.strip()
    env = {"HF_TOKEN": token, "WEIGHTYARD_ENDPOINT": server.url}
    key = tmp_path / "alice.key"
    assert weightyard_cli("keygen", str(key)).returncode == 0
    assert weightyard_cli("key", "add", "alice", str(tmp_path / "alice.pub"), *data).returncode == 0
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text('{"model_type": "bert"}')
    (encoder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    signed = weightyard_cli("sign", str(encoder), "--key", str(key), "--name", "alice/encoder")
    assert signed.returncode == 0, signed.stderr
    pushed = weightyard_cli("push", str(encoder), "alice/encoder", env=env)
    assert pushed.returncode == 0, pushed.stderr
    copy = tmp_path / "encoder-copy"
    pulled = weightyard_cli(
        "pull", "alice/encoder", "--to", str(copy), "--require-signature", "alice", env=env
    )
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    verified = weightyard_cli("verify", str(copy), "--key", str(tmp_path / "alice.pub"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    trusted = weightyard_cli("verify", str(copy), "--trust", "alice", env=env)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    fingerprint = json.loads(weightyard_cli("key", "list", "alice", "--json", *data).stdout)[0]["fingerprint"]
    assert weightyard_cli("key", "revoke", "alice", fingerprint, "--reason", "rotated", *data).returncode == 0
    revoked = weightyard_cli("verify", str(copy), "--trust", "alice", env=env)
    assert revoked.returncode == 1
    assert f"Invalid (revoked_key): the key {fingerprint} was revoked on" in revoked.stderr
    (copy / "config.json").write_text('{"model_type": "gpt2"}')
    assert weightyard_cli("verify", str(copy), "--key", str(tmp_path / "alice.pub")).returncode == 1
