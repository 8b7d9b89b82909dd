"""Keras models: the architecture JSON (inside a .keras zip's config.json or an HDF5 file's
`model_config` attribute) names layers and functions that Keras imports and, for Lambda layers, code it
runs. HDF5 is read by locating that JSON text in the file, which is where HDF5 keeps attribute strings
(attributes are never compressed); dense attribute storage with I/O filters is refused as unscannable."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from weightyard.scan.buffer import Data, RangeView, unpack_at
from weightyard.scan.policy import Kind, classify
from weightyard.scan.report import Finding, Severity

if TYPE_CHECKING:
    from weightyard.scan.engine import Context

_CANDIDATE = re.compile(rb'\{\s*"')
# The same, or a brace whose whitespace runs to the end of a window (the match may go on in the next one).
_WINDOWED_CANDIDATE = re.compile(rb'\{\s*(?:"|\Z)')
_WINDOW = 4 << 20
_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")
_CLASS_NAME = b'"class_name"'
_ESCAPE = b"\\u"
_FRACTAL_HEAP = b"FRHP"
_KERAS_MODULES = ("keras", "tf_keras", "tensorflow.keras", "tensorflow.python.keras")
_FILE_LAYERS = frozenset({"StringLookup", "IntegerLookup", "TextVectorization"})
_CODE_LAYERS = frozenset({"Lambda", "__lambda__"})
_DANGEROUS_KERAS_FUNCTIONS = frozenset(
    {
        "get_file",
        "load_model",
        "load_weights",
        "save_model",
        "deserialize_keras_object",
        "exec",
        "eval",
        "system",
    }
)
_MAX_CANDIDATES = 100_000


def _is_keras_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _KERAS_MODULES)


def check_keras_config(doc: object, where: str) -> list[Finding]:
    """Findings for a Keras architecture document (any nesting of layers, models and wrappers)."""
    findings: list[Finding] = []
    stack: list[object] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        class_name = node.get("class_name")
        if not isinstance(class_name, str):
            continue
        config = node.get("config")
        module = node.get("module")
        if class_name in _CODE_LAYERS:
            findings.append(
                Finding(
                    "keras.lambda",
                    Severity.CRITICAL,
                    where,
                    class_name,
                    "Lambda layer carries Python code run at load or call time",
                )
            )
        if (
            class_name == "TFOpLambda"
            and isinstance(config, dict)
            and re.search(r"\bio\b|file", str(config.get("function")))
        ):
            findings.append(
                Finding(
                    "keras.file-op",
                    Severity.CRITICAL,
                    where,
                    str(config.get("function")),
                    "TF op layer touches files",
                )
            )
        if (
            class_name in _FILE_LAYERS
            and isinstance(config, dict)
            and isinstance(config.get("vocabulary"), str)
        ):
            findings.append(
                Finding(
                    "keras.vocabulary-file",
                    Severity.CRITICAL,
                    where,
                    str(config["vocabulary"]),
                    f"{class_name} reads this file path when the model loads",
                )
            )
        name = config if class_name == "function" and isinstance(config, str) else class_name
        if isinstance(module, str):
            findings += _check_module(module, name, where)
    return findings


def _check_module(module: str, name: str, where: str) -> list[Finding]:
    kind, reason = classify(module, name)
    if kind is Kind.DANGEROUS and not _is_keras_module(module):
        return [Finding("keras.dangerous-object", Severity.CRITICAL, where, f"{module}.{name}", reason)]
    if _is_keras_module(module):
        if name in _DANGEROUS_KERAS_FUNCTIONS:
            return [
                Finding(
                    "keras.dangerous-object",
                    Severity.CRITICAL,
                    where,
                    f"{module}.{name}",
                    "Keras function with side effects",
                )
            ]
        return []
    return [
        Finding(
            "keras.custom-object",
            Severity.WARNING,
            where,
            f"{module}.{name}",
            "object outside the Keras namespaces; loading imports its module",
        )
    ]


def _candidates(data: Data) -> Iterator[int]:
    """Offsets where a JSON object with a key may start: a brace, optional whitespace, a quote."""
    if not isinstance(data, RangeView):
        yield from (match.start() for match in _CANDIDATE.finditer(data))
        return
    # `re` needs the buffer protocol, so content read in place is searched window by window. A match holds
    # no other brace, so matches never straddle one another and each window's are exactly the file's.
    for base in range(0, len(data), _WINDOW):
        for match in _WINDOWED_CANDIDATE.finditer(data[base : base + _WINDOW]):
            if match.group().endswith(b'"'):
                yield base + match.start()
                continue
            pos = base + match.end()
            while pos < len(data) and data[pos] in _WHITESPACE:
                pos += 1
            if pos < len(data) and data[pos] == ord('"'):
                yield base + match.start()


def scan_hdf5(ctx: Context, data: Data, name: str, where: str) -> list[Finding]:
    findings: list[Finding] = []
    pos = data.find(_FRACTAL_HEAP)
    while pos >= 0:
        if pos + 9 <= len(data):
            (filter_len,) = unpack_at("<H", data, pos + 7)
            if filter_len:
                findings.append(
                    Finding(
                        "keras.filtered-attributes",
                        Severity.ERROR,
                        f"{where}@{pos}",
                        "",
                        "attribute storage is compressed, so the model config cannot be read statically",
                    )
                )
                break
        pos = data.find(_FRACTAL_HEAP, pos + 4)
    configs = 0
    end = 0
    for count, start in enumerate(_candidates(data)):
        if count % 4096 == 0:
            ctx.budget.check_time()
        if count > _MAX_CANDIDATES:
            break
        if start < end:
            continue
        stop = data.find(b"\x00", start)
        chunk = bytes(data[start : stop if stop >= 0 else len(data)])
        # Keys can be spelled with escapes ("class\u005fname"): any chunk with one is decoded too.
        if _CLASS_NAME not in chunk and _ESCAPE not in chunk:
            continue
        try:
            text = chunk.decode("utf-8")
            doc, length = json.JSONDecoder().raw_decode(text)
        except (ValueError, UnicodeDecodeError, RecursionError):
            if _CLASS_NAME in chunk:
                findings.append(
                    Finding(
                        "config.undecodable",
                        Severity.ERROR,
                        f"{where}@{start}",
                        "model_config",
                        "a Keras model config does not decode, so what Keras would load is unknown",
                    )
                )
            continue
        configs += 1
        end = start + len(text[:length].encode("utf-8"))
        findings += check_keras_config(doc, f"{where}@{start}")
    if configs == 0 and data.find(b"model_config") >= 0:
        findings.append(
            Finding(
                "keras.unreadable-config",
                Severity.ERROR,
                where,
                "model_config",
                "model_config attribute cannot be located",
            )
        )
    return findings
