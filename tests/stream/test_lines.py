"""LineReader: whole and byte-by-byte feeds against a reference model, limits, EOF rules."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_exec as tx
from trio_exec._stream import LINE_READER_MAX_BYTES, LineReader, LineTooLongError, open_stream

from .helpers import TIMEOUT


class ChunkStream(trio.abc.ReceiveStream):
    """A receive stream that delivers ``chunks`` (split further by ``max_bytes``), then EOF."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = [chunk for chunk in chunks if chunk]
        self.closed = False
        self.largest_request = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError
        if max_bytes is not None:
            self.largest_request = max(self.largest_request, max_bytes)
        if not self._chunks:
            return b""
        chunk = self._chunks.pop(0)
        if max_bytes is not None and len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self._chunks.insert(0, rest)
        return chunk

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


TOO_LONG = "too long"
Outcome = bytes | str


def model(data: bytes, max_line_bytes: int) -> list[Outcome]:
    """What a reader must yield for ``data``: each line without ``\\n`` or ``\\r\\n``,
    ``TOO_LONG`` for a line above the bound, a final unterminated line included."""
    *lines, last = data.split(b"\n")
    if last:
        lines.append(last)
    stripped = [line.removesuffix(b"\r") for line in lines]
    return [TOO_LONG if len(line) > max_line_bytes else line for line in stripped]


async def read_all(reader: LineReader) -> list[Outcome]:
    outcomes: list[Outcome] = []
    while True:
        try:
            outcomes.append(await reader.receive())
        except LineTooLongError:
            outcomes.append(TOO_LONG)
        except trio.EndOfChannel:
            return outcomes


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


line_bytes = st.lists(
    st.one_of(
        st.binary(max_size=12),
        st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n", b"xxxxxxxxxxxx"]),
    ),
    max_size=30,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=line_bytes, max_line_bytes=st.integers(1, 16), cuts=st.lists(st.integers(0, 400)))
def test_lines_match_the_model_whole_byte_by_byte_and_split(
    data: bytes, max_line_bytes: int, cuts: list[int]
) -> None:
    expected = model(data, max_line_bytes)
    feeds = {
        "whole": [data],
        "bytes": [data[i : i + 1] for i in range(len(data))],
        "split": split(data, cuts),
    }
    for name, chunks in feeds.items():

        async def main(chunks: list[bytes] = chunks) -> list[Outcome]:
            return await read_all(LineReader(ChunkStream(chunks), max_line_bytes=max_line_bytes))

        assert trio.run(main) == expected, name


@settings(max_examples=100, deadline=None)
@given(data=line_bytes, receive_bytes=st.integers(1, 8))
def test_small_receives_give_the_same_lines(data: bytes, receive_bytes: int) -> None:
    async def main() -> list[Outcome]:
        stream = ChunkStream([data])
        outcomes = await read_all(LineReader(stream, receive_bytes=receive_bytes))
        assert stream.largest_request <= receive_bytes
        return outcomes

    assert trio.run(main) == model(data, LINE_READER_MAX_BYTES)


async def test_examples() -> None:
    reader = LineReader(ChunkStream([b'{"a": 1}\r\n\n{"b"', b": 2}\nlast\r"]))
    assert [line async for line in reader] == [b'{"a": 1}', b"", b'{"b": 2}', b"last"]
    with pytest.raises(trio.EndOfChannel):  # and again
        await reader.receive()


async def test_a_line_of_exactly_the_bound_is_accepted() -> None:
    bound = 10
    data = b"x" * bound + b"\r\n" + b"y" * bound + b"\n" + b"z" * (bound + 1) + b"\r\n"
    reader = LineReader(ChunkStream([data]), max_line_bytes=bound)
    assert await reader.receive() == b"x" * bound
    assert await reader.receive() == b"y" * bound
    with pytest.raises(LineTooLongError) as info:
        await reader.receive()
    assert info.value.max_line_bytes == bound
    with pytest.raises(trio.EndOfChannel):
        await reader.receive()


async def test_too_long_is_raised_before_the_line_ends() -> None:
    """An endless line fails once it passes the bound; memory never grows past it."""
    send, receive = trio.testing.memory_stream_one_way_pair()
    reader = LineReader(receive, max_line_bytes=100, receive_bytes=10)
    await send.send_all(b"ok\n" + b"x" * 150)
    assert await reader.receive() == b"ok"
    with pytest.raises(LineTooLongError, match="longer than 100 bytes"):
        await reader.receive()
    await send.send_all(b"x" * 1000 + b"\nnext\n")
    assert await reader.receive() == b"next"
    assert len(reader._lines._buffer) <= 100 + 10


def test_the_error_is_a_trio_exec_error_and_a_value_error() -> None:
    assert issubclass(LineTooLongError, tx.TrioExecError)
    assert issubclass(LineTooLongError, ValueError)


async def test_receive_is_one_task_at_a_time_and_cancellation_loses_nothing() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    reader = LineReader(receive)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await reader.receive()
        nursery.cancel_scope.cancel()
    await send.send_all(b"par")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.receive)  # takes b"par", then waits for more
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    await send.send_all(b"tial\n")
    assert await reader.receive() == b"partial"


async def test_receive_checkpoints() -> None:
    reader = LineReader(ChunkStream([b"a\nb\n"]))
    with trio.testing.assert_checkpoints():
        assert await reader.receive() == b"a"
    with trio.testing.assert_checkpoints():
        assert await reader.receive() == b"b"  # from the buffer


async def test_aclose_closes_the_stream() -> None:
    stream = ChunkStream([b"a\n"])
    async with LineReader(stream) as reader:
        assert reader.stream is stream
    assert stream.closed


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        LineReader(ChunkStream([]), max_line_bytes=0)
    with pytest.raises(ValueError, match="receive_bytes"):
        LineReader(ChunkStream([]), receive_bytes=0)


async def test_lines_of_a_process(backend: tx.ExecBackend) -> None:
    script = "printf 'one\\r\\ntwo\\n'; cat; printf 'tail'"
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["sh", "-c", script]) as stream:
            reader = LineReader(stream)
            assert await reader.receive() == b"one"
            assert await reader.receive() == b"two"
            await stream.send_all(b'{"jsonrpc": "2.0"}\n')
            assert await reader.receive() == b'{"jsonrpc": "2.0"}'
            await stream.send_eof()
            assert [line async for line in reader] == [b"tail"]
