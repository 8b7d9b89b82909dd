"""Errors raised by the Xet protocol library.

Each names one way an upload or a request can be wrong, carries a stable code, and the HTTP status the CAS
routes answer with. They derive from the hub's `WeightyardError`, so the one error mapper of the API turns
them into `{"error", "code"}` bodies without knowing about Xet.
"""

from __future__ import annotations

from weightyard.errors import WeightyardError


class XetError(WeightyardError):
    """Base of every Xet protocol error: the request is malformed or does not verify."""

    code = "XetError"
    status = 400


class InvalidXetHash(XetError):
    """A hash string is not 64 hex digits, or a raw hash is not 32 bytes."""

    code = "XetInvalidHash"


class XorbTooLarge(XetError):
    """A xorb body exceeds the size limit (64 MiB of data plus 8 bytes per chunk header)."""

    code = "XetXorbTooLarge"
    status = 413


class InvalidXorb(XetError):
    """A xorb body is not a well-formed sequence of chunks (bad header, truncation, trailing bytes)."""

    code = "XetInvalidXorb"


class ChunkDecompressionError(InvalidXorb):
    """A chunk's payload does not decompress to exactly its declared length."""

    code = "XetChunkDecompression"


class XorbHashMismatch(XetError):
    """The Merkle root of a xorb's recomputed chunk hashes is not the hash it was uploaded under."""

    code = "XetXorbHashMismatch"


class ShardTooLarge(XetError):
    """A shard body exceeds the size limit."""

    code = "XetShardTooLarge"
    status = 413


class ShardOverBudget(ShardTooLarge):
    """Verifying a shard would cost more work than the uploader paid for with the bytes it sent."""

    code = "XetShardOverBudget"


class InvalidShard(XetError):
    """A shard is not well formed: header, records, bookends, lookup tables or footer."""

    code = "XetInvalidShard"


class ShardVerificationError(XetError):
    """A shard is well formed but what it claims does not match the server's own record of the xorbs."""

    code = "XetShardVerification"


class UnknownXorb(ShardVerificationError):
    """A shard or a reconstruction refers to a xorb the server does not hold."""

    code = "XetUnknownXorb"


class RangeNotSatisfiable(XetError):
    """A byte range starts at or beyond the end of the file."""

    code = "XetRangeNotSatisfiable"
    status = 416


class InvalidRange(XetError):
    """A Range header this library does not parse; HTTP lets a server ignore it and send the whole file."""

    code = "XetInvalidRange"


class CorruptXorb(XetError):
    """A stored xorb does not hold the chunks its record says: storage damage, not a client error."""

    code = "XetCorruptXorb"
    status = 500
