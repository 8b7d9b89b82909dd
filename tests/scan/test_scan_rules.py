"""Behaviour of the scanner beyond the corpus: interfaces, limits, never importing, folders and caches."""

from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from tests.scan.scan_corpus import (
    BUILD,
    CMD,
    EMPTY_DICT,
    EMPTY_TUPLE,
    MARK,
    NEWOBJ,
    OS_SYSTEM,
    REDUCE,
    STOP,
    TUPLE,
    ZipEntry,
    _gzip_bomb,
    call,
    evil,
    gguf,
    glob,
    i,
    make_zip,
    onnx_model,
    proto,
    s,
    sglobal,
)

from weightyard.scan import (
    SCANNER_VERSION,
    Limits,
    Report,
    Verdict,
    apply_context,
    check_references,
    name_key,
    scan_file,
    scan_path,
)


def rules(report: Report) -> set[str]:
    return {f.rule for f in report.findings}


def test_scan_file_accepts_bytes_streams_and_paths_alike(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(OS_SYSTEM)
    with path.open("rb") as fh:
        from_file = scan_file(fh, "model.bin")
    from_stream = scan_file(io.BytesIO(OS_SYSTEM), "model.bin")
    from_bytes = scan_file(OS_SYSTEM, "model.bin")
    from_path = scan_file(path)
    assert {r.verdict for r in (from_file, from_stream, from_bytes, from_path)} == {Verdict.UNSAFE}
    assert from_path.name == "model.bin"


def test_report_to_dict_has_the_documented_stable_shape() -> None:
    report = scan_file(OS_SYSTEM, "x.pkl")
    data = report.to_dict()
    assert set(data) == {
        "name",
        "verdict",
        "format",
        "size",
        "scanner_version",
        "findings",
        "references",
        "imports",
    }
    assert data["scanner_version"] == SCANNER_VERSION
    assert set(data["findings"][0]) == {"rule", "severity", "location", "subject", "message"}
    assert data["imports"] == [{"module": "os", "name": "system", "safety": "dangerous"}]
    json.dumps(data)


def test_report_survives_a_round_trip_through_its_dict() -> None:
    config = json.dumps({"auto_map": {"AutoModel": "modeling_x.XModel"}}).encode()
    for report in (scan_file(OS_SYSTEM, "x.pkl"), scan_file(config, "config.json")):
        restored = Report.from_dict(json.loads(json.dumps(report.to_dict())))
        assert restored == report
        assert restored.verdict is report.verdict


def test_scanning_never_imports_the_modules_a_pickle_names() -> None:
    assert "antigravity" not in sys.modules
    assert "this" not in sys.modules
    for module in ("antigravity", "this", "weightyard_marker_module"):
        report = scan_file(evil(glob(module, "main"), s(CMD)), "x.pkl")
        assert report.verdict is Verdict.SUSPICIOUS
    assert "antigravity" not in sys.modules
    assert "this" not in sys.modules


def test_getattr_of_a_public_attribute_of_an_allowed_class_is_not_unsafe() -> None:
    lookup = call(glob("builtins", "getattr"), glob("collections", "OrderedDict"), s("fromkeys"))
    report = scan_file(proto(2) + call(lookup, s("a")) + STOP, "x.pkl")
    assert report.verdict is Verdict.SUSPICIOUS
    assert rules(report) == {"pickle.unknown-import"}


def test_every_call_of_a_memoized_getattr_is_judged() -> None:
    lookup = glob("builtins", "getattr") + b"q\x00"  # BINPUT 0: the same getattr is fetched again below
    first = call(lookup, glob("collections", "OrderedDict"), s("fromkeys"))
    second = b"h\x00" + MARK + glob("collections", "OrderedDict") + s("__class__") + TUPLE + REDUCE
    report = scan_file(proto(2) + first + b"0" + second + STOP, "x.pkl")
    assert report.verdict is Verdict.UNSAFE
    assert any(f.subject == "builtins.getattr" for f in report.findings)


def test_pickle_imports_are_listed_with_hub_safety_words() -> None:
    report = scan_file(evil(glob("mylib", "build"), glob("collections", "OrderedDict")), "x.pkl")
    assert [i.to_dict() for i in report.imports] == [
        {"module": "mylib", "name": "build", "safety": "suspicious"},
        {"module": "collections", "name": "OrderedDict", "safety": "innocuous"},
    ]


def test_getattr_reaching_a_file_writing_method_of_an_allowed_class_is_unsafe() -> None:
    path = call(glob("pathlib", "PosixPath"), s("/tmp/weightyard_marker"))
    write = call(glob("builtins", "getattr"), path, s("write_text"))
    assert scan_file(proto(2) + call(write, s("WEIGHTYARD_MARKER")) + STOP, "x.pkl").verdict is Verdict.UNSAFE


def test_getattr_of_a_private_attribute_is_unsafe() -> None:
    lookup = call(glob("builtins", "getattr"), glob("collections", "OrderedDict"), s("__init_subclass__"))
    assert scan_file(proto(2) + lookup + STOP, "x.pkl").verdict is Verdict.UNSAFE


def test_pickle_with_only_allowed_callables_and_a_broken_tail_is_unscannable() -> None:
    report = scan_file(proto(2) + call(glob("collections", "OrderedDict")) + b"\xff", "x.pkl")
    assert report.verdict is Verdict.UNSCANNABLE
    assert "pickle.malformed" in rules(report)


def test_nested_pickle_in_load_from_bytes_is_scanned_not_trusted() -> None:
    benign = proto(2) + call(glob("collections", "OrderedDict")) + STOP
    outer = (
        proto(2)
        + call(glob("torch.storage", "_load_from_bytes"), b"C" + bytes([len(benign)]) + benign)
        + STOP
    )
    assert scan_file(outer, "x.pkl").verdict is Verdict.SAFE
    assert (
        scan_file(
            evil(
                glob("torch.storage", "_load_from_bytes"),
                b"B" + len(OS_SYSTEM).to_bytes(4, "little") + OS_SYSTEM,
            ),
            "x.pkl",
        ).verdict
        is Verdict.UNSAFE
    )


def test_nested_loader_with_a_computed_argument_is_unsafe() -> None:
    payload = proto(2) + call(glob("torch.storage", "_load_from_bytes"), call(glob("mylib", "fetch"))) + STOP
    assert scan_file(payload, "x.pkl").verdict is Verdict.UNSAFE


def test_protocol_4_dotted_name_is_resolved_segment_by_segment() -> None:
    report = scan_file(
        proto(4) + call(sglobal("collections", "OrderedDict.__class__.__base__")) + STOP, "x.pkl"
    )
    assert report.verdict is Verdict.UNSAFE


def test_exceeding_the_member_size_limit_is_unscannable_with_the_reason() -> None:
    archive = make_zip([ZipEntry("weights.bin", b"\x00" * 4096, method=8)])
    report = scan_file(archive, "a.zip", limits=Limits(member_bytes=1024, compression_ratio=10**9))
    assert report.verdict is Verdict.UNSCANNABLE
    assert "limit.member-size" in rules(report)


def test_allocation_through_copyreg_helpers_is_unsafe() -> None:
    via_init = evil(
        glob("copyreg", "_reconstructor"), glob("builtins", "object"), glob("builtins", "bytearray"), i(2**40)
    )
    via_new = evil(glob("copyreg", "__newobj__"), glob("builtins", "bytes"), i(2**40))
    assert scan_file(via_init, "x.pkl").verdict is Verdict.UNSAFE
    assert scan_file(via_new, "x.pkl").verdict is Verdict.UNSAFE


def test_layer_restored_through_newobj_is_not_an_allocation() -> None:
    restored = proto(2) + glob("torch.nn.modules.linear", "Linear") + EMPTY_TUPLE + NEWOBJ + STOP
    assert scan_file(restored, "x.pkl").verdict is Verdict.SAFE


def test_gzip_bomb_with_a_lying_size_trailer_is_still_a_bomb() -> None:
    bomb = bytearray(_gzip_bomb(64 << 20))
    bomb[-4:] = b"\x10\x00\x00\x00"
    report = scan_file(bytes(bomb), "x.gz", limits=Limits(member_bytes=8 << 20))
    assert report.verdict is Verdict.UNSAFE
    assert "archive.compression-bomb" in rules(report)


def test_slot_state_setting_a_special_attribute_is_unsafe() -> None:
    state = MARK + b"N" + EMPTY_DICT + s("__class__") + glob("collections", "OrderedDict") + b"s" + TUPLE
    payload = proto(2) + call(glob("collections", "OrderedDict")) + state + BUILD + STOP
    report = scan_file(payload, "x.pkl")
    assert report.verdict is Verdict.UNSAFE
    assert "pickle.dunder-state" in rules(report)


def test_exceeding_the_time_limit_is_unscannable_with_the_reason() -> None:
    report = scan_file(OS_SYSTEM + b"\x00" * 10, "x.pkl", limits=Limits(seconds=-1))
    assert report.verdict is Verdict.UNSCANNABLE
    assert rules(report) == {"limit.time"}


def test_archives_nested_beyond_the_depth_limit_are_unscannable() -> None:
    data = OS_SYSTEM
    for _ in range(5):
        data = make_zip([ZipEntry("inner.zip", data)])
    report = scan_file(data, "a.zip", limits=Limits(nesting_depth=3))
    assert report.verdict is Verdict.UNSCANNABLE
    assert "limit.nesting-depth" in rules(report)


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (b"7z\xbc\xaf\x27\x1c" + b"\x00" * 32, "format.unsupported"),
        (b"\x04\x22\x4d\x18" + b"\x00" * 32, "format.unsupported"),
        (bytes(range(256)) * 4, "format.unknown"),
        (b"\x93NUMPY\x01\x00" + b"\x10\x00{'descr': '<f4'", "npy.bad-header"),
    ],
)
def test_content_the_scanner_cannot_read_is_unscannable_never_safe(content: bytes, rule: str) -> None:
    report = scan_file(content, "model.bin")
    assert report.verdict is Verdict.UNSCANNABLE
    assert rule in rules(report)


def test_format_is_detected_by_content_whatever_the_extension() -> None:
    assert scan_file(gguf({"general.architecture": "llama"}), "weights.safetensors").format == "gguf"
    assert scan_file(OS_SYSTEM, "model.safetensors").verdict is Verdict.UNSAFE


def test_truncated_gguf_is_unscannable() -> None:
    assert scan_file(gguf({"general.architecture": "llama"})[:30], "m.gguf").verdict is Verdict.UNSCANNABLE


def test_empty_file_is_safe_and_says_so() -> None:
    report = scan_file(b"", "empty.bin")
    assert (report.verdict, report.format) == (Verdict.SAFE, "empty")


def test_shard_index_naming_a_missing_shard_stays_safe_with_an_info_finding(tmp_path: Path) -> None:
    index = {"weight_map": {"w": "model-00001-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    report = scan_path(tmp_path)["model.safetensors.index.json"]
    assert report.verdict is Verdict.SAFE
    assert "context.missing-file" in rules(report)


def test_onnx_external_data_through_a_hard_link_is_suspicious(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("key")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").hardlink_to(outside)
    (model / "model.onnx").write_bytes(onnx_model([("MatMul", "")], {"location": "weights.bin"}))
    report = scan_path(model)["model.onnx"]
    assert report.verdict is Verdict.SUSPICIOUS
    assert "context.hard-link" in rules(report)


def test_references_resolve_from_stored_reports_without_the_files() -> None:
    config = scan_file(json.dumps({"auto_map": {"AutoModel": "modeling_x.XModel"}}).encode(), "config.json")
    onnx = scan_file(onnx_model([("MatMul", "")], {"location": "weights.bin"}), "model.onnx")
    data = scan_file(b"\x00\x01" * 64, "weights.bin")
    reports = {"sub/config.json": config, "sub/model.onnx": onnx, "sub/weights.bin": data}
    extra = check_references(reports, [*reports, "sub/modeling_x.py"])
    assert [f.rule for f in extra["sub/config.json"]] == ["context.remote-code-file"]
    merged = apply_context(reports, extra)
    assert data.verdict is Verdict.UNSCANNABLE
    assert merged["sub/weights.bin"].verdict is Verdict.SAFE
    assert merged["sub/weights.bin"].format == "raw-data"


def test_hugging_face_cache_is_scanned_through_snapshot_links_once_per_file(tmp_path: Path) -> None:
    repo = tmp_path / "models--org--name"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (blobs / "1111").write_bytes(OS_SYSTEM)
    (blobs / "2222").write_text(json.dumps({"model_type": "bert"}))
    (snapshot / "pytorch_model.bin").symlink_to("../../blobs/1111")
    (snapshot / "config.json").symlink_to("../../blobs/2222")
    reports = scan_path(tmp_path)
    assert set(reports) == {
        "models--org--name/snapshots/abc123/pytorch_model.bin",
        "models--org--name/snapshots/abc123/config.json",
    }
    assert reports["models--org--name/snapshots/abc123/pytorch_model.bin"].verdict is Verdict.UNSAFE
    assert reports["models--org--name/snapshots/abc123/config.json"].verdict is Verdict.SAFE


def test_name_key_tells_which_names_share_a_verdict() -> None:
    source = b"import subprocess\n"
    assert scan_file(source, "a/modeling.py").verdict is Verdict.UNSAFE
    assert scan_file(source, "b/notes.txt").verdict is Verdict.SAFE
    assert name_key("a/modeling.py") == name_key("other.py.gz") == ".py"
    assert name_key("b/notes.txt") == name_key("model.safetensors") == ""
    assert name_key("x/keras_metadata.pb") == "keras_metadata.pb"
    broken = b'{"auto_map": '
    assert scan_file(broken, "config.json").verdict is Verdict.UNSCANNABLE
    assert scan_file(broken, "notes.txt").verdict is Verdict.SAFE
    assert name_key("conf/model.yaml") == ".yaml"
    assert name_key("config.json") == ".json"


def test_scan_path_without_recursion_stays_in_the_top_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.pkl").write_bytes(OS_SYSTEM)
    (tmp_path / "README.md").write_text("# model\n")
    assert set(scan_path(tmp_path, recursive=False)) == {"README.md"}
    assert set(scan_path(tmp_path)) == {"README.md", "sub/x.pkl"}


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("linecache", "getline"),
        ("pydoc", "pipepager"),
        ("yaml", "unsafe_load"),
        ("pandas", "read_pickle"),
        ("pandas", "eval"),
        ("sympy", "sympify"),
        ("torch.serialization", "load"),
        ("numpy.testing._private.utils", "runstring"),
        ("huggingface_hub", "hf_hub_download"),
        ("jinja2", "Template"),
    ],
)
def test_callables_that_read_files_run_shells_or_evaluate_strings_are_unsafe(module: str, name: str) -> None:
    assert scan_file(evil(glob(module, name), s(CMD)), "x.pkl").verdict is Verdict.UNSAFE


# A file of this size whose first opcode declares a string or bytes argument of all but its header: before the
# bound, the walker read the argument whole (and decoded it), several hundred MB for one file.
_DECLARED = 200 << 20
# VmHWM, not getrusage's ru_maxrss, which a child inherits from the process that forked it.
_PEAK_RSS = """
import re, sys
from pathlib import Path
from weightyard.scan import scan_file
report = scan_file(sys.argv[1], "file.bin")
peak = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
print(report.verdict.value, int(peak[1]) // 1024)
"""


@pytest.mark.parametrize(
    "header",
    [
        b"X" + struct.pack("<I", _DECLARED),  # BINUNICODE
        b"T" + struct.pack("<i", _DECLARED),  # BINSTRING
        b"B" + struct.pack("<I", _DECLARED),  # BINBYTES
        b"\x8e" + struct.pack("<Q", _DECLARED),  # BINBYTES8
        proto(4) + b"\x8d" + struct.pack("<Q", _DECLARED),  # BINUNICODE8
        b"\x8b" + struct.pack("<i", _DECLARED),  # LONG4
        b"V",  # UNICODE: a protocol-0 line that never ends
    ],
    ids=["BINUNICODE", "BINSTRING", "BINBYTES", "BINBYTES8", "BINUNICODE8", "LONG4", "UNICODE-line"],
)
def test_a_length_the_file_declares_is_never_read_into_memory(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "file.bin"
    with path.open("wb") as out:
        out.write(header)
        out.truncate(_DECLARED + 64)  # the rest reads as zeros (no newline anywhere)
    ran = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    verdict, peak_mb = ran.stdout.split()
    assert verdict in {"unscannable", "suspicious", "safe"}
    assert int(peak_mb) < 100, f"the scan peaked at {peak_mb} MB"


def test_a_bytes_constant_past_the_bound_is_still_a_pickle_and_its_length_still_counts() -> None:
    big = b"\0" * (Limits().constant_bytes + 1)
    report = scan_file(pickle.dumps({"weights": big}, protocol=4), "state.pkl")
    assert report.format == "pickle" and report.verdict is Verdict.SAFE, report.findings
    # list(b) of a constant past the bound still counts as building every element
    bomb = evil(glob("builtins", "list"), b"\x8e" + struct.pack("<Q", len(big)) + big)
    assert "pickle.allocation-bomb" in rules(
        scan_file(bomb, "x.pkl", limits=Limits(allocation_bytes=1 << 20))
    )


@pytest.mark.parametrize("padding", [0, 17 << 20])
def test_a_nested_pickle_past_the_bound_is_scanned_in_place(padding: int) -> None:
    payload = OS_SYSTEM + b"\0" * padding
    nested = evil(
        glob("torch.storage", "_load_from_bytes"), b"\x8e" + struct.pack("<Q", len(payload)) + payload
    )
    report = scan_file(nested, "x.pkl")
    assert report.verdict is Verdict.UNSAFE
    assert any(
        finding.rule == "pickle.dangerous-import" and finding.subject == "os.system"
        for finding in report.findings
    ), report.findings
