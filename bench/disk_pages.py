"""Writes around the page cache from small pages and from huge pages, against `cp` + `sync`.

The hub writes the bodies of upload parts and xorbs to disk with `O_DIRECT`, 4 MiB at a time, from the
buffers the body was read into (`weightyard.api.common._BufferPool`, storage/local.py `_AlignedWrites`), with
up to three writes in flight. The disk takes a write in requests of at most `max_segments` pieces of memory
(`/sys/block/DEV/queue/max_segments`), so a 4 MiB write from scattered 4 KiB pages is several requests, and
from 2 MiB huge pages one. Each round, in turning order: `cp` + `sync` of the file (the anchor), the file
written from the pool's small-page buffers, and from its buffers advised for huge pages (what the hub uses for
every buffer of a body but its first); each write is followed by `fsync`, and the copy is compared with the
file and removed (untimed, then `sync`) before the next step. Prints best, median and anchor / row time.

    .venv/bin/python bench/disk_pages.py [--size 512M] [--rounds 5] [--in-flight 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer import flush_disk, generate, parse_size
from weightyard.api.common import _BufferPool

BATCH = 4 * 1024 * 1024  # the routes' batch (api/lfs.py UPLOAD_BATCH, api/xet.py _BODY_BATCH)


def huge_pages_in_use() -> int:
    """AnonHugePages of this process, in KiB: whether the kernel gave the advised buffers huge pages."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def write_direct(source: Path, target: Path, huge: bool, in_flight: int) -> tuple[float, int]:
    """Copy `source` to `target` in BATCH writes around the page cache from `in_flight` buffers of the hub's
    pool; the seconds from open to fsync, and the KiB of huge pages the buffers had."""

    pool = _BufferPool(0, linger=1.0)
    maps = [pool.take(BATCH, huge=huge) for _ in range(in_flight)]
    views = [memoryview(mapped) for mapped in maps]
    for view in views:
        view[:] = b"\0" * BATCH  # fault the pages in before the timing, as a kept buffer is
    pages = huge_pages_in_use()
    size = source.stat().st_size
    with open(source, "rb") as reader, ThreadPoolExecutor(in_flight) as disk:
        began = time.perf_counter()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
        pending: list[Future[int]] = []
        try:
            for index, offset in enumerate(range(0, size, BATCH)):
                view = views[index % in_flight]
                if len(pending) == in_flight:
                    pending.pop(0).result()
                reader.readinto(view)
                pending.append(disk.submit(os.pwrite, fd, view, offset))
            for future in pending:
                future.result()
            os.fsync(fd)
        finally:
            os.close(fd)
        seconds = time.perf_counter() - began
    for view in views:
        view.release()
    for mapped in maps:
        mapped.close()
    return seconds, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512M", help="file size (default 512M); a multiple of 4 MiB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--in-flight", type=int, default=3, help="writes in flight (the hub: up to 3)")
    parser.add_argument("--workdir", default=None, help="folder on the disk to measure (default: temp)")
    args = parser.parse_args()
    size = parse_size(args.size)
    if size % BATCH:
        raise SystemExit("--size must be a multiple of 4 MiB")
    work = Path(tempfile.mkdtemp(prefix="weightyard-disk-pages-", dir=args.workdir))
    try:
        source, target = work / "source.bin", work / "target.bin"
        generate(source, size)
        source.read_bytes()  # warm in the page cache, as the anchor's source is

        def anchor() -> tuple[float, int]:
            began = time.perf_counter()
            subprocess.run(["cp", str(source), str(target)], check=True)
            subprocess.run(["sync", str(target)], check=True)
            return time.perf_counter() - began, 0

        steps: list[tuple[str, Callable[[], tuple[float, int]]]] = [
            ("cp + sync FILE", anchor),
            ("O_DIRECT from small pages", lambda: write_direct(source, target, False, args.in_flight)),
            ("O_DIRECT from huge pages", lambda: write_direct(source, target, True, args.in_flight)),
        ]
        times: dict[str, list[float]] = {name: [] for name, _ in steps}
        print(f"{size / 2**20:.0f} MiB in {BATCH // 2**20} MiB writes, {args.in_flight} in flight, {work}")
        for round_ in range(args.rounds):
            turned = steps[round_ % len(steps) :] + steps[: round_ % len(steps)]
            line = []
            for name, step in turned:
                flush_disk()
                seconds, pages = step()
                if not filecmp.cmp(source, target, shallow=False):  # untimed
                    raise SystemExit(f"{name}: the copy differs from the file")
                target.unlink()
                times[name].append(seconds)
                line.append(f"{name} {seconds:.3f} s" + (f" (huge pages {pages} KiB)" if pages else ""))
            print(f"round {round_ + 1}: " + ", ".join(line), flush=True)
        anchor_best = min(times["cp + sync FILE"])
        anchor_median = statistics.median(times["cp + sync FILE"])
        print()
        print("| write | best | median | cp + sync / write, best (median) |")
        print("|---|---:|---:|---:|")
        for name, values in times.items():
            best, median = min(values), statistics.median(values)
            print(
                f"| {name} | {best:.3f} s | {median:.3f} s | "
                f"{anchor_best / best:.2f}× ({anchor_median / median:.2f}×) |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
