"""Xorb bodies held in memory, read the way the server reads stored xorbs (`XorbReader`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from weightyard.xet import XorbReader


def reader_over(bodies: Mapping[bytes, bytes | bytearray]) -> XorbReader:
    """A `XorbReader` over `bodies` (xorb hash -> serialized body): copies into the buffers in order."""

    def read(xorb: bytes, start: int, buffers: Sequence[memoryview]) -> int:
        source = memoryview(bodies[xorb])
        position = start
        for buffer in buffers:
            piece = source[position : position + len(buffer)]
            buffer[: len(piece)] = piece
            position += len(piece)
            if len(piece) < len(buffer):
                break
        return position - start

    return read
