"""The one line splitter: both policies, fed whole, one byte at a time and in random pieces."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_exec._errors import TrioExecError
from trio_exec._lines import LineSplitter, LineTooLongError, TooLong

TOO_LONG = "too long"
Outcome = bytes | str
Feed = Callable[[bytes, int, TooLong], list[Outcome]]


def run(splitter: LineSplitter, chunks: list[bytes]) -> list[Outcome]:
    """Feed ``chunks`` then end of stream; every line, and ``TOO_LONG`` for each error."""
    out: list[Outcome] = []
    for chunk in chunks:
        splitter.feed(chunk)
        while True:
            try:
                line = splitter.next_line()
            except LineTooLongError as exc:
                out.append(TOO_LONG if exc.max_line_bytes == splitter.max_line_bytes else str(exc))
                continue
            if line is None:
                break
            out.append(line)
    last = splitter.feed_eof()
    if last is not None:
        out.append(last)
    return out


def whole(data: bytes, limit: int, policy: TooLong) -> list[Outcome]:
    return run(LineSplitter(limit, too_long=policy), [data])


def bytewise(data: bytes, limit: int, policy: TooLong) -> list[Outcome]:
    return run(LineSplitter(limit, too_long=policy), [data[i : i + 1] for i in range(len(data))])


def model(data: bytes, limit: int, policy: TooLong) -> list[Outcome]:
    """What the splitter must give: lines without ``\\n`` or ``\\r\\n`` (a final line's
    ``\\r`` stripped), each longer one ``TOO_LONG`` or its pieces."""
    *lines, last = data.split(b"\n")
    if last:
        lines.append(last)
    out: list[Outcome] = []
    for line in (line.removesuffix(b"\r") for line in lines):
        if len(line) <= limit:
            out.append(line)
        elif policy is TooLong.RAISE:
            out.append(TOO_LONG)
        else:
            out += [line[i : i + limit] for i in range(0, len(line), limit)]
    return out


BOTH = pytest.mark.parametrize("policy", list(TooLong))
FEEDS = pytest.mark.parametrize("feed", [whole, bytewise], ids=["whole", "bytewise"])


@BOTH
@FEEDS
def test_terminators_and_the_final_line(feed: Feed, policy: TooLong) -> None:
    data = b'{"a": 1}\r\n\n\r\n{"b"\r: 2}\na\r\r\nlast\r'
    expected = [b'{"a": 1}', b"", b"", b'{"b"\r: 2}', b"a\r", b"last"]
    assert feed(data, 100, policy) == expected


@BOTH
@FEEDS
def test_no_final_line_after_a_terminator_or_nothing(feed: Feed, policy: TooLong) -> None:
    assert feed(b"a\n", 100, policy) == [b"a"]
    assert feed(b"", 100, policy) == []
    assert feed(b"\r", 100, policy) == [b""]


@BOTH
@FEEDS
@pytest.mark.parametrize("terminator", [b"\n", b"\r\n", b""])
def test_a_line_of_exactly_the_limit_is_a_line(
    feed: Feed, policy: TooLong, terminator: bytes
) -> None:
    assert feed(b"12345678" + terminator, 8, policy) == [b"12345678"]
    assert feed(b"1234\n12345678" + terminator, 8, policy) == [b"1234", b"12345678"]


@BOTH
@FEEDS
@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"])
def test_the_line_after_one_of_exactly_the_limit(
    feed: Feed, policy: TooLong, terminator: bytes
) -> None:
    data = b"12345678" + terminator + b"x" + terminator
    assert feed(data, 8, policy) == [b"12345678", b"x"]


@FEEDS
@pytest.mark.parametrize("line", [b"123456789\n", b"123456789\r\n", b"12345678\r9\n"])
def test_raise_reports_a_longer_line_once_and_skips_it(feed: Feed, line: bytes) -> None:
    assert feed(line + b"next\n", 8, TooLong.RAISE) == [TOO_LONG, b"next"]
    assert feed(b"ok\n" + line, 8, TooLong.RAISE) == [b"ok", TOO_LONG]


@FEEDS
@pytest.mark.parametrize("rest", [b"123456789", b"12345678\r\r"])
def test_raise_reports_a_longer_final_line(feed: Feed, rest: bytes) -> None:
    assert feed(b"ok\n" + rest, 8, TooLong.RAISE) == [b"ok", TOO_LONG]


def test_raise_detects_the_line_before_its_end_and_holds_no_more() -> None:
    splitter = LineSplitter(8, too_long=TooLong.RAISE)
    splitter.feed(b"12345678")
    assert splitter.next_line() is None
    splitter.feed(b"\r")  # may still be the terminator
    assert splitter.next_line() is None
    splitter.feed(b"9")
    with pytest.raises(LineTooLongError, match="line longer than 8 bytes"):
        splitter.next_line()
    assert splitter.buffered == 0
    splitter.feed(b"x" * 100)
    assert splitter.next_line() is None
    assert splitter.buffered == 0  # the rest of the line is dropped as it comes
    splitter.feed(b"x\nnext\n")
    assert splitter.next_line() == b"next"


def test_raise_keeps_the_lines_before_the_long_one() -> None:
    splitter = LineSplitter(3, too_long=TooLong.RAISE)
    splitter.feed(b"a\nb\n" + b"x" * 10 + b"\nc\n")
    assert splitter.next_line() == b"a"
    assert splitter.next_line() == b"b"
    with pytest.raises(LineTooLongError):
        splitter.next_line()
    assert splitter.next_line() == b"c"
    assert splitter.next_line() is None


@FEEDS
def test_cut_gives_pieces_of_the_limit(feed: Feed) -> None:
    data = b"x" * 20 + b"\n" + b"y" * 16 + b"\r\n" + b"z" * 9
    expected = [b"x" * 8, b"x" * 8, b"x" * 4, b"y" * 8, b"y" * 8, b"z" * 8, b"z"]
    assert feed(data, 8, TooLong.CUT) == expected


@FEEDS
def test_cut_keeps_a_cr_that_is_not_the_terminator(feed: Feed) -> None:
    data = b"1234567\r9\n" + b"12345678\r\r\n"
    expected = [b"1234567\r", b"9", b"12345678", b"\r"]
    assert feed(data, 8, TooLong.CUT) == expected


def test_cut_returns_a_piece_as_soon_as_it_is_complete() -> None:
    splitter = LineSplitter(4, too_long=TooLong.CUT)
    assert splitter.split(b"abc") == []
    assert splitter.split(b"d") == [b"abcd"]
    assert splitter.buffered == 0
    assert splitter.split(b"\n") == []  # the line ended with the piece: no empty line
    assert splitter.split(b"abc\r") == []  # the \r may be the terminator
    assert splitter.split(b"\n") == [b"abc"]
    assert splitter.split(b"abcd") == [b"abcd"]
    assert splitter.feed_eof() is None  # nothing after the piece


def test_split_with_raise_raises() -> None:
    splitter = LineSplitter(2, too_long=TooLong.RAISE)
    with pytest.raises(LineTooLongError):
        splitter.split(b"ok\ntoo long\n")
    assert splitter.split(b"x\n") == [b"x"]


def test_a_splitter_is_reusable_after_eof() -> None:
    splitter = LineSplitter(8, too_long=TooLong.RAISE)
    assert splitter.split(b"a\nb") == [b"a"]
    assert splitter.feed_eof() == b"b"
    assert splitter.feed_eof() is None
    assert splitter.split(b"c\n") == [b"c"]


def test_the_bound_is_checked() -> None:
    for policy in TooLong:
        with pytest.raises(ValueError, match="max_line_bytes must be >= 1"):
            LineSplitter(0, too_long=policy)
    splitter = LineSplitter(5, too_long=TooLong.CUT)
    assert splitter.max_line_bytes == 5
    assert splitter.too_long is TooLong.CUT


def test_the_error() -> None:
    error = LineTooLongError(7)
    assert isinstance(error, TrioExecError)
    assert isinstance(error, ValueError)
    assert error.max_line_bytes == 7
    assert str(error) == "line longer than 7 bytes"


def test_many_lines_in_one_chunk_keep_memory_bounded() -> None:
    splitter = LineSplitter(100, too_long=TooLong.RAISE)
    splitter.feed(b"line\n" * 10_000)
    count = 0
    while splitter.next_line() is not None:
        count += 1
    assert count == 10_000
    assert len(splitter._buffer) == 0


@given(
    st.binary(max_size=80).map(lambda b: b.replace(b"a", b"\n").replace(b"b", b"\r")),
    st.integers(min_value=1, max_value=10),
    st.sampled_from(list(TooLong)),
    st.lists(st.integers(min_value=0, max_value=80), max_size=10),
)
def test_any_split_gives_the_model(
    data: bytes, limit: int, policy: TooLong, cuts: list[int]
) -> None:
    expected = model(data, limit, policy)
    assert whole(data, limit, policy) == expected
    assert bytewise(data, limit, policy) == expected
    chunks: list[bytes] = []
    start = 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}):
        chunks.append(data[start:cut])
        start = cut
    chunks.append(data[start:])
    assert run(LineSplitter(limit, too_long=policy), chunks) == expected
