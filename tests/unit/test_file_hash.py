"""The hashes `weightyard push DIR` begins before the CLI loads (weightyard/file_hash.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from weightyard import file_hash
from weightyard.file_hash import EarlyHashStopped, start_early, stop_early, take_early

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def _no_early_hash_left() -> Iterator[None]:
    yield
    stop_early()


def _folder(root: Path, sizes: dict[str, int]) -> dict[Path, bytes]:
    files = {}
    for name, size in sizes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data := os.urandom(size))
        files[path] = data
    return files


def test_the_files_of_push_dir_are_hashed_and_taken_over_with_what_was_hashed_before(tmp_path: Path) -> None:
    files = _folder(tmp_path / "m", {"model.bin": 20 * MIB + 5, "sub/config.json": 300, ".git/HEAD": 10})
    start_early(["weightyard", "push", str(tmp_path / "m"), "me/model", "--private"])
    for path, data in files.items():
        counted: list[int] = []
        taken = take_early(path, counted.append)
        if path.parts[-2] == ".git":
            assert taken is None  # push leaves .git out, and so does the early hash
            continue
        assert taken is not None
        assert taken.result(timeout=60) == hashlib.sha256(data).hexdigest()
        assert sum(counted) == len(data)  # the bytes hashed before it was taken, then the rest
        assert take_early(path, counted.append) is None  # taken once


@pytest.mark.parametrize(
    "argv",
    [
        ["weightyard", "pull", "{folder}"],
        ["weightyard", "push", "--endpoint", "{folder}", "{folder}", "me/model"],
        ["weightyard", "push", "{folder}/missing", "me/model"],
        ["weightyard", "push", "{folder}/model.bin", "me/model"],
        ["weightyard", "push"],
    ],
)
def test_only_push_with_an_existing_folder_first_begins_a_hash(tmp_path: Path, argv: list[str]) -> None:
    files = _folder(tmp_path, {"model.bin": 1000})
    start_early([arg.format(folder=tmp_path) for arg in argv])
    assert take_early(next(iter(files)), lambda count: None) is None


def test_a_file_changed_after_the_hash_began_is_left_to_push(tmp_path: Path) -> None:
    (path,) = _folder(tmp_path, {"model.bin": 3 * MIB})
    start_early(["weightyard", "push", str(tmp_path), "me/model"])
    path.write_bytes(os.urandom(3 * MIB + 1))
    assert take_early(path, lambda count: None) is None


def test_stopping_ends_the_hashes_taken_and_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = _folder(tmp_path, {"a.bin": 20 * MIB, "b.bin": 100, "c.bin": 100})
    release = threading.Event()
    real = file_hash.sha256_of_file

    def held(path: Path, advance: file_hash.Advance) -> str:  # the early thread waits before its first file
        assert release.wait(60)
        return real(path, advance)

    monkeypatch.setattr(file_hash, "sha256_of_file", held)
    start_early(["weightyard", "push", str(tmp_path), "me/model"])
    taken = [take_early(first, lambda count: None), take_early(second, lambda count: None)]
    stop_early()  # a push that failed: a hash begun ends at its next 8 MiB, those not begun at once
    release.set()
    for future in taken:
        assert future is not None
        with pytest.raises(EarlyHashStopped):
            future.result(timeout=60)
    assert take_early(third, lambda count: None) is None  # stopped: nothing left to take
    assert file_hash._current is None


# Runs `weightyard.launch.main` with the command line after the first argument, its `start_early` wrapped;
# prints at exit what was loaded when the hash began, whether one began, whether it was stopped by then, and
# whether the module still holds it.
_LAUNCH = """
import atexit, sys
import weightyard.launch as launch
import weightyard.file_hash as launch_hash
seen = []
def start(argv, begin=launch.start_early):
    begin(argv)
    seen.extend([[m for m in ("typer", "rich", "weightyard.cli") if m in sys.modules], launch_hash._current])
launch.start_early = start
atexit.register(lambda: print((seen[0], seen[1] is not None, seen[1].stop.is_set(), launch_hash._current)))
sys.argv = ["weightyard", *sys.argv[1:]]
launch.main()
"""


def _launch(*args: str) -> tuple[int, str]:
    ran = subprocess.run([sys.executable, "-c", _LAUNCH, *args], capture_output=True, text=True, timeout=120)
    return ran.returncode, (ran.stdout.strip().splitlines() or [ran.stderr])[-1]


def test_the_command_begins_the_hash_before_it_loads_the_cli(tmp_path: Path) -> None:
    # `python -m weightyard push DIR …` (the `weightyard` script runs the same `launch.main`): when the hash
    # begins, typer, rich and the command modules are not loaded yet.
    _folder(tmp_path / "m", {"model.bin": 1000})
    code, line = _launch("push", str(tmp_path / "m"), "me/model", "--endpoint", "http://127.0.0.1:9")
    assert code != 0  # nothing listens on port 9: the push fails, after the hash began
    assert line == "([], True, True, None)"


def test_a_command_that_ends_before_push_takes_its_hashes_stops_them(tmp_path: Path) -> None:
    _folder(tmp_path / "m", {"model.bin": 1000})
    code, line = _launch("push", str(tmp_path / "m"), "not a repo name")
    assert code == 2  # a usage error, before push_folder
    assert line == "([], True, True, None)"  # begun, then stopped by the launcher
