"""Workers benchmark: how `weightyard serve --workers N` spreads connections over its processes, and what a
second worker adds to `model_info` throughput, on SQLite.

Spread: with 2 and 4 workers, 400 connections opened one after another (each closed after one answer), then
32 held open at once, as a proxy's keep-alive pool would; each connection's worker is found in /proc. The
counts per worker are printed, largest first.

Throughput: hubs with 1 and 2 workers, 16 client threads each on its own keep-alive connection asking
`GET /api/models/{repo}` for `--seconds` (4), alternately for `--rounds` (3) so both see the same load;
requests per second per round, the medians and their ratio.

    python bench/workers.py            (make bench)
"""

from __future__ import annotations

import argparse
import collections
import http.client
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import Server, start_server, stop_server, wait_for_workers, worker_of

CLIENTS = 16


def _get(conn: http.client.HTTPConnection, path: str, token: str | None = None) -> int:
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    response = conn.getresponse()
    response.read()
    return response.status


def _connect(server: Server) -> tuple[int, http.client.HTTPConnection]:
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=60)
    _get(conn, "/api/whoami-v2")
    assert conn.sock is not None
    return worker_of(server, conn.sock.getsockname()[1]), conn


def spread(workers: int) -> None:
    server = start_server(Path(tempfile.mkdtemp()) / "data", args=("--workers", str(workers)))
    try:
        wait_for_workers(server, workers)
        one_by_one: collections.Counter[int] = collections.Counter()
        for _ in range(400):
            pid, conn = _connect(server)
            conn.close()
            one_by_one[pid] += 1
        held: collections.Counter[int] = collections.Counter()
        conns = []
        for _ in range(32):
            pid, conn = _connect(server)
            conns.append(conn)
            held[pid] += 1
        for conn in conns:
            conn.close()
    finally:
        stop_server(server)
    print(
        f"{workers} workers: 400 connections one after another: {sorted(one_by_one.values(), reverse=True)}; "
        f"32 held at once: {sorted(held.values(), reverse=True)}"
    )


def _throughput(server: Server, seconds: float) -> float:
    counts = [0] * CLIENTS
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=60)
        while time.monotonic() < stop:
            assert _get(conn, "/api/models/admin/bench", server.token) == 200
            counts[index] += 1

    threads = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def throughput(rounds: int, seconds: float) -> None:
    servers = {n: start_server(Path(tempfile.mkdtemp()) / "data", args=("--workers", str(n))) for n in (1, 2)}
    try:
        wait_for_workers(servers[2], 2)
        for server in servers.values():
            conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=60)
            conn.request(
                "POST",
                "/api/repos/create",
                body=b'{"name": "bench", "organization": "admin"}',
                headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
            )
            assert conn.getresponse().status == 200
        results: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(rounds):
            for n, server in servers.items():
                results[n].append(_throughput(server, seconds))
    finally:
        for server in servers.values():
            stop_server(server)
    for n, figures in results.items():
        print(f"{n} worker(s), model_info, {CLIENTS} clients: {[round(f) for f in figures]} req/s per round")
    medians = {n: statistics.median(figures) for n, figures in results.items()}
    ratio = medians[2] / medians[1]
    print(f"median 1 -> 2 workers: {medians[1]:.0f} -> {medians[2]:.0f} req/s, ratio {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    for workers in (2, 4):
        spread(workers)
    throughput(args.rounds, args.seconds)


if __name__ == "__main__":
    main()
