"""Framing of a byte stream with binary records (extension ``binaryOutput``): lines and
records interleaved, fed whole, one byte at a time and in random pieces; the bounds; a
stream that ends inside a record."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_exec._errors import ProtocolError
from trio_exec._protocol import RECORD_MARK, LineTooLong, StreamDecoder, record_head


def record(payload: bytes) -> bytes:
    return record_head(len(payload)) + payload


SMALL = b'{"method":"process/output"}\x00\n\x00\x01binary, newlines and NULs\n\n'
LARGE = bytes(range(256)) * 300
MESSAGES: list[str | bytes] = [
    '{"id":1,"result":{}}',
    SMALL,
    b"",
    '{"method":"process/exited","params":{"x":"\\u0000"}}',
    LARGE,
]
STREAM = (
    b'{"id":1,"result":{}}\r\n'
    + record(SMALL)
    + b"\n  \n"  # blank lines between messages are skipped
    + record(b"")
    + b'{"method":"process/exited","params":{"x":"\\u0000"}}\n'
    + record(LARGE)
)


def test_the_head_is_the_mark_and_a_big_endian_length() -> None:
    assert record_head(0) == b"\x00\x00\x00\x00\x00"
    assert record_head(0x01020304) == bytes((RECORD_MARK, 1, 2, 3, 4))


def test_lines_are_text_and_records_are_bytes_fed_whole() -> None:
    assert StreamDecoder().feed(STREAM) == MESSAGES


def test_fed_one_byte_at_a_time() -> None:
    decoder = StreamDecoder()
    out: list[str | bytes] = []
    for index in range(len(STREAM)):
        out += decoder.feed(STREAM[index : index + 1])
    assert out == MESSAGES
    assert decoder.feed_eof() == []


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM)), max_size=30))
def test_fed_in_any_pieces(cuts: list[int]) -> None:
    decoder = StreamDecoder()
    out: list[str | bytes] = []
    start = 0
    for cut in sorted(set(cuts)):
        out += decoder.feed(bytearray(STREAM[start:cut]))
        start = cut
    out += decoder.feed(memoryview(STREAM[start:]))
    assert out == MESSAGES


def test_a_record_fed_as_one_chunk_is_that_chunk() -> None:
    """The common case of a reader whose reads follow the writer's: a record that comes
    as a chunk of its own is returned as that very object, without a copy."""
    decoder = StreamDecoder()
    assert decoder.feed(record_head(len(LARGE))) == []
    (message,) = decoder.feed(LARGE)
    assert message is LARGE


def test_a_record_is_its_own_copy_of_a_bytearray_fed() -> None:
    """Pieces are kept as views until the record is whole; a caller that reuses its
    buffer afterwards does not change the record."""
    decoder = StreamDecoder()
    whole = record(SMALL)
    half = len(whole) // 2
    piece = bytearray(whole[:half])
    assert decoder.feed(piece) == []
    piece[-1] ^= 0xFF  # the caller reuses the buffer it fed
    (message,) = decoder.feed(whole[half:])
    assert message == SMALL
    assert isinstance(message, bytes)


def test_a_nul_inside_a_line_is_part_of_the_line() -> None:
    # Only where a message starts does a NUL byte begin a record.
    decoder = StreamDecoder()
    assert decoder.feed(b'{"a":1,') == []
    assert decoder.feed(b'"b":"\x00"}\n') == ['{"a":1,"b":"\x00"}']


def test_a_line_that_is_not_utf8_stays_bytes() -> None:
    assert StreamDecoder().feed(b'{"a":"\xff"}\n') == [b'{"a":"\xff"}']


def test_the_last_line_without_a_newline_comes_at_eof() -> None:
    decoder = StreamDecoder()
    assert decoder.feed(record(b"x") + b'{"a":1}') == [b"x"]
    assert decoder.feed_eof() == ['{"a":1}']


@pytest.mark.parametrize("cut", [1, 3, 5, 9])
def test_a_stream_that_ends_inside_a_record_is_an_error(cut: int) -> None:
    decoder = StreamDecoder()
    assert decoder.feed(record(b"12345678")[:cut]) == []
    with pytest.raises(ProtocolError, match="inside a binary record"):
        decoder.feed_eof()


def test_a_record_longer_than_the_bound_breaks_the_decoder_at_its_head() -> None:
    decoder = StreamDecoder(max_message_bytes=10)
    assert decoder.feed(record(b"x" * 10)) == [b"x" * 10]
    with pytest.raises(LineTooLong):
        decoder.feed(record_head(11))  # refused before any payload arrives
    with pytest.raises(LineTooLong):
        decoder.feed(b'{"a":1}\n')  # unusable from then on


def test_a_line_longer_than_the_bound_breaks_the_decoder() -> None:
    decoder = StreamDecoder(max_message_bytes=10)
    with pytest.raises(LineTooLong):
        decoder.feed(b'{"a":"0123456789"}\n')
    with pytest.raises(LineTooLong):
        decoder.feed(record(b"x"))
