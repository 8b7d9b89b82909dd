"""Transfer benchmark: Xet uploads, downloads and `weightyard push` against the machine's own limits.

For each size (`--size 512M,1G`, the default), random files are generated in a temporary folder and moved on
127.0.0.1 only; every row is timed `--repeat` times (3) alternately with its anchor, so both see the same
load, and reported as best and median, with the ratio to the anchor and the goal of issue 13:

| row | anchor (same run) | goal |
|---|---|---|
| `upload_file`, new content, Xet (stock client) | `cp` + `sync FILE` | ≥ 0.30× |
| `hf_hub_download` of a Xet-uploaded file | nginx → `curl -o FILE` | ≥ 0.60× |
| `curl -o /dev/null`, Xet-uploaded file, 1st download (rebuilt; a file each time) | nginx → same | ≥ 0.80× |
| `curl -o /dev/null`, Xet-uploaded file, later downloads (whole copy) | nginx → same | ≥ 0.80× |
| `curl -o /dev/null` of an LFS-uploaded file (whole blob) | nginx → `curl -o /dev/null` | ≥ 1.0× |
| `weightyard push` (LFS multipart) | `cp` + `sync FILE` | ≥ 0.50× |
| server peak memory (VmHWM of `weightyard serve`) | | < 300 MB |

Each upload row is also timed against `bench/sink.py`, a server that speaks the same routes and discards every
byte: the client's time there is the client-side limit, and hub time / sink time says how close the hub is.
Each upload row also gets a verifying-hub floor, measured once per repetition on that repetition's file, after
its three timings, on a warm page cache (the file is read once untimed first): the CPU seconds on one core of
the file's sha256 (read back in the hub's 8 MiB window, hashlib; both rows) and of the keyed BLAKE3 of each of
its Xet chunks (Xet row only; the chunks cut where the stock client cuts them by weightyard's own chunker,
untimed, since the hub reads them from the xorbs' headers), each by `time.thread_time`. With the medians of
the client's CPU against the sink, the sink's (receiving the bytes over HTTP) and `cp` + `sync`'s own CPU
(writing and fsyncing the file; children's rusage around the anchor), they sum to what any hub that verifies
every byte and fsyncs every blob must spend with this client; anchor / (sum / cores) is the best ratio such a
hub can reach here, every core busy all the time, unless the client alone (anchor / its time against the sink)
allows less: the lower of the two is the best a verifying hub can reach. The report prints the sum, both
ratios, whether the goal is above the lower (out of reach of any verifying hub) and the hub's median ratio as
a share of it.
The whole-blob row is also timed from a second nginx (the same configuration, the same file), in turn with the
hub and the first nginx: what a server identical to the anchor scores against it in the same run, the reach of
any server that sends the file as nginx does (the same `sendfile` calls into the same loopback TCP), and how
far apart two such servers come out on this machine.
The `hf_hub_download` row is also timed through `bench/download_bound.py`, a proxy that hands the client
nginx URLs for the xorb bytes: the same client-side limit for the download.
The first plain download of the Xet file gets a bound too: `bench/rebuild_bound.py` rebuilds the same file
from the hub's same xorbs doing only what a server that re-hashes every chunk must (headers compared, every
chunk re-hashed on a second thread ahead of the sender, payloads sent with sendfile from the xorb files),
timed `--repeat` times alternately with nginx → /dev/null, and as often without the re-hash; anchor / bound is
the best ratio a re-hashing server reached here, first download / bound how close the hub is.
A plain-HTTP download of a Xet-uploaded file is rebuilt from its xorbs and makes the hub write a whole copy in
the background (docs/xet.md, "Storage model"): a file's first `curl` happens once, so each repetition times
the first download of a file of its own (the others uploaded through Xet beforehand, untimed), each copy
awaited before the next timing (polled, bounded); the later downloads are timed from the first file's copy,
and the time until that copy was there is reported as set-up.
Every upload sends content the hub has never seen (the file is regenerated), from a fresh client cache
(`HF_HOME`), in a subprocess; `upload_file` and `hf_hub_download` are timed around the call (imports
excluded), `weightyard push` and `curl` as whole commands. Page caches are warm (the xorbs of a downloaded
file too: the hub writes them around the cache, so they are read once, untimed, before the file's downloads),
dirty pages are flushed (`sync`, untimed) before each timing.

    python bench/transfer.py                         # both sizes, best and median of 3 (make bench)
    python bench/transfer.py --size 512M --rows push --repeat 5 --json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType

from download_bound import BoundProxy, expose
from weightyard.xet.chunking import Chunker
from weightyard.xet.hashes import ChunkRef, chunk_hash
from weightyard.xet.reconstruction import READ_WINDOW

GIB = 1024**3
MIB = 1024**2
FILE_NAME = "file.bin"
NGINX = Path("/usr/sbin/nginx")
SINK = Path(__file__).resolve().parent / "sink.py"
REBUILD_BOUND = Path(__file__).resolve().parent / "rebuild_bound.py"
RSS_BOUND_BYTES = 300 * 1000**2  # issue 13: "server peak under 300 MB during any transfer"
GENERATE_CHUNK = 16 * MIB
READY_TIMEOUT_S = 60.0
# Slowest transfer rate before a step is declared hung, plus a fixed allowance for process start-up.
MIN_RATE_BYTES_S = 5 * MIB
STARTUP_ALLOWANCE_S = 120.0
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
ROW_GROUPS = ("xet-upload", "push", "download")

# Stock-client children time only the call itself, so that importing huggingface_hub (a fixed cost of a fresh
# interpreter, not of the transfer) stays out of the figure; the download child then checks what it got.
# The upload child also reports the CPU time (user + system, every thread) the call took in the client.
_UPLOAD_CHILD = """
import json, resource, sys, time
from huggingface_hub import HfApi
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
endpoint, token, repo, path = sys.argv[1:5]
api = HfApi(endpoint=endpoint, token=token)
api.create_repo(repo, exist_ok=True)
start, cpu_start = time.perf_counter(), cpu()
api.upload_file(path_or_fileobj=path, path_in_repo="{name}", repo_id=repo)
print(json.dumps({{"seconds": time.perf_counter() - start, "cpu": cpu() - cpu_start}}))
"""
_DOWNLOAD_CHILD = """
import hashlib, json, os, sys, time
from huggingface_hub import hf_hub_download
endpoint, token, repo, cache_dir = sys.argv[1:5]
start = time.perf_counter()
path = hf_hub_download(repo, "{name}", endpoint=endpoint, token=token, cache_dir=cache_dir)
seconds = time.perf_counter() - start
digest = hashlib.sha256()
with open(path, "rb") as handle:
    while chunk := handle.read(1 << 22):
        digest.update(chunk)
print(json.dumps({{"seconds": seconds, "size": os.path.getsize(path), "sha256": digest.hexdigest()}}))
"""


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


def parse_size(text: str) -> int:
    """`1G`, `1GiB`, `512M`, `300MB` or a byte count; the units are binary (1G = 1024³ bytes)."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 1G, 512M, 1073741824)")
    number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * 1024 ** "_kmgt".index(unit)) if unit else int(number)
    if size < MIB:
        raise argparse.ArgumentTypeError("the file must be at least 1 MiB for the timings to mean anything")
    return size


def parse_sizes(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",") if part.strip()]


def parse_rows(text: str) -> list[str]:
    rows = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [row for row in rows if row not in ROW_GROUPS]
    if unknown or not rows:
        raise argparse.ArgumentTypeError(f"rows are a comma-separated subset of {', '.join(ROW_GROUPS)}")
    return rows


def human_size(size: float) -> str:
    return f"{size / GIB:.2f} GiB" if size >= GIB else f"{size / MIB:.1f} MiB"


def step_timeout(size: int) -> float:
    return STARTUP_ALLOWANCE_S + size / MIN_RATE_BYTES_S


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a command to completion and return its stdout; a failure raises BenchError with its output."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{cmd[0]} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-2000:]
        raise BenchError(f"{' '.join(cmd[:3])} … exited with {done.returncode}:\n{tail}")
    return done.stdout


def timed(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    run(cmd, timeout, env)
    return time.perf_counter() - start


def child_result(cmd: list[str], timeout: float, env: dict[str, str]) -> dict[str, object]:
    """Run a Python child that prints one JSON line last; returns it."""
    answer = json.loads(run(cmd, timeout, env).strip().splitlines()[-1])
    assert isinstance(answer, dict)
    return answer


def flush_disk() -> None:
    # Untimed: writes left dirty by one step must not be written back during the next one's timing.
    run(["sync"], timeout=STARTUP_ALLOWANCE_S)


def wait_for_http(url: str, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Wait until `url` answers; any HTTP status below 500 counts, since it proves the server is routing."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{what} exited with {process.returncode} while starting:\n{read_tail(log)}")
        status = http_status(url)
        if status == 200:
            return
        if status is not None and status < 500:
            print(
                f"note: {what} answered {url} with HTTP {status} (expected 200); it is up, going on",
                flush=True,
            )
            return
        time.sleep(0.1)
    raise BenchError(f"{what} did not answer {url} within {READY_TIMEOUT_S:.0f} s:\n{read_tail(log)}")


def http_status(url: str) -> int | None:
    """The status `url` answers with, or None while nothing listens there yet."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - a loopback http:// URL we built
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def read_tail(path: Path, limit: int = 2000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-limit:]
    return "(no log)"


def vm_hwm(pid: int) -> int:
    """Peak resident set size of a live process in bytes (Linux: VmHWM in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"/proc/{pid}/status has no VmHWM line")


def generate(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        remaining = size
        while remaining > 0:
            remaining -= handle.write(os.urandom(min(GENERATE_CHUNK, remaining)))


def sha256_of(path: Path) -> str:
    return sha256_with_cpu(path)[0]


def sha256_with_cpu(path: Path) -> tuple[str, float]:
    """The file's sha256 and the CPU seconds (this thread, user + system) that reading and hashing it took,
    in reads of the hub's window into one reused buffer, as the hub reads a file back to check its sha256."""
    digest = hashlib.sha256()
    buffer = bytearray(READ_WINDOW)
    view = memoryview(buffer)
    start = time.thread_time()
    with open(path, "rb", buffering=0) as handle:
        while got := handle.readinto(buffer):
            digest.update(view[:got])
    return digest.hexdigest(), time.thread_time() - start


def chunk_hashes_with_cpu(path: Path) -> tuple[list[ChunkRef], float]:
    """The keyed BLAKE3 hash of each of the file's Xet chunks, and the CPU seconds (this thread) the hashing
    alone took. The chunks are cut where the stock client cuts them (the hub's own chunker), untimed: cutting
    is the client's work, the hub reads the boundaries from the xorbs' chunk headers."""
    refs: list[ChunkRef] = []
    cpu = 0.0
    for chunks in _xet_chunks(path):
        start = time.thread_time()
        hashes = [chunk_hash(chunk) for chunk in chunks]
        cpu += time.thread_time() - start
        refs.extend((digest, len(chunk)) for digest, chunk in zip(hashes, chunks, strict=True))
    return refs, cpu


def _xet_chunks(path: Path) -> Iterator[list[bytes]]:
    chunker = Chunker()
    with open(path, "rb") as handle:
        while block := handle.read(READ_WINDOW):
            yield chunker.update(block)
    yield chunker.finish()


def warm_cache(path: Path) -> None:
    buffer = bytearray(READ_WINDOW)
    with open(path, "rb", buffering=0) as handle:
        while handle.readinto(buffer):
            pass


def warm_all(paths: Iterable[Path]) -> None:
    """Read every file a timing is about to read, untimed: this machine's kernel reclaims the page cache of
    files left untouched for a few seconds on its own (about 10 % of a 512 MiB file in a minute, measured), so
    a file read once before a phase is partly on the disk only by its last timing."""
    for path in paths:
        warm_cache(path)


# ---------------------------------------------------------------------------------------------- servers


class Processes:
    """Long-running children, each in its own session so that Ctrl-C reaches only us and we stop them."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "wb") as sink:
            child = subprocess.Popen(
                cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)


def ensure_nginx() -> None:
    if NGINX.exists():
        return
    if os.geteuid() != 0:
        raise BenchError(
            f"{NGINX} is missing: install Debian's nginx (`sudo apt-get install -y nginx`) and run again"
        )
    print("nginx is missing; installing it with apt-get (running as root) …", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], timeout=600, env=env)
    run(["apt-get", "install", "-y", "-q", "nginx"], timeout=600, env=env)
    if not NGINX.exists():
        raise BenchError(f"apt-get installed nginx but {NGINX} is still missing")


def start_nginx(processes: Processes, root: Path, work: Path, probe: str, name: str = "nginx") -> str:
    """Serve `root` (which holds the file `probe`) on a free loopback port with a private configuration kept
    in `work / name`; returns the base URL."""
    ensure_nginx()
    port = free_port()
    prefix = work / name
    prefix.mkdir()
    # The workers drop to an unprivileged user when started as root: they must be able to read the file.
    root.chmod(0o755)
    work.chmod(0o755)
    config = prefix / "nginx.conf"
    config.write_text(
        f"""daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""
    )
    log = prefix / "stderr.log"
    # -e: without it nginx opens the packaged /var/log/nginx/error.log before reading our configuration.
    child = processes.start(
        [str(NGINX), "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")], log
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/{probe}", child, "nginx", prefix / "error.log")
    return url


@dataclass
class Hub:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path


def weightyard_cli() -> str:
    # The CLI of the interpreter running this script (the project's venv under `make bench`).
    beside = Path(sys.executable).parent / "weightyard"
    found = str(beside) if beside.exists() else shutil.which("weightyard")
    if found is None:
        raise BenchError("the `weightyard` command is not installed (run `make bench`, which installs it)")
    return found


def start_hub(processes: Processes, work: Path, env: dict[str, str]) -> Hub:
    """`weightyard serve` in its default configuration (Xet on, `file://` blobs) on a fresh data folder."""
    port = free_port()
    data = work / "hub-data"
    log = work / "hub.log"
    child = processes.start(
        [weightyard_cli(), "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data)], log, env
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/api/agent-harnesses", child, "weightyard serve", log)
    token_file = data / "admin-token"
    if not token_file.is_file():
        raise BenchError(f"the hub started but wrote no {token_file}")
    return Hub(url=url, token=token_file.read_text().strip(), process=child, log=log)


def start_sink(processes: Processes, work: Path, env: dict[str, str]) -> Hub:
    """bench/sink.py on a free port: the same upload routes as the hub, every byte discarded."""
    log = work / "sink.log"
    port = free_port()
    child = processes.start([sys.executable, str(SINK), "--port", str(port)], log, env)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/_sink/stats", child, "the sink server", log)
    return Hub(url=url, token="sink", process=child, log=log)  # noqa: S106 - the sink checks no token


def sink_received(sink: Hub) -> int:
    with urllib.request.urlopen(f"{sink.url}/_sink/stats", timeout=10) as answer:  # noqa: S310 - loopback
        return int(json.loads(answer.read())["received"])


# ---------------------------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Timing:
    """One upload: its seconds, the client's CPU seconds, and the server's CPU seconds meanwhile (or the
    anchor: its seconds and the CPU seconds of `cp` and `sync` themselves)."""

    seconds: float
    client_cpu: float
    server_cpu: float = 0.0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Verification:
    """CPU seconds on one core of the hashing a hub that verifies every byte cannot skip for one uploaded
    file: its sha256 (both upload rows) and, for a Xet upload, the keyed BLAKE3 of every chunk."""

    sha256: float
    blake3: float | None = None


def verification(path: Path, size: int, xet: bool) -> Verification:
    """Measure the hashing of the file at `path` on a warm page cache (it is read once, untimed, first)."""
    warm_cache(path)
    blake3 = None
    if xet:
        refs, blake3 = chunk_hashes_with_cpu(path)
        hashed = sum(length for _, length in refs)
        if hashed != size:
            raise BenchError(f"the Xet chunks of {path} cover {hashed} bytes of {size}")
    _, sha256 = sha256_with_cpu(path)
    return Verification(sha256, blake3)


@dataclass
class Row:
    """One row of the table: the subject, its anchor timed alternately with it, and the sink bound if any."""

    label: str
    anchor_label: str
    goal: float
    subject: list[float] = field(default_factory=list)
    anchor: list[float] = field(default_factory=list)
    sink: list[float] = field(default_factory=list)
    bound: list[float] = field(default_factory=list)
    twin: list[float] = field(default_factory=list)  # the whole-blob row: the same file from a second nginx
    subject_cpu: list[Timing] = field(default_factory=list)  # uploads: CPU of the client and the hub
    sink_cpu: list[Timing] = field(default_factory=list)  # and of the client and the sink
    anchor_cpu: list[float] = field(default_factory=list)  # and of `cp` + `sync`: writing and fsyncing
    verification: list[Verification] = field(default_factory=list)  # and the hashing a hub cannot skip

    def ratio(self, pick: Callable[[list[float]], float]) -> float:
        """Throughput ratio to the anchor: anchor time / subject time."""
        return pick(self.anchor) / pick(self.subject)


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class RebuildTimings:
    """The bound of the first plain download (bench/rebuild_bound.py): its seconds with and without the
    re-hash, and nginx → /dev/null timed alternately with both."""

    verified: list[float] = field(default_factory=list)
    unverified: list[float] = field(default_factory=list)
    anchor: list[float] = field(default_factory=list)


@dataclass
class Bench:
    """Everything one size's measurements share: the file size, the folder, the servers, the client set-up."""

    size: int
    work: Path
    env: dict[str, str]
    hub: Hub
    sink: Hub | None
    nginx_url: str | None
    twin_url: str | None = None  # a second nginx serving the same folder (the whole-blob row's control)
    clients: int = 0
    memory: dict[str, int] = field(default_factory=dict)
    once: dict[str, float] = field(default_factory=dict)
    rebuild: RebuildTimings | None = None

    def client_env(self, **extra: str) -> dict[str, str]:
        """The stock client's environment with a fresh HF_HOME (and so a fresh Xet cache): nothing dedups
        against an earlier run of the client on this machine."""
        self.clients += 1
        home = self.work / "clients" / str(self.clients)
        home.mkdir(parents=True)
        return {**self.env, "HF_HOME": str(home), **extra}

    def note_memory(self, phase: str) -> None:
        self.memory[phase] = vm_hwm(self.hub.process.pid)

    def fail(self, what: str, exc: BenchError, server: Hub) -> BenchError:
        return BenchError(f"{what}: {exc}\nlog of {server.url}:\n{read_tail(server.log)}")


def in_turn(index: int, steps: Sequence[Callable[[], None]], warm: Sequence[Path] = ()) -> None:
    """Run `steps`, beginning with the one repetition `index` turns to (so that no side always runs right
    after another's writes), each after reading the files in `warm` again (untimed, see `warm_all`) and
    followed by a write-back of the dirty pages."""
    first = index % len(steps)
    for step in [*steps[first:], *steps[:first]]:
        warm_all(warm)
        step()
        flush_disk()


def alternate(
    index: int, first: Callable[[], None], second: Callable[[], None], warm: Sequence[Path] = ()
) -> None:
    """`in_turn` for a row and its anchor: the order flips every repetition."""
    in_turn(index, [first, second], warm)


def cp_sync(source: Path, copy: Path, timeout: float) -> Timing:
    """The anchor of the uploads: `cp` + `sync COPY`, its seconds and the CPU seconds of the two commands, the
    CPU that writing the file and making it durable takes (a verifying hub's write)."""
    cpu_start = children_cpu()
    start = time.perf_counter()
    run(["cp", str(source), str(copy)], timeout)
    run(["sync", str(copy)], timeout)
    seconds = time.perf_counter() - start
    cpu = children_cpu() - cpu_start
    copy.unlink()
    return Timing(seconds, cpu)


def upload_file(bench: Bench, server: Hub, repo: str, path: Path, **env: str) -> Timing:
    """`HfApi.upload_file` by the stock client in a fresh interpreter: the seconds and client CPU of the
    call."""
    cmd = [
        sys.executable,
        "-c",
        _UPLOAD_CHILD.format(name=FILE_NAME),
        server.url,
        server.token,
        repo,
        str(path),
    ]
    try:
        answer = child_result(cmd, step_timeout(bench.size), bench.client_env(**env))
    except BenchError as exc:
        raise bench.fail(f"upload_file to {repo}", exc, server) from None
    return Timing(float(answer["seconds"]), float(answer["cpu"]))  # type: ignore[arg-type]


def create_repo(server: Hub, repo: str) -> None:
    namespace, name = repo.split("/")
    request = urllib.request.Request(  # noqa: S310 - a loopback http:// URL we built
        f"{server.url}/api/repos/create",
        data=json.dumps({"name": name, "organization": namespace, "type": "model"}).encode(),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60):  # noqa: S310 - a loopback http:// URL we built
        pass


def push(bench: Bench, server: Hub, repo: str, folder: Path) -> Timing:
    """`weightyard push FOLDER REPO`, the whole command (start-up and imports included), into an existing repo
    (the sink answers that every repo exists, so the hub must not pay for a creation the sink skips)."""
    if server is bench.hub:
        create_repo(server, repo)
    cmd = [weightyard_cli(), "push", str(folder), repo, "--endpoint", server.url, "--token", server.token]
    cpu_start = children_cpu()
    try:
        seconds = timed(cmd, step_timeout(bench.size), bench.client_env())
    except BenchError as exc:
        raise bench.fail(f"weightyard push to {repo}", exc, server) from None
    return Timing(seconds, children_cpu() - cpu_start)


def checked_sink(bench: Bench, upload: Callable[[], Timing]) -> Timing:
    """Time an upload to the sink and check that the whole file reached it (random data does not compress)."""
    assert bench.sink is not None
    before = sink_received(bench.sink)
    timing = upload()
    received = sink_received(bench.sink) - before
    if received < bench.size:
        raise BenchError(f"the sink received {received} bytes of a {bench.size}-byte upload")
    return timing


def with_server_cpu(server: Hub, upload: Callable[[], Timing]) -> Timing:
    """The upload's timing with the CPU time the server process spent meanwhile."""
    start = process_cpu(server.process.pid)
    timing = upload()
    return Timing(timing.seconds, timing.client_cpu, process_cpu(server.process.pid) - start)


def measure_upload(
    bench: Bench, row: Row, repeat: int, name: str, upload: Callable[[Hub, int], Timing], xet: bool
) -> None:
    """`repeat` rounds of: a new file, then the anchor, the sink and the hub in alternating order, then the
    hashing a verifying hub must do on that file (BLAKE3 of its chunks only for `xet`)."""
    source = bench.work / "upload" / FILE_NAME
    assert bench.sink is not None
    sink = bench.sink
    for index in range(repeat):
        generate(source, bench.size)  # content the hub has never seen, not even chunk by chunk
        flush_disk()

        def at_sink() -> None:
            timing = with_server_cpu(sink, lambda: checked_sink(bench, lambda: upload(sink, index)))  # noqa: B023
            row.sink.append(timing.seconds)
            row.sink_cpu.append(timing)

        def at_hub() -> None:
            timing = with_server_cpu(bench.hub, lambda: upload(bench.hub, index))  # noqa: B023
            row.subject.append(timing.seconds)
            row.subject_cpu.append(timing)

        def anchor() -> None:
            timing = cp_sync(source, bench.work / "copy.bin", step_timeout(bench.size))
            row.anchor.append(timing.seconds)
            row.anchor_cpu.append(timing.client_cpu)

        in_turn(index, [anchor, at_sink, at_hub], [source])
        row.verification.append(verification(source, bench.size, xet))
        hashed = row.verification[-1]
        blake3 = f", BLAKE3 {hashed.blake3:.2f} s" if hashed.blake3 is not None else ""
        print(
            f"  {name} {index + 1}/{repeat}: cp + sync {row.anchor[-1]:.2f} s, sink {row.sink[-1]:.2f} s, "
            f"hub {row.subject[-1]:.2f} s; CPU of sha256 {hashed.sha256:.2f} s{blake3}",
            flush=True,
        )


def curl(url: str, output: str, size: int) -> float:
    """Fetch `url` into `output`; returns curl's own total time after checking status and byte count."""
    report = run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--noproxy",
            "*",
            "-o",
            output,
            "-w",
            "%{http_code} %{size_download} %{time_total}",
            url,
        ],
        timeout=step_timeout(size),
    )
    status, received, seconds = report.split()
    if status != "200" or int(received) != size:
        raise BenchError(f"curl {url}: HTTP {status}, {received} bytes instead of {size}")
    return float(seconds)


def hf_download(bench: Bench, repo: str, sha256: str, endpoint: str | None = None) -> float:
    cache = bench.work / "hf-download"
    script = _DOWNLOAD_CHILD.format(name=FILE_NAME)
    cmd = [sys.executable, "-c", script, endpoint or bench.hub.url, bench.hub.token, repo, str(cache)]
    try:
        answer = child_result(cmd, step_timeout(bench.size), bench.client_env())
    except BenchError as exc:
        raise bench.fail(f"hf_hub_download from {repo}", exc, bench.hub) from None
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if answer["size"] != bench.size or answer["sha256"] != sha256:
        raise BenchError(f"hf_hub_download returned {answer['size']} bytes with sha256 {answer['sha256']}")
    return float(answer["seconds"])  # type: ignore[arg-type]


def measure_downloads(bench: Bench, rows: dict[str, Row], repeat: int) -> None:
    """Upload one file through Xet and another through LFS (distinct content: the hub would otherwise keep
    one copy), serve both from nginx too, and time each download path against nginx alternately."""
    assert bench.nginx_url is not None
    assert bench.twin_url is not None
    served = bench.work / "served"
    hashes = {}
    # The xorbs each file was stored in. The hub writes xorbs around the page cache, so after an upload they
    # are on the disk only: each file's are read, untimed, before each of its downloads is timed, as every
    # other file here is (until session 12 they were not, and a download that came first read them from the
    # disk: the first hf_hub_download and every first plain download after the first).
    xorb_folder = bench.work / "hub-data" / "xorbs"
    xorbs_of: dict[str, set[Path]] = {}

    def stored_xorbs() -> set[Path]:
        return {path for path in xorb_folder.rglob("*") if path.is_file()}

    for kind, env in (("xet", {}), ("lfs", {"HF_HUB_DISABLE_XET": "1"})):
        path = served / f"{kind}.bin"
        hashes[kind] = sha256_of(path)
        how = "Xet" if kind == "xet" else "HF_HUB_DISABLE_XET=1, LFS batch"
        before = stored_xorbs()
        bench.once[f"upload_file of the {kind} download file ({how})"] = upload_file(
            bench, bench.hub, f"admin/{kind}-download", path, **env
        ).seconds
        xorbs_of[kind] = stored_xorbs() - before
        flush_disk()
    if not xorbs_of["xet"]:
        raise BenchError("the Xet upload of the download file left no xorb in the hub's folder")
    # A file's first plain download happens once (it queues the whole copy that serves the later ones): each
    # repetition after the first times the first download of a file of its own, uploaded through Xet here.
    firsts = ["xet"] + [f"xet-first-{index}" for index in range(1, repeat)]
    for kind in firsts[1:]:
        path = bench.work / "upload" / f"{kind}.bin"
        generate(path, bench.size)
        hashes[kind] = sha256_of(path)
        before = stored_xorbs()
        upload_file(bench, bench.hub, f"admin/{kind}-download", path)
        xorbs_of[kind] = stored_xorbs() - before
        path.unlink()
        flush_disk()
    bench.note_memory("after the download set-up uploads")
    target = bench.work / "download.bin"
    hf, curl_xet, curl_lfs = rows["hf_download"], rows["curl_xet"], rows["curl_lfs"]

    def resolve(kind: str) -> str:
        return f"{bench.hub.url}/admin/{kind}-download/resolve/main/{FILE_NAME}"

    def nginx_to_file() -> float:
        seconds = curl(f"{bench.nginx_url}/xet.bin", str(target), bench.size)
        target.unlink()
        return seconds

    # The client-side bound (bench/download_bound.py): the same download with the xorb bytes from nginx.
    expose(xorb_folder)
    (served / "xorbs").symlink_to(xorb_folder)
    xet_download = partial(hf_download, bench, "admin/xet-download", hashes["xet"])
    with BoundProxy(bench.hub.url, f"{bench.nginx_url}/xorbs") as proxy:
        for index in range(repeat):
            steps = [
                lambda: hf.anchor.append(nginx_to_file()),
                lambda: hf.subject.append(xet_download()),
                lambda: hf.bound.append(proxy.checked(partial(xet_download, proxy.url))),
            ]
            in_turn(index, steps, [served / "xet.bin", *sorted(xorbs_of["xet"])])
            print(
                f"  download {index + 1}/{repeat}: hf_hub_download {hf.subject[-1]:.2f} s (nginx → FILE "
                f"{hf.anchor[-1]:.2f} s, bound {hf.bound[-1]:.2f} s, {proxy.last_hub_seconds:.3f} s of it "
                "waiting on the hub)",
                flush=True,
            )
    # The first plain download is rebuilt from the xorbs and queues the whole copy, awaited before the next.
    for index, kind in enumerate(firsts):
        alternate(
            index,
            lambda: curl_xet.anchor.append(curl(f"{bench.nginx_url}/xet.bin", "/dev/null", bench.size)),
            lambda: curl_xet.subject.append(curl(resolve(kind), "/dev/null", bench.size)),  # noqa: B023
            warm=[served / "xet.bin", *sorted(xorbs_of[kind])],
        )
        copied = wait_for_copy(bench, hashes[kind])
        if index == 0:
            bench.once["whole copy of the Xet file on disk, after its first plain download"] = copied
        print(
            f"  download {index + 1}/{repeat}: curl Xet file, first download {curl_xet.subject[-1]:.2f} s "
            f"(nginx {curl_xet.anchor[-1]:.2f} s)",
            flush=True,
        )
    measure_rebuild_bound(bench, hashes["xet"], repeat, [served / "xet.bin", *sorted(xorbs_of["xet"])])
    # The LFS upload's blob was written around the page cache too (as its parts arrived): read before each
    # timing like the rest.
    curl_copy = rows["curl_copy"]
    for index in range(repeat):
        alternate(
            index,
            lambda: curl_copy.anchor.append(curl(f"{bench.nginx_url}/xet.bin", "/dev/null", bench.size)),
            lambda: curl_copy.subject.append(curl(resolve("xet"), "/dev/null", bench.size)),
            warm=[served / "xet.bin", hub_blob(bench, hashes["xet"])],
        )
        in_turn(
            index,
            [
                lambda: curl_lfs.anchor.append(curl(f"{bench.nginx_url}/lfs.bin", "/dev/null", bench.size)),
                lambda: curl_lfs.subject.append(curl(resolve("lfs"), "/dev/null", bench.size)),
                lambda: curl_lfs.twin.append(curl(f"{bench.twin_url}/lfs.bin", "/dev/null", bench.size)),
            ],
            warm=[served / "lfs.bin", hub_blob(bench, hashes["lfs"])],
        )
        print(
            f"  download {index + 1}/{repeat}: curl Xet file (whole copy) {curl_copy.subject[-1]:.2f} s "
            f"(nginx {curl_copy.anchor[-1]:.2f} s), curl LFS file {curl_lfs.subject[-1]:.2f} s "
            f"(nginx {curl_lfs.anchor[-1]:.2f} s, second nginx {curl_lfs.twin[-1]:.2f} s)",
            flush=True,
        )


def measure_rebuild_bound(bench: Bench, sha256: str, repeat: int, warm: Sequence[Path]) -> None:
    """The bound of the first plain download: the Xet file rebuilt from the hub's xorbs by
    bench/rebuild_bound.py, with the re-hash and without, each `repeat` times alternately with nginx (the
    files in `warm` read again before each timing)."""
    assert bench.nginx_url is not None
    bound = bench.rebuild = RebuildTimings()
    nginx = f"{bench.nginx_url}/xet.bin"
    with rebuild_bound(bench, sha256, verify=True) as verified, rebuild_bound(bench, sha256, False) as plain:
        if served_sha256(verified) != sha256:
            raise BenchError(f"bench/rebuild_bound.py did not serve the file {sha256}")
        for index in range(repeat):
            alternate(
                index,
                lambda: bound.anchor.append(curl(nginx, "/dev/null", bench.size)),
                lambda: bound.verified.append(curl(verified, "/dev/null", bench.size)),
                warm,
            )
            alternate(
                index,
                lambda: bound.anchor.append(curl(nginx, "/dev/null", bench.size)),
                lambda: bound.unverified.append(curl(plain, "/dev/null", bench.size)),
                warm,
            )
            print(
                f"  rebuild bound {index + 1}/{repeat}: re-hashing {bound.verified[-1]:.3f} s, without the "
                f"re-hash {bound.unverified[-1]:.3f} s (nginx {bound.anchor[-2]:.3f} s, "
                f"{bound.anchor[-1]:.3f} s)",
                flush=True,
            )


@contextlib.contextmanager
def rebuild_bound(bench: Bench, sha256: str, verify: bool) -> Iterator[str]:
    """bench/rebuild_bound.py serving the file `sha256` from the hub's data folder; yields its URL."""
    log = bench.work / ("rebuild-bound.log" if verify else "rebuild-bound-no-verify.log")
    cmd = [sys.executable, str(REBUILD_BOUND), "--data", str(bench.work / "hub-data"), "--sha256", sha256]
    with open(log, "wb") as sink:
        child = subprocess.Popen(
            [*cmd, "--port", "0", *([] if verify else ["--no-verify"])],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=bench.env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (found := re.search(r"listening on (http://127\.0\.0\.1:\d+)", read_tail(log))) is None:
            if child.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"bench/rebuild_bound.py did not start:\n{read_tail(log)}")
            time.sleep(0.05)
        yield found[1]
    finally:
        child.terminate()
        child.wait(timeout=10)


def served_sha256(url: str) -> str:
    """The sha256 of what `url` answers (untimed: the bound's bytes are checked once)."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=READY_TIMEOUT_S) as answer:  # noqa: S310 - a loopback URL
        while piece := answer.read(READ_WINDOW):
            digest.update(piece)
    return digest.hexdigest()


def hub_blob(bench: Bench, sha256: str) -> Path:
    """Where the hub keeps the whole blob of `sha256` (its data folder's layout)."""
    return bench.work / "hub-data" / "blobs" / sha256[:2] / sha256[2:4] / sha256


def wait_for_copy(bench: Bench, sha256: str) -> float:
    """Seconds until the hub's whole copy of `sha256` is on disk (bounded: fails past `step_timeout`)."""
    path = hub_blob(bench, sha256)
    start = time.perf_counter()
    while not path.is_file():
        if time.perf_counter() - start > step_timeout(bench.size):
            raise BenchError(f"no whole copy of {sha256} after {step_timeout(bench.size):.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- report


def rate(size: int, seconds: float) -> str:
    return f"{size / 1e6 / seconds:.0f} MB/s"


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def ratio_text(ratio: float, goal: float) -> str:
    """`ratio` as the report prints it: two decimals, or three where two would print the goal itself (0.297×
    is printed 0.297×, not 0.30× beside "NOT MET" for a goal of 0.30×)."""
    return f"{ratio:.3f}×" if f"{ratio:.2f}" == f"{goal:.2f}" and ratio != goal else f"{ratio:.2f}×"


@dataclass(frozen=True)
class Floor:
    """The CPU seconds (medians of the repetitions) that any hub which verifies every byte and fsyncs every
    blob must spend on one upload, with the client's own, and the best ratio to the anchor they allow were
    all `cores` cores busy all the time; and the client's own time against the sink, which no hub can beat
    either. The lower of the two ratios is the best a verifying hub can reach on this machine for this
    client."""

    client: float  # the client's CPU against the sink
    sink: float  # the sink's: receiving the bytes over HTTP
    sha256: float  # the file's sha256 (the LFS oid, or the Xet shard's claim)
    blake3: float | None  # the keyed BLAKE3 of every Xet chunk; None for push
    write: float  # `cp` + `sync`: writing the file and fsyncing it
    alone: float  # the client's seconds against the sink (wall time)
    anchor: float  # the anchor's median seconds
    cores: int

    @property
    def total(self) -> float:
        return self.client + self.sink + self.sha256 + (self.blake3 or 0.0) + self.write

    @property
    def cpu_ratio(self) -> float:
        """anchor / (total / cores): the best ratio the CPU a verifying hub and the client need allows."""
        return self.anchor / (self.total / self.cores)

    @property
    def alone_ratio(self) -> float:
        """anchor / the client's time against the sink: the best ratio the client itself allows."""
        return self.anchor / self.alone

    @property
    def ratio(self) -> float:
        """The best ratio to the anchor a verifying hub can reach here: the lower of the two."""
        return min(self.cpu_ratio, self.alone_ratio)


def floor_of(row: Row, cores: int) -> Floor | None:
    """The row's verifying-hub floor, or None for a row without one (downloads)."""
    if not (row.sink_cpu and row.anchor_cpu and row.verification):
        return None
    blake3 = [hashed.blake3 for hashed in row.verification if hashed.blake3 is not None]
    return Floor(
        client=median([timing.client_cpu for timing in row.sink_cpu]),
        sink=median([timing.server_cpu for timing in row.sink_cpu]),
        sha256=median([hashed.sha256 for hashed in row.verification]),
        blake3=median(blake3) if blake3 else None,
        write=median(row.anchor_cpu),
        alone=median([timing.seconds for timing in row.sink_cpu]),
        anchor=median(row.anchor),
        cores=cores,
    )


def floor_reach(row: Row, floor: Floor) -> str:
    if row.goal > floor.ratio:
        return "goal out of reach of any verifying hub here"
    return "goal within the floor"


def floor_table(rows: list[Row], cores: int) -> list[str]:
    """The report's verifying-hub floor: one line per upload row that has one."""
    floors = [(row, floor) for row in rows if (floor := floor_of(row, cores)) is not None]
    if not floors:
        return []
    lines = [
        "",
        "verifying-hub floor, CPU seconds on one core (median): client CPU (at the sink) + sink CPU + sha256 "
        f"[+ BLAKE3 of every Xet chunk] + write/fsync CPU (cp + sync) = floor; on {cores} cores at best "
        "anchor / (floor / cores); nor can any hub beat the client's own time against the sink: the lower "
        "ratio is the best a verifying hub reaches here",
        "| upload | client → sink | sink | sha256 | BLAKE3 | write + fsync | floor | CPU allows | client "
        "alone allows | best ratio a verifying hub allows | goal | hub, median ratio: share of the best | |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row, floor in floors:
        blake3 = "–" if floor.blake3 is None else f"{floor.blake3:.2f} s"
        lines.append(
            f"| {row.label} | {floor.client:.2f} s | {floor.sink:.2f} s | {floor.sha256:.2f} s | {blake3} | "
            f"{floor.write:.2f} s | {floor.total:.2f} s | {floor.cpu_ratio:.2f}× | "
            f"{floor.alone_ratio:.2f}× | {floor.ratio:.2f}× | ≥ {row.goal:.2f}× | {row.ratio(median):.2f}×: "
            f"{row.ratio(median) / floor.ratio:.0%} | {floor_reach(row, floor)} |"
        )
    return lines


def floor_json(row: Row, cores: int) -> dict[str, object] | None:
    floor = floor_of(row, cores)
    if floor is None:
        return None
    return {
        "client_cpu": floor.client,
        "sink_cpu": floor.sink,
        "sha256_cpu": floor.sha256,
        "blake3_cpu": floor.blake3,
        "write_fsync_cpu": floor.write,
        "total_cpu": floor.total,
        "cores": floor.cores,
        "anchor_seconds": floor.anchor,
        "client_alone_seconds": floor.alone,
        "cpu_ratio": floor.cpu_ratio,
        "client_alone_ratio": floor.alone_ratio,
        "best_ratio": floor.ratio,
        "goal_out_of_reach": row.goal > floor.ratio,
        "hub_share_of_best": row.ratio(median) / floor.ratio,
    }


def twin_table(rows: list[Row]) -> list[str]:
    """The report's control of the rows timed from a second nginx too: the second nginx's ratio to the first
    (what a server identical to the anchor scores) and the hub's ratio to the second, both as the goal's
    ratio is (the other's seconds / these seconds)."""
    twinned = [row for row in rows if row.twin]
    if not twinned:
        return []
    lines = [
        "\ncontrol: the same file from a second nginx (same configuration), timed in turn with the hub and "
        "the first nginx",
        "| transfer | second nginx best | median | its ratio to the first nginx, best (median): what a "
        "server identical to the anchor scores | goal | the hub's ratio to the second nginx, best (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in twinned:
        best, mid = min(row.twin), median(row.twin)
        ratio = min(row.anchor) / best, median(row.anchor) / mid
        lines.append(
            f"| {row.label} | {best:.3f} s | {mid:.3f} s | {ratio_text(ratio[0], row.goal)} "
            f"({ratio_text(ratio[1], row.goal)}) | ≥ {row.goal:.2f}× | "
            f"{best / min(row.subject):.3f}× ({mid / median(row.subject):.3f}×) |"
        )
    return lines


def rebuild_table(bench: Bench, first: Row) -> list[str]:
    """The report's bound of the first plain download: the rebuild by bench/rebuild_bound.py, with the re-hash
    and without, against the hub's first downloads (best against best, median against median) and nginx timed
    alternately with them."""
    bound = bench.rebuild
    if bound is None:
        return []
    anchor, hub, hub_median = bound.anchor, min(first.subject), median(first.subject)
    lines = [
        "",
        f"bound of {first.label}: the same file rebuilt from the hub's xorbs by bench/rebuild_bound.py "
        "(headers checked, every chunk re-hashed ahead of the sender, payloads sent with sendfile), "
        f"alternately with {first.anchor_label} (best {min(anchor):.3f} s, median {median(anchor):.3f} s)",
        "| bound | best | median | first download / bound, best (median) | anchor / bound, best (median) | "
        "goal | |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    reach = "goal above it" if first.goal > min(anchor) / min(bound.verified) else "goal within it"
    for label, seconds, what in (
        (
            "re-hashing every chunk",
            bound.verified,
            f"the best ratio a re-hashing server reached here: {reach}",
        ),
        (
            "without the re-hash (headers only)",
            bound.unverified,
            "no check, not allowed: what the check costs",
        ),
    ):
        best, mid = min(seconds), median(seconds)
        lines.append(
            f"| {label} | {best:.3f} s ({rate(bench.size, best)}) | {mid:.3f} s | {hub / best:.2f}× "
            f"({hub_median / mid:.2f}×) | {min(anchor) / best:.2f}× ({median(anchor) / mid:.2f}×) | "
            f"≥ {first.goal:.2f}× | {what} |"
        )
    return lines


def rebuild_json(bench: Bench, first: Row) -> dict[str, object] | None:
    bound = bench.rebuild
    if bound is None:
        return None
    best_ratio = min(bound.anchor) / min(bound.verified)
    return {
        "seconds": bound.verified,
        "seconds_without_rehash": bound.unverified,
        "anchor_seconds": bound.anchor,
        "first_download_seconds": first.subject,
        "first_download_over_bound": min(first.subject) / min(bound.verified),
        "best_ratio": best_ratio,
        "best_ratio_without_rehash": min(bound.anchor) / min(bound.unverified),
        "goal_above_bound": first.goal > best_ratio,
    }


def report(bench: Bench, rows: dict[str, Row], repeat: int) -> None:
    size = bench.size
    print(f"\n{human_size(size)} random file, best and median of {repeat}, 127.0.0.1")
    print("| transfer | best | median | anchor (same run): best, median | ratio best (median) | goal | |")
    print("|---|---:|---:|---|---:|---:|---|")
    for row in rows.values():
        best, mid = min(row.subject), median(row.subject)
        ratio = f"{ratio_text(row.ratio(min), row.goal)} ({ratio_text(row.ratio(median), row.goal)})"
        print(
            f"| {row.label} | {best:.3f} s ({rate(size, best)}) | {mid:.3f} s | {row.anchor_label}: "
            f"{min(row.anchor):.3f} s, {median(row.anchor):.3f} s | {ratio} | ≥ {row.goal:.2f}× | "
            f"{verdict(row.ratio(min) >= row.goal)} |"
        )
    peak = max(bench.memory.values())
    print(
        f"| server peak memory (VmHWM) | {peak / 1e6:.0f} MB | | | | < {RSS_BOUND_BYTES / 1e6:.0f} MB "
        f"| {verdict(peak < RSS_BOUND_BYTES)} |"
    )
    bounded = [row for row in rows.values() if row.sink]
    if bounded:
        print("\nclient-side bound: the same upload against bench/sink.py (accepts and discards every byte)")
        print(
            "| upload | sink best | sink median | hub / sink, best (median) | anchor / sink: the best ratio "
            "reachable |"
        )
        print("|---|---:|---:|---:|---:|")
        for row in bounded:
            closeness = min(row.subject) / min(row.sink), median(row.subject) / median(row.sink)
            reachable = min(row.anchor) / min(row.sink)
            print(
                f"| {row.label} | {min(row.sink):.3f} s ({rate(size, min(row.sink))}) | "
                f"{median(row.sink):.3f} s | {closeness[0]:.2f}× ({closeness[1]:.2f}×) | {reachable:.2f}× |"
            )
    timed_cpu = [row for row in rows.values() if row.subject_cpu and row.sink_cpu]
    if timed_cpu:
        cores = os.cpu_count() or 1
        print(
            f"\nCPU seconds of each upload (median): the client, the server meanwhile, and what their sum on "
            f"{cores} cores allows at best, every core busy all the time (anchor / (sum / cores))"
        )
        print(
            "| upload | client → hub | hub | client → sink | sink | best ratio the hub's CPU allows | "
            "best ratio the client's CPU allows |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in timed_cpu:
            client = median([t.client_cpu for t in row.subject_cpu])
            server = median([t.server_cpu for t in row.subject_cpu])
            client_alone = median([t.client_cpu for t in row.sink_cpu])
            sink_cpu = median([t.server_cpu for t in row.sink_cpu])
            anchor = median(row.anchor)
            allowed = anchor / ((client + server) / cores), anchor / ((client_alone + sink_cpu) / cores)
            print(
                f"| {row.label} | {client:.2f} s | {server:.2f} s | {client_alone:.2f} s | "
                f"{sink_cpu:.2f} s | {allowed[0]:.2f}× | {allowed[1]:.2f}× |"
            )
    for line in floor_table(list(rows.values()), os.cpu_count() or 1):
        print(line)
    for row in rows.values():
        if row.bound:
            print(
                f"\nclient-side bound of {row.label}: the same download with every xorb byte from nginx "
                "(bench/download_bound.py)\n| bound best | bound median | hub / bound, best (median) | "
                f"anchor / bound: the best ratio reachable |\n|---:|---:|---:|---:|\n"
                f"| {min(row.bound):.3f} s ({rate(size, min(row.bound))}) | {median(row.bound):.3f} s | "
                f"{min(row.subject) / min(row.bound):.2f}× ({median(row.subject) / median(row.bound):.2f}×) "
                f"| {min(row.anchor) / min(row.bound):.2f}× |"
            )
    for line in twin_table(list(rows.values())):
        print(line)
    if "curl_xet" in rows:
        for line in rebuild_table(bench, rows["curl_xet"]):
            print(line)
    print(
        "\nserver VmHWM: "
        + ", ".join(f"{value / 1e6:.0f} MB {phase}" for phase, value in bench.memory.items())
    )
    for label, seconds in bench.once.items():
        print(f"set-up, timed once (no anchor): {label} {seconds:.2f} s ({rate(size, seconds)})")


def as_json(bench: Bench, rows: dict[str, Row]) -> dict[str, object]:
    return {
        "size": bench.size,
        "rows": {
            key: {
                "label": row.label,
                "anchor": row.anchor_label,
                "goal": row.goal,
                "seconds": row.subject,
                "anchor_seconds": row.anchor,
                "sink_seconds": row.sink,
                "bound_seconds": row.bound,
                "second_nginx_seconds": row.twin,
                "cpu_seconds": [{"client": t.client_cpu, "server": t.server_cpu} for t in row.subject_cpu],
                "sink_cpu_seconds": [{"client": t.client_cpu, "server": t.server_cpu} for t in row.sink_cpu],
                "anchor_cpu_seconds": row.anchor_cpu,
                "verification_cpu_seconds": [
                    {"sha256": hashed.sha256, "blake3": hashed.blake3} for hashed in row.verification
                ],
                "floor": floor_json(row, os.cpu_count() or 1),
                "ratio_best": row.ratio(min),
                "ratio_median": row.ratio(median),
            }
            for key, row in rows.items()
        },
        "rebuild_bound": rebuild_json(bench, rows["curl_xet"]) if "curl_xet" in rows else None,
        "server_vmhwm_bytes": bench.memory,
        "once_seconds": bench.once,
    }


# ---------------------------------------------------------------------------------------------- main


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def workspace(parent: str | None) -> Iterator[tuple[Path, Processes]]:
    """A temporary folder and the servers started in it, both removed on every way out (Ctrl-C included)."""
    work = Path(tempfile.mkdtemp(prefix="weightyard-bench-", dir=parent))
    processes = Processes()
    previous: Callable[[int, FrameType | None], object] | int | None = signal.signal(
        signal.SIGTERM, _raise_interrupt
    )
    try:
        yield work, processes
    finally:
        processes.stop_all()
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def child_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "WEIGHTYARD_"))}
    # Keep the user's Hugging Face cache and token out of it; no progress bars or telemetry in the timings.
    env.update(
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        TERM="dumb",
    )
    return env


def tree() -> str:
    """The commit the benchmark runs on, `-dirty` when the working tree has changes."""
    with contextlib.suppress(OSError, BenchError):
        root = Path(__file__).resolve().parents[1]
        return run(["git", "-C", str(root), "describe", "--always", "--dirty"], timeout=30).strip()
    return "unknown"


def bench_size(size: int, groups: list[str], repeat: int, workdir: str | None) -> dict[str, object]:
    rows: dict[str, Row] = {}
    if "xet-upload" in groups:
        rows["xet_upload"] = Row("upload_file, new content (Xet)", "cp + sync", 0.30)
    if "download" in groups:
        rows["hf_download"] = Row("hf_hub_download (Xet)", "nginx → curl -o FILE", 0.60)
        rows["curl_xet"] = Row(
            "curl -o /dev/null, Xet-uploaded, first download (rebuilt from xorbs; a file per repetition)",
            "nginx → /dev/null",
            0.80,
        )
        rows["curl_copy"] = Row(
            "curl -o /dev/null, Xet-uploaded, later downloads (whole copy)", "nginx → /dev/null", 0.80
        )
        rows["curl_lfs"] = Row("curl -o /dev/null, LFS-uploaded (whole blob)", "nginx → /dev/null", 1.00)
    if "push" in groups:
        rows["push"] = Row("weightyard push (upload session)", "cp + sync", 0.50)
    with workspace(workdir) as (work, processes):
        env = child_env()
        print(f"\n== {human_size(size)}: generating the files in {work} …", flush=True)
        served = work / "served"
        served.mkdir()
        (work / "upload").mkdir()
        if "download" in groups:
            for kind in ("xet", "lfs"):
                generate(served / f"{kind}.bin", size)
        flush_disk()
        hub = start_hub(processes, work, env)
        sink = start_sink(processes, work, env) if {"xet-upload", "push"} & set(groups) else None
        nginx_url = twin_url = None
        if "download" in groups:
            nginx_url = start_nginx(processes, served, work, "xet.bin")
            twin_url = start_nginx(processes, served, work, "xet.bin", name="nginx-twin")
        bench = Bench(size, work, env, hub, sink, nginx_url, twin_url)
        bench.note_memory("after start")
        print(
            f"hub {hub.url} (pid {hub.process.pid}), sink {sink and sink.url}, nginx {nginx_url} and "
            f"{twin_url}",
            flush=True,
        )
        if "xet-upload" in groups:
            measure_upload(
                bench,
                rows["xet_upload"],
                repeat,
                "upload_file (Xet)",
                lambda server, index: upload_file(
                    bench, server, f"admin/xet-{index}", work / "upload" / FILE_NAME
                ),
                xet=True,
            )
            bench.note_memory("after the Xet uploads")
        if "push" in groups:
            measure_upload(
                bench,
                rows["push"],
                repeat,
                "weightyard push",
                lambda server, index: push(bench, server, f"admin/push-{index}", work / "upload"),
                xet=False,
            )
            bench.note_memory("after the pushes")
        if "download" in groups:
            measure_downloads(bench, rows, repeat)
            bench.note_memory("after the downloads")
        report(bench, rows, repeat)
        return as_json(bench, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--size", type=parse_sizes, default=[512 * MIB, GIB], help="file sizes, e.g. 512M,1G (default), 256M"
    )
    parser.add_argument(
        "--rows",
        type=parse_rows,
        default=list(ROW_GROUPS),
        help=f"a subset of {','.join(ROW_GROUPS)} (default all)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per row (default 3)")
    parser.add_argument("--json", action="store_true", help="print every timing as JSON at the end")
    parser.add_argument(
        "--workdir", default=None, help="folder for the temporary files (default: system temp)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 50:
        parser.error("--repeat must be between 1 and 50")
    load = os.getloadavg()[0]
    print(f"Weightyard transfer benchmark, tree {tree()}, {os.cpu_count()} CPUs, load average {load:.2f}")
    try:
        figures = [bench_size(size, args.rows, args.repeat, args.workdir) for size in args.size]
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; servers stopped and temporary files removed", file=sys.stderr)
        return 130
    print(f"\nload average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        print(json.dumps({"tree": tree(), "sizes": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
