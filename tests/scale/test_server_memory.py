"""The server keeps at most two malloc arenas, however many of its request threads allocate at once: glibc
would give each its own (up to eight per core), each keeping the large buffers freed into it, which took the
transfer benchmark's peak past its 300 MB bound (docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
from tests.support import Server

from weightyard.server import MALLOC_ARENAS

# glibc reserves each arena but the main one as a 64 MiB-aligned anonymous mapping of 64 MiB (a heap): the
# part in use readable and writable, the rest reserved without access. An arena that outgrows its heap takes
# another one, so heaps are not arenas: each heap opens with its arena's address (`heap_info.ar_ptr`,
# malloc/arena.c), and only an arena's first heap holds the arena itself, right after that header.
_HEAP = 64 * 1024 * 1024


def _arenas(pid: int) -> int:
    """The number of malloc arenas in process `pid` besides the main one."""
    rows = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        rows.append((start, end, fields[1], len(fields) > 5))
    arenas = 0
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
        for index, (start, end, perms, named) in enumerate(rows):
            if named or perms != "rw-p" or start % _HEAP:
                continue
            following = rows[index + 1] if index + 1 < len(rows) else None
            if following is not None and following[0] == end and following[2] == "---p" and not following[3]:
                end = following[1]
            if end - start != _HEAP:
                continue
            memory.seek(start)
            arena = int.from_bytes(memory.read(8), sys.byteorder)
            arenas += start < arena < start + _HEAP
    return arenas


def test_request_threads_share_at_most_two_malloc_arenas(server: Server) -> None:
    def requests() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for _ in range(20):
                assert client.get("/api/models").status_code == 200
                assert client.get("/api/models/admin/none").status_code in (401, 404)

    threads = [threading.Thread(target=requests) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _arenas(server.pid) <= MALLOC_ARENAS - 1  # the main arena is not one of these


_FROZEN = """
import gc, sys
from pathlib import Path
from weightyard.config import Settings
from weightyard.hub import Hub
from weightyard.server import HubApp
settings = Settings.for_data(Path(sys.argv[1]))
Hub.open(settings).close()
assert gc.get_freeze_count() == 0
HubApp(settings)()
print(gc.get_freeze_count())
"""


def test_a_worker_keeps_what_start_up_made_out_of_the_collectors_sight(tmp_path: Path) -> None:
    # Modules, routes and the hub's services live as long as the worker; a full collection that walked them
    # all cost about 0.09 s of CPU in each 512 MiB Xet upload (docs/benchmarks.md).
    done = subprocess.run(
        [sys.executable, "-c", _FROZEN, str(tmp_path / "data")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 50_000
