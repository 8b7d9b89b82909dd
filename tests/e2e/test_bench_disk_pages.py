"""bench/disk_pages.py runs and reports its three writes, each copy of the file checked byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "disk_pages.py"


def test_the_disk_pages_benchmark_reports_each_write(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--size", "8M", "--rounds", "1", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and " s |" in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| cp + sync FILE",
        "| O_DIRECT from small pages",
        "| O_DIRECT from huge pages",
    ]
    assert list(tmp_path.iterdir()) == []  # its files are removed
