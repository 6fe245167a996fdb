"""Cursor reads (``ExecProcess.read``) around the exit, on every backend.

A read returns early on the exit only while the caller has not passed Exited, and it is
always a checkpoint: a loop of reads that return at once still lets the session's tasks
sequence Closed, so it ends.
"""

from __future__ import annotations

from typing import Final

import trio

import trio_exec as tx

from .helpers import TIMEOUT

LOOP_TIMEOUT: Final = 8.0
"""Bound on the read loop of :func:`test_read_loop_on_the_last_chunk_ends_at_the_close`."""

PAST_EXIT_WAIT: Final = 0.2
"""The ``wait`` of a read that has passed Exited and so must wait all of it."""


async def test_read_loop_on_the_last_chunk_ends_at_the_close(backend: tx.ExecBackend) -> None:
    """The loop of issue 8: the cursor is the last chunk's seq, so once the child exited
    every read returns at once (the caller never passes Exited); they must checkpoint, or
    Closed is never sequenced and the loop spins forever. ``fail_after`` cannot fire
    without a checkpoint, so the loop also watches the clock itself."""
    got = b""
    reads = 0
    async with backend.open_process(["sh", "-c", "echo one; sleep 0.3; echo two; exit 4"]) as p:
        last = 0
        deadline = trio.current_time() + LOOP_TIMEOUT
        with trio.fail_after(LOOP_TIMEOUT):
            while True:
                assert trio.current_time() < deadline, f"read() spun: {reads} reads, no close"
                r = await p.read(after_seq=last, wait=5.0)
                reads += 1
                if r.chunks:
                    last = r.chunks[-1].seq
                    got += b"".join(chunk.data for chunk in r.chunks)
                if r.closed:
                    break
    assert got == b"one\ntwo\n"
    assert (r.exited, r.exit_code, r.failure) == (True, 4, None)


async def test_read_past_the_exit_waits(backend: tx.ExecBackend) -> None:
    """Before Exited is passed a read returns at once; past it, a read waits for the
    output of a grandchild, and then for the close; it never returns at once for nothing.

    The grandchild (which keeps the output open) prints only once it reads a line, which
    the test writes after the exit: its output comes after Exited by construction.
    """
    script = 'echo out; exec 3<&0; (read line <&3; echo "late $line") & exit 3'
    async with backend.open_process(["sh", "-c", script], pipe_stdin=True) as proc:
        with trio.fail_after(TIMEOUT):
            assert await proc.wait() == 3
            first = await proc.read()
            assert [chunk.data for chunk in first.chunks] == [b"out\n"]
            assert (first.exited, first.closed) == (True, False)
            out_seq = first.chunks[0].seq
            exited_seq = first.next_seq - 1  # nothing after the exit yet

            # Not passed: returns at once (well within the wait) with the exit.
            start = trio.current_time()
            before = await proc.read(after_seq=out_seq, wait=TIMEOUT)
            assert trio.current_time() - start < TIMEOUT / 2
            assert (before.chunks, before.exited, before.closed) == ((), True, False)

            # Passed: waits the whole wait, since nothing comes.
            start = trio.current_time()
            past = await proc.read(after_seq=exited_seq, wait=PAST_EXIT_WAIT)
            assert trio.current_time() - start >= PAST_EXIT_WAIT
            assert (past.chunks, past.exited, past.closed) == ((), True, False)

            # Passed: returns with the grandchild's output once it comes...
            assert await proc.write(b"go\n") is tx.WriteStatus.ACCEPTED
            late = b""
            cursor = exited_seq
            while not late.endswith(b"\n"):
                result = await proc.read(after_seq=cursor, wait=TIMEOUT)
                assert result.chunks, result
                late += b"".join(chunk.data for chunk in result.chunks)
                cursor = result.chunks[-1].seq
            assert late == b"late go\n"

            # ...then with the close, once the grandchild exits.
            while not (result := await proc.read(after_seq=cursor, wait=TIMEOUT)).closed:
                assert result.chunks, result
                cursor = result.chunks[-1].seq
            assert (result.exit_code, result.failure) == (3, None)
