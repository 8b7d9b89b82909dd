"""`weightyard push` of two source trees against each other, in one run, with the client-side bound.

Each round, in alternating order: `cp` + `sync FILE`, sha256 of the file alone (hashlib, 8 MiB reads), a push
with tree A's CLI to a hub running tree A, the same with tree B, and each tree's CLI against `bench/sink.py`
(a server that discards every byte: the client's own time). The file gets a new 16-byte head before every
push, so each one uploads content its hub has never seen. Prints medians and bests.

    git worktree add /tmp/before 3877315
    python bench/push_ab.py --a /tmp/before/src --b src --size 512M --repeat 5
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer import (
    Processes,
    flush_disk,
    free_port,
    parse_size,
    wait_for_http,
)

SINK = Path(__file__).resolve().parent / "sink.py"
_HASH_READ = 8 * 1024 * 1024


def make_unique(path: Path) -> None:
    """A fresh 16-byte head: new content for the hub (it skips what it has), the rest as it was."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, os.urandom(16), 0)
    finally:
        os.close(fd)


def env_for(src: Path, work: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "WEIGHTYARD_"))}
    env.update(PYTHONPATH=str(src.resolve()), HF_HOME=str(work / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    return env


def start_hub(processes: Processes, src: Path, work: Path, name: str) -> tuple[str, str]:
    data, port = work / name, free_port()
    cmd = [sys.executable, "-m", "weightyard", "serve", "--port", str(port), "--data", str(data)]
    child = processes.start(cmd, work / f"{name}.log", env_for(src, work))
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/api/agent-harnesses", child, f"the hub of {src}", work / f"{name}.log")
    return url, (data / "admin-token").read_text().strip()


def start_sink(processes: Processes, src: Path, work: Path) -> str:
    port = free_port()
    child = processes.start(
        [sys.executable, str(SINK), "--port", str(port)], work / "sink.log", env_for(src, work)
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/_sink/stats", child, "the sink", work / "sink.log")
    return url


def timed(step: Callable[[], object]) -> float:
    flush_disk()  # untimed: no write-back of an earlier step during this one
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def push(src: Path, work: Path, folder: Path, url: str, token: str) -> None:
    cmd = [sys.executable, "-m", "weightyard", "push", str(folder), "admin/ab", "--endpoint", url]
    done = subprocess.run(
        [*cmd, "--token", token], env=env_for(src, work), capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise SystemExit(f"push with {src} failed:\n{done.stderr[-2000:]}")


def sha256_alone(path: Path) -> None:
    digest, buffer = hashlib.sha256(), bytearray(_HASH_READ)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(memoryview(buffer)[:count])


def cp_sync(source: Path, work: Path) -> None:
    copy = work / "copy.bin"
    subprocess.run(["cp", str(source), str(copy)], check=True)
    subprocess.run(["sync", str(copy)], check=True)
    copy.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="first source tree (its src/ folder)")
    parser.add_argument("--b", type=Path, required=True, help="second source tree (its src/ folder)")
    parser.add_argument("--size", default="512M")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    size = parse_size(args.size)
    processes = Processes()
    work = Path(tempfile.mkdtemp(prefix="weightyard-push-ab-"))
    try:
        folder = work / "model"
        folder.mkdir()
        source = folder / "model.bin"
        with open(source, "wb") as handle:
            for offset in range(0, size, _HASH_READ):
                handle.write(os.urandom(min(_HASH_READ, size - offset)))
        hubs = {tree: start_hub(processes, tree, work, f"hub-{i}") for i, tree in enumerate((args.a, args.b))}
        sink = start_sink(processes, args.b, work)
        rows: dict[str, list[float]] = {}
        for index in range(args.repeat):
            steps: list[tuple[str, Callable[[], object]]] = [
                ("cp + sync FILE", lambda: cp_sync(source, work)),
                ("sha256 of the file alone", lambda: sha256_alone(source)),
            ]
            for tree, (url, token) in hubs.items():
                steps.append((f"push {tree}", lambda t=tree, u=url, k=token: push(t, work, folder, u, k)))
                steps.append((f"CLI of {tree} -> sink", lambda t=tree: push(t, work, folder, sink, "sink")))
            for label, step in steps if index % 2 == 0 else steps[::-1]:
                make_unique(source)  # every push sends content its server has never seen
                rows.setdefault(label, []).append(timed(step))
            print(
                f"round {index + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items()), flush=True
            )
        print(f"\n{size / 2**20:.0f} MiB, {args.repeat} rounds, median (best):")
        for label, seconds in rows.items():
            print(f"| {label} | {statistics.median(seconds):.3f} s ({min(seconds):.3f} s) |")
    finally:
        processes.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
