"""StreamTransport over real pipes: how a broken or ended stream is told."""

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
