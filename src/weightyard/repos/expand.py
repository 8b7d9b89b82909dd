"""The `expand` properties the Hub accepts on repo info and listing routes, per repo type.

An unknown property is a 400, as on the Hub, so a typo in a client's `expand=[...]` is an error rather than a
silently smaller answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from weightyard.errors import BadRequest

_COMMON = {
    "author",
    "cardData",
    "createdAt",
    "disabled",
    "lastModified",
    "likes",
    "private",
    "resourceGroup",
    "sha",
    "siblings",
    "tags",
    "trendingScore",
    "usedStorage",
}
EXPAND_PROPERTIES: dict[str, frozenset[str]] = {
    "model": frozenset(
        _COMMON
        | {
            "baseModels",
            "childrenModelCount",
            "config",
            "downloads",
            "downloadsAllTime",
            "evalResults",
            "gated",
            "gguf",
            "inference",
            "inferenceProviderMapping",
            "library_name",
            "mask_token",
            "model-index",
            "pipeline_tag",
            "safetensors",
            "spaces",
            "transformersInfo",
            "widgetData",
        }
    ),
    "dataset": frozenset(
        _COMMON
        | {
            "citation",
            "description",
            "downloads",
            "downloadsAllTime",
            "gated",
            "mainSize",
            "paperswithcode_id",
        }
    ),
    "space": frozenset(_COMMON | {"datasets", "models", "region", "runtime", "sdk", "subdomain"}),
}


def check_expand(repo_type: str, values: Iterable[str]) -> list[str]:
    """The requested properties, after refusing any the Hub does not know for this repo type."""
    requested = list(values)
    known = EXPAND_PROPERTIES[repo_type]
    unknown = sorted({value for value in requested if value not in known})
    if unknown:
        raise BadRequest(
            f"unknown expand value(s) for a {repo_type} repo: {', '.join(repr(v[:60]) for v in unknown[:5])}"
        )
    return requested
