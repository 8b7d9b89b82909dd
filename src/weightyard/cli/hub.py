"""Hub commands: serve, push, pull, ls, log, and `hub trust` (the hub keys pull checks attestations with)."""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, TaskID

from weightyard import __version__
from weightyard.cli.app import app
from weightyard.cli.errors import print_error
from weightyard.cli.progress import RichBar, console, out, transfer_progress
from weightyard.demo import DEMO_REPO, demo_model_path
from weightyard.errors import WeightyardError
from weightyard.file_hash import SKIPPED_DIRS, folder_files
from weightyard.formatting import human_size
from weightyard.validation import check_path, check_repo_id

if TYPE_CHECKING:
    from weightyard.cli.commit import HubRepo

    # pull's and `hub trust`'s (they load the provenance code): imported where used, not for every command
    from weightyard.cli.known_hubs import TrustedKey

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
# Files this size and larger are sent by `push` itself, through an upload session (the hub's default LFS
# threshold, `Settings.lfs_threshold`); smaller ones go inside the commit, or through a session as well when
# the hub asks for them as objects of their own (binary files).
LFS_THRESHOLD = 10 * 1024 * 1024

EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint", help="Hub URL (default: $WEIGHTYARD_ENDPOINT, $HF_ENDPOINT, then localhost:8000)."
    ),
]
TokenOption = Annotated[str | None, typer.Option("--token", help="Access token (default: $HF_TOKEN).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

hub_app = typer.Typer(help="The hubs this user trusts (their keys, for `pull`).", no_args_is_help=True)
app.add_typer(hub_app, name="hub")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` as the one line of a failure; raise the result to exit with `code`."""
    print_error(message)
    return typer.Exit(code)


def _endpoint(endpoint: str | None) -> str:
    return (
        endpoint or os.environ.get("WEIGHTYARD_ENDPOINT") or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    ).rstrip("/")


def _token(token: str | None) -> str | None:
    return token or os.environ.get("WEIGHTYARD_TOKEN") or os.environ.get("HF_TOKEN")


def _client_endpoint(endpoint: str | None) -> str:
    """The hub's URL, also made the client library's default (`HF_ENDPOINT`, read when it is first imported):
    what the library fetches on its own (its agent registry, once a day) then comes from this hub, never
    from huggingface.co."""
    url = _endpoint(endpoint)
    os.environ["HF_ENDPOINT"] = url
    return url


def _api(endpoint: str | None, token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(
        endpoint=_client_endpoint(endpoint),
        token=_token(token),
        library_name="weightyard",
        library_version=__version__,
    )


def _listing_api(endpoint: str | None, token: str | None) -> Any:
    """`_api` for a command that lists through the client's paginated calls, which retry a connection that
    fails (five times, with backoff: about 24 s). One plain request first reports a hub that cannot be reached
    at once; whatever it answers, the hub is there."""
    from huggingface_hub import get_session

    from weightyard.cli.known_hubs import HUB_KEY_PATH

    api = _api(endpoint, token)
    get_session().request("GET", f"{_endpoint(endpoint)}{HUB_KEY_PATH}").close()
    return api


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
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Server processes answering on the port; one that dies is replaced (docs/scale.md)."
        ),
    ] = 1,
) -> None:
    """Run the hub: the Hugging Face Hub protocol on http://HOST:PORT."""
    from weightyard.server import HubApp, freeze_start_up, limit_malloc_arenas, uvicorn_config

    limit_malloc_arenas()  # before the hub and the server start their threads
    import uvicorn

    from weightyard.api import create_app
    from weightyard.config import Settings
    from weightyard.hub import Hub
    from weightyard.maintenance.startup import StartupError

    settings = Settings.for_data(data).model_copy(update={"host": host, "port": port})
    try:
        hub = Hub.open(settings)
    except StartupError as exc:
        raise fail(str(exc), exc.exit_code) from None
    # Commits a version that attested after the commit's transaction may have left unattested by a crash.
    hub.provenance.repair_attestations()
    admin_token = hub.admin_token()
    url = f"http://{host}:{port}"
    if workers == 1:
        config = uvicorn_config(create_app(hub), settings, log_level="warning", access_log=False)
        freeze_start_up()
        server = uvicorn.Server(config)
        threading.Thread(
            target=_announce,
            args=(lambda: server.started, lambda: server.should_exit, url, admin_token, demo),
            daemon=True,
        ).start()
        server.run()  # exits with status 3 when it cannot listen (the port is taken)
        return
    hub.close()  # each worker opens its own; this process only supervises them
    _serve_workers(HubApp(settings), settings, workers, url, admin_token, demo)


def _serve_workers(app: Any, settings: Any, workers: int, url: str, admin_token: str, demo: bool) -> None:
    """uvicorn's supervisor: one listening socket, `workers` processes accepting on it (see server.py)."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from weightyard.server import uvicorn_config

    config = uvicorn_config(
        app, settings, factory=True, workers=workers, log_level="warning", access_log=False
    )
    socket = config.bind_socket()  # exits with status 3 when it cannot listen (the port is taken)
    supervisor = Multiprocess(config, sockets=[socket])
    threading.Thread(
        target=_announce,
        args=(functools.partial(_answers, url), supervisor.should_exit.is_set, url, admin_token, demo),
        daemon=True,
    ).start()
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise typer.Exit(STARTUP_FAILURE)


def _answers(url: str) -> bool:
    """Whether some worker answers at `url` yet (the socket accepts from the start; a worker answers)."""
    import httpx

    try:
        return httpx.get(f"{url}/api/whoami-v2", timeout=5).status_code < 500
    except httpx.HTTPError:
        return False


def _announce(
    started: Callable[[], bool], stopping: Callable[[], bool], url: str, admin_token: str, demo: bool
) -> None:
    while not started():
        if stopping():
            return
        time.sleep(0.05)
    if demo:
        try:
            _publish_demo(url, admin_token)
        except Exception as exc:
            print_error(f"could not publish the demo model: {exc}")
    out.print(f"\n[bold green]Weightyard {__version__}[/bold green] is serving on [bold]{url}[/bold]")
    out.print(f"Admin token: [bold]{admin_token}[/bold]\n")
    out.print("Try it in another shell, from this folder:")
    print("".join(f"  {command}\n" for command in try_commands(url, admin_token, demo)), flush=True)


def try_commands(url: str, admin_token: str, demo: bool) -> list[str]:
    """The commands `serve` suggests, each runnable as printed, in order, from the folder it was started in:
    the environment that has weightyard (and huggingface_hub) installed is activated first."""
    commands = []
    if sys.prefix != sys.base_prefix:
        activate = Path(sys.prefix) / "bin" / "activate"
        shown = os.path.relpath(activate) if activate.is_relative_to(Path.cwd()) else str(activate)
        commands.append(f"source {shlex.quote(shown)}")
    commands.append(f"export HF_ENDPOINT={url} HF_TOKEN={admin_token}")
    if demo:
        name = DEMO_REPO.split("/")[1]
        commands += [
            f'python -c "from huggingface_hub import snapshot_download; '
            f"print(snapshot_download('{DEMO_REPO}'))\"",
            f"weightyard pull {DEMO_REPO} --to ./{name} --force",
            f"weightyard push ./{name} admin/my-model --private",
        ]
    else:
        commands.append("weightyard ls")
    return commands


def _publish_demo(url: str, token: str) -> None:
    api = _api(url, token)
    if api.repo_exists(DEMO_REPO):
        return
    console.print(f"Publishing the demo model {DEMO_REPO} …")
    # Repos live under an existing user or organisation: the demo's organisation is created first.
    from huggingface_hub.errors import HfHubHTTPError

    try:
        hub_request(url, token, "POST", "/api/admin/orgs", {"name": DEMO_REPO.split("/")[0]})
    except HfHubHTTPError as exc:
        if exc.response.status_code != 409:  # 409: it exists already
            raise
    message = "Add all-MiniLM-L6-v2 (demo)"
    push_folder(url, token, demo_model_path(), DEMO_REPO, "main", message, private=False)


# ---------------------------------------------------------------------------------------------- push / pull


def _local_files(folder: Path) -> list[tuple[Path, str]]:
    return [(path, check_path(path.relative_to(folder).as_posix())) for path in folder_files(folder)]


class _PushStopped(Exception):
    """Raised inside the hashing thread once the push it hashes for has failed."""


def push_folder(
    endpoint: str | None,
    token: str | None,
    folder: Path,
    repo: str,
    revision: str,
    message: str,
    private: bool,
) -> str:
    """Upload every file of `folder` as one commit on `revision`; returns the commit id.

    Each file is read twice: once to hash it, once to send it. Hashing starts first, so that it runs while
    the client library loads and the repo is checked. Files from the hub's LFS threshold up are sent by
    `transfer.upload_file` while they are still being hashed (an upload session; the LFS batch API once the
    hash is known on a hub without sessions); the stock client then commits them without sending them
    again, and sends the small files itself.
    """
    from weightyard.file_hash import sha256_of_file, stop_early, take_early

    files = _local_files(folder)
    if not files:
        raise fail(f"{folder} has no files to push", 2)
    progress = transfer_progress()
    stop = threading.Event()
    # tasks whose bar shows the sending (of a file still being hashed): the hash no longer moves it
    sending: set[TaskID] = set()

    def hashed(task: TaskID, count: int) -> None:
        if stop.is_set():
            raise _PushStopped  # ends a hash nobody waits for any more
        if task not in sending:
            progress.advance(task, count)

    # The bars show only once the hub has answered: a push that cannot reach it prints one error line.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash") as hasher:
        try:
            pending = []
            for path, path_in_repo in files:
                task = progress.add_task(f"hashing {path_in_repo}", total=path.stat().st_size)
                advance = functools.partial(hashed, task)
                # begun by the command's entry point before the CLI loaded, where it could (file_hash.py)
                digest = take_early(path, advance) or hasher.submit(sha256_of_file, path, advance)
                pending.append((path, path_in_repo, task, digest))
            return _commit_files(
                endpoint, token, repo, revision, message, private, progress, pending, sending
            )
        finally:
            stop.set()
            stop_early()
            hasher.shutdown(cancel_futures=True)


def _commit_files(
    endpoint: str | None,
    token: str | None,
    repo: str,
    revision: str,
    message: str,
    private: bool,
    progress: Progress,
    pending: list[tuple[Path, str, TaskID, Future[str]]],
    sending: set[TaskID],
) -> str:
    """Commit files being hashed (`pending`: path, path in the repo, progress task, future sha256).

    Large files start on their way at once, in a thread of their own, while this one checks the repo (on a
    repo the hub does not have yet, they wait for it to be created)."""
    from weightyard.cli.commit import HubRepo
    from weightyard.cli.transfer import TransferRefused

    url = _client_endpoint(endpoint)
    headers = {"User-Agent": f"weightyard/{__version__}"}
    secret = _token(token)
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    # each file's size, taken once: which way it goes and what the commit says of it follow from the same one
    sizes = {path_in_repo: path.stat().st_size for path, path_in_repo, *_ in pending}
    large = [item for item in pending if sizes[item[1]] >= LFS_THRESHOLD]
    repo_checked, cancel = threading.Event(), threading.Event()
    hub = HubRepo(url, headers, repo)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="send") as sender:
        sent = sender.submit(_send_files, url, headers, repo, large, progress, sending, cancel, repo_checked)
        try:
            try:
                note = hub.ensure(private)
                if note:
                    console.print(note)
                if revision != "main":
                    hub.create_branch(revision)
            finally:
                repo_checked.set()
            with progress:
                sent.result()
                return _commit(hub, revision, message, progress, pending, sizes, sending, cancel)
        except TransferRefused as exc:
            raise fail(str(exc)) from None
        finally:
            cancel.set()  # after a failure: whatever is still being sent stops at its next read
            hub.close()


def _send_files(
    url: str,
    headers: dict[str, str],
    repo: str,
    large: list[tuple[Path, str, TaskID, Future[str]]],
    progress: Progress,
    sending: set[TaskID],
    cancel: threading.Event,
    repo_checked: threading.Event | None,
) -> None:
    """Send files as objects of their own, one after the other (see `transfer.upload_file`)."""
    from weightyard.cli.transfer import TransferRefused, upload_file

    for path, path_in_repo, task, digest in large:
        sending.add(task)
        progress.reset(task, description=path_in_repo, total=path.stat().st_size)
        advance = functools.partial(progress.advance, task)
        try:
            upload_file(url, headers, "models", repo, path, digest, advance, cancel, repo_checked)
        except TransferRefused as exc:
            raise fail(str(exc)) from None


def _commit(
    hub: HubRepo,
    revision: str,
    message: str,
    progress: Progress,
    pending: list[tuple[Path, str, TaskID, Future[str]]],
    sizes: dict[str, int],
    sending: set[TaskID],
    cancel: threading.Event,
) -> str:
    """Commit every pending file (`sizes`: by path in the repo): the large ones are on the hub; of the small
    ones, those the hub wants as objects of their own (`lfs`: binary) are sent first, the others go inside the
    commit."""
    from weightyard.cli.commit import Inline, Stored

    small = [item for item in pending if sizes[item[1]] < LFS_THRESHOLD]
    candidates = {
        path_in_repo: Inline(path, path_in_repo, sizes[path_in_repo]) for path, path_in_repo, *_ in small
    }
    modes = hub.upload_modes(revision, list(candidates.values())) if candidates else {}
    objects = [item for item in small if modes[item[1]] == "lfs"]
    _send_files(hub.endpoint, hub.headers, hub.repo, objects, progress, sending, cancel, None)
    inline = []
    for _, path_in_repo, task, _ in small:
        if modes[path_in_repo] == "regular":
            inline.append(candidates[path_in_repo])
            # the bar stops showing the hashing: the file is sent with the commit
            progress.reset(task, description=path_in_repo, total=candidates[path_in_repo].size)
    stored = [
        Stored(path_in_repo, digest.result(), sizes[path_in_repo])
        for _, path_in_repo, _, digest in pending
        if path_in_repo not in candidates or modes[path_in_repo] == "lfs"
    ]
    try:
        return hub.commit(revision, message, inline, stored)
    finally:
        for shown in progress.tasks:
            progress.update(shown.id, completed=shown.total)


@app.command()
def push(
    folder: Annotated[Path, typer.Argument(help="Folder to upload.")],
    repo: Annotated[str, typer.Argument(help="Target repo, namespace/name.")],
    revision: Annotated[str, typer.Option(help="Branch to commit to (created if missing).")] = "main",
    message: Annotated[str | None, typer.Option(help="Commit message.")] = None,
    private: Annotated[
        bool, typer.Option(help="Create the repo as private, or make an existing public repo private.")
    ] = False,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Upload a folder as one commit, with bounded memory for files of any size."""
    _check_repo(repo)
    if not folder.is_dir():
        raise fail(f"{folder} is not a folder", 2)
    oid = push_folder(
        endpoint, token, folder, repo, revision, message or f"Upload {folder.name} with weightyard", private
    )
    out.print(f"Pushed {folder} to {repo}@{revision}: commit {oid}", soft_wrap=True)


HubKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--hub-key",
        envvar="WEIGHTYARD_HUB_KEY",
        help="The hub's public key (PEM) to check its attestations with, instead of the key trusted on "
        "first use.",
    ),
]


@app.command()
def pull(
    repo: Annotated[str, typer.Argument(help="Repo to download, namespace/name.")],
    revision: Annotated[str, typer.Option(help="Branch, tag or commit id.")] = "main",
    to: Annotated[Path | None, typer.Option("--to", help="Target folder (default: ./NAME).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the target folder and everything in it.")
    ] = False,
    require_signature: Annotated[
        str | None,
        typer.Option(
            "--require-signature",
            help="Fail unless the model carries a valid signature by this key (a PEM file) or user.",
        ),
    ] = None,
    hub_key: HubKeyOption = None,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Download a repo at a revision into a new folder, verified against the hub's attestation (made with
    the pinned hub key) and the publishers' signatures before it is put in place."""
    from huggingface_hub import hf_hub_download

    from weightyard.cli.known_hubs import HubKeyError

    _check_repo(repo)
    target = Path(os.path.abspath(to or Path(repo.split("/")[1])))
    if _occupied(target) and not force:
        raise fail(
            f"{target} exists and is not empty; pull into a new folder or pass --force to replace it", 2
        )
    # --force replaces the target whole: never the folder the user stands in, one above it, or their home.
    cwd = Path(os.path.abspath(os.getcwd()))
    if force and (target == Path.home() or cwd == target or target in cwd.parents):
        raise fail(f"refusing to replace {target}: it holds the current folder or is the home folder", 2)
    pinned = _read_key_file(hub_key) if hub_key is not None else None
    api = _api(endpoint, token)
    # Files land in a sibling staging folder and replace the target only once verified, so a failed
    # pull never leaves a folder that looks complete, nor a mix of old and new files.
    staging = target.with_name(f".{target.name}.partial")
    if staging.is_symlink() or (staging.exists() and not staging.is_dir()):
        raise fail(f"{staging} is in the way (not a folder this command made); remove it", 2)
    try:
        trusted = _trusted_key(endpoint, token, pinned)
        sha = api.repo_info(repo, revision=revision).sha
        paths = _pulled_paths(api, repo, sha)
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
        _keep_only(staging, paths)
        report = verify_download(endpoint, token, repo, sha, staging, paths, trusted, require_signature)
    except (PullVerificationError, HubKeyError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise fail(f"verification failed, nothing was kept: {exc}") from None
    _replace(staging, target)
    out.print(f"Pulled {repo}@{sha} ({len(paths)} files) into {target}; {report}", soft_wrap=True)


class PullVerificationError(Exception):
    """Downloaded bytes that do not match the hub's record or a required signature, or an answer from the hub
    that names something pull must not touch."""


def _occupied(target: Path) -> bool:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        return True
    return target.is_dir() and any(target.iterdir())


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read the hub key {path}: {exc.strerror}", 2) from None


def _trusted_key(endpoint: str | None, token: str | None, pinned: bytes | None) -> TrustedKey:
    from weightyard.cli.known_hubs import HUB_KEY_PATH, trusted_hub_key

    served = hub_request(endpoint, token, "GET", HUB_KEY_PATH).content
    trusted = trusted_hub_key(_endpoint(endpoint), served, pinned)
    if trusted.note:
        console.print(trusted.note, soft_wrap=True)
    return trusted


def _pulled_paths(api: Any, repo: str, sha: str) -> list[str]:
    """The files of commit `sha`, each a clean relative path: a hostile hub cannot name a file outside the
    staging folder, nor one inside the client's own download cache there."""
    if not isinstance(sha, str) or len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
        raise PullVerificationError(f"the hub answered {sha!r} for a commit id")
    paths = []
    for entry in api.list_repo_tree(repo, revision=sha, recursive=True):
        if not (hasattr(entry, "size") and hasattr(entry, "blob_id")):
            continue
        try:
            path = check_path(entry.path)
        except WeightyardError as exc:
            raise PullVerificationError(
                f"the hub lists an unsafe path {entry.path!r}: {exc.message}"
            ) from None
        if path.split("/")[0] in SKIPPED_DIRS:
            raise PullVerificationError(f"the hub lists {path!r}, inside a folder pull keeps for itself")
        paths.append(path)
    return paths


def _keep_only(staging: Path, paths: list[str]) -> None:
    """Remove from the staging folder whatever this pull did not download (left by an earlier, interrupted
    pull of another revision or repo), keeping the client's resume bookkeeping in `.cache`."""
    wanted = set(paths)
    for entry in sorted(staging.rglob("*"), reverse=True):
        relative = entry.relative_to(staging)
        if relative.parts[0] in SKIPPED_DIRS or relative.as_posix() in wanted:
            continue
        if entry.is_dir() and not entry.is_symlink():
            if not any(entry.iterdir()):
                entry.rmdir()
        else:
            entry.unlink()


def _replace(staging: Path, target: Path) -> None:
    """Put the verified staging folder in the target's place; a replaced target is removed whole."""
    shutil.rmtree(staging / ".cache", ignore_errors=True)
    if not _occupied(target):
        if target.is_dir():
            target.rmdir()
        os.replace(staging, target)
        return
    previous = target.with_name(f".{target.name}.replaced")
    if previous.is_symlink() or previous.is_file():
        previous.unlink()
    else:
        shutil.rmtree(previous, ignore_errors=True)
    os.replace(target, previous)
    os.replace(staging, target)
    if previous.is_dir() and not previous.is_symlink():
        shutil.rmtree(previous)
    else:
        previous.unlink()


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


_MAX_SIGNATURE_BYTES = 1024 * 1024


def _read_pulled_file(folder: Path, path: str, paths: list[str]) -> bytes:
    """A file pull wrote itself: one of `paths`, a regular file inside `folder`, opened without following a
    link or blocking on a special file, read up to a bound."""
    if path not in paths:
        raise PullVerificationError(f"the hub names a signature {path!r} that is not among the files pulled")
    try:
        handle = os.open(folder / path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise PullVerificationError(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(handle, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise PullVerificationError(f"{path} is not a regular file")
        data = file.read(_MAX_SIGNATURE_BYTES + 1)
    if len(data) > _MAX_SIGNATURE_BYTES:
        raise PullVerificationError(f"signature {path} is larger than {_MAX_SIGNATURE_BYTES} bytes")
    return data


def verify_download(
    endpoint: str | None,
    token: str | None,
    repo: str,
    sha: str,
    folder: Path,
    paths: list[str],
    hub_key: TrustedKey,
    require: str | None,
) -> str:
    """Check the files in `folder` against the hub's attestation of commit `sha`, made with the trusted
    `hub_key`, and against every publisher signature in it; with `require`, at least one signature must be
    valid for that key file or user. A signature whose key is revoked is trusted by no one."""
    from weightyard.provenance import (
        REVOKED_KEY,
        manifest_from_folder,
        public_key_fingerprint,
        revoked_key_message,
        verify_signature,
    )

    manifest = manifest_from_folder(folder, model_name=repo, ignore=[".cache"])
    status = hub_request(endpoint, token, "GET", f"/api/models/{repo}/signatures/{sha}").json()
    if status.get("hub") is None:
        raise PullVerificationError(f"the hub has no attestation for commit {sha}")
    attested = verify_signature(
        str(status["hub"]["bundle"]).encode(),
        manifest,
        hub_key.pem,
        expected_model_name=repo,
        signature_name=None,
    )
    if not attested.valid:
        raise PullVerificationError(f"the files differ from what the hub recorded: {attested.message}")
    required_keys: list[dict[str, Any]] = []
    if require is not None:
        if Path(require).is_file():
            pem = Path(require).read_text()
            required_keys = [{"publicKey": pem, "fingerprint": public_key_fingerprint(pem.encode())}]
        else:
            required_keys = hub_request(endpoint, token, "GET", f"/api/keys?user={require}").json()
    signed_by_required = False
    for item in status["signatures"]:
        bundle = _read_pulled_file(folder, str(item["path"]), paths)
        keys = required_keys or ([{"publicKey": item["publicKey"]}] if item.get("publicKey") else [])
        if not keys:
            continue
        result = verify_signature(
            bundle, manifest, [key["publicKey"].encode() for key in keys], signature_name=item["path"]
        )
        if required_keys and result.reason.value == "unknown_key":
            continue  # signed by someone else; another signature may be the required one
        key = next((k for k in keys if k.get("fingerprint") == result.key_fingerprint), {})
        if result.valid and key.get("revokedAt"):
            message = revoked_key_message(result.key_fingerprint, key["revokedAt"], key.get("revokeReason"))
            raise PullVerificationError(f"signature {item['path']}: {REVOKED_KEY}: {message}")
        if not result.valid or item["verdict"] != "valid":
            reason, message = (
                (item["reason"], item["message"]) if result.valid else (result.reason.value, result.message)
            )
            raise PullVerificationError(f"signature {item['path']}: {reason}: {message}")
        signed_by_required = signed_by_required or bool(required_keys)
    if require is not None and not signed_by_required:
        raise PullVerificationError(f"no valid signature by {require}")
    signers = sorted({item["signer"] for item in status["signatures"] if item.get("signer")})
    if signers:
        return f"verified: attested by the hub, signed by {', '.join(signers)}"
    return "verified: attested by the hub (no publisher signature)"


@hub_app.command("trust")
def hub_trust(
    endpoint: Annotated[
        str | None, typer.Argument(help="The hub (default: $WEIGHTYARD_ENDPOINT, $HF_ENDPOINT, localhost).")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="Trust this PEM key (from the hub's operator) instead of the one served."),
    ] = None,
) -> None:
    """Trust the hub's current key for `pull` (again): after its operator confirms the key was replaced."""
    from weightyard.cli.known_hubs import HUB_KEY_PATH, HubKeyError, fingerprint_of, remember

    url = _endpoint(endpoint)
    served_pem = hub_request(url, None, "GET", HUB_KEY_PATH).content
    try:
        fingerprint = fingerprint_of(served_pem, f"the key served by {url}")
        if key is not None:
            given = fingerprint_of(_read_key_file(key), str(key))
            if given != fingerprint:
                raise HubKeyError(f"the hub at {url} presents key {fingerprint}, not {given} from {key}")
    except HubKeyError as exc:
        raise fail(str(exc)) from None
    path = remember(url, fingerprint)
    out.print(f"Trusting key {fingerprint} for {url} (recorded in {path})", soft_wrap=True)


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
    if repo is not None:
        _check_repo(repo)
    api = _listing_api(endpoint, token)
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
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        cells = [
            human_size(row[c]) if c == "size" else ("" if row[c] is None else str(row[c])) for c in columns
        ]
        table.add_row(*cells)
    out.print(table)


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
    api = _listing_api(endpoint, token)
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
    if as_json:
        print(json.dumps(commits, indent=2))
        return
    from rich.table import Table

    table = Table("commit", "date", "author", "title")
    for c in commits:
        table.add_row(c["id"][:12], c["date"][:19], ", ".join(c["authors"]), c["title"])
    out.print(table)
