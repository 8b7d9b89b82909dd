"""Property-based fuzzing of every parser: mutated and random inputs end in a verdict, never an exception.

The budget is bounded (a few hundred examples in all) so the suite stays fast; the per-example deadline
only guards against a hang."""

from __future__ import annotations

import gzip
import io
import json
import struct
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.scan.scan_corpus import (
    CHAT_TEMPLATE,
    OS_SYSTEM,
    ZipEntry,
    _safetensors,
    _tar,
    _tinfo,
    getattr_as_value,
    gguf,
    graph_def,
    h5_bytes,
    joblib_side_file,
    keras_config,
    make_zip,
    msgpack,
    npy_with_descr,
    onnx_model,
    saved_model,
    sentencepiece_model,
    v7_tar_polyglot,
    zip_with_hidden_directory,
)

from weightyard.scan import Limits, Verdict, scan_file
from weightyard.scan.engine import INTERNAL_ERROR

LIMITS = Limits(seconds=20, member_bytes=8 << 20, decompressed_bytes=32 << 20)
FUZZ = settings(
    max_examples=120,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


def _seeds() -> list[bytes]:
    npy_header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
    npy_header += " " * (-(len(npy_header) + 11) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(npy_header)) + npy_header.encode() + b"\x00" * 8
    return [
        OS_SYSTEM,
        make_zip([ZipEntry("archive/data.pkl", OS_SYSTEM), ZipEntry("archive/data/0", b"\x80\x02\x00" * 4)]),
        make_zip([ZipEntry("arr_0.npy", npy, method=8)]),
        _safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8),
        gguf({"general.architecture": "llama", "tokenizer.chat_template": CHAT_TEMPLATE}),
        npy,
        onnx_model([("MatMul", "")], {"location": "w.bin"}),
        saved_model(["ReadFile", "SaveV2"], ("PyFunc",)),
        h5_bytes({"model_config": json.dumps(keras_config())}),
        _tar([(_tinfo("a/pickle"), OS_SYSTEM)]),
        json.dumps({"auto_map": {"AutoModel": "a--b.C"}, "chat_template": CHAT_TEMPLATE}).encode(),
        msgpack({"params": {"kernel": b"\x00" * 8, "scale": 1.0}}),
        graph_def(["ReadFile", "MatMul"], ("PyFunc",)),
        sentencepiece_model(["<unk>", "a"]),
        npy_with_descr("[('a', '<f4'), ('b', ('O', (2,)))]", OS_SYSTEM),
        v7_tar_polyglot([("pickle", OS_SYSTEM)], OS_SYSTEM),
        gzip.compress(OS_SYSTEM) + gzip.compress(OS_SYSTEM),
        zip_with_hidden_directory([ZipEntry("a.txt", b"x")], [ZipEntry("b.pkl", OS_SYSTEM)]),
        joblib_side_file("arrays_01.npy"),
        getattr_as_value(),
    ]


SEEDS = _seeds()


def _assert_clean(data: bytes, name: str = "fuzz.bin") -> None:
    """Malformed input may end in any verdict, through a parser's FormatError; an exception of any other
    kind is a scanner bug, reported as `scanner.internal-error`, and fails the test."""
    report = scan_file(io.BytesIO(data), name, limits=LIMITS)
    assert report.verdict in set(Verdict)
    crashes = [f.to_dict() for f in report.findings if f.rule == INTERNAL_ERROR]
    assert crashes == [], crashes
    report.to_dict()


def _mutated(seed: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    return bytes(data)


MUTATED_SEEDS = st.builds(
    _mutated,
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=8),
    st.one_of(st.none(), st.integers(min_value=0)),
)
"""A seed file with up to 8 bytes changed and perhaps cut short."""


@FUZZ
@given(data=MUTATED_SEEDS)
def test_mutated_model_files_end_in_a_verdict_never_an_exception(data: bytes) -> None:
    _assert_clean(data)


MAGICS = [
    b"PK\x03\x04",
    b"GGUF\x03\x00\x00\x00",
    b"\x93NUMPY\x01\x00",
    b"\x89HDF\r\n\x1a\n",
    b"\x80\x04",
    b"\x1f\x8b",
    b"\x08\x07\x12",
    b"{",
    b"",
    b"\x10\x00\x00\x00\x00\x00\x00\x00{",
]


@FUZZ
@given(prefix=st.sampled_from(MAGICS), body=st.binary(max_size=512))
def test_random_bytes_behind_a_format_magic_end_in_a_verdict(prefix: bytes, body: bytes) -> None:
    _assert_clean(prefix + body)


@settings(max_examples=60, deadline=timedelta(seconds=10), derandomize=True)
@given(template=st.text(alphabet=st.sampled_from(list("{}%#()[]|.'_ abcx~=")), max_size=80))
def test_arbitrary_chat_templates_end_in_a_verdict(template: str) -> None:
    _assert_clean(json.dumps({"chat_template": template}).encode())


NAMED_SEEDS = [
    ("config.yaml", b"model:\n  _target_: torch.optim.AdamW\n  lr: [1, 2, {a: b}]\n"),
    ("config.json", json.dumps({"auto_map": {"AutoModel": "m.C"}, "x": [1.5, None]}).encode()),
    ("tokenizer_config.json", json.dumps({"chat_template": "{% set n = '_' ~ 'x' %}{{ m[n] }}"}).encode()),
    ("modeling_x.py", b"import os\nos.system('x')\n"),
    ("chat_template.jinja", CHAT_TEMPLATE.encode()),
]


@FUZZ
@given(
    seed=st.sampled_from(NAMED_SEEDS),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=6),
)
def test_mutated_configs_code_and_templates_end_in_a_verdict(
    seed: tuple[str, bytes], flips: list[tuple[int, int]]
) -> None:
    name, content = seed
    data = bytearray(content)
    for position, value in flips:
        data[position % len(data)] = value
    _assert_clean(bytes(data), name)
