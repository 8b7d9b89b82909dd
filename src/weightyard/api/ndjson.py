"""A streaming parser for the NDJSON body of `POST /api/{type}/{id}/commit/{revision}`.

The stock client inlines file content as base64 in one JSON line, so a line can be gigabytes long. Lines
up to `_SMALL_LINE` bytes are parsed with `json.loads`; longer ones go through an incremental JSON parser
that decodes the `value.content` string from base64 straight into a content sink as it arrives, so memory
stays bounded whatever the file size.

Everything else in a line is bounded too: containers nest at most `max_depth` deep (the commit format needs
2: the line's object and its `value`), and a line holds at most `max_line_bytes` bytes outside the file
content it inlines. A line that breaks either rule is a `MalformedCommit`, never a crash.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from weightyard.errors import MalformedCommit

_SMALL_LINE = 1024 * 1024
MAX_DEPTH = 4
MAX_LINE_BYTES = 1024 * 1024
# Any string other than the file content (paths, messages) must fit in memory comfortably.
_MAX_STRING = 1024 * 1024
_STRING_STOP = re.compile(rb'["\\]')
_LITERAL_BYTES = frozenset(b"0123456789+-.eEtrufalsn")
_WHITESPACE = frozenset(b" \t\r")


class ContentSink(Protocol):
    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...


@dataclass
class StreamedContent:
    """Stands in for a `content` string whose decoded bytes went to `sink`."""

    sink: ContentSink


class _Base64Stream:
    def __init__(self, sink: ContentSink) -> None:
        self._sink = sink
        self._pending = b""
        self._padded = False

    def write(self, chars: bytes) -> None:
        if not chars:
            return
        if self._padded:
            raise MalformedCommit("file content is not valid base64: data after padding")
        data = self._pending + chars
        cut = len(data) - len(data) % 4
        if cut:
            block = data[:cut]
            try:
                decoded = binascii.a2b_base64(block, strict_mode=True)
            except binascii.Error as exc:
                raise MalformedCommit(f"file content is not valid base64: {exc}") from None
            self._padded = block.endswith(b"=")
            self._sink.write(decoded)
        self._pending = data[cut:]

    def close(self) -> None:
        if self._pending:
            raise MalformedCommit("file content is not valid base64: length is not a multiple of 4")


def decode_base64(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedCommit(f"file content is not valid base64: {exc}") from None


class _Frame:
    __slots__ = ("container", "key")

    def __init__(self, container: dict[str, object] | list[object]) -> None:
        self.container = container
        self.key: str | None = None


class _StreamingLine:
    """An incremental JSON parser for one huge line; see the module docstring."""

    def __init__(
        self, open_sink: Callable[[], ContentSink], line_number: int, max_depth: int, max_line_bytes: int
    ) -> None:
        self._open_sink = open_sink
        self._line = line_number
        self._max_depth = max_depth
        self._max_line_bytes = max_line_bytes
        # Bytes of the line outside the inlined file content, which alone may be arbitrarily long.
        self._held = 0
        self._stack: list[_Frame] = []
        self._state = "value"  # value | key | colon | comma | done
        self._string: bytearray | None = None
        self._string_is_key = False
        self._escape = False
        self._content: _Base64Stream | None = None
        self._content_sink: ContentSink | None = None
        self._literal: bytearray | None = None
        self.result: object = None

    def _fail(self, why: str) -> MalformedCommit:
        return MalformedCommit(f"line {self._line} of the commit body is not valid JSON: {why}")

    def abort(self) -> None:
        if self._content_sink is not None:
            self._content_sink.abort()

    def feed(self, data: bytes) -> int | None:
        """Consume `data`; returns the index just past the line's newline once the line is complete."""
        i, n = 0, len(data)
        while i < n:
            if self._content is not None:
                start = i
                i = self._feed_content(data, i)
                self._held -= i - start
                continue
            if self._string is not None:
                i = self._feed_string(data, i)
                continue
            c = data[i]
            if self._literal is not None:
                if c in _LITERAL_BYTES:
                    self._literal.append(c)
                    i += 1
                    continue
                self._end_literal()
            if c == 0x0A:
                if self._state != "done":
                    raise self._fail("the line ends before its JSON value does")
                self._count(i + 1)
                return i + 1
            i += 1
            if c in _WHITESPACE:
                continue
            self._structural(c)
        self._count(n)
        return None

    def _count(self, consumed: int) -> None:
        self._held += consumed
        if self._held > self._max_line_bytes:
            raise MalformedCommit(
                f"line {self._line} of the commit body has more than {self._max_line_bytes} bytes besides "
                "the file content"
            )

    def finish(self) -> None:
        """The body ended without a newline after this line."""
        if self._literal is not None:
            self._end_literal()
        if self._state != "done":
            raise self._fail("the body ends inside a JSON value")

    def _structural(self, c: int) -> None:
        state = self._state
        if state == "value":
            if c in (0x7B, 0x5B) and len(self._stack) >= self._max_depth:
                raise self._fail(f"containers nest more than {self._max_depth} deep")
            if c == 0x7B:  # {
                self._stack.append(_Frame({}))
                self._state = "key"
            elif c == 0x5B:  # [
                self._stack.append(_Frame([]))
                self._state = "value"
            elif c == 0x22:  # "
                self._start_string(is_key=False)
            elif c == 0x5D and self._stack and isinstance(self._stack[-1].container, list):
                self._close_container()
            elif c in _LITERAL_BYTES:
                self._literal = bytearray([c])
            else:
                raise self._fail(f"unexpected {chr(c)!r}")
        elif state == "key":
            if c == 0x22:
                self._start_string(is_key=True)
            elif c == 0x7D:
                self._close_container()
            else:
                raise self._fail(f"expected a key, got {chr(c)!r}")
        elif state == "colon":
            if c != 0x3A:
                raise self._fail(f"expected ':', got {chr(c)!r}")
            self._state = "value"
        elif state == "comma":
            top = self._stack[-1].container
            if c == 0x2C:
                self._state = "key" if isinstance(top, dict) else "value"
            elif (c == 0x7D and isinstance(top, dict)) or (c == 0x5D and isinstance(top, list)):
                self._close_container()
            else:
                raise self._fail(f"expected ',' or a closing bracket, got {chr(c)!r}")
        else:
            raise self._fail(f"unexpected {chr(c)!r} after the value")

    def _is_content_position(self) -> bool:
        stack = self._stack
        return (
            len(stack) == 2
            and isinstance(stack[0].container, dict)
            and stack[0].key == "value"
            and isinstance(stack[1].container, dict)
            and stack[1].key == "content"
        )

    def _start_string(self, is_key: bool) -> None:
        if not is_key and self._is_content_position():
            self._content_sink = self._open_sink()
            self._content = _Base64Stream(self._content_sink)
            return
        self._string = bytearray()
        self._string_is_key = is_key
        self._escape = False

    def _feed_string(self, data: bytes, i: int) -> int:
        assert self._string is not None
        n = len(data)
        while i < n:
            if self._escape:
                self._string.append(data[i])
                self._escape = False
                i += 1
                continue
            match = _STRING_STOP.search(data, i)
            stop = match.start() if match else n
            self._string += data[i:stop]
            if len(self._string) > _MAX_STRING:
                raise self._fail("a string is too long")
            if match is None:
                return n
            if data[stop] == 0x5C:  # backslash: keep it and the escaped byte
                self._string.append(0x5C)
                self._escape = True
                i = stop + 1
                continue
            raw = bytes(self._string)
            self._string = None
            try:
                text = json.loads(b'"' + raw + b'"')
            except ValueError as exc:
                raise self._fail(f"bad string: {exc}") from None
            if self._string_is_key:
                self._stack[-1].key = text
                self._state = "colon"
            else:
                self._value(text)
            return stop + 1
        return i

    def _feed_content(self, data: bytes, i: int) -> int:
        assert self._content is not None
        n = len(data)
        if self._escape:
            if data[i] != 0x2F:  # only "\/" can appear in base64 text
                raise self._fail("unexpected escape in base64 content")
            self._content.write(b"/")
            self._escape = False
            return i + 1
        match = _STRING_STOP.search(data, i)
        stop = match.start() if match else n
        self._content.write(data[i:stop])
        if match is None:
            return n
        if data[stop] == 0x5C:
            self._escape = True
            return stop + 1
        self._content.close()
        sink = self._content_sink
        assert sink is not None
        self._content = None
        self._content_sink = None
        self._value(StreamedContent(sink))
        return stop + 1

    def _end_literal(self) -> None:
        assert self._literal is not None
        raw = bytes(self._literal)
        self._literal = None
        try:
            value = json.loads(raw)
        except ValueError:
            raise self._fail(f"bad literal {raw[:20]!r}") from None
        self._value(value)

    def _close_container(self) -> None:
        frame = self._stack.pop()
        self._value(frame.container)

    def _value(self, value: object) -> None:
        if not self._stack:
            self.result = value
            self._state = "done"
            return
        frame = self._stack[-1]
        if isinstance(frame.container, dict):
            assert frame.key is not None
            frame.container[frame.key] = value
        else:
            frame.container.append(value)
        self._state = "comma"


class NdjsonStream:
    """Splits a byte stream into parsed JSON lines, streaming huge lines; see the module docstring.

    Each parsed line is passed to `on_line`; a `value.content` string of a huge line arrives as a
    `StreamedContent` whose sink came from `open_sink`.
    """

    def __init__(
        self,
        open_sink: Callable[[], ContentSink],
        on_line: Callable[[object], None],
        max_depth: int = MAX_DEPTH,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self._open_sink = open_sink
        self._on_line = on_line
        self._max_depth = max_depth
        self._max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._streaming: _StreamingLine | None = None
        self._line_number = 0

    def feed(self, data: bytes) -> None:
        while data:
            if self._streaming is not None:
                end = self._streaming.feed(data)
                if end is None:
                    return
                self._emit(self._streaming.result)
                self._streaming = None
                data = data[end:]
                continue
            newline = data.find(b"\n")
            if newline >= 0 and len(self._buffer) + newline <= _SMALL_LINE:
                self._buffer += data[:newline]
                self._small_line()
                data = data[newline + 1 :]
                continue
            if newline < 0 and len(self._buffer) + len(data) <= _SMALL_LINE:
                self._buffer += data
                return
            # The line is too long to hold: replay what we have through the streaming parser.
            self._line_number += 1
            self._streaming = _StreamingLine(
                self._open_sink, self._line_number, self._max_depth, self._max_line_bytes
            )
            held = bytes(self._buffer)
            self._buffer = bytearray()
            if held and self._streaming.feed(held) is not None:
                raise MalformedCommit(f"line {self._line_number} of the commit body is not valid JSON")

    def close(self) -> None:
        if self._streaming is not None:
            self._streaming.finish()
            self._emit(self._streaming.result)
            self._streaming = None
        elif self._buffer.strip():
            self._small_line()

    def abort(self) -> None:
        if self._streaming is not None:
            self._streaming.abort()

    def _small_line(self) -> None:
        raw = bytes(self._buffer)
        self._buffer = bytearray()
        if not raw.strip():
            return
        self._line_number += 1
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise MalformedCommit(
                f"line {self._line_number} of the commit body is not valid JSON: {exc}"
            ) from None
        except RecursionError:  # nested past the interpreter's limit, so past ours too
            raise self._too_deep() from None
        if _depth(value) > self._max_depth:
            raise self._too_deep()
        if len(raw) > self._max_line_bytes and len(raw) - _content_length(value) > self._max_line_bytes:
            raise MalformedCommit(
                f"line {self._line_number} of the commit body has more than {self._max_line_bytes} bytes "
                "besides the file content"
            )
        self._on_line(value)

    def _emit(self, value: object) -> None:
        self._on_line(value)

    def _too_deep(self) -> MalformedCommit:
        return MalformedCommit(
            f"line {self._line_number} of the commit body nests containers more than {self._max_depth} deep"
        )


def _depth(value: object) -> int:
    """How deep containers nest in a parsed value (a scalar is 0), walked without recursion."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _content_length(line: object) -> int:
    """Length of the inlined file content of a parsed line (0 if it has none)."""
    value = line.get("value") if isinstance(line, dict) else None
    content = value.get("content") if isinstance(value, dict) else None
    return len(content) if isinstance(content, str) else 0
