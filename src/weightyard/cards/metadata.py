"""Model-card metadata: the YAML block at the top of a README, read as plain data within fixed bounds.

A README comes from anyone who can push, so its metadata is read with `yaml.safe_load` (no tag can build an
object or run code), only up to `FRONT_MATTER_LIMIT` bytes, and only when it has no aliases (a few lines of
anchors expand to gigabytes once the data is copied or serialised) and no more than `MAX_DEPTH` levels of
nesting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

FRONT_MATTER_LIMIT = 64 * 1024
MAX_DEPTH = 20
# Metadata values kept as facts: short lists of short strings.
FACT_ITEMS = 100
FACT_CHARS = 200

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def split_front_matter(text: str) -> tuple[str | None, str]:
    """The YAML block between the leading `---` lines, and the Markdown after it.

    Example:
        >>> split_front_matter("---\\nlicense: mit\\n---\\n# Hi\\n")
        ('license: mit\\n', '# Hi\\n')
    """
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None, text
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "".join(lines[1:index]), "".join(lines[index + 1 :])
    return None, text


def _check_shape(block: str) -> str | None:
    """Why the block may not be loaded (aliases, deep nesting), from its event stream; None when it may."""
    depth = 0
    for event in yaml.parse(block, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            return "the metadata block uses YAML aliases, which are not accepted"
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return f"the metadata block is nested deeper than {MAX_DEPTH} levels"
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
    return None


def load_metadata(block: str | None) -> tuple[dict[str, Any], str | None]:
    """The metadata mapping of a front-matter block and, when it could not be used, why (it is then empty).

    Example:
        >>> load_metadata("license: !!python/object/apply:os.system ['true']")[1][:34]
        'the metadata block is not valid YA'
    """
    if block is None:
        return {}, None
    if len(block.encode()) > FRONT_MATTER_LIMIT:
        return {}, f"the metadata block is over {FRONT_MATTER_LIMIT // 1024} KiB and was not read"
    try:
        refusal = _check_shape(block)
        if refusal is not None:
            return {}, refusal
        metadata = yaml.load(block, Loader=_Loader)  # noqa: S506 - a safe loader (CSafeLoader or SafeLoader)
    except yaml.YAMLError as exc:
        return {}, f"the metadata block is not valid YAML: {str(exc).splitlines()[0]}"
    if metadata is None:
        return {}, None
    if not isinstance(metadata, dict):
        return {}, "the metadata block is not a YAML mapping"
    return metadata, None


def strings(value: object) -> list[str]:
    """A metadata value as a short list of short strings; anything else a card might hold is ignored."""
    items = value if isinstance(value, list) else [value]
    return [
        str(item)[:FACT_CHARS]
        for item in items[:FACT_ITEMS]
        if isinstance(item, str | int | float) and not isinstance(item, bool)
    ]


@dataclass(frozen=True)
class CardFacts:
    """What pages and listings show from a card's metadata."""

    license: list[str]
    base_model: list[str]
    task: str | None
    library: str | None
    tags: list[str]
    datasets: list[str]
    languages: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "license": self.license,
            "base_model": self.base_model,
            "task": self.task,
            "library": self.library,
            "tags": self.tags,
            "datasets": self.datasets,
            "languages": self.languages,
        }


def card_facts(metadata: dict[str, Any]) -> CardFacts:
    task = strings(metadata.get("pipeline_tag"))
    library = strings(metadata.get("library_name"))
    return CardFacts(
        license=strings(metadata.get("license")),
        base_model=strings(metadata.get("base_model")),
        task=task[0] if task else None,
        library=library[0] if library else None,
        tags=strings(metadata.get("tags")),
        datasets=strings(metadata.get("datasets")),
        languages=strings(metadata.get("language")),
    )
