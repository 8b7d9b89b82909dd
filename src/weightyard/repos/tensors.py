"""The tensor summary a file page shows for a safetensors file, derived from its header at commit time.

A safetensors file starts with an 8-byte little-endian header length, then that many bytes of JSON naming
each tensor's dtype, shape and offsets (and an optional `__metadata__` object of strings). The header comes
from anyone who can push, so it is read once, before the commit lands (repos/facts.py stores the summary by
sha256); the page only shows what was stored, and parses nothing while it answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from weightyard.formatting import human_size

# A header larger than this is not read (the format allows 100 MB; real ones are a few MB at most).
SAFETENSORS_HEADER_LIMIT = 16 * 1024 * 1024
# Bounds on the summary: a page lists at most TENSOR_ROWS tensors and FACT_ITEMS metadata items.
TENSOR_ROWS = 2000
TENSOR_DIMS = 32
TEXT_FIELD = 1000
FACT_ITEMS = 100
FACT_CHARS = 200


@dataclass(frozen=True)
class HeaderProblem:
    """Why a safetensors header was not parsed: `short`, `too_large` (with its stated length), `past_end`
    or `not_json`. Each consumer words it for its own readers."""

    kind: str
    length: int = 0


def _name(item: tuple[str, object]) -> str:
    return item[0]


def summary_error(problem: HeaderProblem) -> dict[str, Any]:
    """The page's wording of a header that could not be parsed."""
    if problem.kind == "short":
        return {"error": "the file is too short to be safetensors"}
    if problem.kind == "too_large":
        limit = human_size(SAFETENSORS_HEADER_LIMIT)
        return {"error": f"the header is {human_size(problem.length)}, over the {limit} a page reads"}
    if problem.kind == "past_end":
        return {"error": "the header length runs past the end of the file"}
    return {"error": "the header is not valid JSON"}


def tensor_summary(header: object) -> dict[str, Any]:
    """The page's tensor list of a parsed header: tensor count, total parameters, the first TENSOR_ROWS
    tensors by name with dtype, shape and parameters, whether the list is cut, and the bounded metadata; or
    `{"error": why}`. Pure: reads nothing, and leaves `header` as it is."""
    if not isinstance(header, dict):
        return {"error": "the header is not a JSON object"}
    metadata = header.get("__metadata__")
    named = sorted(((name, info) for name, info in header.items() if name != "__metadata__"), key=_name)
    tensors: list[dict[str, Any]] = []
    total = 0
    for name, info in named:
        shape = info.get("shape") if isinstance(info, dict) else None
        if (
            not isinstance(shape, list)
            or len(shape) > TENSOR_DIMS
            or not all(isinstance(dim, int) and dim >= 0 for dim in shape)
        ):
            return {"error": f"tensor {name[:FACT_CHARS]!r} has no valid shape"}
        count = math.prod(shape)
        total += count
        if len(tensors) < TENSOR_ROWS:
            dtype = str(info.get("dtype"))[:FACT_CHARS]
            tensors.append({"name": name[:TEXT_FIELD], "dtype": dtype, "shape": shape, "parameters": count})
    entries = list(metadata.items())[:FACT_ITEMS] if isinstance(metadata, dict) else []
    return {
        "tensorCount": len(named),
        "parameters": total,
        "tensors": tensors,
        "truncated": len(named) > len(tensors),
        "metadata": {key[:FACT_CHARS]: str(value)[:TEXT_FIELD] for key, value in entries},
    }
