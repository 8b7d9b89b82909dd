"""Routes bytes to the right parser by content, recursing into containers with a shared budget."""

from __future__ import annotations

import bz2
import lzma
import mmap
import os
import posixpath
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from weightyard.scan import archives, formats, hf_config, keras_scan, pickles, protobuf
from weightyard.scan.buffer import Data, RangeView, ReadAt, SourceReadError, unpack_at
from weightyard.scan.limits import (
    DEFAULT_LIMITS,
    Budget,
    FormatError,
    LimitExceeded,
    Limits,
    OutputLimitExceeded,
)
from weightyard.scan.names import strip_compression
from weightyard.scan.report import Finding, PickleImport, Reference, Report, Severity
from weightyard.scan.zipread import decompress_stream, has_central_directory

if TYPE_CHECKING:
    from weightyard.scan.zipread import Decompressor

Handler = Callable[["Context", Data, str, str], list[Finding]]


@dataclass
class Context:
    """State shared by every parser of one top-level scan."""

    budget: Budget
    depth: int = 0
    references: list[Reference] = field(default_factory=list)
    imports: list[PickleImport] = field(default_factory=list)
    # Byte sizes of the storage records of the PyTorch archive being scanned, keyed by storage key.
    torch_records: dict[str, int] | None = None

    def scan_nested(self, data: Data, name: str, where: str) -> tuple[str, list[Finding]]:
        """Scan content found inside another file (archive member, decompressed stream, nested pickle)."""
        if self.depth >= self.budget.limits.nesting_depth:
            raise LimitExceeded("limit.nesting-depth", "containers are nested too deeply")
        self.depth += 1
        try:
            return dispatch(self, data, name, where)
        finally:
            self.depth -= 1


_HDF5 = b"\x89HDF\r\n\x1a\n"
_IMAGE_MAGICS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
_UNSUPPORTED_MAGICS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (0, b"Rar!\x1a\x07", "rar archive"),
    (0, b"\x04\x22\x4d\x18", "lz4 frame"),
    (0, b"(\xb5/\xfd", "zstandard frame"),
    (4, b"TFL3", "TensorFlow Lite flatbuffer"),
    (0, b"lmgg", "legacy GGML"),
    (0, b"tjgg", "legacy GGJT"),
    (0, b"fmgg", "legacy GGMF"),
)


# A bzip2 stream's first block (or its end marker, when empty) starts with one of these.
_BZIP2_BLOCK_MAGICS = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")


def _compressed_kind(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[4:10] in _BZIP2_BLOCK_MAGICS:
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x5d\x00\x00"):
        return "lzma"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0 and _inflates(head):
        return "zlib"
    if head.startswith(b"ZF0x"):
        return "joblib-zlib"
    return None


def _inflates(head: bytes) -> bool:
    """Text can start like a zlib header ("x^"); a real stream also decodes."""
    try:
        zlib.decompressobj().decompress(head, 16)
    except zlib.error:
        return False
    return True


def _decompressor(kind: str) -> Decompressor:
    if kind == "gzip":
        return zlib.decompressobj(31)
    if kind in ("zlib", "joblib-zlib"):
        return zlib.decompressobj(15)
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor(lzma.FORMAT_AUTO)


def _scan_compressed(ctx: Context, data: Data, name: str, where: str, kind: str) -> tuple[str, list[Finding]]:
    start = 0
    if kind == "joblib-zlib":
        # joblib < 0.10 wrote "ZF0x" plus a hex length before the zlib stream.
        start = data.find(b"\x78", 4, 64)
        start = start if start >= 0 else len(data)
    cap = ctx.budget.limits.member_bytes
    ratio = ctx.budget.limits.compression_ratio
    if kind == "gzip" and len(data) >= 18:
        # The trailer states the size (mod 4 GiB). Whether honest or a lie, a bomb-sized claim is a bomb.
        (claimed,) = unpack_at("<I", data, len(data) - 4)
        if claimed > cap and claimed > len(data) * ratio:
            return kind, [archives.bomb_finding(where, claimed, len(data))]
    extra: list[Finding] = []
    try:
        content = _decompress_streams(ctx, kind, data, start, where, extra)
    except OutputLimitExceeded as exc:
        if cap > exc.consumed * ratio:
            return kind, [archives.bomb_finding(where, cap, exc.consumed)]
        raise
    except (zlib.error, OSError, EOFError, lzma.LZMAError) as exc:
        return kind, [Finding("format.corrupt", Severity.ERROR, where, kind, f"cannot decompress: {exc}")]
    inner = strip_compression(name)
    fmt, findings = ctx.scan_nested(content, inner, f"{where}!{kind}")
    return f"{fmt}+{kind}", extra + findings


def _decompress_streams(
    ctx: Context, kind: str, raw: Data, start: int, where: str, findings: list[Finding]
) -> bytes:
    """Every stream of the file from `start` on, concatenated, as gzip.open, bz2.open, lzma.open and joblib
    read it: a payload can sit in the second stream of a file whose first stream is benign. Locations in
    findings count from `start`."""
    cap = ctx.budget.limits.member_bytes
    out = bytearray()
    pos = start
    while True:
        decomp = _decompressor(kind)
        content, pos = decompress_stream(decomp, raw, ctx.budget, cap - len(out), start=pos)
        out += content
        if not decomp.eof or pos >= len(raw):
            return bytes(out)
        if kind == "gzip":
            # gzip readers skip zero padding between and after members.
            while pos < len(raw) and raw[pos] == 0:
                pos += 1
            if pos >= len(raw):
                return bytes(out)
        rest = bytes(raw[pos : pos + 300])
        if kind == "joblib-zlib" or _compressed_kind(rest) != kind:
            findings.append(
                Finding(
                    "compressed.trailing-data",
                    Severity.WARNING,
                    f"{where}@{pos - start}",
                    f"{len(raw) - pos} bytes",
                    "bytes after the compressed stream, which other readers may treat differently",
                )
            )
            return bytes(out)


TF_CHECKPOINT_INDEX = "tf-checkpoint-index"
# LevelDB's table magic ends every TensorFlow checkpoint `.index` (a sorted table of tensor metadata).
_TABLE_MAGIC = b"\x57\xfb\x80\x8b\x24\x75\x47\xdb"


def detect(data: Data, name: str) -> str:
    """Name the format of `data` from its content; `name` only breaks ties between content-equal formats."""
    head = bytes(data[:512])
    if not head:
        return "empty"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(_HDF5):
        return "hdf5"
    if formats.looks_like_safetensors(data):
        return "safetensors"
    for offset, magic, label in _UNSUPPORTED_MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return f"unsupported:{label}"
    if head.startswith(_IMAGE_MAGICS):
        return "image"
    if (len(head) > 262 and head[257:262] == b"ustar") or archives.is_tar_header(head):
        # torch.load tries a tar before a pickle, and Python's tarfile reads pre-POSIX headers too.
        return "tar"
    if pickles.looks_like_pickle(head):
        return "pickle"
    kind = _compressed_kind(head)
    if kind is not None:
        return f"compressed:{kind}"
    if has_central_directory(data):
        return "zip"
    if len(data) >= 48 and data[len(data) - 8 :] == _TABLE_MAGIC:
        return TF_CHECKPOINT_INDEX
    if formats.looks_like_msgpack(data):
        return "msgpack"
    proto = protobuf.detect(data, name)
    if proto is not None:
        return proto
    if not formats.looks_like_text(data):
        # Binary content that merely starts with "[" or "{" (one random file in 128) is no JSON: decoding
        # and parsing it as text would cost memory in proportion to its size and prove nothing.
        return "binary"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "json" if stripped[:1] in (b"{", b"[") else "text"


def dispatch(ctx: Context, data: Data, name: str, where: str) -> tuple[str, list[Finding]]:
    fmt = "unknown"
    try:
        ctx.budget.check_time()
        fmt = detect(data, name)
        return _route(ctx, data, name, where, fmt)
    except LimitExceeded as exc:
        return fmt, [Finding(exc.rule, Severity.ERROR, where, "", exc.message)]
    except RecursionError:
        return fmt, [Finding("limit.recursion", Severity.ERROR, where, "", "structure nested too deeply")]
    except FormatError as exc:
        return fmt, [Finding("format.corrupt", Severity.ERROR, where, fmt, f"cannot parse: {exc}")]
    except SourceReadError:
        raise
    except Exception as exc:
        # A parser bug reached by hostile input ends as `unscannable`, never as a crash or as `safe`; the
        # rule is its own so that tests (the fuzz tests above all) fail on it instead of passing.
        return fmt, [internal_error(where, exc)]


INTERNAL_ERROR = "scanner.internal-error"


def internal_error(where: str, exc: Exception) -> Finding:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {posixpath.basename(frame.filename)}:{frame.lineno}" if frame is not None else ""
    return Finding(INTERNAL_ERROR, Severity.ERROR, where, type(exc).__name__, f"scanner failed{at}: {exc}")


def _route(ctx: Context, data: Data, name: str, where: str, fmt: str) -> tuple[str, list[Finding]]:
    findings: list[Finding]
    if fmt.startswith("unsupported:"):
        label = fmt.split(":", 1)[1]
        findings = [
            Finding(
                "format.unsupported", Severity.ERROR, where, label, f"{label} content cannot be inspected"
            )
        ]
    elif fmt.startswith("compressed:"):
        fmt, findings = _scan_compressed(ctx, data, name, where, fmt.split(":", 1)[1])
    elif fmt == "zip":
        fmt, findings = archives.scan_zip(ctx, data, name, where)
    elif fmt == "tar":
        fmt, findings = archives.scan_tar(ctx, data, name, where)
    elif fmt == "pickle":
        fmt, findings = pickles.scan_pickle_file(ctx, data, name, where)
    elif fmt in ("json", "text", "binary"):
        fmt, findings = _scan_loose(ctx, data, name, where, fmt)
    else:
        findings = _HANDLERS[fmt](ctx, data, name, where)
    return fmt, findings + _other_readings(ctx, data, name, where, fmt)


_PICKLE_FORMATS = frozenset({"pickle", "joblib", "pytorch-legacy"})


def _other_readings(ctx: Context, data: Data, name: str, where: str, fmt: str) -> list[Finding]:
    """A file that another loader reads as another format (a zip read from its end, a tar header at its
    start, a pickle at its start) is scanned that way too, and is at least suspicious."""
    findings = [] if archives.is_zip_format(fmt) else archives.scan_polyglot_zip(ctx, data, name, where)
    head = bytes(data[:512])
    if fmt not in ("tar", "pytorch-legacy-tar") and archives.is_tar_header(head):
        other, found = archives.scan_tar(ctx, data, name, where)
        findings += [_polyglot(where, other), *found]
    if fmt not in _PICKLE_FORMATS and pickles.looks_like_pickle(head):
        # Only a pickle that pickle.load would run counts: one that loads, or a payload before a break.
        reading = pickles.scan_pickle_reading(ctx, data, where)
        if reading is not None:
            findings += [_polyglot(where, "pickle"), *reading]
    return findings


def _polyglot(where: str, other: str) -> Finding:
    return Finding(
        "format.polyglot",
        Severity.WARNING,
        where,
        other,
        f"file is also a valid {other}; loaders disagree on what it is, so both readings were scanned",
    )


def _scan_loose(ctx: Context, data: Data, name: str, where: str, fmt: str) -> tuple[str, list[Finding]]:
    """Formats without a magic number: protocol 0/1 pickles, JSON configs, code and plain text."""
    as_pickle = pickles.scan_headerless_pickle(ctx, data, where)
    if as_pickle is not None:
        return "pickle", as_pickle
    if fmt == "json":
        return hf_config.scan_json(ctx, data, name, where)
    if fmt == "text":
        return hf_config.scan_text(ctx, data, name, where)
    return "unknown", [
        Finding(
            "format.unknown", Severity.ERROR, where, name, "content matches no format the scanner understands"
        )
    ]


_HANDLERS: dict[str, Handler] = {
    "gguf": formats.scan_gguf,
    "npy": formats.scan_npy,
    "safetensors": formats.scan_safetensors,
    "hdf5": keras_scan.scan_hdf5,
    "image": lambda ctx, data, name, where: [],
    "empty": lambda ctx, data, name, where: [],
    "onnx": protobuf.scan_onnx,
    "tf-savedmodel": protobuf.scan_saved_model,
    "keras-metadata": protobuf.scan_keras_metadata,
    "tf-metagraph": protobuf.scan_meta_graph,
    "tf-graphdef": protobuf.scan_graph_def,
    "tf-fingerprint": lambda ctx, data, name, where: [],
    TF_CHECKPOINT_INDEX: lambda ctx, data, name, where: [],
    "msgpack": lambda ctx, data, name, where: [],
    "sentencepiece": lambda ctx, data, name, where: [],
}


def _open(source: str | os.PathLike[str] | BinaryIO | bytes, budget: Budget) -> tuple[Data, int]:
    if isinstance(source, bytes):
        return source, len(source)
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as fh:
            return _map(fh, budget)
    return _map(source, budget)


def _map(fh: BinaryIO, budget: Budget) -> tuple[Data, int]:
    """A file is mapped; a seekable stream that is no file (content rebuilt from chunked storage) is read
    in place through a `RangeView`, which fetches only the ranges parsers touch, so nothing is spooled to
    disk and memory stays bounded whatever the size; a stream that cannot seek is read up to the member
    limit."""
    try:
        fileno = fh.fileno()
        size = os.fstat(fileno).st_size
    except (OSError, AttributeError, ValueError):
        if _seekable(fh):
            size = fh.seek(0, os.SEEK_END)
            view = RangeView(_reader(fh), size, before_read=budget.check_time)
            # Content no larger than what the view would cache anyway is read whole: parsers index bytes
            # several times faster than a view, and memory stays within the same bound.
            return (view[:] if size <= view.cache_bytes else view), size
        limit = budget.limits.member_bytes
        content = fh.read(limit + 1)
        if len(content) > limit:
            raise LimitExceeded(
                "limit.stream-size", "a non-file stream larger than the member limit"
            ) from None
        return content, len(content)
    if size == 0:
        return b"", 0
    return mmap.mmap(fileno, 0, access=mmap.ACCESS_READ), size


def _seekable(fh: BinaryIO) -> bool:
    try:
        return bool(fh.seekable())
    except (OSError, AttributeError, ValueError):
        return False


def _reader(fh: BinaryIO) -> ReadAt:
    def read_at(offset: int, length: int) -> bytes:
        fh.seek(offset)
        pieces: list[bytes] = []
        while length > 0:
            piece = fh.read(length)
            if not piece:
                break
            pieces.append(piece)
            length -= len(piece)
        return b"".join(pieces)

    return read_at


def scan_file(
    source: str | os.PathLike[str] | BinaryIO | bytes,
    name: str | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Report:
    """Scan one file statically and return its `Report`.

    `source` is a path, an open binary file (a blob in the hub's store: a file is mapped, another seekable
    stream is read in place by range) or bytes; `name` is the file's name in its repository, used for the
    location of findings and to recognise `config.json`, `*.py` and other files whose meaning depends on
    the name.

        >>> report = scan_file("pytorch_model.bin")
        >>> report.verdict
        <Verdict.SAFE: 'safe'>
    """
    if name is None:
        name = Path(source).name if isinstance(source, str | os.PathLike) else "<stream>"
    ctx = Context(Budget(limits))
    try:
        data, size = _open(source, ctx.budget)
    except SourceReadError as exc:
        raise (exc.__cause__ or exc) from None
    except (OSError, LimitExceeded) as exc:
        finding = Finding("format.unreadable", Severity.ERROR, name, "", f"cannot read the file: {exc}")
        return Report(name=name, format="unknown", findings=(finding,))
    try:
        fmt, findings = dispatch(ctx, data, posixpath.basename(name), name)
    except SourceReadError as exc:
        # The storage's own error (damaged or missing content), as reading the file whole would raise it.
        raise (exc.__cause__ or exc) from None
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    return Report(
        name=name,
        format=fmt,
        findings=tuple(findings),
        references=tuple(ctx.references),
        imports=tuple(dict.fromkeys(ctx.imports)),
        size=size,
    )
