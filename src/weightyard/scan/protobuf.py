"""Protocol-buffer model formats read straight from the wire format: ONNX (custom operator domains,
external-data paths) and TensorFlow SavedModel (graph and function-library ops that touch files or run
Python). No protobuf library and no schema compiler are involved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from weightyard.scan.buffer import Data
from weightyard.scan.keras_scan import check_keras_config
from weightyard.scan.limits import FormatError
from weightyard.scan.names import KERAS_METADATA, SAVED_MODEL, TF_FINGERPRINT, unsafe_relative_path
from weightyard.scan.report import Finding, Reference, Severity

if TYPE_CHECKING:
    from weightyard.scan.engine import Context

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
# ModelProto's highest field number today is 26 (configuration); leave room for a few more.
_ONNX_MAX_MODEL_FIELD = 32
_MAX_DEPTH = 32
Span = tuple[int, int]
Field = tuple[int, int, int | Span]


class ProtoError(FormatError):
    pass


def _varint(data: Data, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ProtoError("bad varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: Data, start: int, end: int) -> Iterator[Field]:
    """Fields of the message in data[start:end]; length-delimited values are (start, end) spans."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        value: int | Span
        if wire == VARINT:
            value, pos = _varint(data, pos, end)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > end:
                raise ProtoError("truncated fixed field")
            value, pos = int.from_bytes(bytes(data[pos : pos + size]), "little"), pos + size
        elif wire == LEN:
            n, pos = _varint(data, pos, end)
            if pos + n > end:
                raise ProtoError("length runs past the message")
            value, pos = (pos, pos + n), pos + n
        else:
            raise ProtoError(f"unsupported wire type {wire}")
        yield number, wire, value


def _spans(data: Data, span: Span, number: int) -> Iterator[Span]:
    for n, wire, value in fields(data, *span):
        if n == number and wire == LEN and isinstance(value, tuple):
            yield value


def _string(data: Data, span: Span, number: int) -> str | None:
    for s in _spans(data, span, number):
        return bytes(data[s[0] : s[1]]).decode("utf-8", "replace")
    return None


def _top_fields(data: Data) -> dict[int, int] | None:
    """Field number -> wire type of a well-formed top-level message, or None."""
    seen: dict[int, int] = {}
    try:
        for number, wire, _ in fields(data, 0, len(data)):
            seen[number] = wire
    except ProtoError:
        return None
    return seen


def detect(data: Data, name: str) -> str | None:
    if not data or data[0] not in (0x08, 0x0A, 0x12):
        return None
    top = _top_fields(data)
    if not top:
        return None
    if name == KERAS_METADATA and set(top) <= {1}:
        return "keras-metadata"
    if top.get(7) == LEN and top.get(1) == VARINT and max(top) <= _ONNX_MAX_MODEL_FIELD:
        return "onnx"
    if set(top) <= {1, 2} and top.get(2) == LEN and (top.get(1) == VARINT or name == SAVED_MODEL):
        return "tf-savedmodel"
    whole = (0, len(data))
    if set(top) <= {1, 2, 3, 4} and top.get(1) == LEN and _first_is_node(data, whole):
        return "tf-graphdef"
    if top.get(2) == LEN and set(top) <= set(range(1, 10)):
        graph = next(_spans(data, whole, 2), None)
        if graph is not None and _first_is_node(data, graph):
            return "tf-metagraph"
    if top.get(1) == LEN and set(top) <= {1, 2, 3, 4, 5} and _first_is_piece(data):
        return "sentencepiece"
    if name == TF_FINGERPRINT:
        return "tf-fingerprint"
    return None


def _subfields(data: Data, span: Span) -> dict[int, int]:
    try:
        return {number: wire for number, wire, _ in fields(data, *span)}
    except ProtoError:
        return {}


def _first_is_node(data: Data, parent: Span) -> bool:
    """A GraphDef's first entry is a NodeDef: name (1) and op (2) strings, never a float."""
    node = next(_spans(data, parent, 1), None)
    if node is None:
        return False
    sub = _subfields(data, node)
    op = _string(data, node, 2) if sub.get(2) == LEN else None
    return sub.get(1) == LEN and op is not None and op.isidentifier()


def _first_is_piece(data: Data) -> bool:
    """SentencePiece's first entry is a piece: the text (1) and a float score (2)."""
    piece = next(_spans(data, (0, len(data)), 1), None)
    return piece is not None and _subfields(data, piece).get(2) in (FIXED32, None)


# -- Keras metadata of a SavedModel --------------------------------------------------------------------------
_METADATA_FIELD = 4


def scan_keras_metadata(ctx: Context, data: Data, name: str, where: str) -> list[Finding]:
    """keras_metadata.pb holds one JSON document per saved layer; Lambda layers hide there."""
    findings: list[Finding] = []
    try:
        for node in _spans(data, (0, len(data)), 1):
            text = _string(data, node, _METADATA_FIELD)
            if text is None or not text.lstrip().startswith("{"):
                continue
            try:
                doc = json.loads(text)
            except (ValueError, RecursionError):
                findings.append(
                    Finding(
                        "config.undecodable",
                        Severity.ERROR,
                        where,
                        "keras_metadata",
                        "a layer's metadata does not decode, so what Keras would load is unknown",
                    )
                )
                continue
            findings += check_keras_config(doc, where)
    except ProtoError as exc:
        findings.append(
            Finding("format.corrupt", Severity.ERROR, where, "", f"malformed Keras metadata: {exc}")
        )
    return findings


# -- TensorFlow -------------------------------------------------------------------------------------------
_TF_DANGEROUS_OPS = frozenset(
    {"ReadFile", "WriteFile", "MatchingFiles", "PyFunc", "PyFuncStateless", "EagerPyFunc", "SaveDataset",
     "ExperimentalSaveDataset", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord", "ImmutableConst",
     "LoadAndRemapMatrix", "DebugIdentityV3", "WriteRawProtoSummary", "CreateSummaryFileWriter"}
)  # fmt: skip
_TF_SUSPICIOUS_OPS = frozenset(
    {"TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset", "CSVDataset",
     "CSVDatasetV2", "ExperimentalCSVDataset", "WholeFileReader", "WholeFileReaderV2", "TextLineReader",
     "TextLineReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "Save", "SaveSlices",
     "Restore", "RestoreSlice", "PrintV2", "WriteSummary", "WriteScalarSummary", "WriteTextSummary",
     "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary",
     "InitializeTableFromTextFile", "InitializeTableFromTextFileV2"}
)  # fmt: skip


def _node_ops(data: Data, span: Span) -> Iterator[tuple[str, str]]:
    name = _string(data, span, 1) or ""
    op = _string(data, span, 2) or ""
    yield name, op


def _graph_ops(data: Data, graph: Span) -> Iterator[tuple[str, str]]:
    for node in _spans(data, graph, 1):
        yield from _node_ops(data, node)
    for library in _spans(data, graph, 2):
        for function in _spans(data, library, 1):
            fname = next((_string(data, sig, 1) for sig in _spans(data, function, 1)), None) or "?"
            for node in _spans(data, function, 3):
                for name, op in _node_ops(data, node):
                    yield f"{fname}/{name}", op


def scan_saved_model(ctx: Context, data: Data, name: str, where: str) -> list[Finding]:
    graphs = [g for meta in _spans(data, (0, len(data)), 2) for g in _spans(data, meta, 2)]
    return _scan_graphs(ctx, data, graphs, where)


def scan_meta_graph(ctx: Context, data: Data, name: str, where: str) -> list[Finding]:
    """A TF1 checkpoint's `.meta` file: one MetaGraphDef, its graph in field 2."""
    return _scan_graphs(ctx, data, list(_spans(data, (0, len(data)), 2)), where)


def scan_graph_def(ctx: Context, data: Data, name: str, where: str) -> list[Finding]:
    """A frozen TF1 graph: a bare GraphDef."""
    return _scan_graphs(ctx, data, [(0, len(data))], where)


def _scan_graphs(ctx: Context, data: Data, graphs: list[Span], where: str) -> list[Finding]:
    findings: list[Finding] = []
    try:
        ops = [node_op for graph in graphs for node_op in _graph_ops(data, graph)]
    except ProtoError as exc:
        return [Finding("format.corrupt", Severity.ERROR, where, "", f"malformed TensorFlow graph: {exc}")]
    for count, (node, op) in enumerate(ops):
        if count % 4096 == 0:
            ctx.budget.check_time()
        if op in _TF_DANGEROUS_OPS:
            message = "graph op reads or writes files or runs Python when a signature is called"
            findings.append(Finding("tf.dangerous-op", Severity.CRITICAL, f"{where}:{node}", op, message))
        elif op in _TF_SUSPICIOUS_OPS:
            message = "graph op opens files named by its inputs"
            findings.append(Finding("tf.file-op", Severity.WARNING, f"{where}:{node}", op, message))
    return findings


# -- ONNX ---------------------------------------------------------------------------------------------------
_ONNX_DOMAINS = frozenset(
    {
        "",
        "ai.onnx",
        "ai.onnx.ml",
        "ai.onnx.training",
        "ai.onnx.preview.training",
        "com.microsoft",
        "com.microsoft.nchwc",
    }
)
_EXTERNAL = 1


class _OnnxWalk:
    def __init__(self, ctx: Context, data: Data, where: str, local_functions: set[tuple[str, str]]) -> None:
        self.ctx, self.data, self.where = ctx, data, where
        self.local_functions = local_functions
        self.findings: list[Finding] = []
        self.domains_reported: set[str] = set()

    def graph(self, span: Span, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise ProtoError("subgraphs nested too deeply")
        self.ctx.budget.check_time()
        for node in _spans(self.data, span, 1):
            self.node(node, depth)
        for tensor in _spans(self.data, span, 5):
            self.tensor(tensor)
        for sparse in _spans(self.data, span, 15):
            for number in (1, 2):
                for tensor in _spans(self.data, sparse, number):
                    self.tensor(tensor)

    def node(self, span: Span, depth: int) -> None:
        op = _string(self.data, span, 4) or ""
        domain = _string(self.data, span, 7) or ""
        known = domain in _ONNX_DOMAINS or (domain, op) in self.local_functions
        if not known and domain not in self.domains_reported:
            self.domains_reported.add(domain)
            self.findings.append(
                Finding(
                    "onnx.custom-domain",
                    Severity.WARNING,
                    f"{self.where}:node {op}",
                    domain,
                    "operator from a custom domain needs a native custom-op library to run",
                )
            )
        for attribute in _spans(self.data, span, 5):
            for number in (6, 11):
                for sub in _spans(self.data, attribute, number):
                    self.graph(sub, depth + 1)
            for number in (5, 10):
                for tensor in _spans(self.data, attribute, number):
                    self.tensor(tensor)

    def tensor(self, span: Span) -> None:
        name = _string(self.data, span, 8) or "?"
        entries: dict[str, str] = {}
        for entry in _spans(self.data, span, 13):
            key = _string(self.data, entry, 1)
            if key is not None:
                entries[key] = _string(self.data, entry, 2) or ""
        external = any(n == 14 and v == _EXTERNAL for n, _, v in fields(self.data, *span))
        if not external and not entries:
            return
        location = entries.get("location")
        loc = f"{self.where}:initializer {name}"
        if location is None:
            self.findings.append(
                Finding("onnx.external-data", Severity.ERROR, loc, name, "external data without a location")
            )
        elif unsafe_relative_path(location):
            self.findings.append(
                Finding(
                    "onnx.external-data-escape",
                    Severity.CRITICAL,
                    loc,
                    location,
                    "external data path leaves the model folder",
                )
            )
        else:
            self.ctx.references.append(Reference("external_data", location, loc))


def scan_onnx(ctx: Context, data: Data, name: str, where: str) -> list[Finding]:
    whole = (0, len(data))
    try:
        local_functions = set()
        for function in _spans(data, whole, 25):
            local_functions.add((_string(data, function, 10) or "", _string(data, function, 1) or ""))
        walk = _OnnxWalk(ctx, data, where, local_functions)
        for graph in _spans(data, whole, 7):
            walk.graph(graph, 0)
        for function in _spans(data, whole, 25):
            for node in _spans(data, function, 7):
                walk.node(node, 1)
    except ProtoError as exc:
        return [Finding("format.corrupt", Severity.ERROR, where, "", f"malformed ONNX protobuf: {exc}")]
    return walk.findings
