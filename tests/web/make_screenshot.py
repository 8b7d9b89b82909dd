"""Save the model page of the demo model as a PNG for the README.

Run once from the repository root: `.venv/bin/python -m tests.web.make_screenshot docs/screenshot-model.png`
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from .live import DEMO_REPO, launch_browser, start, stop

VIEWPORT = {"width": 1200, "height": 760}


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        hub = start(Path(folder) / "data")
        try:
            with sync_playwright() as playwright:
                browser = launch_browser(playwright)
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"{hub.url}/{DEMO_REPO}")
                page.screenshot(path=str(target))
                browser.close()
        finally:
            stop(hub)
    print(f"saved {target} ({target.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
