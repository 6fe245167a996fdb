"""trio's own stream conformance checks, run against ProcessStream on every backend.

The stream pair is two processes joined by two FIFOs (see :func:`helpers.pair_end`):
``s1.send_all`` -> child 1's stdin -> FIFO -> child 2's stdout -> ``s2.receive_some``, and back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

import trio_exec as tx
from trio_exec._remote import RemoteBackend

from .helpers import TIMEOUT, StreamPairMaker


async def test_half_closeable_stream_conformance(backend: tx.ExecBackend, tmp_path: Path) -> None:
    """``trio.testing.check_half_closeable_stream`` (a superset of the one- and two-way checks).

    No ``clogged_stream_maker``: it needs ``wait_send_all_might_not_block`` to block until
    the peer reads, and whether a child's stdin pipe has room is not known in advance (a
    remote server does not report it), so ``wait_send_all_might_not_block`` returns at
    once, as trio allows. The busy-send checks that only the clogged maker exercises are
    in ``test_stream.py``.

    Remote: half-close cannot apply. The receiving side of a ``ProcessStream`` ends when
    the session is ``Closed`` (the child exited and its output reached end of file), and
    our exec server leaves a closed session's block, which kills what is left of the
    child's process group, here the job that still copies stdin. So the check's "after
    reading EOF, the peer can still send the other way" cannot hold remotely, and the
    remote run uses ``check_two_way_stream``; ``test_send_eof_reaches_the_peer`` checks
    the half-close that does apply (EOF propagates) on every backend.
    """
    with trio.fail_after(4 * TIMEOUT):
        async with trio.open_nursery() as nursery:
            maker = StreamPairMaker(backend, nursery, tmp_path)
            if isinstance(backend, RemoteBackend):
                await trio.testing.check_two_way_stream(maker, None)
            else:
                await trio.testing.check_half_closeable_stream(maker, None)
            nursery.cancel_scope.cancel()


async def test_send_eof_reaches_the_peer(backend: tx.ExecBackend, tmp_path: Path) -> None:
    """The half of half-close that holds on every backend: data, then EOF, both ways."""
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            s1, s2 = await StreamPairMaker(backend, nursery, tmp_path)()
            await s1.send_all(b"ping")
            await s2.send_all(b"pong")
            await s1.send_eof()
            await s1.send_eof()  # idempotent
            assert await _receive_all(s2) == b"ping"
            with pytest.raises(trio.ClosedResourceError):
                await s1.send_all(b"more")
            await s2.send_eof()
            assert await _receive_all(s1) == b"pong"
            await s1.aclose()
            await s2.aclose()


async def _receive_all(stream: trio.abc.ReceiveStream) -> bytes:
    got = bytearray()
    while chunk := await stream.receive_some():
        got += chunk
    return bytes(got)
