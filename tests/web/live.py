"""A real `weightyard serve --demo` on a free loopback port, filled through the stock huggingface_hub client,
and the headless Chromium that the browser tests and the screenshot script drive."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import free_port

# The stock client must never reach a real hub from a test.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEMO_REPO = "sentence-transformers/all-MiniLM-L6-v2"
PRIVATE_REPO = "admin/private-model"
HOSTILE_REPO = "admin/hostile-card"
READY_LINE = b"Admin token"
START_TIMEOUT = 120

PRIVATE_CARD = """---
license: other
pipeline_tag: text-classification
---
# Private plans

Only people with access may read this.
"""

# Everything a card author might try to run code with; none of it may work.
HOSTILE_CARD = """---
license: mit
tags: ['<script>window.__pwned = "yaml"</script>']
---
# Hostile card

<script>window.__pwned = "script"; alert("script")</script>

<img src="x" onerror="window.__pwned = 'onerror'; alert('onerror')">

<a href="javascript:window.__pwned = 'raw-link'">raw link</a>

[markdown link](javascript:window.__pwned='md-link')

[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)

<iframe src="javascript:alert('iframe')"></iframe>

[a fine link](https://example.org/)
"""


@dataclass
class LiveHub:
    url: str
    token: str
    process: subprocess.Popen[bytes]


def start(data: Path) -> LiveHub:
    """Start the hub with the demo model published (as `make run` does) and wait until it is ready."""
    port = free_port()
    log_path = data.parent / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "weightyard", "serve", "--port", str(port), "--data", str(data), "--demo"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while READY_LINE not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the hub did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    hub = LiveHub(f"http://127.0.0.1:{port}", (data / "admin-token").read_text().strip(), process)
    _publish_fixtures(hub, data.parent / "fixtures")
    return hub


def stop(hub: LiveHub) -> None:
    hub.process.terminate()
    try:
        hub.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        hub.process.kill()
        hub.process.wait()


def _publish_fixtures(hub: LiveHub, folder: Path) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=hub.token)
    for repo_id, readme, private in ((PRIVATE_REPO, PRIVATE_CARD, True), (HOSTILE_REPO, HOSTILE_CARD, False)):
        source = folder / repo_id.replace("/", "--")
        source.mkdir(parents=True)
        (source / "README.md").write_text(readme)
        (source / "config.json").write_text('{"model_type": "bert"}\n')
        api.create_repo(repo_id, private=private)
        api.upload_folder(folder_path=source, repo_id=repo_id, commit_message=f"Add {repo_id}")


def launch_browser(playwright: Any) -> Any:
    """Debian's Chromium; waits a while for it in case the package is still being installed."""
    deadline = time.monotonic() + START_TIMEOUT
    while not Path(CHROMIUM).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
        time.sleep(2)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
