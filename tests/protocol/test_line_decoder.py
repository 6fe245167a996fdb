"""NDJSON framing: lines fed whole, one byte at a time and in random pieces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_exec._errors import ProtocolError
from trio_exec._protocol import (
    DEFAULT_MAX_LINE_BYTES,
    LineDecoder,
    LineTooLong,
    Notification,
    decode_message,
    encode_line,
)

STREAM = (
    b'{"id":1,"method":"a"}\n{"id":2,"method":"b"}\r\n\n   \n\r\n\t\n{"method":"c"}\n{"x":"y\rz"}'
)
LINES = [b'{"id":1,"method":"a"}', b'{"id":2,"method":"b"}', b'{"method":"c"}']
LAST = b'{"x":"y\rz"}'


def feed_bytewise(decoder: LineDecoder, data: bytes) -> list[bytes]:
    lines: list[bytes] = []
    for index in range(len(data)):
        lines += decoder.feed(data[index : index + 1])
    return lines


def test_default_limit_is_16_mib() -> None:
    assert DEFAULT_MAX_LINE_BYTES == 16 * 1024 * 1024
    assert LineDecoder().max_line_bytes == DEFAULT_MAX_LINE_BYTES


def test_whole() -> None:
    decoder = LineDecoder()
    assert decoder.feed(STREAM) == LINES
    assert decoder.buffered == len(LAST)
    assert decoder.feed_eof() == [LAST]
    assert decoder.buffered == 0
    assert decoder.feed_eof() == []


def test_one_byte_at_a_time() -> None:
    decoder = LineDecoder()
    assert feed_bytewise(decoder, STREAM) == LINES
    assert decoder.feed_eof() == [LAST]


def test_accepts_bytearray_and_memoryview() -> None:
    decoder = LineDecoder()
    assert decoder.feed(bytearray(b"a\nb")) == [b"a"]
    assert decoder.feed(memoryview(b"c\n")) == [b"bc"]


def test_crlf_split_between_chunks() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b"abc\r") == []
    assert decoder.feed(b"\ndef\r\n") == [b"abc", b"def"]


def test_only_the_terminating_cr_is_stripped() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b"a\r\r\n\rb\n") == [b"a\r", b"\rb"]


def test_eof_strips_cr_and_skips_blank() -> None:
    decoder = LineDecoder()
    decoder.feed(b"x\r")
    assert decoder.feed_eof() == [b"x"]
    decoder.feed(b"  \r")
    assert decoder.feed_eof() == []


def test_lines_decode_as_messages() -> None:
    message = Notification(method="initialized", params={})
    decoder = LineDecoder()
    lines = feed_bytewise(decoder, encode_line(message) * 3)
    assert [decode_message(line) for line in lines] == [message] * 3


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"])
def test_line_of_exactly_the_limit_passes(bytewise: bool, terminator: bytes) -> None:
    decoder = LineDecoder(max_line_bytes=8)
    data = b"12345678" + terminator + b"1234" + terminator
    lines = feed_bytewise(decoder, data) if bytewise else decoder.feed(data)
    assert lines == [b"12345678", b"1234"]


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize("data", [b"123456789\n", b"123456789\r\n", b"ok\n123456789"])
def test_line_over_the_limit_fails(bytewise: bool, data: bytes) -> None:
    decoder = LineDecoder(max_line_bytes=8)

    def feed() -> list[bytes]:
        return feed_bytewise(decoder, data) if bytewise else decoder.feed(data)

    with pytest.raises(LineTooLong, match="line longer than 8 bytes") as info:
        feed()
    assert isinstance(info.value, ProtocolError)
    assert info.value.max_line_bytes == 8
    # The decoder is then unusable, and holds no memory.
    assert decoder.buffered == 0
    with pytest.raises(LineTooLong):
        decoder.feed(b"\n")
    with pytest.raises(LineTooLong):
        decoder.feed_eof()


def test_overflow_is_detected_before_the_newline() -> None:
    decoder = LineDecoder(max_line_bytes=8)
    assert decoder.feed(b"12345678") == []
    assert decoder.feed(b"\r") == []  # may still be the terminator
    with pytest.raises(LineTooLong):
        decoder.feed(b"9")


def test_bad_limit() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        LineDecoder(max_line_bytes=0)


@given(
    st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")), max_size=10),
    st.sampled_from([b"\n", b"\r\n"]),
    st.lists(st.integers(min_value=0, max_value=200), max_size=10),
)
def test_any_split_gives_the_same_lines(
    lines: list[bytes], terminator: bytes, cuts: list[int]
) -> None:
    data = b"".join(line + terminator for line in lines)
    expected = [
        line[:-1] if terminator == b"\n" and line.endswith(b"\r") else line for line in lines
    ]
    expected = [line for line in expected if line.strip()]
    whole = LineDecoder()
    assert whole.feed(data) == expected
    assert whole.feed_eof() == []
    decoder = LineDecoder()
    got: list[bytes] = []
    start = 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}):
        got += decoder.feed(data[start:cut])
        start = cut
    got += decoder.feed(data[start:])
    assert got == expected
