"""Hugging Face repository metadata: configs that ask for remote code, shard indexes, chat templates,
Python files and Hydra-style `_target_` factories."""

from __future__ import annotations

import ast
import json
import posixpath
import re
from typing import TYPE_CHECKING

from weightyard.scan import jinja_check, keras_scan
from weightyard.scan.buffer import Data
from weightyard.scan.names import (
    JSON_SUFFIXES,
    PYTHON_SUFFIX,
    SENTENCE_TRANSFORMERS_MODULES,
    TEMPLATE_SUFFIXES,
    YAML_SUFFIXES,
    unsafe_relative_path,
)
from weightyard.scan.policy import Kind, classify
from weightyard.scan.report import Finding, Reference, Severity

if TYPE_CHECKING:
    from weightyard.scan.engine import Context

_TEXT_LIMIT = 64 << 20
_CROSS_REPO = "--"
_TARGET = re.compile(r"""["']?_target_["']?\s*[:=]\s*["']?([A-Za-z_][\w.]*)""")
_DANGEROUS_CALLS = frozenset(
    {"eval", "exec", "compile", "__import__", "system", "popen", "Popen", "check_call", "check_output",
     "spawnl", "spawnv", "execv", "execve", "urlopen", "urlretrieve"}
)  # fmt: skip
_DANGEROUS_IMPORTS = frozenset(
    {"subprocess", "socket", "pty", "ctypes", "marshal", "pickle", "urllib", "requests"}
)


def _text(data: Data) -> str:
    return bytes(data[:_TEXT_LIMIT]).decode("utf-8-sig", "replace")


class _Duplicates:
    """object_pairs_hook that keeps the first or the last value of a repeated key, and notes repeats."""

    def __init__(self, keep_first: bool) -> None:
        self.keep_first = keep_first
        self.seen = False

    def __call__(self, pairs: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in pairs:
            if key in out:
                self.seen = True
                if self.keep_first:
                    continue
            out[key] = value
        return out


def json_readings(text: str) -> tuple[list[object], bool] | None:
    """Every document a JSON loader may see in `text`, decoded as Python's json module decodes it (NaN,
    Infinity and escaped keys included): with repeated keys, both the last value (Python) and the first
    (other parsers); JSON lines give one document per line. Also says whether keys repeat; None when
    nothing decodes."""
    last = _Duplicates(keep_first=False)
    try:
        docs = [json.loads(text, object_pairs_hook=last)]
    except ValueError as exc:
        # (int() inside the decoder refuses numbers of over 4300 digits with a plain ValueError, as it
        # does for the loaders, so such a config is undecodable for them too.)
        if not isinstance(exc, json.JSONDecodeError) or not exc.msg.startswith("Extra data"):
            return None
        try:
            docs = [json.loads(line, object_pairs_hook=last) for line in text.splitlines() if line.strip()]
        except ValueError:
            return None
    if last.seen and len(docs) == 1:
        docs.append(json.loads(text, object_pairs_hook=_Duplicates(keep_first=True)))
    return docs, last.seen


def scan_json(ctx: Context, data: Data, name: str, where: str) -> tuple[str, list[Finding]]:
    text = _text(data)
    try:
        readings = json_readings(text)
    except RecursionError:
        readings = None
    if readings is None:
        if not name.endswith(JSON_SUFFIXES):
            return scan_text(ctx, data, name, where)
        return "json", [
            Finding(
                "config.undecodable",
                Severity.ERROR,
                where,
                name,
                "configuration file does not decode as JSON, so what a loader reads is unknown",
            )
        ]
    docs, repeated = readings
    findings: list[Finding] = []
    if repeated:
        findings.append(
            Finding(
                "json.duplicate-key",
                Severity.WARNING,
                where,
                "",
                "duplicate keys; JSON parsers disagree on them, so every reading was checked",
            )
        )
    for doc in docs:
        findings += _check_document(ctx, doc, name, where)
    return "json", list(dict.fromkeys(findings))


def _check_document(ctx: Context, doc: object, name: str, where: str) -> list[Finding]:
    findings: list[Finding] = []
    if isinstance(doc, dict):
        findings += _remote_code(ctx, doc, where)
        findings += _templates(doc, where)
        findings += _shard_index(ctx, doc, where)
        if "class_name" in doc and "config" in doc:
            findings += keras_scan.check_keras_config(doc, where)
    if isinstance(doc, list) and name == SENTENCE_TRANSFORMERS_MODULES:
        findings += _sentence_transformer_modules(doc, where)
    return findings + _document_targets(doc, where)


def _refs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _remote_code(ctx: Context, doc: dict[str, object], where: str) -> list[Finding]:
    findings: list[Finding] = []
    auto_map = doc.get("auto_map")
    if isinstance(auto_map, dict):
        for key, value in auto_map.items():
            for ref in _refs(value):
                loc = f"{where}:auto_map.{key}"
                if _CROSS_REPO in ref:
                    findings.append(
                        Finding(
                            "config.remote-code-other-repo",
                            Severity.CRITICAL,
                            loc,
                            ref,
                            "trust_remote_code would download and run code from another repository",
                        )
                    )
                    continue
                module = ref.rsplit(".", 1)[0]
                findings.append(
                    Finding(
                        "config.remote-code",
                        Severity.WARNING,
                        loc,
                        ref,
                        "trust_remote_code would run Python code shipped in this repository",
                    )
                )
                ctx.references.append(Reference("code", module.replace(".", "/") + ".py", loc))
    if "_diffusers_version" in doc:
        findings += _diffusers_components(ctx, doc, where)
    pipelines = doc.get("custom_pipelines")
    if isinstance(pipelines, dict):
        findings.append(
            Finding(
                "config.remote-code",
                Severity.WARNING,
                f"{where}:custom_pipelines",
                "",
                "defines custom pipelines run as code",
            )
        )
    if doc.get("trust_remote_code") is True:
        findings.append(
            Finding(
                "config.trust-remote-code",
                Severity.WARNING,
                f"{where}:trust_remote_code",
                "true",
                "asks loaders to run repository code",
            )
        )
    return findings


# Libraries diffusers imports components from; any other name is a module of the repository.
_DIFFUSERS_LIBRARIES = frozenset({"diffusers", "transformers"})


def _diffusers_components(ctx: Context, doc: dict[str, object], where: str) -> list[Finding]:
    """diffusers' model_index.json: each component is [library, class]. A library that is not one diffusers
    knows is a module file of the repository (in the component's folder), run under trust_remote_code,
    and a `_class_name` given as [module, class] is a custom pipeline file."""
    findings: list[Finding] = []
    for key, value in doc.items():
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            continue
        library, cls = value
        if library in _DIFFUSERS_LIBRARIES:
            continue
        loc = f"{where}:{key}"
        findings.append(
            Finding(
                "config.remote-code",
                Severity.WARNING,
                loc,
                f"{library}.{cls}",
                "diffusers would run this Python module of the repository under trust_remote_code",
            )
        )
        folder = "" if key == "_class_name" else f"{key}/"
        if not unsafe_relative_path(f"{folder}{library}.py"):
            ctx.references.append(Reference("code", f"{folder}{library.replace('.', '/')}.py", loc))
    return findings


def _templates(doc: dict[str, object], where: str) -> list[Finding]:
    template = doc.get("chat_template")
    findings: list[Finding] = []
    if isinstance(template, str):
        findings += jinja_check.check_template(template, f"{where}:chat_template")
    elif isinstance(template, list):
        for item in template:
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                findings += jinja_check.check_template(
                    item["template"], f"{where}:chat_template.{item.get('name')}"
                )
    return findings


def _shard_index(ctx: Context, doc: dict[str, object], where: str) -> list[Finding]:
    weight_map = doc.get("weight_map")
    if not isinstance(weight_map, dict):
        return []
    findings: list[Finding] = []
    for shard in sorted({v for v in weight_map.values() if isinstance(v, str)}):
        loc = f"{where}:weight_map"
        if unsafe_relative_path(shard):
            findings.append(
                Finding(
                    "index.path-escape", Severity.CRITICAL, loc, shard, "shard path leaves the model folder"
                )
            )
        else:
            ctx.references.append(Reference("shard", shard, loc))
    return findings


def _sentence_transformer_modules(doc: list[object], where: str) -> list[Finding]:
    findings: list[Finding] = []
    for module in doc:
        kind = module.get("type") if isinstance(module, dict) else None
        if isinstance(kind, str) and not kind.startswith("sentence_transformers."):
            findings.append(
                Finding(
                    "config.custom-module",
                    Severity.WARNING,
                    f"{where}:type",
                    kind,
                    "sentence-transformers imports this class",
                )
            )
    return findings


_MAX_NODES = 1_000_000
_TARGET_KEY = "_target_"


def _document_targets(doc: object, where: str) -> list[Finding]:
    """Hydra/NeMo `_target_` entries of a decoded config: Hydra imports and calls any of them, so every
    target outside the allow-list counts, not only known-dangerous ones."""
    findings: list[Finding] = []
    stack, seen = [doc], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > _MAX_NODES:
            findings.append(
                Finding("limit.config-size", Severity.ERROR, where, "", "configuration has too many nodes")
            )
            break
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
            judged = _judge_target(node[_TARGET_KEY], where) if _TARGET_KEY in node else None
            if judged is not None:
                findings.append(judged)
    return findings


def _judge_target(target: object, where: str) -> Finding | None:
    loc = f"{where}:_target_"
    if not isinstance(target, str):
        return Finding(
            "config.instantiation-target", Severity.WARNING, loc, str(target)[:100], "computed target"
        )
    module, _, attr = target.rpartition(".")
    kind, reason = classify(module or "builtins", attr)
    if kind is Kind.DANGEROUS:
        return Finding("config.dangerous-target", Severity.CRITICAL, loc, target, reason)
    if kind is Kind.UNKNOWN:
        return Finding(
            "config.instantiation-target",
            Severity.WARNING,
            loc,
            target,
            "Hydra-style instantiation imports and calls this callable, which is not on the allow-list",
        )
    return None


def _targets(text: str, where: str) -> list[Finding]:
    """Hydra/NeMo `_target_` in text that is not a decodable config: known-dangerous names only."""
    findings: list[Finding] = []
    for match in _TARGET.finditer(text):
        target = match.group(1)
        module, _, attr = target.rpartition(".")
        kind, reason = classify(module or "builtins", attr)
        if kind is Kind.DANGEROUS:
            findings.append(
                Finding("config.dangerous-target", Severity.CRITICAL, f"{where}:_target_", target, reason)
            )
    return findings


def scan_text(ctx: Context, data: Data, name: str, where: str) -> tuple[str, list[Finding]]:
    if name.endswith(PYTHON_SUFFIX):
        return "python", _python(_text(data), where)
    if name.endswith(TEMPLATE_SUFFIXES):
        return "jinja", jinja_check.check_template(_text(data), where)
    if name.endswith(YAML_SUFFIXES):
        return "yaml", _yaml(_text(data), where)
    return "text", _targets(_text(data), where)


_YAML_LIMIT = 16 << 20


def _yaml(text: str, where: str) -> list[Finding]:
    """YAML configs decoded (with the safe loader, which builds only plain data) before matching, since
    quoting and escapes (`"\x5ftarget_"`) spell keys in many ways."""
    import yaml

    undecodable = Finding(
        "config.undecodable", Severity.ERROR, where, "", "YAML configuration does not decode"
    )
    if len(text) > _YAML_LIMIT:
        return [Finding("limit.config-size", Severity.ERROR, where, "", "YAML configuration is too large")]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = list(yaml.load_all(text, Loader=loader))
    except (yaml.YAMLError, RecursionError, ValueError):
        return [undecodable, *_targets(text, where)]
    findings = [f for doc in docs for f in _document_targets(doc, where)]
    return list(dict.fromkeys(findings))


def _python(source: str, where: str) -> list[Finding]:
    findings = [
        Finding(
            "code.python-file",
            Severity.WARNING,
            where,
            posixpath.basename(where),
            "Python source: runs when a loader is given trust_remote_code",
        )
    ]
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return findings
    for node in ast.walk(tree):
        subject = None
        if isinstance(node, ast.Call):
            func = node.func
            called = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if called in _DANGEROUS_CALLS:
                subject = called
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            )
            hit = [n for n in names if n.split(".")[0] in _DANGEROUS_IMPORTS]
            subject = hit[0] if hit else None
        if subject is not None:
            findings.append(
                Finding(
                    "code.dangerous-call",
                    Severity.CRITICAL,
                    f"{where}:line {getattr(node, 'lineno', 0)}",
                    subject,
                    "code runs processes, evaluates strings, unpickles or reaches the network",
                )
            )
    return findings
