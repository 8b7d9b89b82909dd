"""Resource limits and the per-scan budget that turns an exhausted limit into an `unscannable` verdict."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds on one scan. Every limit, when hit, ends the scan as `unscannable` with the reason."""

    seconds: float = 120.0
    decompressed_bytes: int = 1 << 30
    member_bytes: int = 512 << 20
    pickle_opcodes: int = 20_000_000
    pickle_stack: int = 1_000_000
    nesting_depth: int = 8
    archive_members: int = 100_000
    header_bytes: int = 100 << 20
    compression_ratio: int = 200
    allocation_bytes: int = 1 << 30
    # A string or bytes argument inside a pickle, or a protocol-0 line, larger than this is never read into
    # memory: the walker keeps its place and length (a nested pickle in it is scanned in place), and a line
    # that long is malformed. Its length is the file's to declare, so reading it would let a few bytes of
    # header make the scan hold hundreds of MB.
    constant_bytes: int = 16 << 20


DEFAULT_LIMITS = Limits()


class FormatError(Exception):
    """Raised by a parser for input that is malformed: an expected outcome of hostile bytes, reported as
    `format.corrupt`. Any other exception out of a parser is a scanner bug (`scanner.internal-error`)."""


class LimitExceeded(Exception):
    """Raised deep inside a parser; the engine turns it into a finding."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class OutputLimitExceeded(LimitExceeded):
    """Decompression passed the size cap after reading `consumed` compressed bytes."""

    def __init__(self, cap: int, consumed: int) -> None:
        super().__init__("limit.member-size", f"decompressed content exceeds {cap} bytes")
        self.consumed = consumed


class Budget:
    """Tracks what one top-level scan has spent, shared by every nested parser."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._deadline = time.monotonic() + limits.seconds
        self._decompressed = 0

    def check_time(self) -> None:
        if time.monotonic() > self._deadline:
            raise LimitExceeded("limit.time", f"scan took longer than {self.limits.seconds:g} s")

    def spend_decompressed(self, n: int) -> None:
        self._decompressed += n
        if self._decompressed > self.limits.decompressed_bytes:
            raise LimitExceeded(
                "limit.decompressed-size",
                f"decompressed data exceeds {self.limits.decompressed_bytes} bytes",
            )
