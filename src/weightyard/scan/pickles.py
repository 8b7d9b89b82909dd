"""Pickle files as loaders see them: stacked pickles, legacy PyTorch checkpoints, joblib dumps, and
pickles without a protocol header hiding in files that look like text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from weightyard.scan.buffer import Data
from weightyard.scan.pickle_scan import Const, TensorView, WalkResult, walk
from weightyard.scan.pickle_scan import looks_like_pickle as looks_like_pickle
from weightyard.scan.report import Finding, PickleImport, Severity

if TYPE_CHECKING:
    from weightyard.scan.engine import Context

# torch.save's legacy (pre-1.6) format starts with a pickle of this number.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PICKLES = 5


_ELEMENT_SIZES = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8, "QInt8Storage": 1, "QUInt8Storage": 1,
    "QInt32Storage": 4, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "UntypedStorage": 1,
}  # fmt: skip


def _walk(ctx: Context, data: Data, where: str, start: int, *, tolerant: bool = False) -> WalkResult:
    def scan(content: Data, nested_where: str) -> list[Finding]:
        return ctx.scan_nested(content, "nested.pkl", nested_where)[1]

    result = walk(data, where, ctx.budget, scan, start=start, tolerant_imports=tolerant)
    if not tolerant:
        ctx.references.extend(result.references)
        if ctx.torch_records is not None:
            result.findings.extend(_check_views(result.tensor_views, ctx.torch_records))
    return result


def _check_views(views: list[TensorView], records: dict[str, int]) -> list[Finding]:
    """Tensors must lie inside their storage, and storages inside their records: a mismatch is how
    memory corruption in the unpickler is reached (CVE-2026-24747)."""
    findings: list[Finding] = []
    for view in views:
        size = records.get(view.key)
        if size is None:
            findings.append(
                Finding(
                    "torch.missing-record",
                    Severity.ERROR,
                    view.location,
                    view.key,
                    "storage record is missing",
                )
            )
            continue
        element = _ELEMENT_SIZES.get(view.storage_type.rsplit(".", 1)[-1], 1)
        if view.numel < 0 or size < view.numel * element:
            findings.append(
                Finding(
                    "torch.storage-size-mismatch",
                    Severity.CRITICAL,
                    view.location,
                    f"{view.key}: {view.numel} x {element} > {size} bytes",
                    "storage declares more elements than its record holds",
                )
            )
        if any(d < 0 for d in view.sizes) or any(s < 0 for s in view.strides) or view.offset < 0:
            extent = -1
        else:
            extent = (
                view.offset + sum((d - 1) * s for d, s in zip(view.sizes, view.strides, strict=False)) + 1
            )
            extent = extent if all(view.sizes) else view.offset
        if extent < 0 or extent > view.numel or len(view.sizes) != len(view.strides):
            findings.append(
                Finding(
                    "torch.view-out-of-bounds",
                    Severity.CRITICAL,
                    view.location,
                    f"{view.key}: offset {view.offset} sizes {list(view.sizes)} strides {list(view.strides)}",
                    "tensor view reaches outside its storage",
                )
            )
    return findings


def _error_finding(result: WalkResult, where: str) -> Finding:
    assert result.error is not None
    return Finding(
        "pickle.malformed",
        Severity.ERROR,
        f"{where}@{result.error.offset}",
        "",
        f"pickle stream is broken ({result.error.message}); what ran before the break is reported",
    )


def _format_of(first: WalkResult, imports: list[PickleImport]) -> str:
    if isinstance(first.root, Const) and first.root.value == TORCH_LEGACY_MAGIC:
        return "pytorch-legacy"
    if any(i.module.startswith("joblib.") for i in imports):
        return "joblib"
    return "pickle"


def scan_pickles(ctx: Context, data: Data, where: str, start: int = 0) -> tuple[str, list[Finding]]:
    """Scan every stacked pickle from `start` on, as a loop of `pickle.load` calls would run them."""
    first = _walk(ctx, data, where, start)
    findings = list(first.findings)
    imports = list(first.imports)
    if first.error is not None:
        findings.append(_error_finding(first, where))
        ctx.imports.extend(imports)
        return _format_of(first, imports), findings
    fmt = _format_of(first, imports)
    pos = first.end
    count = 1
    legacy = fmt == "pytorch-legacy"
    if not legacy and pos is not None and pos < len(data):
        # pickle.load stops at STOP; a loop of loads, or a reader of another format, goes on.
        findings.append(_trailing(where, pos, len(data)))
    while pos is not None and pos < len(data):
        if legacy and count >= _LEGACY_PICKLES:
            break  # the rest is raw storage bytes, read by torch with plain file reads
        result = _walk(ctx, data, where, pos)
        if result.error is not None:
            # Trailing bytes that are no pickle: only imports spelled out literally can matter there.
            tolerant = _walk(ctx, data, where, pos, tolerant=True)
            findings.extend(tolerant.findings)
            imports.extend(i for i in tolerant.imports if i.safety == "dangerous")
            if legacy:
                findings.append(_trailing(where, pos, len(data)))
            break
        findings.extend(result.findings)
        imports.extend(result.imports)
        pos = result.end
        count += 1
    ctx.imports.extend(imports)
    return _format_of(first, imports), findings


def _trailing(where: str, pos: int, end: int) -> Finding:
    return Finding(
        "pickle.trailing-data",
        Severity.WARNING,
        f"{where}@{pos}",
        f"{end - pos} bytes",
        "bytes after the pickle's STOP, which other loaders or formats may read",
    )


def scan_pickle_file(ctx: Context, data: Data, name: str, where: str) -> tuple[str, list[Finding]]:
    return scan_pickles(ctx, data, where)


def scan_pickle_reading(ctx: Context, data: Data, where: str) -> list[Finding] | None:
    """The pickle reading of a file that is first something else: None unless `pickle.load` would run
    something there (the stream loads, or a critical import comes before it breaks)."""
    first = _walk(ctx, data, where, 0, tolerant=True)
    if first.error is not None and not first.findings:
        return None
    return scan_pickles(ctx, data, where)[1]


def scan_headerless_pickle(ctx: Context, data: Data, where: str) -> list[Finding] | None:
    """Protocol 0/1 pickles have no header. Treat the bytes as a pickle when they unpickle to the end or
    when they spell out a dangerous import before breaking; otherwise they are something else."""
    result = _walk(ctx, data, where, 0)
    if result.error is None and result.root is not None and result.opcodes >= 2:
        return scan_pickles(ctx, data, where)[1]
    tolerant = _walk(ctx, data, where, 0, tolerant=True)
    if tolerant.findings:
        ctx.imports.extend(i for i in tolerant.imports if i.safety == "dangerous")
        return [*tolerant.findings, _error_finding(result, where)] if result.error else tolerant.findings
    return None
