"""Every command the README, the docs and `make run` show runs as written, in order, on a fresh machine.

The fresh machine is a temporary folder standing for a checkout after `make run`: `.venv` (a link to this
virtual environment), and a hub started there as `make run` starts it (`weightyard serve --data .weightyard
--demo`), on a free loopback port instead of 8000. The only substitution made in the blocks is that
endpoint: `http://127.0.0.1:8000` becomes the test hub's URL. The shell starts without the virtual
environment on PATH and without HF_ENDPOINT / HF_TOKEN: the docs themselves say how to get them.

Blocks run in document order, README.md first, then docs/*.md by name, in one shell session carried from
block to block (its variables and folder), as a reader following along in one terminal would. Shell blocks
(`bash`, `sh`, `console` and unlabelled fences) run with bash; in `console` transcripts the `$ ` lines are
the commands and each must exit 0, unless the transcript follows it with `$ echo $?` and the code it shows.
Python blocks run with this environment's python. A block that cannot run in a test (one that starts a
server, installs packages, or is a synopsis rather than a command) is marked right before its fence with
`<!-- not-run: reason -->`; the test lists and counts every such block, so nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support import free_port, weightyard_environment

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_ENDPOINT = "http://127.0.0.1:8000"
DEMO_REPO = "sentence-transformers/all-MiniLM-L6-v2"
SHELL = {"bash", "sh", "shell", "console", ""}
PYTHON = {"python", "py", "python3"}
MARKER = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.+?)\s*-->$")
FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,})\s*(?P<lang>[\w+-]*)")
BLOCK_TIMEOUT = 600


@dataclass(frozen=True)
class Block:
    file: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None  # the marker's reason

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def extract_blocks(text: str, file: str) -> list[Block]:
    """The fenced code blocks of a markdown text that are shell or Python, each with the reason given by a
    `<!-- not-run: reason -->` marker on the last non-blank line before its fence."""
    blocks = []
    lines = text.splitlines()
    index = 0
    previous = ""
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            if lines[index].strip():
                previous = lines[index].strip()
            index += 1
            continue
        fence, lang, start = opening["fence"], opening["lang"].lower(), index
        index += 1
        body = []
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1
        marker = MARKER.match(previous)
        if lang in SHELL or lang in PYTHON:
            blocks.append(
                Block(file, start + 1, lang, "\n".join(body) + "\n", marker["reason"] if marker else None)
            )
        previous = ""
    return blocks


def console_script(code: str) -> str:
    """A bash script from a console transcript: each `$ ` command (with `\\` continuations) runs and must
    exit 0, or with the code a following `$ echo $?` shows; the output lines are the reader's to compare."""
    commands: list[str] = []
    outputs: list[list[str]] = []
    lines = code.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and index + 1 < len(lines):
                index += 1
                command = command + "\n" + lines[index]
            commands.append(command)
            outputs.append([])
        elif outputs:
            outputs[-1].append(line)
        index += 1
    script = ["set +e -o pipefail"]
    for number, command in enumerate(commands):
        if command.strip() == "echo $?":
            continue
        expected = 0
        if number + 1 < len(commands) and commands[number + 1].strip() == "echo $?":
            expected = int(outputs[number + 1][0].strip())
        script += [
            command,
            f'__rc=$?; if [ "$__rc" -ne {expected} ]; then '
            f"echo \"docs: '{command.splitlines()[0]}' exited $__rc, expected {expected}\" >&2; exit 1; fi",
        ]
    return "\n".join(script) + "\n"


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def all_blocks() -> list[Block]:
    blocks = []
    for path in documents():
        blocks += extract_blocks(path.read_text(), path.relative_to(ROOT).as_posix())
    return blocks


# ---------------------------------------------------------------------------------------------- the machine


@dataclass
class Machine:
    folder: Path
    url: str
    server: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]


def fresh_env(folder: Path) -> dict[str, str]:
    """The environment of a new terminal: no hub settings, the virtual environment not activated, and the
    user's configuration and caches inside the machine's folder."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {
        key: value
        # weightyard_environment: without a second client generation put beside the venv by the tests.
        for key, value in weightyard_environment().items()
        if not key.startswith(("HF_", "WEIGHTYARD_")) and key not in {"VIRTUAL_ENV", "PYTHONHOME"}
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(
        HOME=str(folder / "home"),
        XDG_CONFIG_HOME=str(folder / "home" / ".config"),
        XDG_CACHE_HOME=str(folder / "home" / ".cache"),
        HF_HUB_DISABLE_TELEMETRY="1",
        COLUMNS="200",
    )
    (folder / "home").mkdir()
    return env


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    folder = tmp_path_factory.mktemp("checkout")
    (folder / ".venv").symlink_to(sys.prefix)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder.parent / "checkout-server.log"
    env = fresh_env(folder)
    # As `make run` starts it (with this environment's python, the path the Makefile uses).
    command = [sys.executable, "-m", "weightyard", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [*command, "--data", ".weightyard", "--demo"],
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 600
    while "Try it" not in log.read_text(errors="replace"):
        assert server.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, "the hub did not finish starting within 600 s"
        time.sleep(0.5)
    yield Machine(folder, url, server, log, env)
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()


def run_bash(machine: Machine, script: str, state: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` in bash with the carried environment and folder; leave the new ones in `state`."""
    wrapped = f"trap 'env -0 > {state}.env; pwd > {state}.pwd' EXIT\nset -e\n{script}"
    return subprocess.run(
        ["bash", "-c", wrapped],
        cwd=machine.folder,
        env=machine.env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )


def carry(machine: Machine, state: Path) -> None:
    env = {}
    for entry in Path(f"{state}.env").read_bytes().split(b"\0"):
        name, sep, value = entry.decode().partition("=")
        if sep and not name.startswith("BASH_FUNC_"):
            env[name] = value
    machine.env = env
    machine.folder = Path(Path(f"{state}.pwd").read_text().strip())


def run_block(machine: Machine, block: Block, state: Path) -> subprocess.CompletedProcess[str]:
    code = block.code.replace(DOCUMENTED_ENDPOINT, machine.url)
    if block.lang in PYTHON:
        script = state.with_suffix(".py")
        script.write_text(code)
        return subprocess.run(
            [sys.executable, str(script)],
            cwd=machine.folder,
            env=machine.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            check=False,
        )
    result = run_bash(machine, console_script(code) if block.lang == "console" else code, state)
    if result.returncode == 0:
        carry(machine, state)
    return result


def failure(where: str, code: str, result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{where}: the block exited {result.returncode}; fix the block (or mark it with "
        f"<!-- not-run: reason --> if it cannot run in a test)\n--- block ---\n{code}"
        f"--- stdout (tail) ---\n{result.stdout[-3000:]}\n--- stderr (tail) ---\n{result.stderr[-3000:]}"
    )


# ---------------------------------------------------------------------------------------------- the tests


def test_block_extraction_finds_languages_lines_and_markers() -> None:
    text = (
        "# Title\n\n```bash\necho one\n```\n\n<!-- not-run: starts a server -->\n```bash\nmake run\n```\n"
        "\n```json\n{}\n```\n\nText.\n```python\nprint(2)\n```\n```\nplain\n```\n"
    )
    blocks = extract_blocks(text, "X.md")
    assert [(b.line, b.lang, b.not_run) for b in blocks] == [
        (3, "bash", None),
        (8, "bash", "starts a server"),
        (17, "python", None),
        (20, "", None),
    ]
    assert blocks[2].code == "print(2)\n"


def test_console_transcripts_check_each_exit_code() -> None:
    script = console_script("$ true\nout\n$ false\nInvalid\n$ echo $?\n1\n")
    assert subprocess.run(["bash", "-c", script], check=False).returncode == 0
    assert subprocess.run(["bash", "-c", console_script("$ false\n")], check=False).returncode == 1


def test_every_not_run_marker_stands_before_a_code_block() -> None:
    for path in documents():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if MARKER.match(line.strip()):
                following = next((other for other in lines[number + 1 :] if other.strip()), "")
                assert FENCE.match(following), (
                    f"{path.relative_to(ROOT)}:{number + 1}: marker before no block"
                )


def test_make_run_prints_commands_that_run_as_printed(machine: Machine, tmp_path: Path) -> None:
    printed = machine.log.read_text(errors="replace").split("Try it", 1)[1].splitlines()[1:]
    commands = [line.strip() for line in printed if line.startswith("  ") and line.strip()]
    assert len(commands) >= 3, printed
    script = "\n".join(commands) + "\n"
    for attempt in ("first", "again"):  # a rerun of the same commands works too
        result = run_bash(machine, script, tmp_path / attempt)
        assert result.returncode == 0, failure(f"`make run` output ({attempt} run)", script, result)
    assert (machine.folder / "all-MiniLM-L6-v2" / "config.json").is_file()


def test_readme_and_docs_run_as_written_in_order(machine: Machine, tmp_path: Path) -> None:
    blocks = all_blocks()
    skipped = [block for block in blocks if block.not_run]
    print(f"\nnot run ({len(skipped)} of {len(blocks)} blocks):")
    for block in skipped:
        print(f"  {block.where} [{block.lang or 'plain'}]: {block.not_run}")
    ran = 0
    for number, block in enumerate(blocks):
        if block.not_run:
            continue
        result = run_block(machine, block, tmp_path / f"block{number}")
        assert result.returncode == 0, failure(block.where, block.code, result)
        ran += 1
    assert ran + len(skipped) == len(blocks)
    assert ran > len(skipped)
