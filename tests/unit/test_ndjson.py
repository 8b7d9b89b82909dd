"""The streaming commit-body parser gives the same result however the body is split."""

from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightyard.api.ndjson import NdjsonStream, StreamedContent
from weightyard.errors import MalformedCommit


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    def abort(self) -> None:
        self.aborted = True


def parse(body: bytes, pieces: list[int]) -> list[object]:
    lines: list[object] = []
    stream = NdjsonStream(Sink, lines.append)
    start = 0
    for size in pieces:
        stream.feed(body[start : start + size])
        start += size
    stream.feed(body[start:])
    stream.close()
    return lines


def body_with(content: bytes, separators: tuple[str, str] = (", ", ": ")) -> bytes:
    lines = [
        {"key": "header", "value": {"summary": 's\u00e9 "quoted" \\ slash', "description": ""}},
        {
            "key": "file",
            "value": {"content": base64.b64encode(content).decode(), "path": "a/b.bin", "encoding": "base64"},
        },
        {"key": "deletedFile", "value": {"path": "old.txt"}},
    ]
    return b"".join(json.dumps(line, separators=separators).encode() + b"\n" for line in lines)


def content_of(line: object) -> bytes:
    assert isinstance(line, dict)
    value = line["value"]
    content = value["content"]
    if isinstance(content, StreamedContent):
        sink = content.sink
        assert isinstance(sink, Sink)
        return bytes(sink.data)
    return base64.b64decode(content)


def test_huge_line_is_streamed_into_the_sink_not_held_as_a_string() -> None:
    content = os.urandom(3 * 1024 * 1024)
    lines = parse(body_with(content), [100_000] * 50)
    assert len(lines) == 3
    file_line = lines[1]
    assert isinstance(file_line, dict)
    assert isinstance(file_line["value"]["content"], StreamedContent)
    assert content_of(file_line) == content
    assert file_line["value"]["path"] == "a/b.bin"
    assert lines[0] == json.loads(body_with(b"").split(b"\n")[0])


@settings(max_examples=30, deadline=None)
@given(pieces=st.lists(st.integers(min_value=1, max_value=400_000), max_size=12), compact=st.booleans())
def test_any_split_of_a_huge_body_parses_the_same(pieces: list[int], compact: bool) -> None:
    content = bytes(range(256)) * 6000
    separators = (",", ":") if compact else (", ", ": ")
    lines = parse(body_with(content, separators), pieces)
    assert content_of(lines[1]) == content
    assert lines[2] == {"key": "deletedFile", "value": {"path": "old.txt"}}


def test_escaped_slashes_in_base64_are_accepted() -> None:
    content = b"\xff\xfe" * 600_000
    encoded = base64.b64encode(content).decode().replace("/", "\\/")
    line = '{"key": "file", "value": {"content": "' + encoded + '", "path": "x"}}\n'
    assert content_of(parse(line.encode(), [65536] * 40)[0]) == content


@pytest.mark.parametrize(
    "tail",
    [
        b'{"key": "file", "value": {"content": "' + b"A" * 2_000_001 + b'", "path": "x"}}\n',
        b'{"key": "file", "value": {"content": "' + b"!" * 2_000_000 + b'", "path": "x"}}\n',
        b'{"key": "file", "value": {"content": "' + b"AA==AAAA" * 300_000 + b'", "path": "x"}}\n',
        b'{"key": "file", "value": {"content": "' + b"A" * 2_000_000 + b'", "path": "x"}\n',
        b'{"key": "file", "value": {"content": "' + b"A" * 2_000_000 + b'" "path": "x"}}\n',
    ],
    ids=["length", "alphabet", "inner-padding", "unbalanced", "missing-comma"],
)
def test_broken_huge_lines_are_malformed(tail: bytes) -> None:
    with pytest.raises(MalformedCommit):
        parse(tail, [1_000_000] * 3)
