"""The hub's one signer (auth/signing.py): what it signed for one purpose, with one list of fields, verifies
for that purpose and those fields only."""

from __future__ import annotations

import pytest

from weightyard.auth import Signer

SIGNER = Signer(b"s" * 32)


def test_a_signature_verifies_for_its_purpose_and_fields_only() -> None:
    signature = SIGNER.sign("lfs-part", "upload", 3, 1700000000)
    assert SIGNER.verify(signature, "lfs-part", "upload", 3, 1700000000)
    assert not SIGNER.verify(signature, "lfs-complete", "upload", 3, 1700000000)  # another purpose
    assert not SIGNER.verify(signature, "lfs-part", "upload", 4, 1700000000)  # another field
    assert not SIGNER.verify(signature, "lfs-part", "upload", 3)  # fewer fields
    assert not Signer(b"t" * 32).verify(signature, "lfs-part", "upload", 3, 1700000000)  # another hub


def test_fields_are_framed_so_no_two_lists_sign_the_same_bytes() -> None:
    # joined with a separator these would be the same message; length-prefixed they are not
    assert SIGNER.sign("p", "a\x1fb", "c") != SIGNER.sign("p", "a", "b\x1fc")
    assert SIGNER.sign("p", "ab", "") != SIGNER.sign("p", "a", "b")
    assert SIGNER.sign("p", None) != SIGNER.sign("p")


@pytest.mark.parametrize("forged", ["", "x", "é" * 43, "A" * 43])
def test_anything_else_is_refused_without_an_error(forged: str) -> None:
    assert not SIGNER.verify(forged, "xet-token", "body")


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Signer(b"short")
