"""The real `model_signing` CLI, installed once into an isolated virtual environment, as the oracle.

Weightyard must not depend on model_signing; the tests use it only to prove both directions of
interoperability. The environment lives in tests/.tools/ (git-ignored by a `.gitignore` it writes) and
is reused while its requirements are unchanged.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / ".tools"
VENV = TOOLS / "model-signing-venv"
# model_signing 1.1.1 imports pyOpenSSL without declaring it (docs/provenance.md), so a bare install fails.
REQUIREMENTS = ("model-signing>=1.1.1,<1.2", "pyopenssl")
_READY = VENV / ".weightyard-ready"


def ensure_model_signing() -> Path:
    """Path of the `model_signing` executable, creating its environment on first use."""
    stamp = "\n".join(REQUIREMENTS)
    TOOLS.mkdir(parents=True, exist_ok=True)
    (TOOLS / ".gitignore").write_text("*\n")
    # Two test runs (or a test run and the benchmark) starting together must not build it twice at once.
    with open(TOOLS / ".model-signing.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (_READY.is_file() and _READY.read_text() == stamp):
            shutil.rmtree(VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run(
                [
                    str(VENV / "bin" / "pip"),
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    *REQUIREMENTS,
                ],
                check=True,
                timeout=900,
            )
            _READY.write_text(stamp)
    return VENV / "bin" / "model_signing"


def model_signing(executable: Path, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(executable), *map(str, arguments)], capture_output=True, text=True, timeout=120, check=False
    )
