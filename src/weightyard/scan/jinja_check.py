"""Chat templates are Jinja2 programs. They are parsed (never rendered) and their syntax tree is checked
for the constructs server-side template injection needs: private and special attributes, object graph
walks, helper globals that expose Python internals, and file-loading tags."""

from __future__ import annotations

import functools
import re
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
    findings: list[Finding] = []
    for node in tree.find_all(nodes.Node):
        findings += _check_node(node, where)
    return findings


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
