"""Transfer benchmark of the hub core: download, upload and server memory against static anchors.

One random file (1 GiB by default) is generated into a temporary folder and moved, on 127.0.0.1 only:

* download: `hf_hub_download` and `curl` through `weightyard serve`, against the same file served by
  Debian's nginx (sendfile on) and fetched by `curl`;
* upload: `weightyard push` (the CLI, in a subprocess) against `cp` of the same file on the same disk,
  and against `cp` followed by an fsync of the copy (`sync FILE`), since the hub fsyncs every blob;
* server memory: the peak resident set (VmHWM) of the `weightyard serve` process.

Every figure is the median of `--repeat` repetitions with a warm page cache (the source file was just
written, each blob was just pushed). Run as `make bench`, or e.g.
`python bench/transfer.py --size 256M --repeat 5`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

GIB = 1024**3
MIB = 1024**2
REPO = "admin/bench"
FILE_NAME = "file.bin"
NGINX = Path("/usr/sbin/nginx")
# Targets from issue 2: "download ≥ 0.5× nginx, upload ≥ 0.5× cp, server RSS bounded"; the bound on memory
# is the "may not raise the server's peak memory above ~300 MB" for a 1 GiB commit.
TARGET_RATIO = 0.5
RSS_BOUND_BYTES = 300 * 1000**2
GENERATE_CHUNK = 16 * MIB
READY_TIMEOUT_S = 60.0
# Slowest transfer rate before a step is declared hung, plus a fixed allowance for process start-up.
MIN_RATE_BYTES_S = 5 * MIB
STARTUP_ALLOWANCE_S = 120.0
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)

# The hf_hub_download child times only the call itself, so that importing huggingface_hub (a fixed cost of a
# fresh interpreter, not of the transfer) stays out of the figure; it then checks what it downloaded.
_HF_CHILD = """
import hashlib, json, os, sys, time
from huggingface_hub import hf_hub_download
endpoint, token, cache_dir, expected_sha256 = sys.argv[1:5]
start = time.perf_counter()
path = hf_hub_download("{repo}", "{name}", endpoint=endpoint, token=token, cache_dir=cache_dir)
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
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def make_unique(path: Path) -> None:
    # The hub stores blobs by sha256 and skips uploads it already has, so every push needs new content; a
    # fresh 16-byte head keeps the rest of the file (and its page-cache state) as it was.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, os.urandom(16), 0)
    finally:
        os.close(fd)


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


def start_nginx(processes: Processes, root: Path, work: Path) -> str:
    """Serve `root` on a free loopback port with a private configuration; returns the base URL."""
    ensure_nginx()
    port = free_port()
    prefix = work / "nginx"
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
    wait_for_http(f"{url}/{FILE_NAME}", child, "nginx", prefix / "error.log")
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


# ---------------------------------------------------------------------------------------------- measurements


@dataclass
class Series:
    label: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


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


def hf_download(hub: Hub, cache_dir: Path, size: int, sha256: str, env: dict[str, str]) -> float:
    script = _HF_CHILD.format(repo=REPO, name=FILE_NAME)
    out = run(
        [sys.executable, "-c", script, hub.url, hub.token, str(cache_dir), sha256], step_timeout(size), env
    )
    answer = json.loads(out.strip().splitlines()[-1])
    if answer["size"] != size or answer["sha256"] != sha256:
        raise BenchError(f"hf_hub_download returned {answer['size']} bytes with sha256 {answer['sha256']}")
    return float(answer["seconds"])


def measure_uploads(
    source: Path, work: Path, hub: Hub, repeat: int, size: int, env: dict[str, str]
) -> list[Series]:
    cp, cp_sync, push = Series("cp"), Series("cp + sync FILE"), Series("weightyard push")
    copy = work / "copy.bin"
    cli = weightyard_cli()
    for index in range(repeat):
        make_unique(source)
        flush_disk()
        cp.seconds.append(timed(["cp", str(source), str(copy)], step_timeout(size)))
        copy.unlink()
        flush_disk()
        start = time.perf_counter()
        run(["cp", str(source), str(copy)], step_timeout(size))
        run(["sync", str(copy)], step_timeout(size))
        cp_sync.seconds.append(time.perf_counter() - start)
        copy.unlink()
        flush_disk()
        push_cmd = [cli, "push", str(source.parent), REPO, "--endpoint", hub.url, "--token", hub.token]
        try:
            push.seconds.append(timed([*push_cmd, "--message", f"bench {index}"], step_timeout(size), env))
        except BenchError as exc:
            raise BenchError(f"{exc}\nserver log:\n{read_tail(hub.log)}") from None
        print(
            f"  upload {index + 1}/{repeat}: cp {cp.seconds[-1]:.2f} s, push {push.seconds[-1]:.2f} s",
            flush=True,
        )
    return [cp, cp_sync, push]


def measure_downloads(
    nginx_url: str, hub: Hub, work: Path, repeat: int, size: int, sha256: str, env: dict[str, str]
) -> list[Series]:
    nginx_null, nginx_file = Series("nginx → curl -o /dev/null"), Series("nginx → curl -o FILE")
    hub_null, hub_hf = Series("hub → curl -o /dev/null"), Series("hub → hf_hub_download")
    target = work / "download.bin"
    hub_file_url = f"{hub.url}/{REPO}/resolve/main/{FILE_NAME}"
    for index in range(repeat):
        flush_disk()
        nginx_null.seconds.append(curl(f"{nginx_url}/{FILE_NAME}", "/dev/null", size))
        nginx_file.seconds.append(curl(f"{nginx_url}/{FILE_NAME}", str(target), size))
        target.unlink()
        flush_disk()
        hub_null.seconds.append(curl(hub_file_url, "/dev/null", size))
        cache_dir = work / f"hf-cache-{index}"
        hub_hf.seconds.append(hf_download(hub, cache_dir, size, sha256, env))
        shutil.rmtree(cache_dir)
        print(
            f"  download {index + 1}/{repeat}: nginx {nginx_null.seconds[-1]:.2f} s, hub curl "
            f"{hub_null.seconds[-1]:.2f} s, hf_hub_download {hub_hf.seconds[-1]:.2f} s",
            flush=True,
        )
    return [nginx_null, nginx_file, hub_null, hub_hf]


# ---------------------------------------------------------------------------------------------- report


def print_table(title: str, rows: list[Series], size: int) -> None:
    print(f"\n{title:<34} {'median s':>9} {'min–max s':>14} {'MiB/s':>8}")
    for row in rows:
        spread = f"{min(row.seconds):.3f}–{max(row.seconds):.3f}"
        print(f"  {row.label:<32} {row.median:>9.3f} {spread:>14} {size / MIB / row.median:>8.0f}")


def ratio_line(subject: Series, anchor: Series, target: bool) -> str:
    ratio = anchor.median / subject.median  # throughput ratio: time of the anchor over time of the subject
    verdict = ("ok" if ratio >= TARGET_RATIO else "BELOW TARGET") if target else "(like-for-like)"
    return f"  {subject.label:<26} / {anchor.label:<26} {ratio:>5.2f}×  {verdict}"


def report(
    size: int, repeat: int, uploads: list[Series], downloads: list[Series], rss: dict[str, int]
) -> None:
    cp, cp_sync, push = uploads
    nginx_null, nginx_file, hub_null, hub_hf = downloads
    print(f"\nWeightyard transfer benchmark: {human_size(size)} random file, median of {repeat}, 127.0.0.1")
    print_table("download (warm page cache)", downloads, size)
    print_table("upload (same disk)", uploads, size)
    print(f"\nthroughput ratios (target ≥ {TARGET_RATIO:.2f}× the anchor)")
    print(ratio_line(hub_null, nginx_null, target=True))
    print(ratio_line(hub_hf, nginx_null, target=True))
    print(ratio_line(hub_hf, nginx_file, target=False))
    print(ratio_line(push, cp, target=True))
    print(ratio_line(push, cp_sync, target=False))
    peak = max(rss.values())
    phases = ", ".join(f"{human_size(value)} {phase}" for phase, value in rss.items())
    verdict = "ok" if peak <= RSS_BOUND_BYTES else "ABOVE BOUND"
    print(f"\nserver peak RSS (VmHWM): {phases}; bound {RSS_BOUND_BYTES / 1000**2:.0f} MB  {verdict}")


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


def child_env(work: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "WEIGHTYARD_"))}
    # Keep the user's Hugging Face cache and token out of it; no progress bars or telemetry in the timings.
    env.update(
        HF_HOME=str(work / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        TERM="dumb",
    )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=GIB, help="file size, e.g. 1G (default), 256M")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per measurement (default 3)")
    parser.add_argument(
        "--workdir", default=None, help="folder for the temporary files (default: system temp)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 50:
        parser.error("--repeat must be between 1 and 50")
    size: int = args.size
    try:
        with workspace(args.workdir) as (work, processes):
            source_dir = work / "source"
            source_dir.mkdir()
            source = source_dir / FILE_NAME
            print(f"generating {human_size(size)} of random data in {source} …", flush=True)
            generate(source, size)
            env = child_env(work)
            hub = start_hub(processes, work, env)
            nginx_url = start_nginx(processes, source_dir, work)
            rss = {"after start": vm_hwm(hub.process.pid)}
            print(f"hub {hub.url} (pid {hub.process.pid}), nginx {nginx_url}", flush=True)
            uploads = measure_uploads(source, work, hub, args.repeat, size, env)
            rss["after uploads"] = vm_hwm(hub.process.pid)
            sha256 = sha256_of(source)  # the content of the last push, which main now serves
            downloads = measure_downloads(nginx_url, hub, work, args.repeat, size, sha256, env)
            rss["after downloads"] = vm_hwm(hub.process.pid)
            report(size, args.repeat, uploads, downloads, rss)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; servers stopped and temporary files removed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
