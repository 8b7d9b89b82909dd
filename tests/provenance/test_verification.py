from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from weightyard.provenance import (
    Manifest,
    Reason,
    Verdict,
    VerificationResult,
    manifest_from_digests,
    manifest_from_folder,
    sign_manifest,
    verify_signature,
)
from weightyard.validation import invisible_character

from ._support import MODEL_FILES, SIGNED_NAMES, KeyPair, make_key_pair, sign_payload, write_model
from .conftest import Forger


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signed(model_dir: Path, key_pair: KeyPair, **options: Any) -> bytes:
    return sign_manifest(manifest_from_folder(model_dir, **options), key_pair[0])


def _statement(files: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """A well-formed statement over `files`, with the given top-level or serialization fields replaced."""
    root = _sha256(b"".join(bytes.fromhex(digest) for digest in files.values()))
    serialization_fields = {
        "method": "files",
        "hash_type": "sha256",
        "allow_symlinks": False,
        "ignore_paths": [],
    }
    serialization_fields.update(overrides.pop("serialization", {}))
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "tiny-model", "digest": {"sha256": root}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {
            "serialization": serialization_fields,
            "resources": [{"name": n, "algorithm": "sha256", "digest": d} for n, d in files.items()],
        },
    }
    statement.update(overrides)
    return statement


def _assert_invalid(result: VerificationResult, reason: Reason) -> None:
    assert result.verdict is Verdict.INVALID
    assert not result.valid
    assert result.reason is reason, result.message
    assert result.message


# --- the valid paths ---------------------------------------------------------------------------------------


def test_signed_folder_verifies_as_valid_and_lists_the_covered_files(
    model_dir: Path, key_pair: KeyPair
) -> None:
    (model_dir / "model.sig").write_bytes(_signed(model_dir, key_pair))

    result = verify_signature((model_dir / "model.sig").read_bytes(), model_dir, key_pair[1])

    assert result.verdict is Verdict.VALID
    assert result.reason is Reason.VALID
    assert list(result.files) == SIGNED_NAMES
    assert result.unsigned_files == (".gitattributes",)
    assert result.model_name == "tiny-model"
    assert result.key_fingerprint == hashlib.sha256(key_pair[1]).hexdigest()


def test_signature_from_known_digests_verifies_against_the_folder(model_dir: Path, key_pair: KeyPair) -> None:
    stored = {name: _sha256(content) for name, content in MODEL_FILES.items()}
    bundle = sign_manifest(manifest_from_digests(stored, model_name="alice/tiny-model"), key_pair[0])

    assert verify_signature(bundle, model_dir, key_pair[1]).valid


def test_signature_verifies_against_known_digests_without_reading_files(
    model_dir: Path, key_pair: KeyPair
) -> None:
    stored = {name: _sha256(content) for name, content in MODEL_FILES.items()}
    stored["model.sig"] = _sha256(b"the signature file itself, stored in the commit")

    result = verify_signature(_signed(model_dir, key_pair), stored, key_pair[1])

    assert result.valid
    assert result.unsigned_files == (".gitattributes",)


@pytest.mark.parametrize("curve", ["P-384", "P-521"])
def test_larger_nist_curves_sign_and_verify(model_dir: Path, curve: str) -> None:
    keys = make_key_pair(curve)

    assert verify_signature(_signed(model_dir, keys), model_dir, keys[1]).valid


def test_renamed_model_folder_still_verifies(model_dir: Path, key_pair: KeyPair) -> None:
    bundle = _signed(model_dir, key_pair)
    moved = model_dir.rename(model_dir.parent / "downloaded-copy")

    assert verify_signature(bundle, moved, key_pair[1]).valid


def test_change_to_a_file_the_signer_left_out_keeps_the_signature_valid(
    model_dir: Path, key_pair: KeyPair
) -> None:
    (model_dir / "README.md").write_text("draft")
    bundle = _signed(model_dir, key_pair, ignore=["README.md"])
    (model_dir / "README.md").write_text("rewritten")
    (model_dir / ".gitattributes").write_text("changed")

    result = verify_signature(bundle, model_dir, key_pair[1])

    assert result.valid
    assert result.unsigned_files == (".gitattributes", "README.md")


def test_the_right_key_among_several_registered_keys_is_reported(
    model_dir: Path, key_pair: KeyPair, other_key_pair: KeyPair
) -> None:
    result = verify_signature(_signed(model_dir, key_pair), model_dir, [other_key_pair[1], key_pair[1]])

    assert result.valid
    assert result.key_fingerprint == hashlib.sha256(key_pair[1]).hexdigest()


def test_signature_without_key_hint_is_checked_against_every_given_key(
    model_dir: Path, key_pair: KeyPair, other_key_pair: KeyPair
) -> None:
    bundle = json.loads(_signed(model_dir, key_pair))
    del bundle["verificationMaterial"]["publicKey"]["hint"]
    unhinted = json.dumps(bundle).encode()

    assert verify_signature(unhinted, model_dir, [other_key_pair[1], key_pair[1]]).valid
    _assert_invalid(verify_signature(unhinted, model_dir, other_key_pair[1]), Reason.BAD_SIGNATURE)


# --- tampered models ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SIGNED_NAMES)
def test_one_byte_tamper_of_any_file_is_invalid_with_digest_mismatch(
    model_dir: Path, key_pair: KeyPair, name: str
) -> None:
    bundle = _signed(model_dir, key_pair)
    content = bytearray((model_dir / name).read_bytes())
    content[len(content) // 2] ^= 0x01
    (model_dir / name).write_bytes(content)

    result = verify_signature(bundle, model_dir, key_pair[1])

    _assert_invalid(result, Reason.DIGEST_MISMATCH)
    assert [problem.path for problem in result.problems] == [name]
    assert name in result.message


def test_renamed_file_is_invalid_with_renamed_file(model_dir: Path, key_pair: KeyPair) -> None:
    bundle = _signed(model_dir, key_pair)
    (model_dir / "config.json").rename(model_dir / "config.old.json")

    result = verify_signature(bundle, model_dir, key_pair[1])

    _assert_invalid(result, Reason.RENAMED_FILE)
    assert "config.old.json" in result.message


def test_extra_file_is_invalid_with_extra_file(model_dir: Path, key_pair: KeyPair) -> None:
    bundle = _signed(model_dir, key_pair)
    (model_dir / "tokenizer" / "merges.txt").write_text("injected")

    result = verify_signature(bundle, model_dir, key_pair[1])

    _assert_invalid(result, Reason.EXTRA_FILE)
    assert result.problems[0].path == "tokenizer/merges.txt"
    assert result.unsigned_files == (".gitattributes",)


def test_deleted_file_is_invalid_with_missing_file(model_dir: Path, key_pair: KeyPair) -> None:
    bundle = _signed(model_dir, key_pair)
    (model_dir / "a" / "b.txt").unlink()

    result = verify_signature(bundle, model_dir, key_pair[1])

    _assert_invalid(result, Reason.MISSING_FILE)
    assert result.problems[0].path == "a/b.txt"


def test_signature_over_a_different_file_set_is_invalid_naming_every_difference(
    tmp_path: Path, key_pair: KeyPair
) -> None:
    signed = write_model(tmp_path / "one", {"w.bin": b"weights", "config.json": b"{}"})
    other = write_model(tmp_path / "two", {"w.bin": b"weights", "vocab.txt": b"a b c"})

    result = verify_signature(_signed(signed, key_pair), other, key_pair[1])

    assert not result.valid
    assert {(problem.reason, problem.path) for problem in result.problems} == {
        (Reason.MISSING_FILE, "config.json"),
        (Reason.EXTRA_FILE, "vocab.txt"),
    }


def test_replayed_signature_from_another_repo_is_invalid_when_the_name_is_expected(
    model_dir: Path, key_pair: KeyPair
) -> None:
    stored = {name: _sha256(content) for name, content in MODEL_FILES.items()}
    bundle = sign_manifest(manifest_from_digests(stored, model_name="alice/model-a"), key_pair[0])

    result = verify_signature(bundle, stored, key_pair[1], expected_model_name="mallory/model-b")

    _assert_invalid(result, Reason.MODEL_NAME_MISMATCH)
    assert verify_signature(bundle, stored, key_pair[1], expected_model_name="alice/model-a").valid


def test_symlink_in_the_verified_folder_is_invalid_and_not_followed(
    model_dir: Path, key_pair: KeyPair
) -> None:
    bundle = _signed(model_dir, key_pair)
    (model_dir / "config.json").unlink()
    (model_dir / "config.json").symlink_to(model_dir / "a-b.txt")

    _assert_invalid(verify_signature(bundle, model_dir, key_pair[1]), Reason.UNREADABLE_FILE)


def test_missing_model_folder_is_invalid_not_a_crash(model_dir: Path, key_pair: KeyPair) -> None:
    bundle = _signed(model_dir, key_pair)

    _assert_invalid(verify_signature(bundle, model_dir / "absent", key_pair[1]), Reason.UNREADABLE_FILE)


# --- keys --------------------------------------------------------------------------------------------------


def _public_pem(private_key: Any) -> bytes:
    public: Any = private_key.public_key()
    return bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


UNSUPPORTED_PUBLIC_KEYS = {
    "Ed25519": lambda: _public_pem(ed25519.Ed25519PrivateKey.generate()),
    "RSA-2048": lambda: _public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "P-192": lambda: _public_pem(ec.generate_private_key(ec.SECP192R1())),
    "secp256k1": lambda: _public_pem(ec.generate_private_key(ec.SECP256K1())),
}


@pytest.mark.parametrize("kind", sorted(UNSUPPORTED_PUBLIC_KEYS))
def test_unsupported_public_key_type_is_invalid_with_unsupported_key(
    model_dir: Path, key_pair: KeyPair, kind: str
) -> None:
    result = verify_signature(_signed(model_dir, key_pair), model_dir, UNSUPPORTED_PUBLIC_KEYS[kind]())

    _assert_invalid(result, Reason.UNSUPPORTED_KEY)


def test_garbage_public_key_is_invalid_with_invalid_key(model_dir: Path, key_pair: KeyPair) -> None:
    _assert_invalid(verify_signature(_signed(model_dir, key_pair), model_dir, b"garbage"), Reason.INVALID_KEY)


def test_no_public_key_is_invalid(model_dir: Path, key_pair: KeyPair) -> None:
    _assert_invalid(verify_signature(_signed(model_dir, key_pair), model_dir, []), Reason.UNKNOWN_KEY)


def test_wrong_key_is_invalid_with_unknown_key(
    model_dir: Path, key_pair: KeyPair, other_key_pair: KeyPair
) -> None:
    result = verify_signature(_signed(model_dir, key_pair), model_dir, other_key_pair[1])

    _assert_invalid(result, Reason.UNKNOWN_KEY)
    assert result.files == ()


def test_hint_naming_the_given_key_on_another_keys_signature_is_a_bad_signature(
    model_dir: Path, key_pair: KeyPair, other_key_pair: KeyPair
) -> None:
    bundle = json.loads(_signed(model_dir, other_key_pair))
    bundle["verificationMaterial"]["publicKey"]["hint"] = hashlib.sha256(key_pair[1]).hexdigest()

    result = verify_signature(json.dumps(bundle).encode(), model_dir, key_pair[1])

    _assert_invalid(result, Reason.BAD_SIGNATURE)


# --- tampered or malformed signature files -----------------------------------------------------------------


def test_statement_edited_without_re_signing_is_a_bad_signature(model_dir: Path, key_pair: KeyPair) -> None:
    bundle = json.loads(_signed(model_dir, key_pair))
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()

    result = verify_signature(json.dumps(bundle).encode(), model_dir, key_pair[1])

    _assert_invalid(result, Reason.BAD_SIGNATURE)
    assert result.files == ()


def _mutate(bundle: bytes, edit: Any) -> bytes:
    document = json.loads(bundle)
    edit(document)
    return json.dumps(document).encode()


MALFORMED_BUNDLES = {
    "empty": lambda b: b"",
    "not json": lambda b: b"\x00\xffnot json",
    "truncated": lambda b: b[: len(b) // 2],
    "json array": lambda b: b"[]",
    "deeply nested": lambda b: b"[" * 100_000 + b"]" * 100_000,
    "wrong media type": lambda b: _mutate(b, lambda d: d.update(mediaType="application/json")),
    "no verification material": lambda b: _mutate(b, lambda d: d.pop("verificationMaterial")),
    "public key is a string": lambda b: _mutate(b, lambda d: d["verificationMaterial"].update(publicKey="k")),
    "hint is a number": lambda b: _mutate(b, lambda d: d["verificationMaterial"]["publicKey"].update(hint=7)),
    "no envelope": lambda b: _mutate(b, lambda d: d.pop("dsseEnvelope")),
    "no signatures": lambda b: _mutate(b, lambda d: d["dsseEnvelope"].update(signatures=[])),
    "two signatures": lambda b: _mutate(
        b, lambda d: d["dsseEnvelope"]["signatures"].append(d["dsseEnvelope"]["signatures"][0])
    ),
    "signature is null": lambda b: _mutate(b, lambda d: d["dsseEnvelope"]["signatures"][0].update(sig=None)),
    "signature not base64": lambda b: _mutate(
        b, lambda d: d["dsseEnvelope"]["signatures"][0].update(sig="!!")
    ),
    "payload not base64": lambda b: _mutate(b, lambda d: d["dsseEnvelope"].update(payload="@@@")),
    "payload is a list": lambda b: _mutate(b, lambda d: d["dsseEnvelope"].update(payload=[1])),
    "payload type is true": lambda b: _mutate(b, lambda d: d["dsseEnvelope"].update(payloadType=True)),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED_BUNDLES))
def test_malformed_bundle_is_invalid_with_malformed_bundle(
    model_dir: Path, key_pair: KeyPair, kind: str
) -> None:
    bundle = MALFORMED_BUNDLES[kind](_signed(model_dir, key_pair))

    _assert_invalid(verify_signature(bundle, model_dir, key_pair[1]), Reason.MALFORMED_BUNDLE)


def test_oversized_bundle_is_refused_before_parsing(model_dir: Path, key_pair: KeyPair) -> None:
    oversized = b" " * (33 * 1024 * 1024) + _signed(model_dir, key_pair)

    _assert_invalid(verify_signature(oversized, model_dir, key_pair[1]), Reason.MALFORMED_BUNDLE)


def test_certificate_signed_bundle_is_invalid_with_unsupported_format(
    model_dir: Path, key_pair: KeyPair
) -> None:
    bundle = _mutate(
        _signed(model_dir, key_pair),
        lambda d: d.update(
            verificationMaterial={"x509CertificateChain": {"certificates": []}, "tlogEntries": []}
        ),
    )

    _assert_invalid(verify_signature(bundle, model_dir, key_pair[1]), Reason.UNSUPPORTED_FORMAT)


def _with_resources(statement: dict[str, Any], resources: Any) -> dict[str, Any]:
    return {**statement, "predicate": {**statement["predicate"], "resources": resources}}


def _model_digests() -> dict[str, str]:
    return {name: _sha256(MODEL_FILES[name]) for name in SIGNED_NAMES}


SIGNED_MALFORMED_STATEMENTS = {
    "wrong statement type": lambda f: _statement(f, _type="https://in-toto.io/Statement/v0.1"),
    "two subjects": lambda f: _statement(f, subject=[_statement(f)["subject"][0]] * 2),
    "subject without digest": lambda f: _statement(f, subject=[{"name": "x"}]),
    "root digest of other files": lambda f: _statement(
        f, subject=[{"name": "x", "digest": {"sha256": "0" * 64}}]
    ),
    "resources not a list": lambda f: _with_resources(_statement(f), {}),
    "resource digest not hex": lambda f: _with_resources(
        _statement(f), [{"name": "config.json", "algorithm": "sha256", "digest": "z" * 64}]
    ),
    "name listed twice": lambda f: _with_resources(
        _statement(f), _statement(f)["predicate"]["resources"] * 2
    ),
    "ignore paths not strings": lambda f: _statement(f, serialization={"ignore_paths": [1]}),
    "allow_symlinks not a boolean": lambda f: _statement(f, serialization={"allow_symlinks": "yes"}),
}


@pytest.mark.parametrize("kind", sorted(SIGNED_MALFORMED_STATEMENTS))
def test_signed_but_malformed_statement_is_invalid_with_malformed_bundle(
    model_dir: Path, forge: Forger, key_pair: KeyPair, kind: str
) -> None:
    bundle = forge(SIGNED_MALFORMED_STATEMENTS[kind](_model_digests()))

    _assert_invalid(verify_signature(bundle, model_dir, key_pair[1]), Reason.MALFORMED_BUNDLE)


def test_signed_payload_that_is_not_json_is_invalid_with_malformed_bundle(
    model_dir: Path, key_pair: KeyPair
) -> None:
    bundle = sign_payload(b"\xff\xfe not json", key_pair[0])

    _assert_invalid(verify_signature(bundle, model_dir, key_pair[1]), Reason.MALFORMED_BUNDLE)


def test_signed_payload_of_another_type_is_invalid_with_malformed_bundle(
    model_dir: Path, key_pair: KeyPair
) -> None:
    payload = json.dumps(_statement(_model_digests())).encode()
    bundle = sign_payload(payload, key_pair[0], payload_type="application/json")

    _assert_invalid(verify_signature(bundle, model_dir, key_pair[1]), Reason.MALFORMED_BUNDLE)


UNSUPPORTED_STATEMENTS = {
    "shard serialization": lambda f: _statement(f, serialization={"method": "shards", "shard_size": 1e9}),
    "blake3 files": lambda f: _statement(f, serialization={"hash_type": "blake3"}),
    "v0.1 predicate": lambda f: _statement(f, predicateType="https://model_signing/Digests/v0.1"),
    "resource algorithm blake2b": lambda f: _with_resources(
        _statement(f), [{"name": "x", "algorithm": "blake2b", "digest": "00" * 64}]
    ),
}


@pytest.mark.parametrize("kind", sorted(UNSUPPORTED_STATEMENTS))
def test_other_serializations_are_invalid_with_unsupported_format(
    model_dir: Path, forge: Forger, key_pair: KeyPair, kind: str
) -> None:
    bundle = forge(UNSUPPORTED_STATEMENTS[kind](_model_digests()))

    _assert_invalid(verify_signature(bundle, model_dir, key_pair[1]), Reason.UNSUPPORTED_FORMAT)


@pytest.mark.parametrize("escape", ["../outside.bin", "/tmp/outside.bin", "a/../../outside.bin", "a\\..\\x"])
def test_manifest_path_escaping_the_model_folder_is_invalid_with_unsafe_path(
    model_dir: Path, forge: Forger, key_pair: KeyPair, escape: str
) -> None:
    # The outside file exists with exactly the signed digest: only the path check can stop it.
    outside = b"a file next to the model, not in it"
    (model_dir.parent / "outside.bin").write_bytes(outside)
    bundle = forge(_statement({**_model_digests(), escape: _sha256(outside)}))

    result = verify_signature(bundle, model_dir, key_pair[1])

    _assert_invalid(result, Reason.UNSAFE_PATH)
    assert [problem.path for problem in result.problems] == [escape]


def test_ignore_path_escaping_the_model_folder_is_invalid_with_unsafe_path(
    model_dir: Path, forge: Forger, key_pair: KeyPair
) -> None:
    bundle = forge(_statement(_model_digests(), serialization={"ignore_paths": ["../"]}))

    _assert_invalid(verify_signature(bundle, model_dir, key_pair[1]), Reason.UNSAFE_PATH)


def test_signed_file_stays_checked_even_if_the_signature_also_ignores_it(
    model_dir: Path, forge: Forger, key_pair: KeyPair
) -> None:
    bundle = forge(_statement(_model_digests(), serialization={"ignore_paths": ["config.json"]}))
    (model_dir / "config.json").write_text("tampered")

    _assert_invalid(verify_signature(bundle, model_dir, key_pair[1]), Reason.DIGEST_MISMATCH)


@pytest.fixture(scope="module")
def signed_model(tmp_path_factory: pytest.TempPathFactory, key_pair: KeyPair) -> tuple[Path, bytes]:
    folder = write_model(tmp_path_factory.mktemp("fuzz") / "tiny-model")
    return folder, _signed(folder, key_pair)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_no_corruption_of_a_bundle_crashes_or_changes_what_a_valid_verdict_covers(
    signed_model: tuple[Path, bytes], key_pair: KeyPair, data: st.DataObject
) -> None:
    folder, original = signed_model
    corrupted = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(corrupted) - 1))
        corrupted[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(corrupted)))

    result = verify_signature(bytes(corrupted[:cut]), folder, key_pair[1])

    assert isinstance(result, VerificationResult)
    if result.valid:
        # Only bytes outside the signed envelope (say, inside "tlogEntries") may change without effect.
        assert list(result.files) == SIGNED_NAMES


def test_manifest_target_with_fewer_files_than_signed_is_invalid(model_dir: Path, key_pair: KeyPair) -> None:
    partial = Manifest("tiny-model", {"config.json": _sha256(MODEL_FILES["config.json"])})

    _assert_invalid(verify_signature(_signed(model_dir, key_pair), partial, key_pair[1]), Reason.MISSING_FILE)


def test_fifo_in_the_verified_folder_is_invalid_instead_of_blocking(
    model_dir: Path, key_pair: KeyPair
) -> None:
    bundle = _signed(model_dir, key_pair)
    os.mkfifo(model_dir / "pipe")

    _assert_invalid(verify_signature(bundle, model_dir, key_pair[1]), Reason.UNREADABLE_FILE)


# Names the hub accepts: it refuses invisible characters (controls, bidi overrides, unassigned code points).
_segment = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\\", exclude_categories=("Cc", "Cs")).filter(
        lambda char: invisible_character(char) is None
    ),
    min_size=1,
)
_names = (
    st.lists(_segment, min_size=1, max_size=3).map("/".join).filter(lambda name: "." not in name.split("/"))
)
_file_sets = st.dictionaries(
    _names.filter(lambda name: ".." not in name.split("/")), st.binary(max_size=8), max_size=8
)


@settings(max_examples=60, deadline=None)
@given(files=_file_sets, data=st.data())
def test_signature_from_digests_is_valid_for_those_digests_and_no_others(
    key_pair: KeyPair, files: dict[str, bytes], data: st.DataObject
) -> None:
    digests = {name: _sha256(content) for name, content in files.items()}
    bundle = sign_manifest(
        manifest_from_digests(digests, "m", ignore=(), ignore_git_paths=False), key_pair[0]
    )

    assert verify_signature(bundle, digests, key_pair[1], signature_name=None).valid
    if digests:
        changed = data.draw(st.sampled_from(sorted(digests)))
        tampered = {**digests, changed: _sha256(files[changed] + b"!")}
        result = verify_signature(bundle, tampered, key_pair[1], signature_name=None)
        assert result.reason is Reason.DIGEST_MISMATCH
        assert [problem.path for problem in result.problems] == [changed]
