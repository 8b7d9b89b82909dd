"""The byte containers every parser reads: an in-memory bytes object, a read-only mmap of a file, or a
`RangeView` of content that is no file (chunked storage), read in place by random access.

Python 3.11 has no `__buffer__`, so a `RangeView` cannot be handed to code that wants the buffer protocol
(`struct.unpack_from`, `re`, `memoryview`, decompressors): parsers slice it (slices are `bytes`) or use
`unpack_at`, which keeps the zero-copy `unpack_from` for bytes and mmaps.
"""

from __future__ import annotations

import mmap
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, overload

# Content is cached in aligned blocks: parsers read forwards in small steps (opcodes, varints, headers),
# so a few recent blocks serve almost every read. The cache never holds more than BLOCK * BLOCKS bytes.
BLOCK = 1 << 20
BLOCKS = 16

ReadAt = Callable[[int, int], bytes]
"""Reads `length` bytes at `offset` (fewer only at the end of the content)."""


class SourceReadError(Exception):
    """Reading the scanned content itself failed (storage damaged or gone; the cause is chained): that is
    no property of the content, so no parser turns it into a finding, and `scan_file` raises the cause."""


class RangeView:
    """Read-only random access to `size` bytes that `read_at` fetches on demand; what parsers use of
    bytes: `len`, indexing, slicing (with step 1; slices are `bytes`), `find` and `rfind`.

    Memory is bounded whatever the size: at most BLOCKS cached blocks (and the last block used), plus the
    slices callers ask for.
    """

    def __init__(self, read_at: ReadAt, size: int, *, before_read: Callable[[], None] | None = None) -> None:
        self._read_at = read_at
        self._size = size
        # Called before each read from the source (the scan's time budget, which may raise): a parser
        # that searches a huge file in one call still stops at the budget.
        self._before_read = before_read
        self._block = BLOCK
        self._blocks = BLOCKS
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        # The block of the last index, kept apart so that byte-at-a-time parsing skips the LRU bookkeeping.
        self._last_start = -1
        self._last: bytes = b""

    def __len__(self) -> int:
        return self._size

    @property
    def cache_bytes(self) -> int:
        """The most content the view caches."""
        return self._block * self._blocks

    def _fetch(self, index: int) -> bytes:
        """Block `index` (the bytes from `index * block`), from the cache or read and cached."""
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        start = index * self._block
        data = self._read_exactly(start, min(self._block, self._size - start))
        self._cache[index] = data
        if len(self._cache) > self._blocks:
            self._cache.popitem(last=False)
        return data

    def _read_exactly(self, offset: int, length: int) -> bytes:
        if self._before_read is not None:
            self._before_read()
        try:
            data = self._read_at(offset, length)
        except Exception as exc:
            raise SourceReadError(f"cannot read {length} bytes at {offset}: {exc}") from exc
        if len(data) != length:
            short = OSError(f"content ends at {offset + len(data)}, before its size of {self._size}")
            raise SourceReadError(str(short)) from short
        return data

    @overload
    def __getitem__(self, key: int) -> int: ...

    @overload
    def __getitem__(self, key: slice) -> bytes: ...

    def __getitem__(self, key: int | slice) -> int | bytes:
        if isinstance(key, slice):
            start, stop, step = key.indices(self._size)
            if step != 1:
                raise ValueError("RangeView slices take no step")
            offset = start - self._last_start
            if offset >= 0 and stop - self._last_start <= len(self._last):
                return self._last[offset : stop - self._last_start]
            return self._range(start, stop)
        index = key + self._size if key < 0 else key
        if not 0 <= index < self._size:
            raise IndexError("RangeView index out of range")
        offset = index - self._last_start
        if 0 <= offset < len(self._last):
            return self._last[offset]
        self._use(index // self._block)
        return self._last[index - self._last_start]

    def _use(self, index: int) -> bytes:
        """Block `index`, kept as the last one used."""
        self._last = self._fetch(index)
        self._last_start = index * self._block
        return self._last

    def _range(self, start: int, stop: int) -> bytes:
        if stop <= start:
            return b""
        first, last = start // self._block, (stop - 1) // self._block
        if last - first >= self._blocks // 2:
            # A large slice is read straight through: caching it would only evict what parsers reuse.
            return self._read_exactly(start, stop - start)
        base = first * self._block
        if first == last:
            return self._use(first)[start - base : stop - base]
        # Only the wanted part of each end block is copied: a slice across a seam costs its own length.
        pieces = [self._fetch(first)[start - base :]]
        pieces += [self._fetch(index) for index in range(first + 1, last)]
        pieces.append(self._fetch(last)[: stop - last * self._block])
        return b"".join(pieces)

    def _bounds(self, start: int | None, end: int | None) -> tuple[int, int]:
        """`start` and `end` adjusted as bytes.find adjusts them."""
        start = 0 if start is None else start
        end = self._size if end is None else end
        if end > self._size:
            end = self._size
        elif end < 0:
            end = max(0, end + self._size)
        if start < 0:
            start = max(0, start + self._size)
        return start, end

    # Searches go block by block, from where they start (a parser looking for the next newline reads only
    # the block it is in), searching each cached block in place and the few bytes across each seam apart.
    def find(self, sub: bytes, start: int | None = None, end: int | None = None) -> int:
        start, end = self._bounds(start, end)
        n = len(sub)
        if end - start < n:
            return -1
        if n == 0:
            return start
        pos = start
        while pos <= end - n:
            if not 0 <= pos - self._last_start < len(self._last):
                self._use(pos // self._block)
            block, base = self._last, self._last_start
            found = block.find(sub, pos - base, min(len(block), end - base))
            if found >= 0:
                return base + found
            block_end = base + len(block)
            if block_end >= end:
                return -1
            # Matches that start in this block and end in the next.
            seam_start = max(pos, block_end - n + 1)
            found = self._range(seam_start, min(block_end + n - 1, end)).find(sub)
            if found >= 0:
                return seam_start + found
            pos = block_end
        return -1

    def rfind(self, sub: bytes, start: int | None = None, end: int | None = None) -> int:
        start, end = self._bounds(start, end)
        n = len(sub)
        if end - start < n:
            return -1
        if n == 0:
            return end
        stop = end
        while stop - start >= n:
            index = (stop - 1) // self._block
            base = index * self._block
            found = self._fetch(index).rfind(sub, max(start, base) - base, stop - base)
            if found >= 0:
                return base + found
            if base <= start:
                return -1
            # Matches that start in the previous block and end in this one.
            seam_start = max(start, base - n + 1)
            found = self._range(seam_start, min(base + n - 1, stop)).rfind(sub)
            if found >= 0:
                return seam_start + found
            stop = base
        return -1


Data = bytes | mmap.mmap | RangeView


def window(data: Data, start: int, length: int, before_read: Callable[[], None] | None = None) -> RangeView:
    """`length` bytes of `data` from `start`, read in place: only what a parser touches is copied."""

    def read_at(offset: int, count: int) -> bytes:
        return bytes(data[start + offset : start + min(offset + count, length)])

    return RangeView(read_at, length, before_read=before_read)


def unpack_at(fmt: str, data: Data, offset: int) -> tuple[Any, ...]:
    """`struct.unpack_from(fmt, data, offset)` for every kind of `Data`, with the same errors."""
    if not isinstance(data, RangeView):
        return struct.unpack_from(fmt, data, offset)
    size, length = struct.calcsize(fmt), len(data)
    if offset < 0:
        if offset + size > 0:
            raise struct.error(f"not enough data to unpack {size} bytes at offset {offset}")
        if offset + length < 0:
            raise struct.error(f"offset {offset} out of range for {length}-byte buffer")
        offset += length
    if length - offset < size:
        raise struct.error(
            f"unpack_from requires a buffer of at least {size + offset} bytes for unpacking {size} bytes "
            f"at offset {offset} (actual buffer size is {length})"
        )
    return struct.unpack(fmt, data[offset : offset + size])
