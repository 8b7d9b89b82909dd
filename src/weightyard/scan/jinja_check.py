"""Chat templates are Jinja2 programs. They are parsed (never rendered) and their syntax tree is checked
for the constructs server-side template injection needs: private and special attributes, object graph
walks, helper globals that expose Python internals, and file-loading tags."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from weightyard.scan.policy import words
from weightyard.scan.report import Finding, Severity

if TYPE_CHECKING:
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

_DUNDER = re.compile(r"__\w+__")
# Attributes that lead from any object to code, frames or modules. (`system` is left out: chat templates
# use it as a message field, and `os.system` is caught at `os`.)
_ESCAPE_ATTRS = words(
    """
    mro func_globals f_globals f_locals f_builtins f_code gi_frame gi_code cr_frame cr_code ag_frame
    tb_frame tb_next im_func func_code co_code popen eval exec import_module load_module spawn
    subprocess builtins globals locals getattr setattr os sys modules
    """
)
# Globals of Jinja (and of Flask-style environments) that give access to Python internals via attributes.
_HELPER_GLOBALS = frozenset(
    {
        "lipsum",
        "cycler",
        "joiner",
        "self",
        "config",
        "request",
        "url_for",
        "get_flashed_messages",
        "g",
        "session",
    }
)
_ATTRIBUTE_FILTERS = frozenset(
    {"map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max"}
)


def _finding(
    rule: str, severity: Severity, where: str, node: nodes.Node, subject: str, message: str
) -> Finding:
    return Finding(rule, severity, f"{where}:line {getattr(node, 'lineno', 0)}", subject, message)


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    """The environment transformers renders chat templates in: loop controls and its `generation` tag
    parse, so ordinary templates that use them are not mistaken for broken ones."""
    # Importing jinja2 costs more than scanning a typical model folder; only files with templates pay.
    from jinja2.ext import Extension, loopcontrols
    from jinja2.parser import Parser
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        tags = {"generation"}  # noqa: RUF012 -- the attribute jinja2 reads

        def parse(self, parser: Parser) -> list[nodes.Node]:
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    return ImmutableSandboxedEnvironment(extensions=[loopcontrols, GenerationTag])


def check_template(source: str, where: str) -> list[Finding]:
    """Findings for one chat template; an ordinary template yields none."""
    from jinja2 import TemplateSyntaxError, nodes

    try:
        tree = _environment().parse(source)
    except TemplateSyntaxError as exc:
        return [
            Finding(
                "template.syntax-error",
                Severity.WARNING,
                f"{where}:line {exc.lineno}",
                "",
                f"chat template does not parse ({exc.message}); renderers may disagree on it",
            )
        ]
    except ValueError as exc:
        # Jinja's lexer converts number literals with int(), which refuses numbers of over 4300 digits.
        return [
            Finding(
                "template.syntax-error",
                Severity.WARNING,
                where,
                "",
                f"chat template does not parse ({exc}); renderers may disagree on it",
            )
        ]
    findings: list[Finding] = []
    folder = _Folder()
    for assign in tree.find_all(nodes.Assign):
        if isinstance(assign.target, nodes.Name):
            folder.names[assign.target.name] = folder.fold(assign.node)
    for node in tree.find_all(nodes.Node):
        findings += _check_node(node, where)
        if isinstance(node, nodes.Concat | nodes.Add | nodes.Mul | nodes.Mod | nodes.Filter | nodes.Name):
            built = folder.fold(node)
            if isinstance(built, str) and _is_special(built):
                findings.append(
                    _finding(
                        "template.dunder-string",
                        Severity.CRITICAL,
                        where,
                        node,
                        built[:60],
                        "template-injection construct: a special name assembled from pieces",
                    )
                )
    return findings


def _is_special(text: str) -> bool:
    return bool(_DUNDER.search(text)) or text.startswith("__") or text.endswith("__")


_MAX_FOLDED = 4096
_MAX_INT = 1 << 63
# printf-style formats without large widths, which a constant-folded `%` may evaluate.
_SMALL_FORMAT = re.compile(r"^(?:[^%]|%%|%[-+ #0]?\d{0,2}(?:\.\d{0,2})?[sdirxXc])*$")
_CASE_FILTERS: dict[str, Callable[[str], str]] = {
    "lower": str.lower,
    "upper": str.upper,
    "capitalize": str.capitalize,
    "title": str.title,
    "trim": str.strip,
    "string": str,
    "reverse": lambda text: text[::-1],
}


class _Folder:
    """Computes, without rendering, the string a template expression builds from constants (`'_' ~
    '_cla' ~ 'ss__'`, `'%c%c' % (95, 95)`, `'x'|replace('x', '_')`) and the names `set` binds to them."""

    def __init__(self) -> None:
        self.names: dict[str, object] = {}
        # Folded values by node, so that nested expressions are folded once: long `a + b + c ...` chains
        # stay linear. Names are looked up each time, since `set` may bind them again.
        self._done: dict[int, object] = {}

    def fold(self, node: object, depth: int = 0) -> object:
        if depth > 64:
            return None
        key = id(node)
        if key in self._done:
            return self._done[key]
        result = self._fold(node, depth)
        if isinstance(result, str) and len(result) > _MAX_FOLDED:
            result = None
        if not _is_name(node):
            self._done[key] = result
        return result

    def _fold(self, node: object, depth: int) -> object:
        from jinja2 import nodes as n

        sub = functools.partial(self.fold, depth=depth + 1)
        if isinstance(node, n.Const):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, str | int):
                return None
            return value if isinstance(value, str) or abs(value) < _MAX_INT else None
        if isinstance(node, n.Name):
            return self.names.get(node.name)
        if isinstance(node, n.Concat):
            return _join([sub(x) for x in node.nodes], "")
        if isinstance(node, n.List | n.Tuple):
            return [sub(x) for x in node.items]
        if isinstance(node, n.Add | n.Mul | n.Mod):
            return _binary(type(node).__name__, sub(node.left), sub(node.right))
        if isinstance(node, n.Filter) and node.node is not None:
            return _filter(node.name, sub(node.node), [sub(a) for a in node.args])
        return None


def _is_name(node: object) -> bool:
    from jinja2 import nodes

    return isinstance(node, nodes.Name)


def _join(parts: list[object], sep: str) -> str | None:
    """`sep.join` of folded parts, or None when a part is unknown or the result would be too long."""
    if not all(isinstance(p, str | int) for p in parts):
        return None
    texts = [str(p) for p in parts]
    if sum(map(len, texts)) + len(sep) * len(texts) > _MAX_FOLDED:
        return None
    return sep.join(texts)


def _binary(op: str, left: object, right: object) -> object:
    if op == "Add" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if op == "Mul" and isinstance(left, str) and isinstance(right, int) and 0 <= right <= 64:
        return left * right
    if op == "Mod" and isinstance(left, str):
        return _printf(left, right)
    return None


def _printf(template: str, args: object) -> str | None:
    if not _SMALL_FORMAT.match(template):
        return None
    values = tuple(args) if isinstance(args, list) else (args,)
    if not all(isinstance(v, str | int) for v in values):
        return None
    if len(template) + sum(len(v) if isinstance(v, str) else 24 for v in values) > _MAX_FOLDED:
        return None
    try:
        return template % values
    except (TypeError, ValueError, OverflowError):
        return None


def _filter(name: str, value: object, args: list[object]) -> object:
    if name in _CASE_FILTERS and isinstance(value, str | int):
        return _CASE_FILTERS[name](str(value))
    if name == "replace" and isinstance(value, str) and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str) and isinstance(new, str) and old:
            return value.replace(old, new, max(0, _MAX_FOLDED // max(1, len(new))))
    if name == "join" and isinstance(value, list):
        return _join(value, args[0] if args and isinstance(args[0], str) else "")
    if name == "format" and isinstance(value, str):
        return _printf(value, args)
    return None


def _check_node(node: nodes.Node, where: str) -> list[Finding]:
    from jinja2 import nodes

    ssti = "template-injection construct"
    if isinstance(node, nodes.Getattr):
        if node.attr.startswith("_") or node.attr in _ESCAPE_ATTRS:
            return [
                _finding(
                    "template.private-attribute",
                    Severity.CRITICAL,
                    where,
                    node,
                    node.attr,
                    f"{ssti}: attribute {node.attr}",
                )
            ]
        if isinstance(node.node, nodes.Name) and node.node.name in _HELPER_GLOBALS:
            return [
                _finding(
                    "template.helper-global",
                    Severity.CRITICAL,
                    where,
                    node,
                    node.node.name,
                    f"{ssti}: {node.node.name}.{node.attr}",
                )
            ]
    elif isinstance(node, nodes.Getitem):
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            key = node.arg.value
            if key.startswith("_") or key in _ESCAPE_ATTRS:
                return [
                    _finding(
                        "template.private-attribute",
                        Severity.CRITICAL,
                        where,
                        node,
                        key,
                        f"{ssti}: item {key!r}",
                    )
                ]
    elif isinstance(node, nodes.Filter):
        if node.name == "attr":
            return [
                _finding(
                    "template.attr-filter", Severity.CRITICAL, where, node, "attr", f"{ssti}: the attr filter"
                )
            ]
        for kw in node.kwargs:
            if (
                kw.key == "attribute"
                and isinstance(kw.value, nodes.Const)
                and str(kw.value.value).startswith("_")
            ):
                return [
                    _finding(
                        "template.private-attribute",
                        Severity.CRITICAL,
                        where,
                        node,
                        str(kw.value.value),
                        ssti,
                    )
                ]
        if node.name in _ATTRIBUTE_FILTERS and any(
            isinstance(a, nodes.Const) and a.value == "attr" for a in node.args
        ):
            return [
                _finding(
                    "template.attr-filter",
                    Severity.CRITICAL,
                    where,
                    node,
                    node.name,
                    f"{ssti}: {node.name}('attr')",
                )
            ]
    elif isinstance(node, nodes.Const) and isinstance(node.value, str):
        if _DUNDER.search(node.value) or node.value.startswith("__") or node.value.endswith("__"):
            return [
                _finding(
                    "template.dunder-string",
                    Severity.CRITICAL,
                    where,
                    node,
                    node.value[:60],
                    f"{ssti}: a special name in a string",
                )
            ]
    elif isinstance(node, nodes.Name) and node.name in _HELPER_GLOBALS and node.ctx == "load":
        return [
            _finding(
                "template.helper-global",
                Severity.WARNING,
                where,
                node,
                node.name,
                "uses a Jinja helper global",
            )
        ]
    elif isinstance(node, nodes.Import | nodes.FromImport | nodes.Include | nodes.Extends):
        return [
            _finding(
                "template.loads-template",
                Severity.WARNING,
                where,
                node,
                type(node).__name__,
                "loads another template",
            )
        ]
    return []
