"""A model is a folder: scan every file, then resolve what files say about each other (remote-code
configs, shard indexes, ONNX external data) and report it on the file carrying the reference."""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from weightyard.scan.engine import TF_CHECKPOINT_INDEX, scan_file
from weightyard.scan.limits import DEFAULT_LIMITS, Limits
from weightyard.scan.report import Finding, Report, Severity

# Escapes through symlinks are judged by the caller, which can see the file system.
SymlinkJudge = Callable[[str], Finding | None]


def check_references(
    reports: Mapping[str, Report],
    paths: Collection[str],
    judge_link: SymlinkJudge | None = None,
) -> dict[str, list[Finding]]:
    """Cross-file findings, keyed by the path of the file holding each reference.

    `reports` maps repository paths (POSIX, relative) to their reports; `paths` is every file of the
    same tree. Works from stored reports alone, so a hub can run it per commit without reading blobs.

        >>> extra = check_references({"config.json": report}, ["config.json", "modeling_x.py"])
    """
    present = set(paths)
    out: dict[str, list[Finding]] = {}
    for path, report in reports.items():
        folder = posixpath.dirname(path)
        for ref in report.references:
            target = posixpath.normpath(posixpath.join(folder, ref.target))
            finding = _judge(ref.kind, ref.target, ref.location, target in present)
            link = judge_link(target) if judge_link is not None and target in present else None
            link = replace(link, location=ref.location) if link is not None else None
            for f in (finding, link):
                if f is not None:
                    out.setdefault(path, []).append(f)
            referenced = reports.get(target)
            if ref.kind == "external_data" and referenced is not None and _only_unknown_format(referenced):
                out.setdefault(target, []).append(_raw_data(target, path))
    for path, report in reports.items():
        shard = _TF_SHARD.match(path)
        if shard is None or not _only_unknown_format(report):
            continue
        index_path = f"{shard.group(1)}.index"
        index = reports.get(index_path)
        if index is not None and index.format == TF_CHECKPOINT_INDEX:
            out.setdefault(path, []).append(_raw_data(path, index_path))
    return out


# TensorFlow checkpoints keep tensors as raw bytes in shards named after their index file.
_TF_SHARD = re.compile(r"^(.+)\.data-\d{5}-of-\d{5}$")


def _raw_data(target: str, referrer: str) -> Finding:
    return Finding(
        _RAW_DATA,
        Severity.INFO,
        target,
        referrer,
        "raw tensor bytes that the referencing model reads by offset, never parses as code",
    )


_RAW_DATA = "context.raw-data"
_UNKNOWN_FORMAT = "format.unknown"


def _only_unknown_format(report: Report) -> bool:
    return bool(report.findings) and all(f.rule == _UNKNOWN_FORMAT for f in report.findings)


def apply_context(reports: Mapping[str, Report], extra: Mapping[str, list[Finding]]) -> dict[str, Report]:
    """Reports with the cross-file findings of `check_references` merged in. A file another one names as
    its raw external data is no longer `unscannable` for lacking a format: it has the referrer's."""
    merged: dict[str, Report] = {}
    for path, report in reports.items():
        added = extra.get(path, [])
        kept = report.findings
        if any(f.rule == _RAW_DATA for f in added):
            kept = tuple(f for f in kept if f.rule != _UNKNOWN_FORMAT)
        merged[path] = Report(
            name=report.name,
            format="raw-data" if kept != report.findings else report.format,
            findings=kept + tuple(added),
            references=report.references,
            imports=report.imports,
            size=report.size,
            scanner_version=report.scanner_version,
        )
    return merged


def _judge(kind: str, target: str, location: str, exists: bool) -> Finding | None:
    if kind == "code":
        if exists:
            return Finding(
                "context.remote-code-file",
                Severity.WARNING,
                location,
                target,
                "auto_map runs this Python file of the repository under trust_remote_code",
            )
        return Finding(
            "context.missing-code",
            Severity.WARNING,
            location,
            target,
            "auto_map names a code file the folder lacks",
        )
    if not exists:
        what = "shard" if kind == "shard" else "external data file"
        return Finding(
            "context.missing-file", Severity.INFO, location, target, f"{what} is not in the folder"
        )
    return None


@dataclass(frozen=True)
class _Entry:
    rel: str
    path: Path


def _is_hf_blob(real: Path) -> bool:
    return real.parent.name == "blobs"


def _walk(root: Path, recursive: bool) -> Iterator[_Entry]:
    if not root.is_dir():
        yield _Entry(root.name, root)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if not recursive:
            dirnames.clear()
        for filename in sorted(filenames):
            full = Path(dirpath) / filename
            if full.is_file():
                yield _Entry(full.relative_to(root).as_posix(), full)


def _link_judge(root: Path) -> SymlinkJudge:
    real_root = root.resolve()

    def judge(rel: str) -> Finding | None:
        # The reference itself stays inside the folder (escaping names are caught per file), so only a
        # symbolic link on the way can lead out; a cache's links into its `blobs/` are expected.
        real = (root / rel).resolve()
        if real_root in real.parents or _is_hf_blob(real):
            if real.is_file() and real.stat().st_nlink > 1 and not _is_hf_blob(real):
                # A hard link can be any file of the disk; onnx refuses them since 1.21 (CVE-2026-34447).
                return Finding(
                    "context.hard-link",
                    Severity.WARNING,
                    rel,
                    str(real),
                    "referenced file is a hard link, which may be a file from outside the folder",
                )
            return None
        return Finding(
            "context.link-escape",
            Severity.CRITICAL,
            rel,
            str(real),
            "referenced file is a link that resolves outside the model folder",
        )

    return judge


def scan_path(
    path: str | os.PathLike[str],
    *,
    recursive: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Report]:
    """Scan a file or a folder (a model repository or a Hugging Face cache) and return reports keyed by
    POSIX path relative to `path`, with cross-file findings attached. Symbolic links to files are
    followed; a cache's `blobs/` files reached through `snapshots/` links are reported once, under the
    snapshot name.

        >>> reports = scan_path("~/.cache/huggingface/hub/models--org--name")
    """
    root = Path(path).expanduser()
    entries = list(_walk(root, recursive))
    link_targets = {e.path.resolve() for e in entries if e.path.is_symlink()}
    cache: dict[tuple[Path, str], Report] = {}
    reports: dict[str, Report] = {}
    for entry in entries:
        real = entry.path.resolve()
        if not entry.path.is_symlink() and real in link_targets and _is_hf_blob(real):
            continue
        key = (real, entry.path.name)
        if key not in cache:
            cache[key] = scan_file(entry.path, entry.path.name, limits=limits)
        report = cache[key]
        reports[entry.rel] = Report(
            name=entry.rel,
            format=report.format,
            findings=report.findings,
            references=report.references,
            imports=report.imports,
            size=report.size,
        )
    if root.is_dir():
        reports = apply_context(reports, check_references(reports, list(reports), _link_judge(root)))
    return reports
