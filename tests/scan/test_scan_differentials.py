"""Issue 11 §8: where the scanner's reading of a file could differ from the loader's, the loader wins.

The corpus holds one sample per bypass class; these tests pin the mechanisms behind them."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import struct
from pathlib import Path

import pytest
from tests.scan.scan_corpus import (
    BUILD,
    EMPTY_DICT,
    OS_SYSTEM,
    STOP,
    ZipEntry,
    call,
    evil,
    gguf,
    glob,
    i,
    npy_with_descr,
    proto,
    s,
    v7_tar_polyglot,
    zip_with_hidden_directory,
)

import weightyard.scan.engine as engine
from weightyard.scan import SCANNER_VERSION, Report, Verdict, scan_file
from weightyard.scan.limits import FormatError
from weightyard.scan.pickle_scan import _int_opcode, _long_opcode
from weightyard.scan.report import rules_digest

SCAN_PACKAGE = Path(engine.__file__).parent


def rules(report: Report) -> set[str]:
    return {f.rule for f in report.findings}


def test_scanner_version_is_a_digest_of_the_scan_package_that_changes_with_any_rule(tmp_path: Path) -> None:
    copy = tmp_path / "scan"
    shutil.copytree(SCAN_PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert SCANNER_VERSION.endswith("+" + rules_digest(copy))
    policy = copy / "policy.py"
    policy.write_text(policy.read_text().replace("builtins.bytearray", "builtins.bytearray2", 1))
    assert not SCANNER_VERSION.endswith("+" + rules_digest(copy))


def test_a_parser_bug_is_unscannable_under_its_own_rule_never_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> list[object]:
        raise ZeroDivisionError("parser bug")

    monkeypatch.setitem(engine._HANDLERS, "gguf", broken)
    report = scan_file(gguf({"general.architecture": "llama"}), "m.gguf")
    assert report.verdict is Verdict.UNSCANNABLE
    (finding,) = report.findings
    assert finding.rule == engine.INTERNAL_ERROR
    assert finding.subject == "ZeroDivisionError"
    assert "parser bug" in finding.message


def test_malformed_input_reported_by_a_parser_is_a_format_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def strict(*_: object) -> list[object]:
        raise FormatError("header is malformed")

    monkeypatch.setitem(engine._HANDLERS, "gguf", strict)
    report = scan_file(gguf({"general.architecture": "llama"}), "m.gguf")
    assert report.verdict is Verdict.UNSCANNABLE
    assert rules(report) == {"format.corrupt"}


@pytest.mark.parametrize(
    "spelling",
    [b"16", b"0x10", b"0X1f", b"010", b"-010", b"+7", b" 42", b"1_000", b"0o17", b"0b101", b"01", b"00"],
)
def test_int_opcode_reads_numbers_as_the_c_unpickler_does(spelling: bytes) -> None:
    # Only hand-written INT opcodes are unpickled here: the expected value comes from CPython itself.
    assert _int_opcode(spelling) == pickle.loads(b"I" + spelling + b"\n.")


@pytest.mark.parametrize("spelling", [b"16L", b"0x10L", b"1_000L", b"-5"])
def test_long_opcode_reads_numbers_as_the_c_unpickler_does(spelling: bytes) -> None:
    assert _long_opcode(spelling) == pickle.loads(b"L" + spelling + b"\n.")


def test_an_octal_size_the_c_unpickler_reads_is_checked_at_its_real_value() -> None:
    octal = proto(2) + glob("builtins", "bytearray") + b"(I0100000000000\n" + b"tR" + STOP
    assert int("100000000000", 8) > 1 << 30
    report = scan_file(octal, "x.pkl")
    assert "pickle.allocation-bomb" in rules(report)


def test_getattr_stored_in_state_is_unsafe_even_after_an_innocent_call() -> None:
    lookup = glob("builtins", "getattr") + b"q\x00"
    innocent = call(lookup, glob("collections", "OrderedDict"), s("fromkeys")) + b"0"
    stored = call(glob("argparse", "Namespace")) + EMPTY_DICT + s("f") + b"h\x00" + b"s" + BUILD
    report = scan_file(proto(2) + innocent + stored + STOP, "x.pkl")
    assert report.verdict is Verdict.UNSAFE
    assert any(f.subject == "builtins.getattr" and "stored" in f.message for f in report.findings)


def test_getattr_returned_as_the_unpickled_object_is_unsafe() -> None:
    assert scan_file(proto(2) + glob("builtins", "getattr") + STOP, "x.pkl").verdict is Verdict.UNSAFE


def test_build_state_setting_a_dunder_attribute_is_unsafe_in_a_plain_dict() -> None:
    state = EMPTY_DICT + s("__reduce_ex__") + glob("collections", "OrderedDict") + b"s"
    report = scan_file(proto(2) + call(glob("argparse", "Namespace")) + state + BUILD + STOP, "x.pkl")
    assert "pickle.dunder-state" in rules(report)
    assert report.verdict is Verdict.UNSAFE


@pytest.mark.parametrize(
    ("constructor", "argument"),
    [
        ("list", call(glob("builtins", "range"), i(2**31))),
        ("tuple", call(glob("builtins", "range"), i(0), i(2**40), i(3))),
        ("bytes", call(glob("builtins", "list"), call(glob("builtins", "range"), i(2**31)))),
    ],
)
def test_sized_sequences_handed_to_materializing_constructors_are_allocation_bombs(
    constructor: str, argument: bytes
) -> None:
    report = scan_file(evil(glob("builtins", constructor), argument), "x.pkl")
    assert "pickle.allocation-bomb" in rules(report)


def test_small_ranges_are_ordinary_data() -> None:
    report = scan_file(evil(glob("builtins", "list"), call(glob("builtins", "range"), i(10))), "x.pkl")
    assert report.verdict is Verdict.SAFE


@pytest.mark.parametrize(
    "descr",
    ["'object'", "'|O'", "('O', (1,))", "'(2,)O'", "'i4,O'", "[('a', '<f4'), ('b', 'O', (2,))]", "{'xO': 0}"],
)
def test_every_spelling_of_an_object_dtype_has_its_body_scanned_as_a_pickle(descr: str) -> None:
    report = scan_file(npy_with_descr(descr, OS_SYSTEM), "a.npy")
    assert report.verdict is Verdict.UNSAFE
    assert "pickle.dangerous-import" in rules(report)


def test_a_dtype_spelling_numpy_never_writes_is_suspicious() -> None:
    report = scan_file(npy_with_descr("'float32'", b"\x00" * 4), "a.npy")
    assert report.verdict is Verdict.SUSPICIOUS
    assert "npy.unusual-dtype" in rules(report)


def test_numpy_headers_are_parsed_never_evaluated() -> None:
    report = scan_file(npy_with_descr("__import__('os').getcwd()", b""), "a.npy")
    assert report.verdict is Verdict.UNSCANNABLE
    assert rules(report) == {"npy.bad-header"}


def test_zip_listed_differently_by_readers_is_unsafe_and_both_listings_are_scanned() -> None:
    data = zip_with_hidden_directory([ZipEntry("a.txt", b"x")], [ZipEntry("b.txt", b"y")])
    report = scan_file(data, "a.zip")
    assert report.verdict is Verdict.UNSAFE
    assert "zip.reader-differential" in rules(report)


def test_gzip_trailing_bytes_after_the_last_stream_are_suspicious() -> None:
    # (the last four bytes stay small: a gzip file's last four state its size, and a huge claim is a bomb)
    report = scan_file(gzip.compress(pickle.dumps({"w": 1}, protocol=2)) + b"junk\0\0\0\0", "x.pkl.gz")
    assert "compressed.trailing-data" in rules(report)
    assert report.verdict is Verdict.SUSPICIOUS


def test_zero_padding_between_gzip_members_is_what_gzip_readers_skip() -> None:
    benign = pickle.dumps({"w": 1}, protocol=2)
    report = scan_file(gzip.compress(benign) + b"\x00" * 16, "x.pkl.gz")
    assert report.verdict is Verdict.SAFE


@pytest.mark.parametrize(
    "document",
    [
        '{"a": Infinity, "auto_map": {"AutoModel": "x/y--m.C"}}',
        '{"auto_m\\u0061p": {"AutoModel": "x/y--m.C"}}',
        '{"auto_map": {"AutoModel": "x/y--m.C"}}\n{"b": 1}\n',
    ],
)
def test_configs_are_decoded_the_way_pythons_json_reads_them(document: str) -> None:
    name = "config.jsonl" if document.count("\n") > 1 else "config.json"
    assert scan_file(document.encode(), name).verdict is Verdict.UNSAFE


def test_a_json_config_that_does_not_decode_is_unscannable() -> None:
    report = scan_file(b'{"auto_map": {"AutoModel": "x/y--m.C"', "config.json")
    assert report.verdict is Verdict.UNSCANNABLE
    assert "config.undecodable" in rules(report)


def test_a_json_number_pythons_decoder_refuses_makes_the_config_undecodable_not_a_crash() -> None:
    huge = b'{"a": 1' + b"0" * 5000 + b"}"
    assert rules(scan_file(huge, "config.json")) == {"config.undecodable"}
    assert scan_file(huge, "notes.txt").verdict is Verdict.SAFE


def test_markdown_that_starts_like_json_is_still_text() -> None:
    assert scan_file(b"[![build](x.svg)](https://example.invalid)\n", "README.md").verdict is Verdict.SAFE


def test_hydra_targets_are_judged_after_decoding_json() -> None:
    config = json.dumps({"trainer": {"_target_": "subprocess.run", "args": ["x"]}}).encode()
    report = scan_file(config.replace(b"_target_", b"\\u005ftarget_"), "config.json")
    assert "config.dangerous-target" in rules(report)


@pytest.mark.parametrize(
    "template",
    [
        "{% set n = '_' ~ '_cla' ~ 'ss_' ~ '_' %}{{ messages[n] }}",
        "{{ messages[('_' * 2) ~ 'class' ~ ('_' * 2)] }}",
        "{{ messages['%c%cclass%c%c' % (95, 95, 95, 95)] }}",
        "{{ messages['XXclassXX'|replace('X', '_')] }}",
        "{{ messages[['_', '_', 'class', '_', '_']|join] }}",
        "{{ messages['__ssalc__'|reverse] }}",
    ],
)
def test_chat_templates_that_assemble_dunder_names_are_unsafe(template: str) -> None:
    report = scan_file(json.dumps({"chat_template": template}).encode(), "tokenizer_config.json")
    assert report.verdict is Verdict.UNSAFE, [f.to_dict() for f in report.findings]


def test_assembled_ordinary_strings_in_chat_templates_stay_safe() -> None:
    template = (
        "{% set sep = '<|' ~ 'im_end' ~ '|>' %}{% for m in messages %}{{ m['content'] ~ sep }}{% endfor %}"
    )
    report = scan_file(json.dumps({"chat_template": template}).encode(), "tokenizer_config.json")
    assert report.verdict is Verdict.SAFE


def test_a_file_whose_first_bytes_merely_look_like_a_pickle_header_is_not_a_polyglot() -> None:
    # A 640-byte safetensors header: its length field starts with 0x80 0x02, a protocol 2 pickle header.
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (0x280 - len(header))
    data = struct.pack("<Q", len(header)) + header + b"\x00" * 8
    assert data[:2] == b"\x80\x02"
    report = scan_file(data, "model.safetensors")
    assert (report.format, report.verdict) == ("safetensors", Verdict.SAFE)


def test_a_pickle_that_is_also_a_v7_tar_is_scanned_both_ways() -> None:
    data = v7_tar_polyglot([("pickle", OS_SYSTEM)], pickle.dumps(1, protocol=2))
    report = scan_file(data, "model.pt")
    assert report.format == "tar"
    assert {"format.polyglot", "pickle.dangerous-import"} <= rules(report)


@pytest.mark.parametrize(
    ("template", "verdict"),
    [
        ("{% set a = '" + "y" * 4000 + "' %}{{ m[[" + ", ".join(["a"] * 2000) + "]|join] }}", Verdict.SAFE),
        ("{{ m['%99s%99s' % ('a', 'b')] }}", Verdict.SAFE),
        # Jinja itself cannot read a 5000-digit number, nor nest 3000 additions.
        ("{{ m['a' ~ 1" + "0" * 5000 + "] }}", Verdict.SUSPICIOUS),
        ("{{ m[" + " + ".join(["'ab'"] * 3000) + "] }}", Verdict.UNSCANNABLE),
    ],
)
def test_folding_chat_template_strings_stays_bounded_and_never_crashes(
    template: str, verdict: Verdict
) -> None:
    report = scan_file(json.dumps({"chat_template": template}).encode(), "tokenizer_config.json")
    assert report.verdict is verdict, [f.to_dict() for f in report.findings]
