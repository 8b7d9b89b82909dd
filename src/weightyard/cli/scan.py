"""`weightyard scan PATH... [--json] [--recursive]`: static security scan of local model files.

Exit codes: 0 every file is safe, 1 a file is unsafe, suspicious or unscannable, 2 usage or input error.
Folders are model folders (or a Hugging Face cache): symbolic links to files are followed and findings
that need several files (remote-code configs, shard indexes, ONNX external data) are included.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from weightyard.cli.app import app

if TYPE_CHECKING:  # the scanners load only when `scan` runs, not at every start of the CLI
    from weightyard.scan import Report

EXIT_FINDINGS = 1
EXIT_USAGE = 2
# by verdict (`Verdict` values)
_STYLE = {"safe": "green", "suspicious": "yellow", "unsafe": "red", "unscannable": "magenta"}


def _entries(paths: list[Path], recursive: bool) -> list[tuple[str, Report]]:
    from weightyard.scan import scan_path

    entries: list[tuple[str, Report]] = []
    for given in paths:
        reports = scan_path(given, recursive=recursive)
        for rel, report in reports.items():
            shown = str(given) if not given.is_dir() else os.path.join(str(given), rel)
            entries.append((shown, report))
    return entries


def _summary(entries: list[tuple[str, Report]]) -> dict[str, Any]:
    from weightyard.scan import SCANNER_VERSION, Verdict, worst_verdict

    counts = {v.value: 0 for v in Verdict}
    for _, report in entries:
        counts[report.verdict.value] += 1
    verdict = worst_verdict(r.verdict for _, r in entries)
    return {"files": len(entries), **counts, "verdict": verdict.value, "scanner_version": SCANNER_VERSION}


def _print_text(entries: list[tuple[str, Report]], summary: dict[str, Any]) -> None:
    from weightyard.scan import Severity, Verdict

    for path, report in entries:
        verdict = typer.style(f"{report.verdict.value:<11}", fg=_STYLE[report.verdict.value], bold=True)
        typer.echo(f"{verdict} {path}  [{report.format}]")
        for f in report.findings:
            if f.severity is not Severity.INFO:
                typer.echo(f"    {f.severity.value:<8} {f.rule}  {f.subject}  at {f.location}: {f.message}")
    counts = ", ".join(f"{summary[v.value]} {v.value}" for v in Verdict)
    typer.echo(f"{summary['files']} files: {counts}")


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to scan.", show_default=False)],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with every file.")
    ] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
) -> None:
    """Scan model files statically: nothing in them is loaded, imported or run."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        typer.echo(f"error: no such file or folder: {', '.join(missing)}", err=True)
        raise typer.Exit(EXIT_USAGE)
    entries = _entries(paths, recursive)
    summary = _summary(entries)
    if json_output:
        files = [
            {
                "path": path,
                "verdict": report.verdict.value,
                "format": report.format,
                "findings": [f.to_dict() for f in report.findings],
            }
            for path, report in entries
        ]
        typer.echo(json.dumps({"files": files, "summary": summary}, indent=2))
    else:
        _print_text(entries, summary)
    if summary["verdict"] != "safe":
        raise typer.Exit(EXIT_FINDINGS)
