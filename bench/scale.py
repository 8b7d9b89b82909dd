"""Scale benchmark (issue 14): the metadata API under load, and listings and searches over many repos.

Rows, each on SQLite and on PostgreSQL, for each worker count of `--workers`:

| row | measure | goal (issue 14, 2 cores, load generator included) |
|---|---|---|
| `model_info`, `tree`, `resolve` HEAD; 64 closed-loop clients | requests/s | ≥ 800 (4 workers, PostgreSQL) |
| the same mix at a fixed offered rate of 200 requests/s | p50, p99 latency | p99 < 50 ms |
| `list_models` pages and web searches over `--repos` repos | p50, p99 per page | p99 < 100 ms (10,000) |
| a 1 GiB file up to and down from S3 (SeaweedFS), through the hub and presigned | MB/s | ratio to obstore |

The load generator is this process: asyncio over raw HTTP/1.1 keep-alive connections on 127.0.0.1, lighter
than any HTTP client library, so that as much of the two cores as possible is left to the hub. Every load is
bounded: the closed loop runs `--duration` seconds with `--clients` connections; the open loop sends
rate × duration requests, each timed from the moment it was due (so a stalled hub cannot hide its queue), at
most `MAX_CONNECTIONS` at a time. Anonymous requests to public repos; any answer but 200 fails the run.

Repos are created through the domain services in this process before the hub starts (the same code the HTTP
routes call, without 10,000 requests' worth of HTTP): `--repos` repos in 20 organisations, one in ten
private, one in twenty with a model card whose tags the filters and the search find. PostgreSQL runs in a
throwaway cluster started like the test suite's (tests/postgres.py: Unix socket, fsync off — every request
measured here reads).

    python bench/scale.py                 # make bench: 1 worker, 1,000 repos, 5 s per load row, 1 GiB S3 rows
    python bench/scale.py --workers 1,4 --repos 10000 --duration 20 --json
    python bench/scale.py --rows s3 --s3-size-mib 1024 --s3-rounds 3

The S3 rows are bench/s3.py's (imported, not copied; its docstring says how they are timed): once, not per
database or worker count, since the bytes go to the store, not to the database.

`--workers N` runs `weightyard serve --workers N` (on a tree without that option those rows are skipped, and
say so).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import support  # noqa: E402 - the repo root goes on the path first
from tests.postgres import PostgresCluster  # noqa: E402

MAX_CONNECTIONS = 256
WARM_UP_S = 3.0
REQUEST_TIMEOUT = 30.0
METADATA_REPOS = 32
ORGS = 20
WORDS = ("llama", "bert", "whisper", "resnet", "mistral", "qwen", "phi", "gemma", "clip", "t5")
LICENSES = ("mit", "apache-2.0", "cc-by-4.0")
PAGE = 50
LIST_SAMPLES = 40
GOAL_THROUGHPUT = 800.0
GOAL_P99_MS = 50.0
GOAL_LIST_P99_MS = 100.0


class BenchError(Exception):
    pass


# ------------------------------------------------------------------------------------------- HTTP client


class Connection:
    """One HTTP/1.1 keep-alive connection: a request, then its whole answer, then the next."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str) -> int:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n\r\n".encode())
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        if method != "HEAD":
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await self._reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self, started: float, status: int | BaseException, what: str) -> None:
        self.latencies.append(time.perf_counter() - started)
        if status != 200:
            key = f"{what}: {status!r}"
            self.errors[key] = self.errors.get(key, 0) + 1

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds


async def _one(connection: Connection, request: tuple[str, str], load: Load, started: float) -> None:
    try:
        status: int | BaseException = await asyncio.wait_for(connection.request(*request), REQUEST_TIMEOUT)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        connection.close()
        status = exc
    load.record(started, status, f"{request[0]} {request[1]}")


async def closed_loop(port: int, requests: list[tuple[str, str]], clients: int, seconds: float) -> Load:
    """`clients` connections, each sending its next request as soon as the last one is answered."""
    load = Load()
    # Untimed first: every worker opens its pool of database connections (a PostgreSQL server process each)
    # and psycopg prepares the statements it runs most, which takes a started hub a second or more here.
    warm_until = time.perf_counter() + min(WARM_UP_S, seconds / 2)
    deadline = warm_until + seconds

    async def client(index: int) -> None:
        connection = Connection("127.0.0.1", port)
        order = random.Random(index)
        warm = Load()
        while (now := time.perf_counter()) < deadline:
            await _one(connection, order.choice(requests), warm if now < warm_until else load, now)
        connection.close()
        for key, count in warm.errors.items():
            load.errors[key] = load.errors.get(key, 0) + count

    await asyncio.gather(*(client(index) for index in range(clients)))
    load.seconds = seconds
    return load


async def open_loop(port: int, requests: list[tuple[str, str]], rate: float, seconds: float) -> Load:
    """Requests sent at a fixed `rate`, each timed from when it was due, whatever the hub's backlog; at most
    `MAX_CONNECTIONS` in flight (a request due while all are busy waits for one, and that wait counts)."""
    load = Load()
    idle = [Connection("127.0.0.1", port) for _ in range(64)]
    slots = asyncio.Semaphore(MAX_CONNECTIONS)
    order = random.Random(0)
    pending: set[asyncio.Task[None]] = set()

    async def send(request: tuple[str, str], due: float) -> None:
        connection = idle.pop() if idle else Connection("127.0.0.1", port)
        try:
            await _one(connection, request, load, due)
        finally:
            idle.append(connection)
            slots.release()

    start = time.perf_counter()
    for index in range(int(rate * seconds)):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        task = asyncio.create_task(send(order.choice(requests), due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    load.seconds = time.perf_counter() - start
    for connection in idle:
        connection.close()
    return load


def sequential(port: int, path: str, samples: int) -> Load:
    """One client asking for `path` `samples` times (after two untimed warm-up requests)."""

    async def run() -> Load:
        load, connection = Load(), Connection("127.0.0.1", port)
        for index in range(samples + 2):
            started = time.perf_counter()
            status = await asyncio.wait_for(connection.request("GET", path), REQUEST_TIMEOUT)
            if index >= 2:
                load.record(started, status, path)
        connection.close()
        return load

    return asyncio.run(run())


# ------------------------------------------------------------------------------------------- the hub


@dataclass
class Database:
    name: str
    url: str | None  # None: the embedded SQLite database in the data folder


@contextlib.contextmanager
def databases(names: list[str]) -> Iterator[Callable[[str], Database]]:
    """A maker of fresh databases by kind; the PostgreSQL cluster lives as long as the block."""
    cluster = PostgresCluster() if "postgresql" in names else None
    made = 0

    def fresh(name: str) -> Database:
        nonlocal made
        if name == "sqlite":
            return Database(name, None)
        assert cluster is not None
        made += 1
        return Database(name, migrated(cluster.create_database(f"bench_{made}")))

    try:
        if cluster is not None:
            cluster.start()
        yield fresh
    finally:
        if cluster is not None:
            cluster.stop()


def migrated(url: str) -> str:
    from weightyard.db import create_engine, migrate

    engine = create_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return url


def open_hub(data: Path, database: Database):  # type: ignore[no-untyped-def] - imported lazily
    from weightyard.config import Settings
    from weightyard.hub import Hub

    return Hub.open(Settings(data=data, database_url=database.url))


def add_files(hub, principal, repo, files: dict[str, bytes], title: str) -> None:  # type: ignore[no-untyped-def]
    from weightyard.repos import AddFile

    operations = []
    for path, content in files.items():
        ingest = hub.repos.start_ingest()
        ingest.write(content)
        added = hub.repos.record_content(principal, ingest.finish())
        operations.append(AddFile(path, added.sha256, added.size, added.lfs))
    hub.repos.commit(principal, repo, "main", operations, title)


def card(index: int) -> bytes:
    word = WORDS[index % len(WORDS)]
    return (
        f"---\nlicense: {LICENSES[index % len(LICENSES)]}\npipeline_tag: text-generation\n"
        f"tags:\n- {word}\n- bench-{index % 7}\n---\n# {word} model {index}\n"
    ).encode()


def seed_metadata(data: Path, database: Database) -> list[tuple[str, str]]:
    """`METADATA_REPOS` public repos with a card, a config and small weights; the request mix over them."""
    from weightyard.auth import LOCAL_ADMIN

    header = b'{"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}'
    weights = len(header).to_bytes(8, "little") + header + b"\0" * 64
    hub = open_hub(data, database)
    try:
        admin = hub.accounts.authenticate(hub.admin_token())
        hub.accounts.create_org(LOCAL_ADMIN, "bench")
        requests = []
        for index in range(METADATA_REPOS):
            repo = hub.repos.create_repo(admin, "model", "bench", f"model-{index}", private=False)
            files = {
                "README.md": card(index),
                "config.json": json.dumps(
                    {"model_type": WORDS[index % len(WORDS)], "hidden": index}
                ).encode(),
                "model.safetensors": weights,
                "tokenizer.json": b'{"version": "1.0"}',
            }
            add_files(hub, admin, repo, files, "Add model")
            requests += [
                ("GET", f"/api/models/{repo.repo_id}"),
                ("GET", f"/api/models/{repo.repo_id}/tree/main"),
                ("HEAD", f"/{repo.repo_id}/resolve/main/config.json"),
            ]
        return requests
    finally:
        hub.close()


def seed_listing(data: Path, database: Database, count: int) -> float:
    """`count` repos in `ORGS` organisations; returns the seconds it took."""
    from weightyard.auth import LOCAL_ADMIN

    started = time.perf_counter()
    hub = open_hub(data, database)
    try:
        admin = hub.accounts.authenticate(hub.admin_token())
        for org in range(ORGS):
            hub.accounts.create_org(LOCAL_ADMIN, f"org{org}")
        for index in range(count):
            name = f"{WORDS[index % len(WORDS)]}-{index // len(WORDS)}-v{index % 3}"
            repo = hub.repos.create_repo(admin, "model", f"org{index % ORGS}", name, private=index % 10 == 9)
            if index % 20 == 0:
                add_files(hub, admin, repo, {"README.md": card(index)}, "Add card")
    finally:
        hub.close()
    return time.perf_counter() - started


@contextlib.contextmanager
def serving(data: Path, database: Database, workers: int) -> Iterator[int]:
    """`weightyard serve` on `data` (started and stopped as the tests start theirs), once every worker accepts
    connections: the first answers while the others still import, and the load must not start on a hub that
    is still starting. Yields its port."""
    env = {} if database.url is None else {"WEIGHTYARD_DATABASE_URL": database.url}
    try:
        server = support.start_server(data, env, ("--workers", str(workers)) if workers > 1 else ())
    except RuntimeError as exc:
        raise BenchError(f"the hub did not start: {exc}") from exc
    try:
        if workers > 1:
            support.wait_for_workers(server, workers)
    except AssertionError as exc:
        support.stop_server(server)
        raise BenchError(str(exc)) from exc
    try:
        yield int(server.url.rsplit(":", 1)[1])
    finally:
        support.stop_server(server)


def serve_supports_workers() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "weightyard", "serve", "--help"], capture_output=True, text=True, check=False
    )
    return "--workers" in result.stdout


# ------------------------------------------------------------------------------------------- rows


def check(load: Load, what: str) -> None:
    if load.errors:
        raise BenchError(f"{what}: requests failed: {dict(sorted(load.errors.items())[:5])}")


def metadata_rows(
    database: Database, workers: int, work: Path, clients: int, rate: float, seconds: float, rounds: int
) -> dict[str, object]:
    data = work / f"meta-{database.name}-{workers}" / "data"
    data.parent.mkdir()
    requests = seed_metadata(data, database)
    with serving(data, database, workers) as port:
        # Each round opens its clients' connections anew: which worker accepts each of them is a race on two
        # cores (64 connections fell 36/25/2/1 and 25/25/13/1 on four workers), and a connection stays with
        # its worker, so a single round measures one draw of that race. The median round is reported.
        loads = []
        for _ in range(rounds):
            loads.append(asyncio.run(closed_loop(port, requests, clients, seconds)))
            check(loads[-1], "closed loop")
        closed = sorted(loads, key=lambda load: load.throughput)[len(loads) // 2]
        opened = asyncio.run(open_loop(port, requests, rate, seconds))
        check(opened, "fixed rate")
    return {
        "database": database.name,
        "workers": workers,
        "clients": clients,
        "throughput": round(closed.throughput, 1),
        "rounds": [round(load.throughput, 1) for load in loads],
        "closed_p50_ms": round(closed.percentile(0.5), 1),
        "closed_p99_ms": round(closed.percentile(0.99), 1),
        "rate": rate,
        "achieved_rate": round(opened.throughput, 1),
        "p50_ms": round(opened.percentile(0.5), 1),
        "p99_ms": round(opened.percentile(0.99), 1),
        "requests": sum(len(load.latencies) for load in loads) + len(opened.latencies),
    }


def cursor_after(port: int, path: str, hops: int) -> str:
    """The `cursor` a listing hands out after `hops` pages from `path` on, following its next links (the API's
    `Link` header, the web page's `links.next`): pages are keyset positions, reached only by walking."""
    url, cursor = f"http://127.0.0.1:{port}{path}", ""
    for _ in range(hops):
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as response:
            link = response.headers.get("Link", "")
            following = json.load(response)["links"]["next"] if not link else link[1 : link.index(">")]
        if not following:
            raise BenchError(f"{path}: fewer than {hops + 1} pages; use more --repos")
        url = urllib.parse.urljoin(url, following)
        cursor = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["cursor"][0]
    return urllib.parse.quote(cursor)


def listing_queries(port: int, count: int) -> dict[str, str]:
    # about halfway through the public repos, in pages of 100 (`full` lists files: the smaller page)
    middle = cursor_after(port, "/api/models?full=true", max(1, count // 200))
    return {
        "list_models, first page": f"/api/models?limit={PAGE}",
        "list_models, middle page": f"/api/models?limit={PAGE}&cursor={middle}",
        "list_models, search": f"/api/models?search=whisper&limit={PAGE}",
        "list_models, filter": f"/api/models?filter=license:mit&limit={PAGE}",
        "list_models, sort=likes": f"/api/models?sort=likes&direction=-1&limit={PAGE}",
        "list_models, author": f"/api/models?author=org7&limit={PAGE}",
        "web search, one word": "/models?search=mistral",
        "web search, two words": "/models?search=gemma+v2",
        "web search, tag word": "/models?search=bench-3",
        "web search, 2 letters": "/models?search=t5",
        "web models, page 5": f"/models?cursor={cursor_after(port, '/models.json', 4)}",
        # the web listing's newest-first order is list_models' default one: the same position
        "web models, middle page": f"/models?cursor={middle}",
    }


def listing_rows(database: Database, work: Path, count: int) -> list[dict[str, object]]:
    data = work / f"list-{database.name}" / "data"
    data.parent.mkdir()
    seeded = seed_listing(data, database, count)
    print(f"  {count} repos created through the services in {seeded:.1f} s", flush=True)
    rows = []
    with serving(data, database, 1) as port:
        for name, path in listing_queries(port, count).items():
            load = sequential(port, path, LIST_SAMPLES)
            check(load, name)
            rows.append(
                {
                    "database": database.name,
                    "repos": count,
                    "query": name,
                    "path": path,
                    "p50_ms": round(load.percentile(0.5), 1),
                    "p99_ms": round(load.percentile(0.99), 1),
                }
            )
    return rows


def s3_rows(size_mib: int, rounds: int) -> list[dict[str, object]]:
    from bench import s3  # the S3 benchmark's own code; imported here, as it needs obstore and SeaweedFS

    return s3.measure(size_mib, rounds)


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(
    metadata: list[dict[str, object]],
    listing: list[dict[str, object]],
    s3: list[dict[str, object]],
    skipped: list[str],
) -> None:
    if metadata:
        print("\nMetadata mix (model_info, tree, resolve HEAD; anonymous, public repos)")
        print(
            "| database | workers | closed loop req/s, median (rounds) | its p50 / p99 ms | fixed rate"
            " | p50 ms | p99 ms |"
        )
        print("|---|---|---|---|---|---|---|")
        for row in metadata:
            print(
                f"| {row['database']} | {row['workers']} | {row['throughput']} ({row['clients']} clients; "
                f"{', '.join(str(value) for value in row['rounds'])}) | "  # type: ignore[attr-defined]
                f"{row['closed_p50_ms']} / {row['closed_p99_ms']} | {row['rate']:g} req/s "
                f"(sent {row['achieved_rate']}) | {row['p50_ms']} | {row['p99_ms']} |"
            )
        goal = [row for row in metadata if row["workers"] == 4 and row["database"] == "postgresql"]
        if goal:
            print(
                f"goal ≥ {GOAL_THROUGHPUT:g} req/s with 4 workers on PostgreSQL: "
                f"{verdict(float(goal[0]['throughput']) >= GOAL_THROUGHPUT)}"  # type: ignore[arg-type]
            )
        worst = max(float(row["p99_ms"]) for row in metadata)  # type: ignore[arg-type]
        print(
            f"goal p99 < {GOAL_P99_MS:g} ms at the fixed rate: {verdict(worst < GOAL_P99_MS)}, worst {worst}"
        )
    if listing:
        print("\nListing and search, one client, p50 / p99 per page")
        print("| database | repos | query | p50 ms | p99 ms |")
        print("|---|---|---|---|---|")
        for row in listing:
            print(
                f"| {row['database']} | {row['repos']} | {row['query']} | {row['p50_ms']} | {row['p99_ms']} |"
            )
        worst = max(float(row["p99_ms"]) for row in listing)  # type: ignore[arg-type]
        print(
            f"goal p99 < {GOAL_LIST_P99_MS:g} ms a page: {verdict(worst < GOAL_LIST_P99_MS)}, worst {worst}"
        )
    if s3:
        first = s3[0]
        print(
            f"\nS3 transfers of {first['size_mib']} MiB (SeaweedFS on loopback), medians of {first['rounds']}"
            " rounds; the anchor is obstore copying the same bytes to and from the same bucket"
        )
        print("| direction | how | MB/s | time s | ratio to the anchor |")
        print("|---|---|---|---|---|")
        for row in s3:
            cells = [row[key] for key in ("direction", "how", "mb_per_s", "seconds", "ratio")]
            print("| " + " | ".join(str(cell) for cell in cells) + "x |")
    for line in skipped:
        print(f"not measured: {line}")


def parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def tree() -> str:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", default="1", help="worker counts, e.g. 1,4 (default 1)")
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="sqlite, postgresql or both (default)"
    )
    parser.add_argument(
        "--rows", default="metadata,listing,s3", help="any of metadata, listing, s3 (default: all three)"
    )
    parser.add_argument("--repos", type=int, default=1000, help="repos for the listing rows (default 1000)")
    parser.add_argument("--clients", type=int, default=64, help="closed-loop clients (default 64)")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="fixed offered rate, requests/s (default 200)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load row (default 5)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="closed-loop rounds per metadata row; the median (default 3)"
    )
    parser.add_argument("--s3-size-mib", type=int, default=1024, help="S3 rows' file size (default 1024)")
    parser.add_argument("--s3-rounds", type=int, default=3, help="S3 rows' alternating rounds (default 3)")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON at the end")
    args = parser.parse_args(argv)
    workers = [int(value) for value in parse_list(args.workers)]
    names, rows = parse_list(args.databases), parse_list(args.rows)
    if not set(names) <= {"sqlite", "postgresql"} or not set(rows) <= {"metadata", "listing", "s3"}:
        parser.error("--databases takes sqlite,postgresql and --rows metadata,listing,s3")
    if not (1 <= args.s3_size_mib <= 16 * 1024 and 1 <= args.s3_rounds <= 10):
        parser.error("--s3-size-mib 1..16384, --s3-rounds 1..10")
    if not 1 <= args.rounds <= 9:
        parser.error("--rounds 1..9")
    if not (1 <= args.clients <= MAX_CONNECTIONS and 0 < args.rate <= 5000 and 0 < args.duration <= 600):
        parser.error(f"--clients 1..{MAX_CONNECTIONS}, --rate up to 5000, --duration up to 600 s")
    if not 1 <= args.repos <= 100_000 or not all(1 <= count <= 16 for count in workers):
        parser.error("--repos 1..100000, --workers 1..16")
    skipped: list[str] = []
    if any(count > 1 for count in workers) and not serve_supports_workers():
        skipped.append(f"workers {[c for c in workers if c > 1]}: `weightyard serve` has no --workers here")
        workers = [count for count in workers if count == 1]
    load = os.getloadavg()
    print(
        f"Weightyard scale benchmark, tree {tree()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    metadata: list[dict[str, object]] = []
    listing: list[dict[str, object]] = []
    s3: list[dict[str, object]] = []
    # the S3 rows need no database of their own: no PostgreSQL cluster for them alone
    used = names if {"metadata", "listing"} & set(rows) else []
    try:
        with tempfile.TemporaryDirectory(prefix="wy-scale-") as folder, databases(used) as fresh:
            work = Path(folder)
            if "metadata" in rows:
                for count in workers:
                    for name in names:
                        print(f"metadata mix: {name}, {count} worker(s)", flush=True)
                        row = metadata_rows(
                            fresh(name), count, work, args.clients, args.rate, args.duration, args.rounds
                        )
                        metadata.append(row)
            if "listing" in rows:
                for name in names:
                    print(f"listing: {name}, {args.repos} repos", flush=True)
                    listing += listing_rows(fresh(name), work, args.repos)
        if "s3" in rows:
            print(f"S3 transfers: {args.s3_size_mib} MiB, {args.s3_rounds} rounds", flush=True)
            s3 = s3_rows(args.s3_size_mib, args.s3_rounds)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    report(metadata, listing, s3, skipped)
    end = os.getloadavg()
    print(f"\nload average {load[0]:.2f} at the start, {end[0]:.2f} at the end")
    if args.json:
        print(
            json.dumps(
                {"tree": tree(), "metadata": metadata, "listing": listing, "s3": s3, "skipped": skipped},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
