"""Card metadata checked as the Hub checks it (`/api/validate-yaml`, and every commit of a README).

Errors refuse the card: metadata that cannot be read, and a `model-index` that is not the evaluation-results
structure tools read it as. Warnings only inform: no metadata at all, and fields the Hub does not know.
Messages use the Hub's joi-style wording (`"model-index[0].results" is required`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightyard.cards.metadata import load_metadata, split_front_matter

EMPTY_METADATA = "empty or missing yaml metadata in repo card"
# Fields of model-card metadata that the Hub reads (https://huggingface.co/docs/hub/model-cards).
KNOWN_FIELDS = frozenset(
    {
        "base_model", "base_model_relation", "co2_eq_emissions", "datasets", "inference", "language",
        "language_bcp47", "library_name", "license", "license_link", "license_name", "metrics",
        "model-index", "model_name", "new_version", "pipeline_tag", "tags", "thumbnail", "widget",
    }
)  # fmt: skip
# Gated-repo form fields (`extra_gated_prompt`, `extra_gated_fields`, ...) are all known.
KNOWN_PREFIXES = ("extra_gated_",)
# The most findings reported for one card: a hostile card could otherwise make the answer as large as itself.
MAX_FINDINGS = 50


@dataclass
class CardCheck:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_FINDINGS:
            self.errors.append(message)

    def warning(self, message: str) -> None:
        if len(self.warnings) < MAX_FINDINGS:
            self.warnings.append(message)


def _require_string(check: CardCheck, value: dict[str, Any], key: str, where: str) -> None:
    if key not in value:
        check.error(f'"{where}.{key}" is required')
    elif not isinstance(value[key], str):
        check.error(f'"{where}.{key}" must be a string')


def _object(check: CardCheck, value: object, where: str) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    check.error(f'"{where}" must be of type object')
    return None


def _array(check: CardCheck, value: object, where: str) -> list[Any]:
    if isinstance(value, list):
        return value
    check.error(f'"{where}" must be an array')
    return []


def _check_model_index(check: CardCheck, model_index: object) -> None:
    for i, entry in enumerate(_array(check, model_index, "model-index")):
        model = _object(check, entry, f"model-index[{i}]")
        if model is None:
            continue
        _require_string(check, model, "name", f"model-index[{i}]")
        if "results" not in model:
            check.error(f'"model-index[{i}].results" is required')
        for j, item in enumerate(_array(check, model.get("results", []), f"model-index[{i}].results")):
            where = f"model-index[{i}].results[{j}]"
            result = _object(check, item, where)
            if result is None:
                continue
            task = _object(check, result.get("task"), f"{where}.task")
            if task is not None:
                _require_string(check, task, "type", f"{where}.task")
            dataset = _object(check, result.get("dataset"), f"{where}.dataset")
            if dataset is not None:
                _require_string(check, dataset, "type", f"{where}.dataset")
                _require_string(check, dataset, "name", f"{where}.dataset")
            for k, metric in enumerate(_array(check, result.get("metrics"), f"{where}.metrics")):
                found = _object(check, metric, f"{where}.metrics[{k}]")
                if found is None:
                    continue
                _require_string(check, found, "type", f"{where}.metrics[{k}]")
                if "value" not in found:
                    check.error(f'"{where}.metrics[{k}].value" is required')


def check_metadata(metadata: dict[str, Any], error: str | None) -> CardCheck:
    """The errors and warnings of a card's parsed metadata (`error`: why it could not be read)."""
    check = CardCheck()
    if error is not None:
        check.error(error)
        return check
    if not metadata:
        check.warning(EMPTY_METADATA)
        return check
    if "model-index" in metadata:
        _check_model_index(check, metadata["model-index"])
    for key in metadata:
        name = str(key)
        if name not in KNOWN_FIELDS and not name.startswith(KNOWN_PREFIXES):
            check.warning(f'"{name[:100]}" is not a known metadata field')
    return check


def check_card(text: str) -> CardCheck:
    """The errors and warnings of a README's metadata, as `/api/validate-yaml` reports them.

    Example:
        >>> check_card("---\\nmodel-index: foo\\n---\\n").errors
        ['"model-index" must be an array']
    """
    block, _ = split_front_matter(text)
    return check_metadata(*load_metadata(block))
