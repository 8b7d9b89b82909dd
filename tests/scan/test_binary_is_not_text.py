"""Binary content that happens to start like JSON is neither parsed nor decoded as text."""

from __future__ import annotations

import random
import tracemalloc

from weightyard.scan import Verdict, scan_file

SIZE = 32 * 1024 * 1024


def _binary_starting_with(first: bytes) -> bytes:
    # Random bytes, seeded: such content holds NUL bytes and invalid UTF-8 within its first kilobyte.
    return first + random.Random(first).randbytes(SIZE - len(first))


def test_binary_content_starting_with_a_bracket_is_unscannable_binary_not_safe_text() -> None:
    for first in (b"[", b"{", b"  {"):
        report = scan_file(_binary_starting_with(first), "weights.bin")
        assert report.format == "unknown", (first, report.format)
        assert [finding.rule for finding in report.findings] == ["format.unknown"]
        assert report.verdict is not Verdict.SAFE


def test_scanning_binary_that_starts_like_json_allocates_nothing_in_proportion_to_its_size() -> None:
    data = _binary_starting_with(b"[")
    tracemalloc.start()
    try:
        scan_file(data, "weights.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Decoding it as text took bytes and a str of the same length (over 96 MiB for these 32 MiB).
    assert peak < 4 * 1024 * 1024, peak
