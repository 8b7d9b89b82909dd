"""Formats that hold only tensors and metadata: safetensors, NumPy .npy and GGUF. Their risk is a header
that lies (memory-safety bugs in readers), an embedded pickle (object arrays) or a chat template."""

from __future__ import annotations

import ast
import json
import struct
from typing import TYPE_CHECKING

from weightyard.scan import jinja_check, pickles
from weightyard.scan.buffer import Data, unpack_at
from weightyard.scan.dtypes import Holds, descr_holds
from weightyard.scan.limits import FormatError, LimitExceeded
from weightyard.scan.report import Finding, Severity

if TYPE_CHECKING:
    from weightyard.scan.engine import Context

_TEXT_PROBE = 8192


def looks_like_text(data: Data) -> bool:
    probe = bytes(data[:_TEXT_PROBE])
    if b"\x00" in probe:
        return False
    try:
        probe.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the probe's end is still text.
        return exc.start >= len(probe) - 4
    return True


# -- safetensors ----------------------------------------------------------------------------------------
_ST_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64, "F4": 4,
    "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


def looks_like_safetensors(data: Data) -> bool:
    if len(data) < 10 or data[8:9] != b"{":
        return False
    prefix = bytes(data[:8])
    # Real headers are far below 4 GiB; a huge length only counts when it is not printable text.
    return prefix[4:] == b"\x00\x00\x00\x00" or any(b < 0x20 or b > 0x7E for b in prefix)


class DuplicateKeyError(ValueError):
    pass


def _strict_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DuplicateKeyError("duplicate key")
    return dict(pairs)


def _reject_constant(name: str) -> object:
    raise ValueError(f"non-standard JSON constant {name}")


def strict_json(text: str | bytes) -> object:
    return json.loads(text, object_pairs_hook=_strict_object, parse_constant=_reject_constant)


def scan_safetensors(ctx: Context, data: Data, name: str, where: str) -> list[Finding]:
    (header_len,) = unpack_at("<Q", data, 0)

    def bad(rule: str, subject: str, message: str, severity: Severity = Severity.CRITICAL) -> Finding:
        return Finding(rule, severity, f"{where}:header", subject, message)

    if header_len > ctx.budget.limits.header_bytes or 8 + header_len > len(data):
        # A header that starts like real JSON (`{"`) with an impossible length is an attack on readers; any
        # other data with a `{` at offset 8 (one binary file in 256) is just not a safetensors file.
        if data[9:10] != b'"':
            return [
                bad("safetensors.bad-header", str(header_len), "not a safetensors header", Severity.ERROR)
            ]
        return [
            bad(
                "safetensors.header-length",
                str(header_len),
                "header length exceeds the file or the cap; trusting readers allocate or read out of bounds",
            )
        ]
    try:
        header = strict_json(bytes(data[8 : 8 + header_len]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return [bad("safetensors.bad-header", "", f"header is not strict JSON: {exc}", Severity.ERROR)]
    if not isinstance(header, dict):
        return [bad("safetensors.bad-header", "", "header is not a JSON object", Severity.ERROR)]
    findings: list[Finding] = []
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        findings.append(
            bad(
                "safetensors.bad-metadata",
                "__metadata__",
                "metadata must map strings to strings",
                Severity.ERROR,
            )
        )
    body = len(data) - 8 - header_len
    spans: list[tuple[int, int, str]] = []
    for tensor, info in header.items():
        problem = _tensor_problem(info, body)
        if problem is not None:
            findings.append(bad("safetensors.bad-tensor", tensor, problem))
            continue
        assert isinstance(info, dict)
        begin, end = info["data_offsets"]
        spans.append((begin, end, tensor))
    spans.sort()
    cursor = 0
    for begin, end, tensor in spans:
        if begin < cursor:
            findings.append(bad("safetensors.overlap", tensor, "tensor byte ranges overlap"))
        elif begin > cursor:
            findings.append(
                bad("safetensors.gap", tensor, "unreferenced bytes between tensors", Severity.WARNING)
            )
        cursor = max(cursor, end)
    if cursor < body and not any(f.rule == "safetensors.bad-tensor" for f in findings):
        findings.append(
            bad(
                "safetensors.trailing-data",
                f"{body - cursor} bytes",
                "bytes after the last tensor are not part of any tensor and can carry a payload",
                Severity.WARNING,
            )
        )
    return findings


def _tensor_problem(info: object, body: int) -> str | None:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        return "tensor entry must have exactly dtype, shape and data_offsets"
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in _ST_BITS:
        return f"unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        return "shape must be a list of non-negative integers"
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        return "data_offsets must be two integers"
    begin, end = offsets
    if not 0 <= begin <= end <= body:
        return f"data_offsets {offsets} fall outside the {body}-byte data section"
    numel = 1
    for d in shape:
        numel *= d
    bits = numel * _ST_BITS[dtype]
    if bits % 8 or bits // 8 != end - begin:
        return f"shape {shape} of {dtype} needs {bits / 8:g} bytes but the range holds {end - begin}"
    return None


# -- numpy ------------------------------------------------------------------------------------------------
def _literal(node: ast.expr) -> object:
    """The value of a literal expression tree as numpy's ast.literal_eval reads it (tuples stay tuples, a
    signed number is a number), built by hand so nothing is ever evaluated; anything else is refused."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dict unpacking in header")
        pairs = zip(node.keys, node.values, strict=True)
        return {_hashable(_literal(k)): _literal(v) for k, v in pairs if k is not None}
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float | complex)
        and not isinstance(node.operand.value, bool)
    ):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f"unexpected {type(node).__name__} in header")


def _hashable(key: object) -> object:
    if isinstance(key, list | dict):
        raise ValueError("unhashable key in header")
    return key


def _itemsize(descr: object) -> int | None:
    if isinstance(descr, str):
        body = descr.lstrip("<>|=")
        kind, digits = body[:1], body[1:].split("[")[0]
        if not digits.isdigit():
            return None
        return int(digits) * (4 if kind == "U" else 1)
    return None


def scan_npy(ctx: Context, data: Data, name: str, where: str) -> list[Finding]:
    if len(data) < 12:
        return [Finding("npy.bad-header", Severity.ERROR, where, "", "file ends inside the .npy header")]
    major = data[6]
    if major == 1:
        (hlen,), start = unpack_at("<H", data, 8), 10
    elif major in (2, 3):
        (hlen,), start = unpack_at("<I", data, 8), 12
    else:
        return [Finding("npy.bad-header", Severity.ERROR, where, str(major), "unknown .npy version")]
    if hlen > 1 << 20 or start + hlen > len(data):
        return [Finding("npy.bad-header", Severity.ERROR, where, str(hlen), "header length exceeds the file")]
    text = bytes(data[start : start + hlen]).decode("utf-8" if major == 3 else "latin-1")
    try:
        header = _literal(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, RecursionError) as exc:
        return [Finding("npy.bad-header", Severity.ERROR, where, "", f"header is not a literal dict: {exc}")]
    if not isinstance(header, dict) or set(header) != {"descr", "shape", "fortran_order"}:
        return [
            Finding(
                "npy.bad-header",
                Severity.ERROR,
                where,
                "",
                "header must hold exactly descr, shape, fortran_order",
            )
        ]
    body = start + hlen
    descr, shape = header["descr"], header["shape"]
    holds = descr_holds(descr)
    if holds is not Holds.PLAIN:
        # numpy.load(allow_pickle=True) unpickles the body of any dtype that holds objects: scan it as a
        # pickle. A description numpy never writes may hold objects: read it both ways.
        findings = pickles.scan_pickles(ctx, data, f"{where}:array", body)[1]
        if holds is Holds.OBJECTS:
            note = Finding(
                "npy.object-array", Severity.INFO, where, str(descr), "object array stored as a pickle"
            )
            return [note, *findings]
        unusual = Finding(
            "npy.unusual-dtype",
            Severity.WARNING,
            where,
            str(descr)[:200],
            "a dtype spelling numpy never writes: it may hold objects, so its body was scanned as a pickle",
        )
        return [unusual, *(f for f in findings if f.severity is Severity.CRITICAL)]
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        return [Finding("npy.bad-header", Severity.ERROR, where, str(shape), "shape is not a tuple of sizes")]
    itemsize = _itemsize(descr)
    if itemsize is None:
        return []
    numel = 1
    for d in shape:
        numel *= d
    expected, actual = numel * itemsize, len(data) - body
    if actual < expected:
        return [
            Finding(
                "npy.truncated",
                Severity.ERROR,
                where,
                f"{actual}/{expected} bytes",
                "array data is truncated",
            )
        ]
    if actual > expected:
        return [
            Finding(
                "npy.trailing-data",
                Severity.WARNING,
                where,
                f"{actual - expected} bytes",
                "bytes after the array data",
            )
        ]
    return []


# -- GGUF -------------------------------------------------------------------------------------------------
_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGML_MAX_DIMS = 4
# ggml type id -> (elements per block, bytes per block)
_GGML_TYPES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip
# Readers index a per-type table with this id; ids in the gaps are types ggml has since removed.
_GGML_TYPE_COUNT = 40
_DEFAULT_ALIGNMENT = 32
# Counts this large only serve to overflow size arithmetic in C readers (CVE-2024-25664..25668); smaller
# counts that do not fit are a truncated file.
_OVERFLOW_COUNT = 1 << 31


class _GGUFError(FormatError):
    def __init__(self, rule: str, offset: int, message: str, severity: Severity = Severity.CRITICAL) -> None:
        super().__init__(message)
        self.rule, self.offset, self.message, self.severity = rule, offset, message, severity


class _GGUFReader:
    def __init__(self, ctx: Context, data: Data, version: int) -> None:
        self.ctx, self.data, self.pos = ctx, data, 8
        self.count_fmt = "<I" if version == 1 else "<Q"

    def unpack(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise _GGUFError(
                "gguf.truncated", self.pos, "header runs past the end of the file", Severity.ERROR
            )
        value: int | float | bool = unpack_at(fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def count(self, what: str, min_item_size: int) -> int:
        at = self.pos
        n = int(self.unpack(self.count_fmt))
        if n * min_item_size > len(self.data) - self.pos:
            if n >= _OVERFLOW_COUNT:
                raise _GGUFError("gguf.count-overflow", at, f"{what} count {n} overflows reader arithmetic")
            raise _GGUFError("gguf.truncated", at, f"{what} count {n} runs past the end", Severity.ERROR)
        return n

    def string(self) -> str:
        n = self.count("string length", 1)
        raw = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", "replace")

    def value(self, vtype: int, depth: int = 0) -> object:
        if vtype in _GGUF_SCALARS:
            return self.unpack(_GGUF_SCALARS[vtype])
        if vtype == _GGUF_STRING:
            return self.string()
        if vtype == _GGUF_ARRAY and depth < 2:
            etype = int(self.unpack("<I"))
            size = struct.calcsize(_GGUF_SCALARS[etype]) if etype in _GGUF_SCALARS else 4
            n = self.count("array length", size)
            if etype in _GGUF_SCALARS:
                self.pos += n * size
                return n
            items: list[object] = []
            for _ in range(n):
                if len(items) % 65536 == 0:
                    self.ctx.budget.check_time()
                items.append(self.value(etype, depth + 1))
            return items
        raise _GGUFError("gguf.bad-type", self.pos, f"unknown metadata value type {vtype}", Severity.ERROR)


def scan_gguf(ctx: Context, data: Data, name: str, where: str) -> list[Finding]:
    version = unpack_at("<I", data, 4)[0] if len(data) >= 8 else 0
    if version not in (1, 2, 3):
        return [Finding("gguf.bad-version", Severity.ERROR, where, str(version), "unknown GGUF version")]
    reader = _GGUFReader(ctx, data, version)
    findings: list[Finding] = []
    try:
        n_tensors = reader.count("tensor", 24)
        n_kv = reader.count("metadata", 12)
        meta: dict[str, object] = {}
        for _ in range(n_kv):
            at = reader.pos
            key = reader.string()
            value = reader.value(int(reader.unpack("<I")))
            # Readers disagree on which duplicate wins, so every value is checked, not the last one kept.
            if key in meta:
                findings.append(
                    Finding(
                        "gguf.duplicate-key",
                        Severity.WARNING,
                        f"{where}@{at}",
                        key,
                        "metadata key appears twice",
                    )
                )
            if key.startswith("tokenizer.chat_template") and isinstance(value, str):
                findings += jinja_check.check_template(value, f"{where}:{key}")
            meta[key] = value
        alignment = meta.get("general.alignment", _DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise _GGUFError("gguf.bad-alignment", reader.pos, f"alignment {alignment} is not a power of two")
        findings += _gguf_tensors(reader, n_tensors, alignment, where)
    except _GGUFError as exc:
        findings.append(Finding(exc.rule, exc.severity, f"{where}@{exc.offset}", "", exc.message))
    except LimitExceeded:
        raise
    return findings


def _gguf_tensors(reader: _GGUFReader, n_tensors: int, alignment: int, where: str) -> list[Finding]:
    findings: list[Finding] = []
    tensors: list[tuple[str, int, int | None]] = []
    for _ in range(n_tensors):
        tname = reader.string()
        at = reader.pos
        n_dims = int(reader.unpack("<I"))
        if n_dims > _GGML_MAX_DIMS:
            raise _GGUFError("gguf.bad-dims", at, f"tensor {tname!r} has {n_dims} dimensions (max 4)")
        numel = 1
        for _ in range(n_dims):
            numel *= int(reader.unpack("<Q"))
        if numel >= 1 << 62:
            raise _GGUFError("gguf.dims-overflow", at, f"tensor {tname!r} element count overflows")
        ttype = int(reader.unpack("<I"))
        if ttype >= _GGML_TYPE_COUNT:
            raise _GGUFError(
                "gguf.bad-tensor-type", at, f"tensor {tname!r} has type {ttype}, past every ggml type"
            )
        offset = int(reader.unpack("<Q"))
        if offset % alignment:
            raise _GGUFError("gguf.misaligned", at, f"tensor {tname!r} offset is not aligned", Severity.ERROR)
        block = _GGML_TYPES.get(ttype)
        size = None if block is None else -(-numel // block[0]) * block[1]
        tensors.append((tname, offset, size))
    data_start = -(-reader.pos // alignment) * alignment
    body = len(reader.data) - data_start
    for tname, offset, size in tensors:
        if offset + (size or 0) > body:
            findings.append(
                Finding(
                    "gguf.tensor-out-of-bounds",
                    Severity.CRITICAL,
                    where,
                    tname,
                    "tensor data lies past the end of the file",
                )
            )
    return findings


# -- msgpack (Flax) ---------------------------------------------------------------------------------------
def _msgpack_lengths() -> dict[int, tuple[int, int]]:
    """First byte -> (bytes of its length field, fixed payload bytes) for the scalar non-fix types."""
    table: dict[int, tuple[int, int]] = {0xC0: (0, 0), 0xC2: (0, 0), 0xC3: (0, 0)}
    for code, size in ((0xC4, 1), (0xC5, 2), (0xC6, 4), (0xD9, 1), (0xDA, 2), (0xDB, 4)):
        table[code] = (size, 0)  # bin and str: length-prefixed bytes
    for code, size in ((0xC7, 1), (0xC8, 2), (0xC9, 4)):
        table[code] = (size, 1)  # ext: length, then a type byte and the data
    for code, size in ((0xCA, 4), (0xCB, 8), (0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
        table[code] = (0, size)
    for code, size in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        table[code] = (0, size)
    for code, size in ((0xD4, 1), (0xD5, 2), (0xD6, 4), (0xD7, 8), (0xD8, 16)):
        table[code] = (0, 1 + size)  # fixext: type byte and data
    return table


_MSGPACK = _msgpack_lengths()
_MSGPACK_CONTAINERS = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}


def looks_like_msgpack(data: Data) -> bool:
    """Flax checkpoints are one msgpack map; it is recognised only if the whole file parses as one."""
    return (
        bool(data) and (0x80 <= data[0] <= 0x8F or data[0] in (0xDE, 0xDF)) and msgpack_end(data) == len(data)
    )


def msgpack_end(data: Data, limit: int = 10_000_000) -> int | None:
    """Offset just past the one msgpack value at the start of `data`, or None if it is malformed."""
    pos, pending, seen = 0, 1, 0
    while pending:
        if pos >= len(data) or seen > limit:
            return None
        pending -= 1
        seen += 1
        code = data[pos]
        pos += 1
        if code <= 0x7F or code >= 0xE0:
            continue
        if code <= 0x8F:
            pending += 2 * (code & 0x0F)
        elif code <= 0x9F:
            pending += code & 0x0F
        elif code <= 0xBF:
            pos += code & 0x1F
        elif code in _MSGPACK_CONTAINERS:
            size, per_item = _MSGPACK_CONTAINERS[code]
            pending += per_item * int.from_bytes(data[pos : pos + size], "big")
            pos += size
        elif code in _MSGPACK:
            size, fixed = _MSGPACK[code]
            length = int.from_bytes(data[pos : pos + size], "big") if size else 0
            pos += size + fixed + length
        else:
            return None
    return pos if pos <= len(data) else None
