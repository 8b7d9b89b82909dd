"""The weightyard CLI as a script sees it: results on stdout, one-line errors with exit codes, the rules for
pull's target folder, and push --private on an existing repo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from tests.support import Server, weightyard_cli, weightyard_environment

# What a pull of make_model's push holds: its files and the .gitattributes every new repo starts with.
PULLED = [".gitattributes", "config.json", "sub", "sub/vocab.txt"]


def client_env(server: Server) -> dict[str, str]:
    return {"HF_TOKEN": server.token, "WEIGHTYARD_ENDPOINT": server.url}


def make_model(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "sub" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    return folder


def read_only_token(server: Server, name: str) -> str:
    created = weightyard_cli("token", "create", "--name", name, "--scope", "read", "--data", str(server.data))
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def assert_one_line_error(result: object, code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
    return lines[0]


@pytest.fixture
def vanishing_hub() -> Iterator[str]:
    """A loopback server that accepts each connection and closes it at once: a hub that went away."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.fixture
def upload_cutting_relay(server: Server) -> Iterator[str]:
    """A loopback relay to the hub that drops each connection once a client has sent it 1 MB: a hub that
    goes away in the middle of an upload."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    hub_port = int(server.url.rsplit(":", 1)[1])

    def relay(client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", hub_port))

        def back() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass

        threading.Thread(target=back, daemon=True).start()
        sent = 0
        try:
            while data := client.recv(65536):
                sent += len(data)
                if sent > 1_000_000:
                    break
                upstream.sendall(data)
        except OSError:
            pass
        client.close()
        upstream.close()

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=relay, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_listings_and_results_go_to_stdout_and_progress_to_stderr(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    env = client_env(server)
    pushed = weightyard_cli("push", str(make_model(tmp_path / "m")), repo_name, env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith(f"Pushed {tmp_path / 'm'} to {repo_name}@main: commit ")
    files = weightyard_cli("ls", repo_name, env=env)
    assert files.returncode == 0
    assert "sub/vocab.txt" in files.stdout
    assert "sub/vocab.txt" not in files.stderr
    # Redirected output is never cut to a terminal's width, however narrow the terminal.
    repos = weightyard_cli("ls", env={**env, "COLUMNS": "20"})
    assert repo_name in repos.stdout
    history = weightyard_cli("log", repo_name, env=env)
    assert "Upload m with weightyard" in history.stdout
    users = weightyard_cli("user", "list", "--data", str(server.data))
    assert "admin" in users.stdout
    pulled = weightyard_cli("pull", repo_name, "--to", str(tmp_path / "copy"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.startswith(f"Pulled {repo_name}@")
    assert "on first use" in pulled.stderr  # the note about the hub's key is not a result


def test_an_unreachable_hub_is_one_line_and_exit_1(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "m")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    commands = (
        ["push", str(folder), "admin/x"],
        ["pull", "admin/x", "--to", str(tmp_path / "c")],
        ["ls"],
        ["ls", "admin/x"],
        ["log", "admin/x"],
    )
    for args in commands:
        result = weightyard_cli(*args, "--endpoint", url, "--token", "wy_x")
        line = assert_one_line_error(result)
        assert f"cannot talk to the hub at {url}" in line


def test_a_hub_that_goes_away_is_one_line_and_exit_1(vanishing_hub: str, tmp_path: Path) -> None:
    result = weightyard_cli("push", str(make_model(tmp_path / "m")), "admin/x", "--endpoint", vanishing_hub)
    assert "cannot talk to the hub" in assert_one_line_error(result)


def test_an_upload_cut_off_midway_ends_in_one_error_line(
    server: Server, upload_cutting_relay: str, tmp_path: Path
) -> None:
    folder = make_model(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(os.urandom(3_000_000))
    result = weightyard_cli(
        "push", str(folder), "admin/cut-upload", "--endpoint", upload_cutting_relay, "--token", server.token
    )
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "cannot talk to the hub" in errors[0]


def test_a_refusal_by_the_hub_is_one_line_with_its_cause(server: Server, tmp_path: Path) -> None:
    token = read_only_token(server, "ro-push")
    # --endpoint differs from $HF_ENDPOINT: the client once reported this as "Invalid HF URI".
    result = weightyard_cli(
        "push",
        str(make_model(tmp_path / "m")),
        "admin/read-only-push",
        "--endpoint",
        server.url,
        "--token",
        token,
        env={"HF_ENDPOINT": "http://127.0.0.1:9"},
    )
    line = assert_one_line_error(result)
    assert "the hub answered 403" in line
    assert "Invalid HF URI" not in line
    missing = weightyard_cli("log", "admin/no-such-repo", env=client_env(server))
    assert "the hub answered 404" in assert_one_line_error(missing)


def test_push_private_makes_an_existing_public_repo_private(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    env = client_env(server)
    folder = make_model(tmp_path / "m")
    assert weightyard_cli("push", str(folder), repo_name, env=env).returncode == 0
    api = HfApi(endpoint=server.url, token=server.token)
    assert not api.model_info(repo_name).private
    again = weightyard_cli("push", str(folder), repo_name, "--private", env=env)
    assert again.returncode == 0, again.stderr
    assert f"{repo_name} was public and is now private" in again.stderr
    assert api.model_info(repo_name).private
    # Without --private an existing private repo stays private.
    assert weightyard_cli("push", str(folder), repo_name, env=env).returncode == 0
    assert api.model_info(repo_name).private


def test_pull_refuses_a_non_empty_target_without_force(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    env = client_env(server)
    folder = make_model(tmp_path / "m")
    assert weightyard_cli("push", str(folder), repo_name, env=env).returncode == 0
    (folder / "config.json").write_text('{"mine": "unsaved work"}')
    refused = weightyard_cli("pull", repo_name, "--to", str(folder), env=env)
    assert "is not empty" in assert_one_line_error(refused, 2)
    assert (folder / "config.json").read_text() == '{"mine": "unsaved work"}'
    empty = tmp_path / "empty"
    empty.mkdir()
    assert weightyard_cli("pull", repo_name, "--to", str(empty), env=env).returncode == 0
    assert sorted(p.relative_to(empty).as_posix() for p in empty.rglob("*")) == PULLED


def test_pull_with_force_replaces_the_target_and_leaves_no_unrelated_file(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    env = client_env(server)
    folder = make_model(tmp_path / "m")
    assert weightyard_cli("push", str(folder), repo_name, env=env).returncode == 0
    (folder / "notes.txt").write_text("not in the repo")
    (folder / "config.json").write_text("{}")
    forced = weightyard_cli("pull", repo_name, "--to", str(folder), "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == PULLED
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "bert"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging or replaced folder left behind


def test_pull_keeps_nothing_an_earlier_interrupted_pull_left_in_its_staging_folder(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    env = client_env(server)
    assert weightyard_cli("push", str(make_model(tmp_path / "m")), repo_name, env=env).returncode == 0
    leftover = tmp_path / ".copy.partial"
    (leftover / "old").mkdir(parents=True)
    (leftover / "old" / "weights.bin").write_bytes(b"from another pull")
    pulled = weightyard_cli("pull", repo_name, "--to", str(tmp_path / "copy"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    copy = tmp_path / "copy"
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*")) == PULLED
    assert not leftover.exists()


def test_pull_force_never_replaces_the_home_folder(server: Server, repo_name: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "documents").mkdir(parents=True)
    env = {**client_env(server), "HOME": str(home)}
    refused = weightyard_cli("pull", repo_name, "--to", str(home), "--force", env=env)
    assert "refusing to replace" in assert_one_line_error(refused, 2)
    assert (home / "documents").is_dir()


# Runs the CLI (argv after the first argument), then writes to the file named first what of the client library
# (and of the signing code's `cryptography`) the process had imported.
_IMPORTS_AT_EXIT = """
import atexit, sys
from pathlib import Path

out = Path(sys.argv[1])
WATCHED = ("huggingface_hub", "httpx", "httpx2", "cryptography")
atexit.register(
    lambda: out.write_text(
        repr(sorted(n for n in sys.modules if n.split(".")[0] in WATCHED))
    )
)
sys.argv = ["weightyard", *sys.argv[2:]]
from weightyard.launch import main
main()
"""


def test_a_push_over_plain_http_commits_every_kind_of_file_without_the_client_library(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    # A new private repo on a new branch: the repo is created, the branch made, the small files' upload modes
    # asked (text goes inside the commit, a binary file as an object of its own), the large file sent through
    # a session, and the commit made, all on push's own connections.
    folder = make_model(tmp_path / "m")
    files = {
        "tiny.bin": bytes(range(256)) * 40,
        "weights.bin": os.urandom(10 * 1024 * 1024 + 3),
        'naïve "name".txt': b"a quoted name, not in ASCII\n",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    imported = tmp_path / "imported.txt"
    options = ["--revision", "dev", "--private"]
    ran = subprocess.run(
        [sys.executable, "-c", _IMPORTS_AT_EXIT, str(imported), "push", str(folder), repo_name, *options],
        env=weightyard_environment({**client_env(server), "COLUMNS": "200"}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert imported.read_text() == "[]"
    api = HfApi(endpoint=server.url, token=server.token)
    assert api.model_info(repo_name).private
    listed = {entry.path: entry for entry in api.list_repo_tree(repo_name, revision="dev", recursive=True)}
    assert listed["tiny.bin"].lfs is not None and listed["weights.bin"].lfs is not None
    assert listed['naïve "name".txt'].lfs is None and listed["config.json"].lfs is None
    for name, data in {**files, "config.json": b'{"model_type": "bert"}'}.items():
        fetched = api.hf_hub_download(repo_name, name, revision="dev", cache_dir=tmp_path / "cache")
        assert Path(fetched).read_bytes() == data, name
    heads = {branch.name: branch.target_commit for branch in api.list_repo_refs(repo_name).branches}
    assert ran.stdout.strip() == f"Pushed {folder} to {repo_name}@dev: commit {heads['dev']}"


def test_a_small_file_that_changes_size_before_the_commit_is_sent_commits_nothing(
    server: Server, repo_name: str, tmp_path: Path
) -> None:
    from weightyard.cli.commit import HubRepo, Inline
    from weightyard.cli.transfer import TransferRefused

    path = tmp_path / "notes.txt"
    path.write_text("announced\n")
    HfApi(endpoint=server.url, token=server.token).create_repo(repo_name)
    hub = HubRepo(server.url, {"Authorization": f"Bearer {server.token}"}, repo_name)
    try:
        with pytest.raises(TransferRefused, match="changed while it was being pushed"):
            hub.commit("main", "the file grew", [Inline(path, "notes.txt", path.stat().st_size - 1)], [])
        commit = hub.commit("main", "the file as it is", [Inline(path, "notes.txt", path.stat().st_size)], [])
    finally:
        hub.close()
    history = HfApi(endpoint=server.url, token=server.token).list_repo_commits(repo_name)
    assert [entry.title for entry in history][:2] == ["the file as it is", "initial commit"]
    assert history[0].commit_id == commit


def test_an_answer_longer_than_push_reads_is_refused_not_cut(tmp_path: Path) -> None:
    from weightyard.cli.transfer import Calls, TransferRefused

    class Long(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"padding": "x" * (2 * 1024 * 1024)}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    listener = ThreadingHTTPServer(("127.0.0.1", 0), Long)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    calls = Calls(f"http://127.0.0.1:{listener.server_port}")
    try:
        answer = calls.get(f"http://127.0.0.1:{listener.server_port}/api/models/a/b", {})
        assert answer.status_code == 200
        with pytest.raises(TransferRefused, match="is over 1048576 bytes"):
            answer.json()
    finally:
        calls.close()
        listener.shutdown()
        listener.server_close()
