"""StreamTransport over real pipes: text and binary messages, and how a broken or ended
stream is told."""

from __future__ import annotations

import os

import pytest
import trio

import trio_exec as tx
from trio_exec._transport import StreamTransport

from ..conformance.helpers import TIMEOUT


async def test_a_broken_pipe_is_named() -> None:
    """Writing to a pipe whose reader is gone names the cause, not an empty message."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    idle_read, idle_write = os.pipe()
    transport = StreamTransport(
        trio.lowlevel.FdStream(write_end), trio.lowlevel.FdStream(idle_read)
    )
    try:
        with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost) as caught:
            await transport.send('{"method": "initialized"}')
        assert str(caught.value).endswith("the stream was closed: [Errno 32] Broken pipe")
    finally:
        await transport.aclose()
        os.close(idle_write)


async def test_end_of_file_is_told() -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)
    sink_read, sink_write = os.pipe()
    transport = StreamTransport(
        trio.lowlevel.FdStream(sink_write), trio.lowlevel.FdStream(read_end)
    )
    try:
        with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost) as caught:
            await transport.receive()
        assert str(caught.value).endswith("the stream reached end of file")
    finally:
        await transport.aclose()
        os.close(sink_read)


async def test_text_lines_and_binary_records_cross_a_pipe() -> None:
    a_read, b_write = os.pipe()
    b_read, a_write = os.pipe()
    ours = StreamTransport(trio.lowlevel.FdStream(a_write), trio.lowlevel.FdStream(a_read))
    peer = StreamTransport(trio.lowlevel.FdStream(b_write), trio.lowlevel.FdStream(b_read))
    assert ours.carries_binary
    large = bytes(range(256)) * 4096  # 1 MiB: more than one read, more than the pipe
    received: list[str | bytes] = []
    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:

                async def receive(count: int) -> None:
                    for _ in range(count):
                        received.append(await peer.receive())

                nursery.start_soon(receive, 4)
                await ours.send('{"n":1}')
                await ours.send_binary(b'{"head":1}\x00', b"\n\x00tail")
                await ours.send_binary(large)
                await ours.send_encoded(b'{"n":2}')
    finally:
        await ours.aclose()
        await peer.aclose()
    assert received == ['{"n":1}', b'{"head":1}\x00\n\x00tail', large, '{"n":2}']


async def test_a_stream_that_ends_inside_a_record_is_lost() -> None:
    read_end, write_end = os.pipe()
    sink_read, sink_write = os.pipe()
    os.write(write_end, b"\x00\x00\x00\x00\x10half")
    os.close(write_end)
    transport = StreamTransport(
        trio.lowlevel.FdStream(sink_write), trio.lowlevel.FdStream(read_end)
    )
    try:
        with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost, match="inside a binary"):
            await transport.receive()
    finally:
        await transport.aclose()
        os.close(sink_read)
