"""One rule at a time: each malformed or dangerous construct yields its rule and verdict, and the
ordinary construct next to it stays safe."""

from __future__ import annotations

import io
import json
import struct
import tarfile

import pytest
from tests.scan.scan_corpus import (
    CHAT_TEMPLATE,
    OS_SYSTEM,
    ZipEntry,
    _safetensors,
    _tar,
    _tinfo,
    gguf,
    keras_config,
    keras_zip,
    make_zip,
    onnx_model,
    pb_bytes,
    saved_model,
)

from weightyard.scan import Verdict, scan_file

F32_2 = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


def _npy(header: str, body: bytes) -> bytes:
    header += " " * (-(len(header) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


def _overlapping_zip() -> bytes:
    single = make_zip([ZipEntry("a.txt", b"hello")])
    local_len = 30 + len("a.txt") + len(b"hello")
    central = single[local_len:]
    entry = central[: central.index(b"PK\x05\x06")]
    twin = entry.replace(b"a.txt", b"b.txt")
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 2, 2, 2 * len(entry), local_len, 0)
    return single[:local_len] + entry + twin + eocd


def _understated_count() -> bytes:
    archive = bytearray(make_zip([ZipEntry("a.txt", b"x"), ZipEntry("b.pkl", OS_SYSTEM)]))
    eocd = archive.rindex(b"PK\x05\x06")
    archive[eocd + 8 : eocd + 12] = struct.pack("<HH", 1, 1)
    return bytes(archive)


def _hardlink_escape() -> bytes:
    return _tar([(_tinfo("weights", tarfile.LNKTYPE, "../../etc/shadow"), None)])


def _device() -> bytes:
    return _tar([(_tinfo("dev/null", tarfile.CHRTYPE), None)])


CASES: list[tuple[str, bytes, str, Verdict, str | None]] = [
    (
        "zip with bytes before it",
        b"junk" * 8 + make_zip([ZipEntry("a.txt", b"x")]),
        "a.zip",
        Verdict.SUSPICIOUS,
        "zip.prepended-data",
    ),
    ("zip members sharing bytes", _overlapping_zip(), "a.zip", Verdict.UNSAFE, "zip.overlapping-members"),
    (
        "zip member hidden from the central directory",
        make_zip([ZipEntry("a.txt", b"x"), ZipEntry("b.txt", b"y", in_central=False)]),
        "a.zip",
        Verdict.UNSAFE,
        "zip.hidden-member",
    ),
    (
        "zip whose end record understates its entries, hiding a payload",
        _understated_count(),
        "a.zip",
        Verdict.UNSAFE,
        "zip.entry-count-mismatch",
    ),
    (
        "two archives glued together",
        make_zip([ZipEntry("a.txt", b"x")]) + make_zip([ZipEntry("b.txt", b"y")]),
        "a.zip",
        Verdict.UNSAFE,
        "zip.reader-differential",
    ),
    ("tar hard link out of the archive", _hardlink_escape(), "a.tar", Verdict.UNSAFE, "archive.link-escape"),
    ("tar device node", _device(), "a.tar", Verdict.SUSPICIOUS, "archive.special-file"),
    ("tar of ordinary files", _tar([(_tinfo("m/README.md"), b"# hi\n")]), "a.tar", Verdict.SAFE, None),
    (
        "npy with trailing bytes",
        _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", b"\x00" * 12),
        "a.npy",
        Verdict.SUSPICIOUS,
        "npy.trailing-data",
    ),
    (
        "npy with missing data",
        _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", b"\x00" * 8),
        "a.npy",
        Verdict.UNSCANNABLE,
        "npy.truncated",
    ),
    (
        "npy whose header is code",
        _npy("{'descr': __import__('os').system('x'), 'fortran_order': False, 'shape': (2,), }", b"\x00" * 8),
        "a.npy",
        Verdict.UNSCANNABLE,
        "npy.bad-header",
    ),
    (
        "safetensors header not JSON",
        struct.pack("<Q", 6) + b"{nope}",
        "a.safetensors",
        Verdict.UNSCANNABLE,
        "safetensors.bad-header",
    ),
    (
        "safetensors duplicate tensor names",
        struct.pack("<Q", 99)
        + (
            b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
            + b" " * 99
        )[:99]
        + b"\x00" * 4,
        "a.safetensors",
        Verdict.UNSCANNABLE,
        "safetensors.bad-header",
    ),
    (
        "safetensors metadata not strings",
        _safetensors({"__metadata__": {"n": 1}, **F32_2}, b"\x00" * 8),
        "a.safetensors",
        Verdict.UNSCANNABLE,
        "safetensors.bad-metadata",
    ),
    (
        "safetensors gap between tensors",
        _safetensors({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 8),
        "a.safetensors",
        Verdict.SUSPICIOUS,
        "safetensors.gap",
    ),
    (
        "safetensors unknown dtype",
        _safetensors({"w": {"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8),
        "a.safetensors",
        Verdict.UNSAFE,
        "safetensors.bad-tensor",
    ),
    (
        "gguf alignment not a power of two",
        gguf({"general.alignment": 24}),
        "a.gguf",
        Verdict.UNSAFE,
        "gguf.bad-alignment",
    ),
    (
        "gguf misaligned tensor",
        gguf({"general.architecture": "llama"}, [("t", [2], 3)]),
        "a.gguf",
        Verdict.UNSCANNABLE,
        "gguf.misaligned",
    ),
    (
        "gguf with an ordinary template",
        gguf({"tokenizer.chat_template": CHAT_TEMPLATE}),
        "a.gguf",
        Verdict.SAFE,
        None,
    ),
    (
        "template including another",
        json.dumps({"chat_template": "{% include 'x.j2' %}"}).encode(),
        "tokenizer_config.json",
        Verdict.SUSPICIOUS,
        "template.loads-template",
    ),
    (
        "template that does not parse",
        json.dumps({"chat_template": "{% for %}"}).encode(),
        "tokenizer_config.json",
        Verdict.SUSPICIOUS,
        "template.syntax-error",
    ),
    (
        "template with transformers' generation tag and loop controls",
        json.dumps(
            {
                "chat_template": "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}"
                "{% break %}{% endfor %}"
            }
        ).encode(),
        "tokenizer_config.json",
        Verdict.SAFE,
        None,
    ),
    (
        "template hiding an escape inside a generation block",
        json.dumps({"chat_template": "{% generation %}{{ m.__class__ }}{% endgeneration %}"}).encode(),
        "tokenizer_config.json",
        Verdict.UNSAFE,
        "template.private-attribute",
    ),
    (
        "template reading a field named system",
        json.dumps(
            {"chat_template": "{% set ns = namespace(system='') %}{{ ns.system }}{{ m.system }}"}
        ).encode(),
        "tokenizer_config.json",
        Verdict.SAFE,
        None,
    ),
    (
        "template with tojson and loop",
        json.dumps(
            {"chat_template": "{% for m in messages %}{{ loop.index }}{{ m | tojson }}{% endfor %}"}
        ).encode(),
        "tokenizer_config.json",
        Verdict.SAFE,
        None,
    ),
    (
        "template reaching globals by map",
        json.dumps({"chat_template": "{{ messages|map('attr', 'x')|list }}"}).encode(),
        "tokenizer_config.json",
        Verdict.UNSAFE,
        "template.attr-filter",
    ),
    (
        "config asking for remote code",
        json.dumps({"trust_remote_code": True}).encode(),
        "config.json",
        Verdict.SUSPICIOUS,
        "config.trust-remote-code",
    ),
    (
        "config with duplicate keys",
        b'{"auto_map": {}, "auto_map": {"AutoModel": "a--b.C"}}',
        "config.json",
        Verdict.UNSAFE,
        "config.remote-code-other-repo",
    ),
    (
        "sentence-transformers module outside its package",
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "evil.Module"}]).encode(),
        "modules.json",
        Verdict.SUSPICIOUS,
        "config.custom-module",
    ),
    (
        "TF dataset reading files",
        saved_model(["TFRecordDataset"]),
        "saved_model.pb",
        Verdict.SUSPICIOUS,
        "tf.file-op",
    ),
    (
        "ONNX custom domain defined by a local function",
        onnx_model(
            [("Gelu", "my.fns")], functions=pb_bytes(25, pb_bytes(1, "Gelu") + pb_bytes(10, "my.fns"))
        ),
        "m.onnx",
        Verdict.SAFE,
        None,
    ),
    (
        "Keras TF op layer reading files",
        keras_zip(
            keras_config(
                {"module": "keras.layers", "class_name": "TFOpLambda", "config": {"function": "io.read_file"}}
            )
        ),
        "m.keras",
        Verdict.UNSAFE,
        "keras.file-op",
    ),
    (
        "Keras function outside Keras",
        keras_zip(keras_config({"module": "os", "class_name": "function", "config": "system"})),
        "m.keras",
        Verdict.UNSAFE,
        "keras.dangerous-object",
    ),
    (
        "Python file importing subprocess",
        b"import subprocess\n",
        "modeling.py",
        Verdict.UNSAFE,
        "code.dangerous-call",
    ),
    (
        "YAML with an allow-listed _target_",
        b"optim:\n  _target_: torch.optim.AdamW\n  lr: 0.001\n",
        "config.yaml",
        Verdict.SAFE,
        None,
    ),
    (
        "YAML with a _target_ outside the allow-list",
        b"model:\n  _target_: mylib.Model\n",
        "config.yaml",
        Verdict.SUSPICIOUS,
        "config.instantiation-target",
    ),
    ("text that starts like a zlib header", b"x^2 grows fast\n", "notes.txt", Verdict.SAFE, None),
    ("text that starts like a bzip2 header", b"BZh9 is a header\n", "notes.txt", Verdict.SAFE, None),
    ("PNG image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "a.png", Verdict.SAFE, None),
    (
        "polyglot pickle with a zip payload",
        OS_SYSTEM + make_zip([ZipEntry("x.pkl", OS_SYSTEM)]),
        "a.bin",
        Verdict.UNSAFE,
        "format.polyglot",
    ),
]


@pytest.mark.parametrize(("case", "content", "name", "verdict", "rule"), CASES, ids=[c[0] for c in CASES])
def test_each_construct_gets_its_rule_and_verdict(
    case: str, content: bytes, name: str, verdict: Verdict, rule: str | None
) -> None:
    report = scan_file(io.BytesIO(content), name)
    assert report.verdict is verdict, [f.to_dict() for f in report.findings]
    if rule is not None:
        assert rule in {f.rule for f in report.findings}
