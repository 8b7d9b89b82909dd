"""Errors raised by the provenance library when its caller hands it something it cannot work with.

A signature that does not verify is not an error: `verify_signature` reports it as an invalid result.
These are for the signer's side (an unusable key, a manifest that cannot be signed, a folder that cannot
be read) and for key handling.
"""

from __future__ import annotations

from weightyard.errors import WeightyardError


class ProvenanceError(WeightyardError):
    code = "ProvenanceError"
    status = 422


class InvalidKey(ProvenanceError):
    """The bytes are not a PEM key this library can load (or the password is wrong or missing)."""

    code = "InvalidKey"


class UnsupportedKey(ProvenanceError):
    """A well-formed key of a type the OMS algorithm registry does not allow (only NIST P-256/384/521)."""

    code = "UnsupportedKey"


class InvalidManifest(ProvenanceError):
    """A file name or digest that cannot go into a signed manifest."""

    code = "InvalidManifest"


class UnreadableModel(ProvenanceError):
    """The model folder holds something that cannot be hashed safely (symlink, device, fifo) or is missing."""

    code = "UnreadableModel"
