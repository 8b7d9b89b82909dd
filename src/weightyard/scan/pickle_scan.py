"""A static pickle VM: walks the opcodes, tracks the stack and memo exactly, resolves every import, and
judges each call by an allow-list. Nothing from the stream is ever executed or imported."""

from __future__ import annotations

import _compat_pickle
import codecs
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from weightyard.scan.buffer import Data, window
from weightyard.scan.dtypes import Holds, combine, descr_holds
from weightyard.scan.limits import Budget, FormatError, LimitExceeded
from weightyard.scan.names import unsafe_relative_path
from weightyard.scan.policy import (
    ALLOCATING_CLASSES,
    BENIGN_NESTING_LOADER,
    CALLING_HELPERS,
    ELEMENT_ALLOCATORS,
    MATERIALIZERS,
    NESTING_LOADERS,
    SIDE_FILE_WRAPPERS,
    SIZE_ARGUMENTS,
    Kind,
    classify,
)
from weightyard.scan.report import Finding, PickleImport, Reference, Severity

PROTO = 0x80
_JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_GETATTR = "builtins.getattr"
_CODECS_ENCODE = "_codecs.encode"
_SAFETY = {Kind.SAFE: "innocuous", Kind.UNKNOWN: "suspicious", Kind.DANGEROUS: "dangerous"}
_RECONSTRUCTOR = "copyreg._reconstructor"
_NEWOBJ_HELPER = "copyreg.__newobj__"
_REBUILD_TENSOR = frozenset(
    {"torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3"}
)
# Protocol 2 spells bytes as _codecs.encode(text, "latin1"); folding it lets nested payloads be scanned.
_FOLDABLE_CODECS = frozenset({"latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"})
_MAX_DECODED_LONG = 4096
# Container contents matter only for call arguments and object state; beyond this many items a list or
# dict is still walked but no longer remembered, which bounds memory.
_TRACKED_ITEMS = 4096


class _Value:
    """Base of everything the emulated stack holds."""


@dataclass(eq=False)
class Const(_Value):
    value: object


@dataclass(frozen=True)
class Span:
    """A string or bytes argument longer than `Limits.constant_bytes`, left where it lies in the data."""

    start: int
    length: int
    text: bool

    def __len__(self) -> int:
        return self.length


@dataclass(eq=False)
class Seq(_Value):
    items: list[_Value]
    is_tuple: bool = False


@dataclass(eq=False)
class Mapping(_Value):
    pairs: list[tuple[_Value, _Value]]


@dataclass(eq=False)
class Ref(_Value):
    """An imported global, not yet called."""

    module: str
    qualname: str
    offset: int
    kind: Kind
    # Set on `builtins.getattr` once a call site has judged it; an import never called is judged at the end.
    called: bool = False
    # Set once `builtins.getattr` was found stored as a value (reported once).
    escaped: bool = False

    @property
    def full(self) -> str:
        return f"{self.module}.{self.qualname}"


@dataclass(eq=False)
class Obj(_Value):
    """The result of calling or instantiating `callee`."""

    callee: _Value
    args: _Value
    state: _Value | None = None
    # The element count of a sequence whose size is known without building it (`range(2**31)`).
    length: int | None = None


@dataclass(eq=False)
class Unknown(_Value):
    pass


NestedScanner = Callable[[Data, str], list[Finding]]


class PickleError(FormatError):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


@dataclass(frozen=True)
class TensorView:
    """A tensor that torch's rebuild functions would lay over a storage record of a checkpoint."""

    key: str
    storage_type: str
    numel: int
    offset: int
    sizes: tuple[int, ...]
    strides: tuple[int, ...]
    location: str


@dataclass
class WalkResult:
    findings: list[Finding] = field(default_factory=list)
    end: int | None = None
    error: PickleError | None = None
    opcodes: int = 0
    root: _Value | None = None
    protocol: int = 0
    imports: list[PickleImport] = field(default_factory=list)
    tensor_views: list[TensorView] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)


# What C's strtol(s, &end, 0) consumes: space, a sign, then hex, octal or decimal digits.
_STRTOL = re.compile(rb"[ \t\n\v\f\r]*[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


def _python_int(text: bytes) -> int | None:
    """PyLong_FromString(text, NULL, 0): Python literal syntax (0x.., 0o.., 0b.., underscores)."""
    if len(text) > _MAX_DECODED_LONG:
        return None
    return int(text, 0)


def _int_opcode(raw: bytes) -> object:
    """INT as the C unpickler reads it: strtol in base 0 (so `0x10` is 16 and `010` is 8), falling back
    to Python's int syntax when strtol stops early or overflows; a two-character 0 or 1 is a bool. Both C
    parsers stop at a NUL byte."""
    text = raw.split(b"\0", 1)[0]
    match = _STRTOL.match(text)
    value: int | None
    if match is not None and match.end() == len(text) and len(text) <= _MAX_DECODED_LONG:
        value = int(match.group().strip(), 0) if not _is_octal(match.group()) else _octal(match.group())
        if not _LONG_MIN <= value <= _LONG_MAX:
            value = _python_int(text)
    else:
        value = _python_int(text)
    if len(raw) == 2 and value in (0, 1):
        return bool(value)
    return value


def _is_octal(literal: bytes) -> bool:
    digits = literal.strip().lstrip(b"+-")
    return len(digits) > 1 and digits[:1] == b"0" and digits[1:2] not in (b"x", b"X")


def _octal(literal: bytes) -> int:
    text = literal.strip()
    sign = -1 if text.startswith(b"-") else 1
    return sign * int(text.lstrip(b"+-"), 8)


def _long_opcode(raw: bytes) -> object:
    """LONG: one trailing `L` dropped, then Python's int syntax in base 0."""
    text = raw.split(b"\0", 1)[0]
    return _python_int(text[:-1] if text.endswith(b"L") else text)


class PickleWalker:
    """Walks one pickle from `start` to its STOP. Findings accumulate as opcodes run, so a payload stays
    reported even when the stream breaks afterwards, the way the real unpickler has already run it."""

    def __init__(
        self,
        data: Data,
        where: str,
        budget: Budget,
        nested: NestedScanner,
        *,
        tolerant_imports: bool = False,
    ) -> None:
        self.data = data
        self.where = where
        self.budget = budget
        self.nested = nested
        # Raw tensor records may merely look like pickles: there only literal dangerous imports count.
        self.tolerant_imports = tolerant_imports
        self.pos = 0
        self.stack: list[_Value] = []
        self.metastack: list[list[_Value]] = []
        self.memo: dict[int, _Value] = {}
        self.result = WalkResult()
        self.getattrs: list[Ref] = []

    # -- reading ---------------------------------------------------------------------------------------
    def _take(self, n: int) -> bytes:
        start = self._skip(n)
        return bytes(self.data[start : self.pos])

    def _skip(self, n: int) -> int:
        """Pass over the next `n` bytes, which must be there; returns where they start."""
        if n < 0 or self.pos + n > len(self.data):
            raise PickleError(self.pos, f"truncated: needs {n} bytes, {len(self.data) - self.pos} remain")
        start, self.pos = self.pos, self.pos + n
        return start

    def _take_constant(self, n: int, *, text: bool) -> bytes | Span:
        """A string or bytes argument of `n` bytes: read, or left in place past `Limits.constant_bytes`."""
        if n <= self.budget.limits.constant_bytes:
            return self._take(n)
        return Span(self._skip(n), n, text)

    def _line(self) -> bytes:
        limit = self.budget.limits.constant_bytes
        end = self.data.find(b"\n", self.pos, self.pos + limit + 1)
        if end < 0:
            if len(self.data) - self.pos > limit:
                raise PickleError(self.pos, f"a line longer than {limit} bytes")
            raise PickleError(self.pos, "truncated: missing newline")
        line = bytes(self.data[self.pos : end])
        self.pos = end + 1
        return line

    def _u(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        value: int = struct.unpack(fmt, self._take(size))[0]
        return value

    def _pop(self) -> _Value:
        if not self.stack:
            raise PickleError(self.pos, "stack underflow")
        return self.stack.pop()

    def _pop_mark(self, *, values: bool = True) -> list[_Value]:
        """The items since the last MARK. `values` says they are stored (in a container, as arguments or
        state), not called; only OBJ, whose first item is the callee, passes False."""
        if not self.metastack:
            raise PickleError(self.pos, "MARK missing")
        items = self.stack
        self.stack = self.metastack.pop()
        if values:
            for item in items:
                self._escape(item)
        return items

    def _pop_value(self) -> _Value:
        value = self._pop()
        self._escape(value)
        return value

    def _escape(self, value: _Value) -> None:
        """A callable that reaches arbitrary attributes is dangerous as soon as it is stored: whatever
        receives it (a rebuild helper, copyreg._reconstructor, an object's __setstate__) can call it."""
        if isinstance(value, Ref) and value.full == _GETATTR and not value.escaped:
            value.escaped = True
            self._dangerous_getattr(
                value.offset, "getattr is stored as a value, so code it reaches can call it"
            )

    def _push(self, value: _Value) -> None:
        if len(self.stack) >= self.budget.limits.pickle_stack:
            raise LimitExceeded("limit.pickle-stack", "pickle stack exceeds the limit")
        self.stack.append(value)

    def _top(self) -> _Value:
        if not self.stack:
            raise PickleError(self.pos, "stack underflow")
        return self.stack[-1]

    # -- findings --------------------------------------------------------------------------------------
    def _loc(self, offset: int) -> str:
        return f"{self.where}@{offset}"

    def _add(self, rule: str, severity: Severity, offset: int, subject: str, message: str) -> None:
        if self.tolerant_imports and severity is not Severity.CRITICAL:
            return
        self.result.findings.append(Finding(rule, severity, self._loc(offset), subject, message))

    def _import(self, module: str, name: str, offset: int) -> Ref:
        if self.result.protocol < 3:
            # Exactly what Unpickler.find_class does for Python 2 names.
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        kind, reason = classify(module, name)
        ref = Ref(module, name, offset, kind)
        if ref.full == _GETATTR:
            # Judged at each call: getattr(allowed_class, "attr") is a plain attribute lookup.
            self.getattrs.append(ref)
            return ref
        self.result.imports.append(PickleImport(module, name, _SAFETY[kind]))
        if kind is Kind.DANGEROUS:
            self._add("pickle.dangerous-import", Severity.CRITICAL, offset, ref.full, reason)
        elif kind is Kind.UNKNOWN:
            self._add("pickle.unknown-import", Severity.WARNING, offset, ref.full, reason)
        return ref

    # -- calls -----------------------------------------------------------------------------------------
    def _call(self, callee: _Value, args: _Value, offset: int, *, construct: bool = True) -> _Value:
        """`construct` is False for NEWOBJ, which only runs `cls.__new__`."""
        if isinstance(callee, Ref):
            if callee.full == _GETATTR:
                callee.called = True
                return self._call_getattr(args, offset)
            self._check_allocation(callee, args, offset, construct)
            self._check_indirect_construction(callee, args, offset)
            if callee.full in NESTING_LOADERS:
                self._scan_nested_argument(callee, args, offset)
            if callee.full == _CODECS_ENCODE:
                return _fold_encode(args)
            if callee.full in _REBUILD_TENSOR:
                self._record_view(args, offset)
            if callee.full in CALLING_HELPERS:
                self._call_through(callee, args, offset)
            if construct:
                return Obj(callee, args, length=_result_length(callee, args))
        else:
            self._add(
                "pickle.computed-callable",
                Severity.WARNING,
                offset,
                type(callee).__name__,
                "calls a value that is not a plain import",
            )
        return Obj(callee, args)

    def _record_view(self, args: _Value, offset: int) -> None:
        if not isinstance(args, Seq) or len(args.items) < 4:
            return
        storage, start, sizes, strides = args.items[:4]
        pid = storage.args if isinstance(storage, Obj) and isinstance(storage.callee, Unknown) else None
        if (
            not isinstance(pid, Seq)
            or len(pid.items) < 5
            or not isinstance(sizes, Seq)
            or not isinstance(strides, Seq)
        ):
            return
        tag, stype, key, _, numel = pid.items[:5]
        numel_value, start_value = _const_int(numel), _const_int(start)
        size_list = [_const_int(v) for v in sizes.items]
        stride_list = [_const_int(v) for v in strides.items]
        if (
            not isinstance(tag, Const)
            or tag.value != "storage"
            or not isinstance(stype, Ref)
            or not isinstance(key, Const)
            or numel_value is None
            or start_value is None
        ):
            return
        dims = tuple(v for v in size_list if v is not None)
        steps = tuple(v for v in stride_list if v is not None)
        if len(dims) == len(size_list) and len(steps) == len(stride_list):
            view = TensorView(
                str(key.value), stype.qualname, numel_value, start_value, dims, steps, self._loc(offset)
            )
            self.result.tensor_views.append(view)

    def _call_through(self, helper: Ref, args: _Value, offset: int) -> None:
        """Helpers that call one of their arguments with others (`_rebuild_from_type_v2(func, type, args,
        state)` runs `func(*args)`): that call is judged like one the pickle makes itself."""
        func_at, args_at = CALLING_HELPERS[helper.full]
        if isinstance(args, Seq) and len(args.items) > max(func_at, args_at):
            inner = self._call(args.items[func_at], args.items[args_at], offset)
            if isinstance(inner, Ref):
                self._escape(inner)

    def _call_getattr(self, args: _Value, offset: int) -> _Value:
        if isinstance(args, Seq) and len(args.items) == 2:
            target, name = args.items
            if isinstance(name, Const) and isinstance(name.value, str) and not name.value.startswith("_"):
                base = target.callee if isinstance(target, Obj) else target
                if isinstance(base, Ref) and base.full != "?.?":
                    return self._import(base.module, f"{base.qualname}.{name.value}", offset)
        self._dangerous_getattr(
            offset, "getattr with a computed target or private attribute reaches arbitrary objects"
        )
        return Unknown()

    def _dangerous_getattr(self, offset: int, message: str) -> None:
        self.result.imports.append(PickleImport("builtins", "getattr", _SAFETY[Kind.DANGEROUS]))
        self._add("pickle.dangerous-import", Severity.CRITICAL, offset, _GETATTR, message)

    def _check_indirect_construction(self, callee: Ref, args: _Value, offset: int) -> None:
        """copyreg's helpers construct their first argument: `_reconstructor(cls, base, state)` runs
        `base.__init__(obj, state)`, `__newobj__(cls, *args)` runs `cls.__new__(cls, *args)`."""
        if not isinstance(args, Seq) or not args.items:
            return
        if callee.full == _RECONSTRUCTOR and len(args.items) == 3 and isinstance(args.items[1], Ref):
            self._check_allocation(args.items[1], Seq([args.items[2]], is_tuple=True), offset, True)
        elif callee.full == _NEWOBJ_HELPER and isinstance(args.items[0], Ref):
            self._check_allocation(args.items[0], Seq(args.items[1:], is_tuple=True), offset, False)

    def _check_allocation(self, ref: Ref, args: _Value, offset: int, construct: bool) -> None:
        if not isinstance(args, Seq):
            return
        index = SIZE_ARGUMENTS.get(ref.full)
        size: int | None = None
        if index is not None and len(args.items) > index:
            size = _size_of(args.items[index])
        elif construct and ref.full in ELEMENT_ALLOCATORS and args.items:
            count = _size_of(Seq([a for a in args.items if _const_int(a) is not None]))
            size = None if count is None else count * ELEMENT_ALLOCATORS[ref.full]
        elif construct and ref.module.startswith(ALLOCATING_CLASSES):
            size = _size_of(Seq([a for a in args.items if _const_int(a) is not None]))
        if ref.full in MATERIALIZERS and args.items:
            # list(range(2**31)) builds every element: a pointer each, at the least.
            length = _length_of(args.items[0])
            if length is not None:
                size = max(size or 0, length * 8)
        if size is not None and size > self.budget.limits.allocation_bytes:
            self._add(
                "pickle.allocation-bomb",
                Severity.CRITICAL,
                offset,
                f"{ref.full} of {size}",
                "an allowed callable is asked to allocate an excessive amount of memory",
            )

    def _scan_nested_argument(self, ref: Ref, args: _Value, offset: int) -> None:
        first = args.items[0] if isinstance(args, Seq) and args.items else None
        held = first.value if isinstance(first, Const) else None
        if isinstance(held, bytes | bytearray) or (isinstance(held, Span) and not held.text):
            if ref.full != BENIGN_NESTING_LOADER:
                self._add(
                    "pickle.nested-pickle",
                    Severity.CRITICAL,
                    offset,
                    ref.full,
                    "unpickles an embedded byte string, a way to hide a payload from scanners",
                )
            content = (
                window(self.data, held.start, held.length, self.budget.check_time)
                if isinstance(held, Span)
                else bytes(held)
            )
            nested = self.nested(content, f"{self._loc(offset)}/{ref.qualname}")
            self.result.findings.extend(nested)
            return
        self._add(
            "pickle.nested-pickle",
            Severity.CRITICAL,
            offset,
            ref.full,
            "unpickles data computed at load time, which cannot be inspected",
        )

    def _build(self, state: _Value, offset: int) -> None:
        target = self._top()
        if isinstance(target, Ref):
            self._add(
                "pickle.build-on-global",
                Severity.CRITICAL,
                offset,
                target.full,
                "BUILD sets attributes on an imported module or class, altering code that runs later",
            )
        for key in _state_keys(state):
            if key.startswith("__"):
                # `__setstate__` in an object's __dict__ is what the next BUILD calls with its state.
                self._add(
                    "pickle.dunder-state",
                    Severity.CRITICAL,
                    offset,
                    key,
                    "BUILD state sets a special attribute, which changes what later operations call",
                )
        if isinstance(target, Obj):
            target.state = state
            if isinstance(target.callee, Ref) and target.callee.full == _JOBLIB_WRAPPER:
                self._skip_joblib_array(target, offset)
            cls = _class_of(target)
            if cls is not None and cls.full in SIDE_FILE_WRAPPERS:
                self._side_file(state, offset)

    def _side_file(self, state: _Value, offset: int) -> None:
        """joblib < 0.10 kept arrays in files next to the pickle; loading one follows its name (and numpy
        unpickles it). The name must stay in the folder, and the file is scanned there."""
        filename = dict(_const_items(state)).get("filename")
        if not isinstance(filename, Const) or not isinstance(filename.value, str):
            self._add("pickle.side-file", Severity.WARNING, offset, "", "side file with a computed name")
            return
        if unsafe_relative_path(filename.value):
            self._add(
                "pickle.side-file-escape",
                Severity.CRITICAL,
                offset,
                filename.value,
                "the loader reads a side file outside the model folder",
            )
            return
        self.result.references.append(Reference("side_file", filename.value, self._loc(offset)))

    # -- joblib ----------------------------------------------------------------------------------------
    def _skip_joblib_array(self, wrapper: Obj, offset: int) -> None:
        """joblib writes each array's raw bytes (or a nested pickle for object arrays) right after the
        wrapper's BUILD; the real unpickler reads them from the stream there, so must we."""
        state = dict(_const_items(wrapper.state))
        dtype = state.get("dtype")
        shape = state.get("shape")
        descr, itemsize = _numpy_dtype(dtype)
        if descr is None or not isinstance(shape, Seq):
            raise PickleError(offset, "joblib array wrapper without a readable dtype and shape")
        holds = _dtype_holds(dtype)
        if holds is Holds.UNKNOWN:
            raise PickleError(offset, "joblib array wrapper whose dtype may or may not hold objects")
        if holds is Holds.OBJECTS:
            self._pop()
            inner = PickleWalker(self.data, self.where, self.budget, self.nested)
            inner.pos = self.pos
            result = inner.run()
            self.result.findings.extend(result.findings)
            self.result.imports.extend(result.imports)
            self.result.references.extend(result.references)
            if result.error is not None:
                raise result.error
            assert result.end is not None
            self.pos = result.end
            self._push(Unknown())
            return
        dims = [d.value for d in shape.items if isinstance(d, Const) and isinstance(d.value, int)]
        if len(dims) != len(shape.items) or itemsize is None:
            raise PickleError(offset, "joblib array wrapper with an unreadable shape or dtype")
        count = 1
        for d in dims:
            count *= d
        alignment = state.get("numpy_array_alignment_bytes")
        if isinstance(alignment, Const) and alignment.value is not None:
            self.pos += 1 + self._take(1)[0]
        nbytes = count * itemsize
        if self.pos + nbytes > len(self.data):
            raise PickleError(self.pos, "joblib array data runs past the end of the file")
        self.pos += nbytes

    # -- the VM ----------------------------------------------------------------------------------------
    def run(self) -> WalkResult:
        try:
            self._run()
        except PickleError as exc:
            self.result.error = exc
        for ref in self.getattrs:
            if not ref.called:
                self._dangerous_getattr(
                    ref.offset, "getattr imported but not called here; others may call it"
                )
        return self.result

    def _run(self) -> None:
        limits = self.budget.limits
        while True:
            if self.pos >= len(self.data):
                raise PickleError(self.pos, "pickle ends without STOP")
            self.result.opcodes += 1
            if self.result.opcodes % 65536 == 0:
                self.budget.check_time()
                if self.result.opcodes > limits.pickle_opcodes:
                    raise LimitExceeded("limit.pickle-opcodes", "pickle has too many opcodes")
            offset = self.pos
            op = self.data[self.pos]
            self.pos += 1
            handler = _DISPATCH.get(op)
            if handler is None:
                raise PickleError(offset, f"invalid opcode 0x{op:02x}")
            if handler(self, offset):
                self.result.end = self.pos
                self.result.root = self.stack[-1] if self.stack else None
                if self.result.root is not None:
                    self._escape(self.result.root)
                return


def _size_of(value: _Value) -> int | None:
    """An integer size, or the element count of a shape tuple, when spelled out as constants."""
    if isinstance(value, Seq):
        dims = [_const_int(v) for v in value.items]
        if not dims or any(d is None for d in dims):
            return None
        count = 1
        for d in dims:
            count *= d or 0
        return count
    return _const_int(value)


def _const_int(value: _Value) -> int | None:
    if isinstance(value, Const) and isinstance(value.value, int) and not isinstance(value.value, bool):
        return value.value
    return None


def _length_of(value: _Value) -> int | None:
    """How many elements iterating `value` yields, when known without building it."""
    if isinstance(value, Obj):
        return value.length
    if isinstance(value, Const) and isinstance(value.value, str | bytes | bytearray | Span):
        return len(value.value)
    if isinstance(value, Seq):
        return len(value.items)
    return None


def _result_length(callee: Ref, args: _Value) -> int | None:
    if not isinstance(args, Seq):
        return None
    if callee.full == "builtins.range":
        bounds = [_const_int(a) for a in args.items]
        if (
            not 1 <= len(bounds) <= 3
            or any(b is None for b in bounds)
            or (len(bounds) == 3 and not bounds[2])
        ):
            return None
        return len(range(*[b for b in bounds if b is not None]))
    if callee.full in MATERIALIZERS and args.items:
        return _length_of(args.items[0])
    return None


def _class_of(obj: Obj) -> Ref | None:
    """The class an object was made from, looking through copyreg's construction helpers."""
    callee = obj.callee
    if isinstance(callee, Ref) and callee.full in (_RECONSTRUCTOR, _NEWOBJ_HELPER):
        first = obj.args.items[0] if isinstance(obj.args, Seq) and obj.args.items else None
        return first if isinstance(first, Ref) else None
    return callee if isinstance(callee, Ref) else None


def _state_keys(state: _Value) -> list[str]:
    """Attribute names a BUILD state sets: a dict, or a (dict, slots) pair."""
    parts = state.items if isinstance(state, Seq) and state.is_tuple and len(state.items) == 2 else [state]
    return [k for part in parts for k, _ in _const_items(part)]


def _dtype_holds(value: _Value | None) -> Holds:
    """Whether a pickled numpy.dtype (args plus BUILD state) holds objects: its type string, the dtypes of
    its fields and sub-array, and the flag numpy restores from the state all count."""
    descr, _ = _numpy_dtype(value)
    if descr is None or not isinstance(value, Obj):
        return Holds.UNKNOWN
    holds = descr_holds(descr)
    if holds is not Holds.PLAIN or value.state is None:
        return holds
    state = value.state
    if not isinstance(state, Seq) or len(state.items) < 8:
        return Holds.UNKNOWN
    parts: list[Holds] = [holds]
    subarray, fields, flags = state.items[2], state.items[4], state.items[-1]
    if isinstance(subarray, Seq) and subarray.items:
        parts.append(_dtype_holds(subarray.items[0]))
    elif not (isinstance(subarray, Const) and subarray.value is None):
        parts.append(Holds.UNKNOWN)
    if isinstance(fields, Mapping):
        for _, entry in fields.pairs:
            first = entry.items[0] if isinstance(entry, Seq) and entry.items else None
            parts.append(_dtype_holds(first))
    elif not (isinstance(fields, Const) and fields.value is None):
        parts.append(Holds.UNKNOWN)
    flag_value = _const_int(flags)
    # NPY_ITEM_REFCOUNT: numpy restores the flags from the state, so this bit alone makes it an object dtype.
    parts.append(Holds.UNKNOWN if flag_value is None else Holds.OBJECTS if flag_value & 1 else Holds.PLAIN)
    return combine(parts)


def _fold_encode(args: _Value) -> _Value:
    if isinstance(args, Seq) and len(args.items) in (1, 2):
        text = args.items[0]
        codec = args.items[1] if len(args.items) == 2 else Const("utf-8")
        if (
            isinstance(text, Const)
            and isinstance(text.value, str)
            and isinstance(codec, Const)
            and codec.value in _FOLDABLE_CODECS
        ):
            try:
                return Const(text.value.encode(str(codec.value)))
            except UnicodeEncodeError:
                return Unknown()
    return Unknown()


def _const_items(state: _Value | None) -> list[tuple[str, _Value]]:
    if isinstance(state, Mapping):
        return [(k.value, v) for k, v in state.pairs if isinstance(k, Const) and isinstance(k.value, str)]
    return []


_NUMPY_KIND_SIZE = {"U": 4}


def _numpy_dtype(value: _Value | None) -> tuple[str | None, int | None]:
    """Reads numpy.dtype('f8', False, True) plus its BUILD state into (descr, itemsize)."""
    if not isinstance(value, Obj) or not isinstance(value.args, Seq) or not value.args.items:
        return None, None
    first = value.args.items[0]
    if not isinstance(first, Const) or not isinstance(first.value, str) or not first.value:
        return None, None
    descr = first.value
    if isinstance(value.state, Seq) and len(value.state.items) >= 6:
        elsize = value.state.items[5]
        if isinstance(elsize, Const) and isinstance(elsize.value, int) and elsize.value > 0:
            return descr, elsize.value
    digits = descr[1:]
    if digits.isdigit():
        return descr, int(digits) * _NUMPY_KIND_SIZE.get(descr[0], 1)
    return descr, None


# -- opcode handlers: each returns True on STOP ----------------------------------------------------------
Handler = Callable[[PickleWalker, int], bool]
_DISPATCH: dict[int, Handler] = {}


def _op(*codes: bytes) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for code in codes:
            _DISPATCH[code[0]] = fn
        return fn

    return register


@_op(b"\x80")
def _proto(w: PickleWalker, offset: int) -> bool:
    proto = w._take(1)[0]
    if proto > 5:
        raise PickleError(offset, f"unsupported pickle protocol {proto}")
    w.result.protocol = proto
    return False


@_op(b"\x95")
def _frame(w: PickleWalker, offset: int) -> bool:
    w._take(8)
    return False


@_op(b".")
def _stop(w: PickleWalker, offset: int) -> bool:
    return True


@_op(b"(")
def _mark(w: PickleWalker, offset: int) -> bool:
    w.metastack.append(w.stack)
    w.stack = []
    return False


@_op(b"0")
def _pop_op(w: PickleWalker, offset: int) -> bool:
    if w.stack:
        w.stack.pop()
    else:
        w._pop_mark()
    return False


@_op(b"1")
def _pop_mark_op(w: PickleWalker, offset: int) -> bool:
    w._pop_mark()
    return False


@_op(b"2")
def _dup(w: PickleWalker, offset: int) -> bool:
    w._push(w._top())
    return False


def _push_const(w: PickleWalker, value: object) -> bool:
    w._push(Const(value))
    return False


@_op(b"N")
def _none(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, None)


@_op(b"\x88")
def _true(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, True)


@_op(b"\x89")
def _false(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, False)


@_op(b"I")
def _int(w: PickleWalker, offset: int) -> bool:
    try:
        return _push_const(w, _int_opcode(w._line()))
    except ValueError as exc:
        raise PickleError(offset, "malformed INT") from exc


@_op(b"L")
def _long(w: PickleWalker, offset: int) -> bool:
    try:
        return _push_const(w, _long_opcode(w._line()))
    except ValueError as exc:
        raise PickleError(offset, "malformed LONG") from exc


@_op(b"J")
def _binint(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, w._u("<i"))


@_op(b"K")
def _binint1(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, w._u("<B"))


@_op(b"M")
def _binint2(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, w._u("<H"))


def _long_n(w: PickleWalker, n: int) -> bool:
    if n > _MAX_DECODED_LONG:
        w._skip(n)
        return _push_const(w, None)
    return _push_const(w, int.from_bytes(w._take(n), "little", signed=True))


@_op(b"\x8a")
def _long1(w: PickleWalker, offset: int) -> bool:
    return _long_n(w, w._u("<B"))


@_op(b"\x8b")
def _long4(w: PickleWalker, offset: int) -> bool:
    n = w._u("<i")
    if n < 0:
        raise PickleError(offset, "negative LONG4 length")
    return _long_n(w, n)


@_op(b"F")
def _float(w: PickleWalker, offset: int) -> bool:
    try:
        return _push_const(w, float(w._line()))
    except ValueError as exc:
        raise PickleError(offset, "malformed FLOAT") from exc


@_op(b"G")
def _binfloat(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, struct.unpack(">d", w._take(8))[0])


@_op(b"S")
def _string(w: PickleWalker, offset: int) -> bool:
    raw = w._line()
    if len(raw) < 2 or raw[0] != raw[-1] or raw[:1] not in (b"'", b'"'):
        raise PickleError(offset, "STRING argument not quoted")
    try:
        return _push_const(w, codecs.escape_decode(raw[1:-1])[0].decode("latin-1"))
    except ValueError as exc:
        raise PickleError(offset, "malformed STRING") from exc


def _text(w: PickleWalker, offset: int, raw: bytes | Span, encoding: str = "utf-8") -> bool:
    if isinstance(raw, Span):
        return _push_const(w, raw)
    try:
        return _push_const(w, raw.decode(encoding, "surrogatepass"))
    except UnicodeDecodeError as exc:
        raise PickleError(offset, "undecodable string") from exc


@_op(b"T")
def _binstring(w: PickleWalker, offset: int) -> bool:
    n = w._u("<i")
    return _text(w, offset, w._take_constant(n, text=True), "latin-1")


@_op(b"U")
def _short_binstring(w: PickleWalker, offset: int) -> bool:
    return _text(w, offset, w._take(w._u("<B")), "latin-1")


@_op(b"V")
def _unicode(w: PickleWalker, offset: int) -> bool:
    return _text(w, offset, w._line(), "raw-unicode-escape")


@_op(b"X")
def _binunicode(w: PickleWalker, offset: int) -> bool:
    return _text(w, offset, w._take_constant(w._u("<I"), text=True))


@_op(b"\x8c")
def _short_binunicode(w: PickleWalker, offset: int) -> bool:
    return _text(w, offset, w._take(w._u("<B")))


@_op(b"\x8d")
def _binunicode8(w: PickleWalker, offset: int) -> bool:
    return _text(w, offset, w._take_constant(w._u("<Q"), text=True))


@_op(b"B")
def _binbytes(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, w._take_constant(w._u("<I"), text=False))


@_op(b"C")
def _short_binbytes(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, w._take(w._u("<B")))


@_op(b"\x8e")
def _binbytes8(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, w._take_constant(w._u("<Q"), text=False))


@_op(b"\x96")
def _bytearray8(w: PickleWalker, offset: int) -> bool:
    return _push_const(w, w._take_constant(w._u("<Q"), text=False))


@_op(b"\x97", b"\x98")
def _buffers(w: PickleWalker, offset: int) -> bool:
    if w.data[offset] == 0x97:
        w._push(Unknown())
    else:
        w._top()
    return False


@_op(b")")
def _empty_tuple(w: PickleWalker, offset: int) -> bool:
    w._push(Seq([], is_tuple=True))
    return False


@_op(b"t")
def _tuple(w: PickleWalker, offset: int) -> bool:
    w._push(Seq(w._pop_mark(), is_tuple=True))
    return False


@_op(b"\x85", b"\x86", b"\x87")
def _tuple_n(w: PickleWalker, offset: int) -> bool:
    n = w.data[offset] - 0x84
    items = [w._pop_value() for _ in range(n)][::-1]
    w._push(Seq(items, is_tuple=True))
    return False


@_op(b"]")
def _empty_list(w: PickleWalker, offset: int) -> bool:
    w._push(Seq([]))
    return False


@_op(b"l")
def _list(w: PickleWalker, offset: int) -> bool:
    w._push(Seq(w._pop_mark()))
    return False


@_op(b"}")
def _empty_dict(w: PickleWalker, offset: int) -> bool:
    w._push(Mapping([]))
    return False


def _pairs(items: list[_Value], offset: int) -> list[tuple[_Value, _Value]]:
    if len(items) % 2:
        raise PickleError(offset, "odd number of items for a dict")
    return list(zip(items[::2], items[1::2], strict=True))


@_op(b"d")
def _dict(w: PickleWalker, offset: int) -> bool:
    w._push(Mapping(_pairs(w._pop_mark(), offset)))
    return False


@_op(b"\x8f")
def _empty_set(w: PickleWalker, offset: int) -> bool:
    w._push(Seq([]))
    return False


@_op(b"\x90")
def _additems(w: PickleWalker, offset: int) -> bool:
    items = w._pop_mark()
    target = w._top()
    if isinstance(target, Seq):
        target.items.extend(items[: max(0, _TRACKED_ITEMS - len(target.items))])
    return False


@_op(b"\x91")
def _frozenset(w: PickleWalker, offset: int) -> bool:
    w._push(Seq(w._pop_mark(), is_tuple=True))
    return False


@_op(b"a")
def _append(w: PickleWalker, offset: int) -> bool:
    value = w._pop_value()
    target = w._top()
    if isinstance(target, Seq) and len(target.items) < _TRACKED_ITEMS:
        target.items.append(value)
    return False


@_op(b"e")
def _appends(w: PickleWalker, offset: int) -> bool:
    items = w._pop_mark()
    target = w._top()
    if isinstance(target, Seq):
        target.items.extend(items[: max(0, _TRACKED_ITEMS - len(target.items))])
    return False


@_op(b"s")
def _setitem(w: PickleWalker, offset: int) -> bool:
    value = w._pop_value()
    key = w._pop_value()
    target = w._top()
    if isinstance(target, Mapping) and len(target.pairs) < _TRACKED_ITEMS:
        target.pairs.append((key, value))
    return False


@_op(b"u")
def _setitems(w: PickleWalker, offset: int) -> bool:
    items = w._pop_mark()
    target = w._top()
    if isinstance(target, Mapping):
        target.pairs.extend(_pairs(items, offset)[: max(0, _TRACKED_ITEMS - len(target.pairs))])
    return False


@_op(b"g")
def _get(w: PickleWalker, offset: int) -> bool:
    try:
        return _memo_get(w, offset, int(w._line()))
    except ValueError as exc:
        raise PickleError(offset, "malformed GET") from exc


@_op(b"h")
def _binget(w: PickleWalker, offset: int) -> bool:
    return _memo_get(w, offset, w._u("<B"))


@_op(b"j")
def _long_binget(w: PickleWalker, offset: int) -> bool:
    return _memo_get(w, offset, w._u("<I"))


def _memo_get(w: PickleWalker, offset: int, key: int) -> bool:
    if key not in w.memo:
        raise PickleError(offset, f"memo key {key} not defined")
    w._push(w.memo[key])
    return False


@_op(b"p")
def _put(w: PickleWalker, offset: int) -> bool:
    try:
        key = int(w._line())
    except ValueError as exc:
        raise PickleError(offset, "malformed PUT") from exc
    return _memo_put(w, key)


@_op(b"q")
def _binput(w: PickleWalker, offset: int) -> bool:
    return _memo_put(w, w._u("<B"))


@_op(b"r")
def _long_binput(w: PickleWalker, offset: int) -> bool:
    return _memo_put(w, w._u("<I"))


@_op(b"\x94")
def _memoize(w: PickleWalker, offset: int) -> bool:
    return _memo_put(w, len(w.memo))


def _memo_put(w: PickleWalker, key: int) -> bool:
    if len(w.memo) >= w.budget.limits.pickle_stack and key not in w.memo:
        raise LimitExceeded("limit.pickle-memo", "pickle memo exceeds the limit")
    w.memo[key] = w._top()
    return False


@_op(b"c")
def _global(w: PickleWalker, offset: int) -> bool:
    module = w._line().decode("utf-8", "replace")
    name = w._line().decode("utf-8", "replace")
    w._push(w._import(module, name, offset))
    return False


@_op(b"\x93")
def _stack_global(w: PickleWalker, offset: int) -> bool:
    name = w._pop()
    module = w._pop()
    if (
        isinstance(module, Const)
        and isinstance(module.value, str)
        and isinstance(name, Const)
        and isinstance(name.value, str)
    ):
        w._push(w._import(module.value, name.value, offset))
        return False
    w._add(
        "pickle.computed-import",
        Severity.CRITICAL,
        offset,
        "STACK_GLOBAL",
        "imports a name computed at load time, which cannot be checked",
    )
    w._push(Ref("?", "?", offset, Kind.DANGEROUS))
    return False


@_op(b"\x82", b"\x83", b"\x84")
def _ext(w: PickleWalker, offset: int) -> bool:
    size = {0x82: 1, 0x83: 2, 0x84: 4}[w.data[offset]]
    code = int.from_bytes(w._take(size), "little")
    w._add(
        "pickle.extension-import",
        Severity.WARNING,
        offset,
        f"EXT {code}",
        "imports through the copyreg extension registry, which a scanner cannot resolve",
    )
    w._push(Unknown())
    return False


@_op(b"R")
def _reduce(w: PickleWalker, offset: int) -> bool:
    args = w._pop_value()
    callee = w._pop()
    w._push(w._call(callee, args, offset))
    return False


@_op(b"i")
def _inst(w: PickleWalker, offset: int) -> bool:
    module = w._line().decode("utf-8", "replace")
    name = w._line().decode("utf-8", "replace")
    args = w._pop_mark()
    ref = w._import(module, name, offset)
    w._push(w._call(ref, Seq(args, is_tuple=True), offset))
    return False


@_op(b"o")
def _obj(w: PickleWalker, offset: int) -> bool:
    items = w._pop_mark(values=False)
    if not items:
        raise PickleError(offset, "OBJ without a class")
    for item in items[1:]:
        w._escape(item)
    w._push(w._call(items[0], Seq(items[1:], is_tuple=True), offset))
    return False


@_op(b"\x81")
def _newobj(w: PickleWalker, offset: int) -> bool:
    args = w._pop_value()
    cls = w._pop()
    w._push(w._call(cls, args, offset, construct=False))
    return False


@_op(b"\x92")
def _newobj_ex(w: PickleWalker, offset: int) -> bool:
    w._pop_value()
    args = w._pop_value()
    cls = w._pop()
    w._push(w._call(cls, args, offset, construct=False))
    return False


@_op(b"b")
def _build_op(w: PickleWalker, offset: int) -> bool:
    state = w._pop_value()
    w._build(state, offset)
    return False


@_op(b"P")
def _persid(w: PickleWalker, offset: int) -> bool:
    w._line()
    w._push(Unknown())
    return False


@_op(b"Q")
def _binpersid(w: PickleWalker, offset: int) -> bool:
    pid = w._pop()
    # Legacy torch.save stores module classes as ("module", cls, source file, source) and its loader
    # returns `cls`; the class itself was judged when it was imported.
    if isinstance(pid, Seq) and len(pid.items) >= 2 and isinstance(pid.items[1], Ref):
        tag = pid.items[0]
        if isinstance(tag, Const) and tag.value == "module":
            w._push(pid.items[1])
            return False
    w._push(Obj(Unknown(), pid))
    return False


def walk(
    data: Data,
    where: str,
    budget: Budget,
    nested: NestedScanner,
    *,
    start: int = 0,
    tolerant_imports: bool = False,
) -> WalkResult:
    """Walk one pickle starting at `start`; see `PickleWalker`."""
    walker = PickleWalker(data, where, budget, nested, tolerant_imports=tolerant_imports)
    walker.pos = start
    return walker.run()


def looks_like_pickle(head: bytes) -> bool:
    """True for a protocol 2+ header, the only pickle start precise enough to route on."""
    return len(head) >= 2 and head[0] == PROTO and 2 <= head[1] <= 5
