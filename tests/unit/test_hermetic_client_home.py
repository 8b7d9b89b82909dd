"""The suite never touches the client caches of whoever runs it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def test_stock_client_caches_live_in_a_temporary_folder_of_the_run() -> None:
    from huggingface_hub import constants

    home = Path(os.environ["HF_HOME"]).resolve()
    assert home.is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert not home.is_relative_to((Path.home() / ".cache").resolve())
    assert Path(constants.HF_HUB_CACHE).resolve().is_relative_to(home)
    assert Path(constants.HF_TOKEN_PATH).resolve().is_relative_to(home)
