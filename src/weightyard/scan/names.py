"""The few file names that change how content is read. Everything else is routed on content alone."""

from __future__ import annotations

import posixpath
import re

PYTHON_SUFFIX = ".py"
TEMPLATE_SUFFIXES = (".jinja", ".j2")
SENTENCE_TRANSFORMERS_MODULES = "modules.json"
KERAS_METADATA = "keras_metadata.pb"
SAVED_MODEL = "saved_model.pb"
TF_FINGERPRINT = "fingerprint.pb"
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".z")
# Configs: a .json or YAML file that does not decode is unscannable, where other text is just text.
JSON_SUFFIXES = (".json", ".jsonl")
YAML_SUFFIXES = (".yaml", ".yml")
CONFIG_SUFFIXES = JSON_SUFFIXES + YAML_SUFFIXES
_NAMED_FILES = frozenset({SENTENCE_TRANSFORMERS_MODULES, KERAS_METADATA, SAVED_MODEL, TF_FINGERPRINT})


def strip_compression(name: str) -> str:
    """`model.py.gz` holds `model.py`."""
    stem, suffix = posixpath.splitext(name)
    return stem if suffix in COMPRESSION_SUFFIXES else name


def name_key(name: str) -> str:
    """The part of a file name that can change a scan's outcome. Two files with the same content and the
    same key get the same verdict, so a hub can share one stored report between them.

        >>> name_key("org/model/modeling_llama.py"), name_key("weights/model-00001.safetensors")
        ('.py', '')
    """
    base = strip_compression(posixpath.basename(name))
    if base in _NAMED_FILES:
        return base
    suffix = posixpath.splitext(base)[1]
    keyed = suffix == PYTHON_SUFFIX or suffix in TEMPLATE_SUFFIXES or suffix in CONFIG_SUFFIXES
    return suffix if keyed else ""


def name_for_key(key: str) -> str:
    """A file name with the given name key, to scan stored content again without knowing its paths."""
    return key if key in _NAMED_FILES else f"file{key}"


def unsafe_relative_path(path: str) -> bool:
    """A path that leaves the folder it is written in: absolute, drive-qualified, or climbing with '..'."""
    if not path or "\x00" in path or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return True
    return ".." in re.split(r"[\\/]", path)
