"""Hub commands: serve, push, pull, ls, log, token."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Annotated, Any, BinaryIO, cast

import typer
from rich.table import Table

from weightyard import __version__
from weightyard.cli.app import app
from weightyard.cli.progress import ProgressFile, RichBar, console, transfer_progress
from weightyard.config import Settings
from weightyard.demo import DEMO_REPO, demo_model_path
from weightyard.errors import WeightyardError
from weightyard.formatting import human_size
from weightyard.validation import check_path, check_repo_id

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
# Files that describe a local download, not the model.
_SKIPPED_DIRS = {".git", ".cache"}

EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint", help="Hub URL (default: $WEIGHTYARD_ENDPOINT, $HF_ENDPOINT, then localhost:8000)."
    ),
]
TokenOption = Annotated[str | None, typer.Option("--token", help="Access token (default: $HF_TOKEN).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _endpoint(endpoint: str | None) -> str:
    return (
        endpoint or os.environ.get("WEIGHTYARD_ENDPOINT") or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    ).rstrip("/")


def _token(token: str | None) -> str | None:
    return token or os.environ.get("WEIGHTYARD_TOKEN") or os.environ.get("HF_TOKEN")


def _api(endpoint: str | None, token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(
        endpoint=_endpoint(endpoint),
        token=_token(token),
        library_name="weightyard",
        library_version=__version__,
    )


def _client_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError, OSError, ValueError)


def _check_repo(repo: str) -> None:
    try:
        check_repo_id(repo)
    except WeightyardError as exc:
        raise fail(exc.message, 2) from None


# ---------------------------------------------------------------------------------------------- serve


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data: Annotated[
        Path | None, typer.Option(help="Data folder (default: $WEIGHTYARD_DATA or ./.weightyard).")
    ] = None,
    demo: Annotated[
        bool, typer.Option(help="Publish the demo model (all-MiniLM-L6-v2) if it is missing.")
    ] = False,
) -> None:
    """Run the hub: the Hugging Face Hub protocol on http://HOST:PORT."""
    import uvicorn

    from weightyard.api import create_app
    from weightyard.hub import Hub

    settings = Settings.for_data(data).model_copy(update={"host": host, "port": port})
    hub = Hub.open(settings)
    admin_token = hub.admin_token()
    config = uvicorn.Config(
        create_app(hub), host=host, port=port, log_level="warning", timeout_keep_alive=30, access_log=False
    )
    server = uvicorn.Server(config)
    url = f"http://{host}:{port}"
    threading.Thread(target=_announce, args=(server, url, admin_token, demo), daemon=True).start()
    server.run()


def _announce(server: Any, url: str, admin_token: str, demo: bool) -> None:
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    if demo:
        try:
            _publish_demo(url, admin_token)
        except Exception as exc:
            console.print(f"[red]could not publish the demo model:[/red] {exc}")
    console.print(f"\n[bold green]Weightyard {__version__}[/bold green] is serving on [bold]{url}[/bold]")
    console.print(f"Admin token: [bold]{admin_token}[/bold]\n")
    console.print("Try it (in another shell):")
    print(
        f'  HF_ENDPOINT={url} python -c "from huggingface_hub import snapshot_download; '
        f"print(snapshot_download('{DEMO_REPO}'))\"\n"
        f'  HF_ENDPOINT={url} python -c "from transformers import AutoModel; '
        f"print(AutoModel.from_pretrained('{DEMO_REPO}'))\"\n"
        f"  HF_TOKEN={admin_token} .venv/bin/weightyard push ./my-model admin/my-model --endpoint {url}\n",
        flush=True,
    )


def _publish_demo(url: str, token: str) -> None:
    api = _api(url, token)
    if api.repo_exists(DEMO_REPO):
        return
    console.print(f"Publishing the demo model {DEMO_REPO} …")
    push_folder(api, demo_model_path(), DEMO_REPO, "main", "Add all-MiniLM-L6-v2 (demo)", private=False)


# ---------------------------------------------------------------------------------------------- push / pull


def _local_files(folder: Path) -> list[tuple[Path, str]]:
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if relative.parts[0] in _SKIPPED_DIRS or not path.is_file():
            continue
        files.append((path, check_path(relative.as_posix())))
    return files


def push_folder(api: Any, folder: Path, repo: str, revision: str, message: str, private: bool) -> str:
    """Upload every file of `folder` as one commit on `revision`; returns the commit id."""
    from huggingface_hub import CommitOperationAdd

    files = _local_files(folder)
    if not files:
        raise fail(f"{folder} has no files to push", 2)
    api.create_repo(repo, private=private, exist_ok=True)
    if revision != "main":
        api.create_branch(repo, branch=revision, exist_ok=True)
    progress = transfer_progress()
    with progress:
        operations = []
        handles = []
        for path, path_in_repo in files:
            # The client reads each file twice: once to hash it (now), once to upload it (in create_commit).
            task = progress.add_task(f"hashing {path_in_repo}", total=path.stat().st_size)
            handle = ProgressFile(str(path), progress, task)
            handles.append((handle, task))
            operations.append(
                CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=cast(BinaryIO, handle))
            )
            handle.seek(0)
            progress.update(task, description=path_in_repo)
        try:
            info = api.create_commit(repo, operations=operations, commit_message=message, revision=revision)
        finally:
            for handle, task in handles:
                progress.update(task, completed=progress.tasks[task].total)
                handle.close()
    return str(info.oid)


@app.command()
def push(
    folder: Annotated[Path, typer.Argument(help="Folder to upload.")],
    repo: Annotated[str, typer.Argument(help="Target repo, namespace/name.")],
    revision: Annotated[str, typer.Option(help="Branch to commit to (created if missing).")] = "main",
    message: Annotated[str | None, typer.Option(help="Commit message.")] = None,
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Upload a folder as one commit, with bounded memory for files of any size."""
    _check_repo(repo)
    if not folder.is_dir():
        raise fail(f"{folder} is not a folder", 2)
    api = _api(endpoint, token)
    try:
        oid = push_folder(
            api, folder, repo, revision, message or f"Upload {folder.name} with weightyard", private
        )
    except _client_errors() as exc:
        raise fail(str(exc)) from None
    console.print(f"Pushed {folder} to {repo}@{revision}: commit [bold]{oid}[/bold]")


@app.command()
def pull(
    repo: Annotated[str, typer.Argument(help="Repo to download, namespace/name.")],
    revision: Annotated[str, typer.Option(help="Branch, tag or commit id.")] = "main",
    to: Annotated[Path | None, typer.Option("--to", help="Target folder (default: ./NAME).")] = None,
    require_signature: Annotated[
        str | None,
        typer.Option(
            "--require-signature",
            help="Fail unless the model carries a valid signature by this key (a PEM file) or user.",
        ),
    ] = None,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Download a repo at a revision into a folder, verified against the hub's attestation and the publishers'
    signatures before it is put in place (resumes interrupted downloads)."""
    from huggingface_hub import hf_hub_download

    _check_repo(repo)
    api = _api(endpoint, token)
    target = (to or Path(repo.split("/")[1])).resolve()
    # Files land in a sibling staging folder and move into the target only once verified, so a failed
    # pull never leaves a folder that looks complete.
    staging = target.with_name(f".{target.name}.partial")
    try:
        sha = api.repo_info(repo, revision=revision).sha
        paths = [
            f.path
            for f in api.list_repo_tree(repo, revision=sha, recursive=True)
            if hasattr(f, "size") and hasattr(f, "blob_id")
        ]
        with transfer_progress() as progress:
            RichBar.progress = progress
            for path in paths:
                hf_hub_download(
                    repo,
                    path,
                    revision=sha,
                    local_dir=staging,
                    endpoint=_endpoint(endpoint),
                    token=_token(token),
                    tqdm_class=RichBar,
                    library_name="weightyard",
                    library_version=__version__,
                )
        report = verify_download(endpoint, token, repo, sha, staging, require_signature)
    except PullVerificationError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise fail(f"verification failed, nothing was kept: {exc}") from None
    except _client_errors() as exc:
        raise fail(str(exc)) from None
    _move_into(staging, target, paths)
    console.print(f"Pulled {repo}@{sha} ({len(paths)} files) into {target}; {report}")


class PullVerificationError(Exception):
    """Downloaded bytes that do not match the hub's record or a required signature."""


def hub_request(
    endpoint: str | None, token: str | None, method: str, path: str, body: object | None = None
) -> Any:
    """A call to one of the hub's own endpoints (beyond the Hugging Face protocol), through the
    huggingface_hub client's HTTP session and its error mapping."""
    from huggingface_hub import get_session, hf_raise_for_status

    secret = _token(token)
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    headers["User-Agent"] = f"weightyard/{__version__}"
    response = get_session().request(method, f"{_endpoint(endpoint)}{path}", headers=headers, json=body)
    hf_raise_for_status(response)
    return response


def verify_download(
    endpoint: str | None, token: str | None, repo: str, sha: str, folder: Path, require: str | None
) -> str:
    """Check the files in `folder` against the hub's attestation of commit `sha` and against every publisher
    signature in it; with `require`, at least one signature must be valid for that key file or user."""
    from weightyard.provenance import manifest_from_folder, verify_signature

    manifest = manifest_from_folder(folder, model_name=repo, ignore=[".cache"])
    status = hub_request(endpoint, token, "GET", f"/api/models/{repo}/signatures/{sha}").json()
    if status["hub"] is None:
        raise PullVerificationError(f"the hub has no attestation for commit {sha}")
    hub_key = hub_request(endpoint, token, "GET", "/.well-known/weightyard/hub-key.pem").content
    attested = verify_signature(
        status["hub"]["bundle"].encode(), manifest, hub_key, expected_model_name=repo, signature_name=None
    )
    if not attested.valid:
        raise PullVerificationError(f"the files differ from what the hub recorded: {attested.message}")
    required_keys: list[bytes] = []
    if require is not None:
        if Path(require).is_file():
            required_keys = [Path(require).read_bytes()]
        else:
            keys = hub_request(endpoint, token, "GET", f"/api/keys?user={require}").json()
            required_keys = [key["publicKey"].encode() for key in keys]
    signed_by_required = False
    for item in status["signatures"]:
        bundle = (folder / item["path"]).read_bytes()
        keys = required_keys or ([item["publicKey"].encode()] if item.get("publicKey") else [])
        if not keys:
            continue
        result = verify_signature(bundle, manifest, keys, signature_name=item["path"])
        if required_keys and result.reason.value == "unknown_key":
            continue  # signed by someone else; another signature may be the required one
        if not result.valid or item["verdict"] != "valid":
            raise PullVerificationError(
                f"signature {item['path']}: {item['message'] if result.valid else result.message}"
            )
        signed_by_required = signed_by_required or bool(required_keys)
    if require is not None and not signed_by_required:
        raise PullVerificationError(f"no valid signature by {require}")
    signers = sorted({item["signer"] for item in status["signatures"] if item.get("signer")})
    if signers:
        return f"verified: attested by the hub, signed by {', '.join(signers)}"
    return "verified: attested by the hub (no publisher signature)"


def _move_into(staging: Path, target: Path, paths: list[str]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in paths:
        destination = target / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / path, destination)
    shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- inspect


@app.command("ls")
def ls(
    repo: Annotated[str | None, typer.Argument(help="A repo to list files of; repos when omitted.")] = None,
    revision: Annotated[str, typer.Option(help="Branch, tag or commit id.")] = "main",
    as_json: JsonOption = False,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """List repos, or the files of a repo."""
    api = _api(endpoint, token)
    try:
        if repo is None:
            rows: list[dict[str, Any]] = [
                {
                    "id": m.id,
                    "private": m.private,
                    "downloads": m.downloads,
                    "lastModified": str(m.last_modified),
                }
                for m in api.list_models()
            ]
            columns = ["id", "private", "downloads", "lastModified"]
        else:
            _check_repo(repo)
            rows = [
                {
                    "path": f.path,
                    "size": f.size,
                    "sha256": f.lfs.sha256 if f.lfs else None,
                    "oid": f.blob_id,
                    "verdict": f.security["status"] if f.security else None,
                }
                for f in api.list_repo_tree(repo, revision=revision, recursive=True, expand=True)
                if hasattr(f, "blob_id")
            ]
            columns = ["path", "size", "verdict", "sha256"]
    except _client_errors() as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(*columns)
    for row in rows:
        cells = [
            human_size(row[c]) if c == "size" else ("" if row[c] is None else str(row[c])) for c in columns
        ]
        table.add_row(*cells)
    console.print(table)


@app.command()
def log(
    repo: Annotated[str, typer.Argument(help="Repo, namespace/name.")],
    revision: Annotated[str, typer.Option(help="Branch, tag or commit id.")] = "main",
    as_json: JsonOption = False,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Show the commit history of a revision, newest first."""
    _check_repo(repo)
    api = _api(endpoint, token)
    try:
        commits = [
            {
                "id": c.commit_id,
                "title": c.title,
                "message": c.message,
                "date": c.created_at.isoformat(),
                "authors": c.authors,
            }
            for c in api.list_repo_commits(repo, revision=revision)
        ]
    except _client_errors() as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(commits, indent=2))
        return
    table = Table("commit", "date", "author", "title")
    for c in commits:
        table.add_row(c["id"][:12], c["date"][:19], ", ".join(c["authors"]), c["title"])
    console.print(table)
