"""Scanning benchmark: Weightyard against picklescan, modelscan, fickling and modelaudit on one corpus.

    .venv/bin/python bench/scan.py [--tools weightyard,picklescan,...] [--markdown]

The labelled corpus of `tests/scan/scan_corpus.py` is generated into a temporary folder. Each tool runs
in its own virtual environment under `bench/.venvs/` (created with pip when missing; modelaudit gets
torch so that its allow-list can verify torch globals, and telemetry off), in one process that scans
every file with the tool's own command-line entry point and default settings. A file *passes* when the
tool's command would exit 0; anything else (issue found, error, timeout) *blocks* it. True positives are
blocked malicious files, misses are passed malicious files, false positives are blocked benign files.
"Issue" counts only blocks for a reported finding (exit 1), "errors" those for an error or timeout.
Weightyard runs `scan_file` (`scan_path` for the samples whose verdict depends on sibling files: it is
the only tool given the model folder), the calls `weightyard scan` makes, and blocks what that command
would: unsafe, suspicious and unscannable files. modelscan's "nothing supported" exit is a pass.
Wall time is the whole process, imports included (the median of `--runs` runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.scan.scan_corpus import Sample, build  # noqa: E402

VENVS = ROOT / "bench" / ".venvs"
FILE_TIMEOUT_S = 300
RUN_TIMEOUT_S = 3600
ANCHORS: dict[str, list[str]] = {
    "picklescan": ["picklescan", "numpy", "py7zr"],
    "modelscan": ["modelscan"],
    "fickling": ["fickling", "typing_extensions"],
    "modelaudit": ["torch==2.13.0", "modelaudit"],
}

# Exit codes that let a file through. modelscan's 3 means it found nothing it supports, which a gate
# could not distinguish from clean; it is counted as a pass, the benefit of the doubt.
PASS_CODES: dict[str, frozenset[int]] = {"modelscan": frozenset({0, 3})}

# Runs inside each tool's environment: argv = tool, jobs.json, out.json. Every call goes through the
# tool's CLI entry point in-process, so the exit code is the one a user would see.
DRIVER = r"""
import contextlib, io, json, logging, os, signal, sys, time
tool, jobs_path, out_path = sys.argv[1:4]
jobs = json.load(open(jobs_path))

class Timeout(BaseException):
    pass

def alarm(signum, frame):
    raise Timeout()

signal.signal(signal.SIGALRM, alarm)

def cli(argv):
    if tool == "picklescan":
        from picklescan.cli import main
        sys.argv = ["picklescan", *argv]
        return main()
    if tool == "modelscan":
        from modelscan.cli import main
        sys.argv = ["modelscan", *argv]
        main()
    if tool == "fickling":
        from fickling.cli import main
        sys.argv = ["fickling", "--check-safety", *argv[1:]]
        return main(sys.argv)
    if tool == "modelaudit":
        from modelaudit.cli import main
        sys.argv = ["modelaudit", "scan", "--no-cache", *argv[1:]]
        main()
    raise SystemExit(99)

folders = {}
def weightyard(path, folder):
    from weightyard.scan import Verdict, scan_file, scan_path
    if folder is None:
        return scan_file(path).verdict
    if folder not in folders:
        folders[folder] = scan_path(folder)
    return folders[folder][os.path.relpath(path, folder)].verdict

results = {}
for path, folder in jobs:
    signal.alarm(int(os.environ["FILE_TIMEOUT_S"]))
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            if tool == "weightyard":
                verdict = weightyard(path, folder)
                code = {"safe": 0, "unscannable": 2}.get(verdict.value, 1)
            else:
                code = cli(["-p", path])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except Timeout:
        code = "timeout"
    except BaseException as exc:
        code = "crash: " + type(exc).__name__
    finally:
        signal.alarm(0)
    results[path] = code
json.dump(results, open(out_path, "w"))
"""


@dataclass
class Row:
    tool: str
    tp: int
    tp_issue: int
    miss: int
    fp: int
    errors: int
    wall_s: float
    note: str = ""


def ensure_venv(tool: str) -> Path:
    python = VENVS / tool / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / tool)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *ANCHORS[tool]], check=True)
    return python


def run_tool(
    tool: str, python: Path, jobs: list[tuple[str, str | None]], work: Path
) -> tuple[dict[str, object], float]:
    jobs_path, out_path = work / f"{tool}-jobs.json", work / f"{tool}-out.json"
    jobs_path.write_text(json.dumps(jobs))
    env = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "FILE_TIMEOUT_S": str(FILE_TIMEOUT_S)}
    start = time.perf_counter()
    subprocess.run(
        [str(python), "-c", DRIVER, tool, str(jobs_path), str(out_path)],
        env=env,
        cwd=work,
        timeout=RUN_TIMEOUT_S,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    return json.loads(out_path.read_text()), wall


def score(tool: str, samples: list[Sample], root: Path, codes: dict[str, object], wall: float) -> Row:
    row = Row(tool, 0, 0, 0, 0, 0, wall)
    passing = PASS_CODES.get(tool, frozenset({0}))
    for sample in samples:
        code = codes[str(root / sample.path)]
        blocked = code not in passing
        if code not in passing and code != 1:
            row.errors += 1
        if sample.malicious:
            row.tp += blocked
            row.tp_issue += code == 1
            row.miss += not blocked
        else:
            row.fp += blocked
    return row


def table(rows: list[Row], malicious: int, benign: int) -> str:
    lines = [
        f"| tool | true positives (of {malicious}) | of which as an issue | misses "
        f"| false positives (of {benign}) | errors | wall time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.tool} | {r.tp} | {r.tp_issue} | {r.miss} | {r.fp} | {r.errors} | {r.wall_s:.2f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", default="weightyard," + ",".join(ANCHORS))
    parser.add_argument("--details", action="store_true", help="print each tool's result per file")
    parser.add_argument("--runs", type=int, default=1, help="runs per tool; the median wall time is shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wy-scan-bench-") as tmp:
        work = Path(tmp)
        root = work / "corpus"
        samples = build(root)
        jobs = [(str(root / s.path), str(root / s.folder) if s.folder else None) for s in samples]
        malicious = sum(s.malicious for s in samples)
        rows: list[Row] = []
        for tool in args.tools.split(","):
            python = Path(sys.executable) if tool == "weightyard" else ensure_venv(tool)
            codes, wall = run_tool(tool, python, jobs, work)
            walls = [wall] + [run_tool(tool, python, jobs, work)[1] for _ in range(args.runs - 1)]
            rows.append(score(tool, samples, root, codes, statistics.median(walls)))
            if args.details:
                for s in samples:
                    print(
                        f"{tool:11} {'M' if s.malicious else 'B'} {codes[str(root / s.path)]!s:10} {s.path}"
                    )
        print(f"corpus: {len(samples)} files, {malicious} malicious, {len(samples) - malicious} benign")
        print(table(rows, malicious, len(samples) - malicious))


if __name__ == "__main__":
    main()
