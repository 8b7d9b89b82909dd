"""`weightyard keygen`, `weightyard sign` and `weightyard verify`: model signatures on a local folder.

Signatures are OMS bundles that `model_signing verify key` accepts, and signatures made by
`model_signing sign key` verify here. Exit codes: 0 valid or done, 1 the signature is invalid,
2 usage or input error (missing folder, unreadable key, unsupported key type).
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from weightyard.cli.app import app
from weightyard.cli.errors import client_errors, describe
from weightyard.cli.hub import EndpointOption, TokenOption, hub_request

# The rest of weightyard.provenance (keys, signing, verification: `cryptography`) is imported by the commands
# that use it, not at every start of the CLI.
from weightyard.provenance import DEFAULT_SIGNATURE_NAME

if TYPE_CHECKING:
    from weightyard.provenance import VerificationResult

EXIT_INVALID = 1
EXIT_USAGE = 2


class Curve(StrEnum):
    P256 = "P-256"
    P384 = "P-384"
    P521 = "P-521"


JsonFlag = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")]
PasswordOption = Annotated[
    str | None,
    typer.Option(
        "--password",
        envvar="WEIGHTYARD_KEY_PASSWORD",
        show_envvar=True,
        help="Password of the private key (prefer the environment variable).",
        show_default=False,
    ),
]


def _hub_keys(user: str, endpoint: str | None, token: str | None) -> list[dict[str, Any]]:
    """Every key `user` registered on the hub, revoked ones included, so that a signature made with a revoked
    key is reported as such (`revoked_key`) rather than as made by an unknown key."""
    try:
        keys: list[dict[str, Any]] = hub_request(endpoint, token, "GET", f"/api/keys?user={user}").json()
    except client_errors() as error:
        _fail(f"could not read {user}'s keys from the hub: {describe(error)}", EXIT_INVALID)
    if not keys:
        _fail(f"{user} has no signing key on the hub", EXIT_INVALID)
    return keys


def _revoked(result: VerificationResult, keys: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The hub's record of the key that made a valid signature, when that key is revoked."""
    if not result.valid:
        return None
    return next((k for k in keys if k["fingerprint"] == result.key_fingerprint and k.get("revokedAt")), None)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _print_json(document: dict[str, Any]) -> None:
    typer.echo(json.dumps(document, indent=2))


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        _fail(f"cannot read {what} {path}: {error.strerror}")


def _model_folder(model: Path) -> Path:
    if not model.is_dir():
        _fail(f"{model} is not a folder")
    return model


def _inside(path: Path, folder: Path) -> str | None:
    """`path` relative to `folder` as POSIX, or None when it lies outside (it is then not a model file)."""
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None


def _password(password: str | None) -> bytes | None:
    # model_signing 1.1.1 passes its --password through as str and fails; cryptography needs bytes.
    return password.encode("utf-8") if password else None


@app.command()
def keygen(
    out: Annotated[Path, typer.Argument(help="Private key file to write; the public key goes to OUT.pub.")],
    curve: Annotated[Curve, typer.Option("--curve", help="NIST curve of the ECDSA key.")] = Curve.P256,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
    password: PasswordOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Create an ECDSA key pair for signing models (PKCS#8 private key, encrypted if a password is set)."""
    from weightyard.provenance import (
        generate_private_key,
        load_private_key,
        public_key_fingerprint,
        public_key_pem,
    )

    public_path = out.with_suffix(".pub")
    if public_path == out:
        _fail(f"{out} ends in .pub; name the private key file, e.g. signing.key")
    for path in (out, public_path):
        if path.exists() and not force:
            _fail(f"{path} exists; pass --force to overwrite it")
    private_pem = generate_private_key(curve.value, _password(password))
    public_pem = public_key_pem(load_private_key(private_pem, _password(password)))
    try:
        out.unlink(missing_ok=True)
        # Created 0600 from the start: the key must never be readable by others, not even briefly.
        with os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            file.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as error:
        _fail(f"cannot write the key pair: {error}")
    fingerprint = public_key_fingerprint(public_pem)
    if json_output:
        _print_json(
            {
                "private_key": str(out),
                "public_key": str(public_path),
                "curve": curve.value,
                "fingerprint": fingerprint,
            }
        )
    else:
        typer.echo(f"Wrote {curve.value} key pair: {out} (private, keep it secret), {public_path} (public)")
        typer.echo(f"Key fingerprint: {fingerprint}")


@app.command()
def sign(
    model: Annotated[Path, typer.Argument(help="Model folder to sign.")],
    key: Annotated[
        Path, typer.Option("--key", "-k", help="PEM private key: ECDSA on P-256, P-384 or P-521.")
    ],
    signature: Annotated[
        Path | None,
        typer.Option(
            "--signature", "-s", help=f"Signature file to write (default: MODEL/{DEFAULT_SIGNATURE_NAME})."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Model name recorded in the signature (default: the folder name)."),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option("--ignore", help="Path relative to MODEL to leave out of the signature (repeatable)."),
    ] = None,
    password: PasswordOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Sign every file of a model folder (OMS format; `model_signing verify key` accepts it)."""
    from weightyard.provenance import (
        InvalidKey,
        InvalidManifest,
        UnreadableModel,
        UnsupportedKey,
        load_private_key,
        manifest_from_folder,
        public_key_fingerprint,
        sign_manifest,
    )

    folder = _model_folder(model)
    signature_path = signature if signature is not None else folder / DEFAULT_SIGNATURE_NAME
    # As model_signing does: the signature file is left out only when it lies inside the model.
    inside = _inside(signature_path, folder)
    try:
        private_key = load_private_key(_read(key, "key"), _password(password))
        manifest = manifest_from_folder(
            folder, model_name=name, ignore=[*([inside] if inside else []), *(ignore or [])]
        )
    except (InvalidKey, UnsupportedKey, UnreadableModel, InvalidManifest) as error:
        _fail(error.message)
    try:
        signature_path.write_bytes(sign_manifest(manifest, private_key))
    except OSError as error:
        _fail(f"cannot write {signature_path}: {error.strerror}")
    fingerprint = public_key_fingerprint(private_key.public_key())
    if json_output:
        _print_json(
            {
                "signature": str(signature_path),
                "model_name": manifest.model_name,
                "root_digest": manifest.root_digest,
                "key_fingerprint": fingerprint,
                "files": list(manifest.files),
                "ignore_paths": list(manifest.ignore_paths),
            }
        )
    else:
        typer.echo(f"Signed {len(manifest.files)} files of {folder} with key {fingerprint}")
        typer.echo(f"Signature: {signature_path}")


def _report(result: VerificationResult, model: Path) -> None:
    if result.valid:
        typer.echo(f"Valid: {len(result.files)} files of {model} signed by key {result.key_fingerprint}")
        if result.unsigned_files:
            typer.echo(
                f"Not covered by the signature (left out by the signer): {', '.join(result.unsigned_files)}"
            )
        return
    typer.echo(f"Invalid ({result.reason.value}): {result.message}", err=True)
    for problem in result.problems[1:]:
        typer.echo(f"  {problem.reason.value}: {problem.message}", err=True)


@app.command()
def verify(
    model: Annotated[Path, typer.Argument(help="Model folder to verify.")],
    key: Annotated[
        list[Path] | None,
        typer.Option("--key", "-k", help="Trusted PEM public key (repeatable: any of them may have signed)."),
    ] = None,
    signature: Annotated[
        Path | None,
        typer.Option("--signature", "-s", help=f"Signature file (default: MODEL/{DEFAULT_SIGNATURE_NAME})."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Require the signature to be for this model name.")
    ] = None,
    trust: Annotated[
        str | None,
        typer.Option("--trust", help="Trust the keys this user registered on the hub (instead of --key)."),
    ] = None,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Check a model folder against its signature and a trusted public key: exit 0 valid, 1 invalid."""
    from weightyard.provenance import (
        REVOKED_KEY,
        InvalidKey,
        UnsupportedKey,
        load_public_key,
        revoked_key_message,
        verify_signature,
    )

    folder = _model_folder(model)
    if bool(key) == bool(trust):
        _fail("give the signer's public key with --key PUB.pem, or a hub user with --trust NAME")
    signature_path = signature if signature is not None else folder / DEFAULT_SIGNATURE_NAME
    if not signature_path.is_file():
        _fail(f"no signature file at {signature_path}; the model is not signed (or pass --signature)")
    public_keys = []
    for path in key or []:
        try:
            public_keys.append(load_public_key(_read(path, "key")))
        except (InvalidKey, UnsupportedKey) as error:
            _fail(f"{path}: {error.message}")
    hub_keys = _hub_keys(trust, endpoint, token) if trust is not None else []
    public_keys += [load_public_key(item["publicKey"].encode()) for item in hub_keys]
    result = verify_signature(
        _read(signature_path, "signature"),
        folder,
        public_keys,
        expected_model_name=name,
        signature_name=_inside(signature_path, folder),
    )
    revoked = _revoked(result, hub_keys)
    if revoked is not None:
        message = revoked_key_message(
            revoked["fingerprint"], revoked["revokedAt"], revoked.get("revokeReason")
        )
        if json_output:
            _print_json({**result.to_dict(), "verdict": "invalid", "reason": REVOKED_KEY, "message": message})
        else:
            typer.echo(f"Invalid ({REVOKED_KEY}): {message}", err=True)
        raise typer.Exit(EXIT_INVALID)
    if json_output:
        _print_json(result.to_dict())
    else:
        _report(result, folder)
    if not result.valid:
        raise typer.Exit(EXIT_INVALID)
