"""Zip and tar containers, including the ones that are model formats (PyTorch, Keras v3, NumPy .npz):
member paths and links, compression bombs, parser differentials, then every member by its content."""

from __future__ import annotations

import io
import mmap
import posixpath
import stat
import struct
import zlib
from collections import Counter
from typing import TYPE_CHECKING

from weightyard.scan.buffer import Data, RangeView
from weightyard.scan.limits import LimitExceeded, OutputLimitExceeded
from weightyard.scan.names import unsafe_relative_path
from weightyard.scan.pickle_scan import looks_like_pickle, walk
from weightyard.scan.report import Finding, Severity
from weightyard.scan.zipread import (
    Member,
    ZipFormatError,
    ZipListing,
    flag_finding,
    has_central_directory,
    list_members,
    member_problem,
    read_member,
)

if TYPE_CHECKING:
    import tarfile

    from weightyard.scan.engine import Context

_ZIP_FORMATS = frozenset({"zip", "npz", "pytorch-zip", "keras", "torchserve-mar"})
_RECORD_PEEK = 1 << 20
# The pickles whose storages torch.load and torch.jit.load read eagerly. Others (traced_inputs.pkl) may
# legitimately point at empty records that are never read.
_VALIDATED_PICKLES = frozenset({"data.pkl", "constants.pkl"})


def is_zip_format(fmt: str) -> bool:
    return fmt in _ZIP_FORMATS


def bomb_finding(where: str, produced: int, consumed: int) -> Finding:
    return Finding(
        "archive.compression-bomb",
        Severity.CRITICAL,
        where,
        f"{produced}+ bytes from {consumed}",
        "decompresses far beyond the size limit at an extreme ratio",
    )


def _zip_kind(names: list[str]) -> str:
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "pytorch-zip"
    if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names):
        return "keras"
    if "MAR-INF/MANIFEST.json" in names:
        return "torchserve-mar"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def scan_zip(ctx: Context, data: Data, name: str, where: str) -> tuple[str, list[Finding]]:
    try:
        listing = list_members(data, where, ctx.budget)
    except (ZipFormatError, struct.error) as exc:
        return "zip", [Finding("zip.corrupt", Severity.ERROR, where, "", f"unreadable zip: {exc}")]
    names = [m.name for m in listing.members if not m.hidden]
    kind = _zip_kind(names)
    findings = list(listing.findings)
    for dup, count in Counter(names).items():
        if count > 1:
            findings.append(
                Finding(
                    "zip.duplicate-name",
                    Severity.CRITICAL,
                    f"{where}/{dup}",
                    dup,
                    f"{count} members share this name; libtorch reads the first, Python's zipfile the last",
                )
            )
    records = _torch_records(listing.members) if kind == "pytorch-zip" else None
    for member in listing.members:
        findings += _scan_member(ctx, data, member, kind, where, records)
    return kind, findings


def _torch_records(members: list[Member]) -> dict[str, dict[str, int]]:
    """Record sizes by folder: `archive/constants.pkl` keeps its storages in `archive/constants/`."""
    records: dict[str, dict[str, int]] = {}
    for m in members:
        if not m.hidden and not m.is_dir and m.name.count("/") >= 1:
            folder, key = m.name.rsplit("/", 1)
            records.setdefault(folder, {})[key] = m.size
    return records


def _scan_member(
    ctx: Context, data: Data, m: Member, kind: str, where: str, records: dict[str, dict[str, int]] | None
) -> list[Finding]:
    loc = f"{where}/{m.name}"
    findings: list[Finding] = []
    if unsafe_relative_path(m.name.rstrip("/")):
        findings.append(
            Finding(
                "archive.path-traversal",
                Severity.CRITICAL,
                loc,
                m.name,
                "member path leaves the extraction folder",
            )
        )
    if stat.S_ISLNK(m.external_attr >> 16):
        findings.append(Finding("archive.link", Severity.WARNING, loc, m.name, "member is a symbolic link"))
        return findings
    if m.is_dir:
        return findings
    flagged = flag_finding(m, where)
    if flagged is not None:
        findings.append(flagged)
    if kind == "pytorch-zip" and m.method != 0 and not _is_torchscript_code(m.name):
        findings.append(
            Finding(
                "torch.compressed-member",
                Severity.WARNING,
                loc,
                m.name,
                "torch writes pickles and storage records uncompressed; this archive was rewritten",
            )
        )
    problem = member_problem(m)
    if problem is not None:
        return [*findings, Finding("archive.unreadable-member", Severity.ERROR, loc, m.name, problem)]
    limits = ctx.budget.limits
    if m.size > limits.member_bytes and m.size > m.compressed_size * limits.compression_ratio:
        return [*findings, bomb_finding(loc, m.size, m.compressed_size)]
    if kind == "pytorch-zip" and not m.name.endswith(".pkl"):
        return findings + _scan_torch_record(ctx, data, m, loc)
    try:
        content = read_member(data, m, ctx.budget)
    except (ZipFormatError, zlib.error, OSError, EOFError) as exc:
        return [*findings, Finding("archive.unreadable-member", Severity.ERROR, loc, m.name, str(exc))]
    except OutputLimitExceeded as exc:
        if limits.member_bytes > exc.consumed * limits.compression_ratio:
            return [*findings, bomb_finding(loc, limits.member_bytes, exc.consumed)]
        raise
    if m.method != 0 and len(content) != m.size:
        findings.append(
            Finding(
                "zip.size-mismatch",
                Severity.WARNING,
                loc,
                f"{len(content)} != {m.size}",
                "declared size is wrong",
            )
        )
    outer_records = ctx.torch_records
    ctx.torch_records = None
    if records is not None and posixpath.basename(m.name) in _VALIDATED_PICKLES:
        ctx.torch_records = records.get(m.name.removesuffix(".pkl"), {})
    try:
        return findings + ctx.scan_nested(content, posixpath.basename(m.name), loc)[1]
    finally:
        ctx.torch_records = outer_records


def _is_torchscript_code(name: str) -> bool:
    """TorchScript sources and their debug tables, which torch.jit.save does compress."""
    return "/code/" in name or name.endswith((".py", ".debug_pkl"))


def _scan_torch_record(ctx: Context, data: Data, m: Member, loc: str) -> list[Finding]:
    """Tensor records are raw bytes that torch never unpickles; only a literal dangerous import in one
    that looks like a pickle is worth reporting. Other files (TorchScript code, version) are inert."""
    if _is_torchscript_code(m.name):
        return [
            Finding(
                "torch.torchscript", Severity.INFO, loc, m.name, "TorchScript code, compiled by torch.jit"
            )
        ]
    try:
        if not looks_like_pickle(read_member(data, m, ctx.budget, limit=2, peek=True)):
            return []
        head = read_member(data, m, ctx.budget, limit=_RECORD_PEEK, peek=True)
    except (ZipFormatError, zlib.error) as exc:
        return [Finding("archive.unreadable-member", Severity.ERROR, loc, m.name, str(exc))]
    result = walk(head, loc, ctx.budget, lambda content, where: [], tolerant_imports=True)
    return result.findings


def scan_polyglot_zip(ctx: Context, data: Data, name: str, where: str) -> list[Finding]:
    """A file that is another format at its start and a zip at its end is read differently by loaders."""
    if len(data) < 22 or not has_central_directory(data):
        return []
    try:
        listing: ZipListing = list_members(data, where, ctx.budget)
    except (ZipFormatError, LimitExceeded, struct.error):
        return []
    if not listing.members:
        return []
    kind, findings = scan_zip(ctx, data, name, where)
    polyglot = Finding(
        "format.polyglot",
        Severity.WARNING,
        where,
        kind,
        "file is also a zip archive read from its end; loaders disagree on what it is",
    )
    return [polyglot, *findings]


class _DataFile(io.RawIOBase):
    """A seekable read-only file over an mmap or a range view, so tarfile reads members in place."""

    def __init__(self, data: mmap.mmap | RangeView) -> None:
        self._data = data
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._data)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._data[self._pos : self._pos + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def is_tar_header(head: bytes) -> bool:
    """A tar header block, with or without the POSIX `ustar` magic: its checksum is right, the test
    Python's tarfile (and so torch's legacy loader) applies."""
    block = head[:512]
    if len(block) < 512 or not any(block):
        return False
    field = block[148:156]
    if field[0] in (0o200, 0o377):
        stored = int.from_bytes(field[1:], "big", signed=field[0] == 0o377)
    else:
        text = field.split(b"\0", 1)[0].strip()
        if not text or any(c not in b"01234567" for c in text):
            return False
        stored = int(text, 8)
    rest = block[:148] + block[156:]
    unsigned = 256 + sum(rest)
    signed = 256 + sum(b - 256 if b > 127 else b for b in rest)
    return stored in (unsigned, signed)


def _tar_kind(names: set[str]) -> str:
    return "pytorch-legacy-tar" if {"sys_info", "pickle", "storages"} <= names else "tar"


def scan_tar(ctx: Context, data: Data, name: str, where: str) -> tuple[str, list[Finding]]:
    # tarfile pulls in shutil and more; a command scanning one safetensors file should not load it.
    import tarfile

    fileobj: io.RawIOBase | io.BytesIO = io.BytesIO(data) if isinstance(data, bytes) else _DataFile(data)
    findings: list[Finding] = []
    try:
        with tarfile.open(fileobj=fileobj, mode="r:") as tar:
            members = []
            for info in tar:
                members.append(info)
                if len(members) > ctx.budget.limits.archive_members:
                    raise LimitExceeded("limit.archive-members", "archive has too many members")
            kind = _tar_kind({m.name for m in members})
            links: list[str] = []
            for info in members:
                findings += _scan_tar_member(ctx, tar, info, links, where)
    except tarfile.TarError as exc:
        return "tar", [*findings, Finding("tar.corrupt", Severity.ERROR, where, "", f"unreadable tar: {exc}")]
    return kind, findings


def _scan_tar_member(
    ctx: Context, tar: tarfile.TarFile, info: tarfile.TarInfo, links: list[str], where: str
) -> list[Finding]:
    ctx.budget.check_time()
    loc = f"{where}/{info.name}"
    path = info.name.rstrip("/")
    findings: list[Finding] = []
    if unsafe_relative_path(path):
        findings.append(
            Finding(
                "archive.path-traversal",
                Severity.CRITICAL,
                loc,
                info.name,
                "member path leaves the extraction folder",
            )
        )
    if any(path.startswith(link + "/") for link in links):
        findings.append(
            Finding(
                "archive.write-through-link",
                Severity.CRITICAL,
                loc,
                info.name,
                "member is written through an earlier link",
            )
        )
    if info.issym() or info.islnk():
        links.append(path)
        target = info.linkname
        resolved = (
            posixpath.normpath(posixpath.join(posixpath.dirname(path), target)) if info.issym() else target
        )
        if unsafe_relative_path(target if target.startswith("/") else resolved):
            findings.append(
                Finding(
                    "archive.link-escape", Severity.CRITICAL, loc, target, "link points outside the archive"
                )
            )
        else:
            findings.append(Finding("archive.link", Severity.WARNING, loc, target, "member is a link"))
        return findings
    if info.ischr() or info.isblk() or info.isfifo():
        return [
            *findings,
            Finding("archive.special-file", Severity.WARNING, loc, info.name, "device or FIFO member"),
        ]
    if not info.isreg():
        return findings
    if info.size > ctx.budget.limits.member_bytes:
        return [
            *findings,
            Finding(
                "limit.member-size", Severity.ERROR, loc, str(info.size), "member exceeds the size limit"
            ),
        ]
    extracted = tar.extractfile(info)
    content = extracted.read() if extracted is not None else b""
    return findings + ctx.scan_nested(content, posixpath.basename(path), loc)[1]
