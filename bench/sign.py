"""Signing and verifying a 1 GiB model: Weightyard vs `model_signing` 1.1.x, against the sha256 limit.

    .venv/bin/python bench/sign.py [--size-mib 1024] [--runs 5]

Signing: Weightyard signs from the digests recorded at ingest (no file is read), `model_signing sign key`
re-reads and re-hashes the folder; the ratio is model_signing time / Weightyard time.
Verifying: Weightyard re-hashes the folder (as a pulled model must be); its throughput is compared with
hashlib sha256 over the same bytes already in memory, one thread per file on all cores (the machine's sha256
limit, measured in this run; the one-core figure is shown too).
Folder reads are measured with the files in the page cache ("cached") and after evicting them with
POSIX_FADV_DONTNEED ("cold"). Compared actions are timed in turns, `--runs` times each; the table shows the
median and the best run. model_signing comes from the tests' isolated environment (created if absent).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.provenance._model_signing import ensure_model_signing

from weightyard.provenance import (
    generate_private_key,
    load_private_key,
    manifest_from_digests,
    public_key_pem,
    sign_manifest,
    verify_signature,
)

MIB = 1024 * 1024
SHARDS = 4
BLOCK = 16 * MIB


def write_model(folder: Path, size_mib: int) -> dict[str, str]:
    """Write a model of `size_mib` random bytes in shards, hashing while writing as the hub's ingest does."""
    folder.mkdir(parents=True)
    digests: dict[str, str] = {}
    small = {"config.json": b'{"hidden_size": 4096}\n', "tokenizer.json": b'{"vocab": {}}\n'}
    for name, content in small.items():
        (folder / name).write_bytes(content)
        digests[name] = hashlib.sha256(content).hexdigest()
    for index in range(SHARDS):
        name = f"model-{index + 1:05d}-of-{SHARDS:05d}.safetensors"
        hasher = hashlib.sha256()
        with open(folder / name, "wb") as file:
            for _ in range(size_mib * MIB // SHARDS // BLOCK):
                block = os.urandom(BLOCK)
                hasher.update(block)
                file.write(block)
            file.flush()
            os.fsync(file.fileno())
        digests[name] = hasher.hexdigest()
    return digests


def evict(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as file:
                while file.read(BLOCK):
                    pass


class Timing(NamedTuple):
    median: float
    best: float


def timed_in_turns(
    actions: list[Callable[[], object]], runs: int, before: Callable[[], None] | None = None
) -> list[Timing]:
    """Seconds of several actions timed in turns, so that all see the same load on a shared machine.

    The best run is the one least disturbed by other work on the machine; the median shows the typical one.
    """
    times: list[list[float]] = [[] for _ in actions]
    for _ in range(runs):
        for action, spent in zip(actions, times, strict=True):
            if before is not None:
                before()
            start = time.perf_counter()
            action()
            spent.append(time.perf_counter() - start)
    return [Timing(statistics.median(spent), min(spent)) for spent in times]


def in_memory_hashers(folder: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    """hashlib sha256 over the model's bytes held in memory, on one core and with one thread per file.

    No I/O at all: these are the machine's sha256 limits, on one core and on all of them.
    """
    data = [path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()]

    def one_core() -> None:
        for chunk in data:
            hashlib.sha256(chunk).digest()

    def all_cores() -> None:
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(lambda chunk: hashlib.sha256(chunk).digest(), data))

    return one_core, all_cores


def run_checked(*command: str | Path) -> None:
    outcome = subprocess.run([str(part) for part in command], capture_output=True, text=True, check=False)
    if outcome.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed: {outcome.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    model_signing = ensure_model_signing()

    with tempfile.TemporaryDirectory(prefix="weightyard-bench-sign-") as scratch:
        root = Path(scratch)
        model, signature = root / "model", root / "model.sig"
        private_path, public_path = root / "signing.key", root / "signing.pub"
        digests = write_model(model, options.size_mib)
        size = sum(path.stat().st_size for path in model.iterdir())
        private_pem = generate_private_key()
        private_path.write_bytes(private_pem)
        public_path.write_bytes(public_key_pem(load_private_key(private_pem)))

        def sign_from_digests() -> bytes:
            return sign_manifest(manifest_from_digests(digests, model_name="bench/model"), private_pem)

        def model_signing_sign() -> None:
            run_checked(
                model_signing, "sign", "key", model, "--private_key", private_path, "--signature", signature
            )

        def weightyard_verify() -> None:
            result = verify_signature(
                signature.read_bytes(), model, public_path.read_bytes(), signature_name=None
            )
            if not result.valid:
                raise SystemExit(f"verification failed: {result.message}")

        def model_signing_verify() -> None:
            run_checked(
                model_signing, "verify", "key", model, "--signature", signature, "--public_key", public_path
            )

        def cold() -> None:
            evict(model)

        # The machines are shared: the load average tells a reader how quiet the run was.
        print(f"model: {size / MIB:.0f} MiB in {len(digests)} files; {options.runs} runs of each, in turns")
        print(f"load average at start: {os.getloadavg()[0]:.2f}")
        warm(model)
        ours_sign, theirs_sign = timed_in_turns([sign_from_digests, model_signing_sign], options.runs)
        signature.write_bytes(sign_from_digests())
        limit_one_core, limit, ours_verify, theirs_verify = timed_in_turns(
            [*in_memory_hashers(model), weightyard_verify, model_signing_verify], options.runs
        )
        ours_cold, theirs_cold = timed_in_turns([weightyard_verify, model_signing_verify], options.runs, cold)
        (startup,) = timed_in_turns([lambda: run_checked(model_signing, "--version")], options.runs)
        rows = [
            ("sha256 limit, one core (hashlib, in memory)", limit_one_core, size),
            (f"sha256 limit, {os.cpu_count()} cores (hashlib, in memory)", limit, size),
            ("sign: Weightyard from stored digests", ours_sign, 0),
            ("sign: model_signing sign key (cached)", theirs_sign, size),
            ("verify: Weightyard (cached)", ours_verify, size),
            ("verify: model_signing verify key (cached)", theirs_verify, size),
            ("verify: Weightyard (cold)", ours_cold, size),
            ("verify: model_signing verify key (cold)", theirs_cold, size),
            ("model_signing start-up alone (--version)", startup, 0),
        ]
        print(f"load average at end: {os.getloadavg()[0]:.2f}")

        print(f"{'':<46} {'median':>11} {'best':>11} {'best rate':>11}")
        for label, timing, moved in rows:
            rate = f"{moved / timing.best / 1e9:6.2f} GB/s" if moved else ""
            print(f"{label:<46} {timing.median * 1000:8.2f} ms {timing.best * 1000:8.2f} ms {rate:>11}")
        ratios = [
            ("sign: model_signing time / Weightyard time", theirs_sign, ours_sign),
            ("verify (cached): sha256 limit (all cores) time / Weightyard time", limit, ours_verify),
            ("verify (cached): sha256 limit (one core) time / Weightyard time", limit_one_core, ours_verify),
            ("verify (cached): model_signing time / Weightyard time", theirs_verify, ours_verify),
            ("verify (cold): model_signing time / Weightyard time", theirs_cold, ours_cold),
        ]
        for label, numerator, denominator in ratios:
            median, best = numerator.median / denominator.median, numerator.best / denominator.best
            print(f"ratio {label}: {median:,.2f} (medians), {best:,.2f} (best runs)")


if __name__ == "__main__":
    main()
