"""The local read loop: gathering, chunk size, the bound on bytes between checkpoints,
wake-ups.

A pump gathers consecutive reads into one chunk while its descriptor has data, at most
:data:`~trio_exec._pump.READS_PER_CHUNK` reads and
:data:`~trio_exec._pump.READ_CHUNK_BYTES` per chunk (up to
:func:`~trio_exec._pump.largest_chunk` once a slow subscription holds it back); it reads
without a checkpoint while data keeps coming, at most
:data:`~trio_exec._pump.CHECKPOINT_BYTES` at a time; a producer held back by a slow
subscription resumes once that subscription is half its bound behind.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Final

import pytest
import trio
import trio.testing

import trio_exec as tx
from trio_exec._events import OutputStream
from trio_exec._log import EventSubscription, ProcessLog
from trio_exec._pump import (
    BEHIND_CHUNK_BYTES,
    CHECKPOINT_BYTES,
    PIPE_BUFFER_BYTES,
    READ_CHUNK_BYTES,
    READS_PER_CHUNK,
    Pull,
    Pump,
    grow_pipe,
    largest_chunk,
)

from ..conformance.helpers import TIMEOUT

FAST_WRITER: Final = (
    "import os\nblock = bytes(1 << 20)\nfor _ in range(256):\n    os.write(1, block)\n"
)
"""Writes 256 MiB in 1 MiB writes: the pipe stays full, so every read is a full chunk."""

WATCHED_CHUNKS: Final = 512
"""Chunks (32 MiB) the other task watches being sequenced before the block is left."""


async def test_fast_writer_does_not_starve_another_task() -> None:
    # Nobody subscribes, so nothing holds the pump back: only its own bound makes it
    # yield. trio runs each runnable task once per batch, in either order, so between
    # two turns of this task the pump ran at most twice.
    most_per_run = CHECKPOINT_BYTES // READ_CHUNK_BYTES
    worst = 0
    async with tx.open_process([sys.executable, "-c", FAST_WRITER]) as proc:
        with trio.fail_after(TIMEOUT):
            last = proc.statistics().next_seq
            while last <= WATCHED_CHUNKS:
                await trio.lowlevel.checkpoint()
                seq = proc.statistics().next_seq
                worst = max(worst, seq - last)
                last = seq
    assert 0 < worst <= 2 * most_per_run


async def test_chunks_are_whole_ordered_and_at_most_a_read() -> None:
    total = 0
    seqs: list[int] = []
    async with tx.open_process([sys.executable, "-c", FAST_WRITER.replace("256", "16")]) as proc:
        with trio.fail_after(TIMEOUT):
            async for event in proc.events:
                seqs.append(event.seq)  # type: ignore[union-attr]
                if isinstance(event, tx.Output):
                    assert 0 < len(event.data) <= READ_CHUNK_BYTES
                    total += len(event.data)
    assert total == 16 << 20
    assert seqs == list(range(1, len(seqs) + 1))


async def test_held_back_producer_resumes_at_half_the_bound() -> None:
    log = ProcessLog(retain_bytes=1000)
    subscription = log.subscribe()
    for _ in range(10):  # the subscription is a full bound behind
        await log.append_output(OutputStream.STDOUT, b"o" * 100)
    appended = trio.Event()

    async def produce() -> None:
        await log.append_output(OutputStream.STDOUT, b"o" * 100)
        appended.set()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(4):  # lag 600: the chunk would fit, but no wake-up yet
                await subscription.receive()
                await trio.testing.wait_all_tasks_blocked()
                assert not appended.is_set()
            await subscription.receive()  # lag 500: half the bound
            await appended.wait()
    assert log.next_seq == 12


async def test_held_back_producer_of_a_large_chunk_resumes_when_caught_up() -> None:
    # The chunk is larger than the bound: it waits until nothing is pending, and the
    # last event received wakes it.
    log = ProcessLog(retain_bytes=100)
    subscription = log.subscribe()
    await log.append_output(OutputStream.STDOUT, b"o" * 60)
    await log.append_output(OutputStream.STDOUT, b"o" * 30)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log.append_output, OutputStream.STDOUT, b"x" * 500)
            await trio.testing.wait_all_tasks_blocked()
            assert log.next_seq == 3
            await subscription.receive()
            await subscription.receive()
    event = await subscription.receive()
    assert isinstance(event, tx.Output)
    assert event.data == b"x" * 500


async def test_consecutive_reads_gather_into_one_chunk_of_at_most_reads_per_chunk() -> None:
    # A packet socket returns one message per read, as a pipe returns one small write
    # when the reader keeps up with the writer: the pump gathers them, up to its bound.
    piece = 1000
    messages = READS_PER_CHUNK + 8
    assert READS_PER_CHUNK * piece < READ_CHUNK_BYTES
    ours, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, child:
        for n in range(messages):
            child.send(bytes([n]) * piece)
        child.close()
        ours.setblocking(False)
        log = ProcessLog()
        subscription = log.subscribe()
        pump = Pump(OutputStream.STDOUT, ours.fileno(), log)
        with trio.fail_after(TIMEOUT):
            await pump.run()
    sizes = []
    data = b""
    while True:
        try:
            event = subscription.receive_nowait()
        except trio.WouldBlock:
            break
        assert isinstance(event, tx.Output)
        sizes.append(len(event.data))
        data += event.data
    assert sizes == [READS_PER_CHUNK * piece, 8 * piece]
    assert data == b"".join(bytes([n]) * piece for n in range(messages))
    assert pump.read_total == pump.appended_total == messages * piece


async def test_a_chunk_is_appended_as_soon_as_the_pipe_is_empty() -> None:
    # Gathering never waits for more: a line written alone arrives alone, at once.
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    log = ProcessLog()
    subscription = log.subscribe()
    pump = Pump(OutputStream.STDOUT, read_fd, log)
    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump.run)
                for line in (b"one\n", b"two\n"):
                    os.write(write_fd, line)
                    event = await subscription.receive()
                    assert isinstance(event, tx.Output)
                    assert event.data == line
                os.close(write_fd)
                write_fd = -1
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
    assert pump.at_eof.is_set()


HELD_STDOUT: Final = (
    "import os, threading\n"
    "out = threading.Thread(target=os.write, args=(1, b'o' * (3 << 20)))\n"
    "out.start()\n"
    "for i in range(32):\n"
    "    os.write(2, bytes([i]) * 65536)\n"
    "out.join()\n"
)
"""3 MiB to stdout from a thread while the main thread writes 2 MiB to stderr."""


async def test_a_held_back_stream_moves_to_its_own_task_and_the_others_flow() -> None:
    # Nobody reads stdout until stderr is over: stdout is held back (its chunk waits in
    # a task of its own), while the session's task goes on with stderr and the exit.
    async with tx.open_process([sys.executable, "-c", HELD_STDOUT]) as proc:
        stdout = proc.subscribe(streams={OutputStream.STDOUT})
        stderr = proc.subscribe(streams={OutputStream.STDERR})
        with trio.fail_after(TIMEOUT):
            err = b""
            while len(err) < 32 * 65536:  # all of stderr, stdout unread meanwhile
                event = await stderr.receive()
                assert isinstance(event, tx.Output)
                err += event.data
            held = proc.statistics().retained_bytes  # stdout's retention is full
            assert tx.DEFAULT_RETAINED_BYTES <= held <= 2 * tx.DEFAULT_RETAINED_BYTES
            out = b"".join([event.data async for event in stdout if isinstance(event, tx.Output)])
            assert await proc.wait() == 0
            await stderr.aclose()
    assert err == b"".join(bytes([i]) * 65536 for i in range(32))
    assert out == b"o" * (3 << 20)


def full_pipe(size: int) -> tuple[int, int]:
    """A pipe (non-blocking read end, write end) that holds ``size`` bytes, each 1 KiB
    block numbered."""
    read_fd, write_fd = os.pipe()
    grow_pipe(read_fd)
    assert size <= PIPE_BUFFER_BYTES
    os.set_blocking(read_fd, False)
    data = b"".join(bytes([n % 251]) * 1024 for n in range(size // 1024))
    assert os.write(write_fd, data) == size
    return read_fd, write_fd


def output_sizes(subscription: EventSubscription) -> tuple[list[int], bytes]:
    sizes: list[int] = []
    data = b""
    while True:
        try:
            event = subscription.receive_nowait()
        except trio.WouldBlock:
            return sizes, data
        assert isinstance(event, tx.Output)
        sizes.append(len(event.data))
        data += event.data


def test_the_largest_chunk_is_half_the_retention_within_its_bounds() -> None:
    assert largest_chunk(tx.DEFAULT_RETAINED_BYTES) == BEHIND_CHUNK_BYTES == 512 * 1024
    assert largest_chunk(600 * 1024) == 300 * 1024
    assert largest_chunk(64 * 1024) == READ_CHUNK_BYTES
    assert largest_chunk(64 * 1024 * 1024) == BEHIND_CHUNK_BYTES
    assert largest_chunk(64 * 1024 * 1024, READ_CHUNK_BYTES) == READ_CHUNK_BYTES


def test_the_backends_say_how_large_a_held_back_chunk_grows() -> None:
    assert tx.LocalBackend().behind_chunk_bytes == READ_CHUNK_BYTES
    server_backend = tx.ExecServer().backend
    assert isinstance(server_backend, tx.LocalBackend)
    assert server_backend.behind_chunk_bytes == BEHIND_CHUNK_BYTES
    for bad in (READ_CHUNK_BYTES - 1, 0, True, 2.0**20, "1"):
        with pytest.raises(ValueError, match="behind_chunk_bytes must be an int"):
            tx.LocalBackend(behind_chunk_bytes=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("behind", [READ_CHUNK_BYTES, BEHIND_CHUNK_BYTES])
async def test_a_slow_consumer_of_a_session_gets_the_backends_chunks(behind: int) -> None:
    """A consumer that waits until the retention is full, then reads: the held-back
    stream's chunks grow to what the backend allows, and every byte arrives in order."""
    backend = tx.LocalBackend(behind_chunk_bytes=behind)
    argv = [sys.executable, "-c", FAST_WRITER.replace("256", "16")]
    sizes: list[int] = []
    data = bytearray()
    async with backend.open_process(argv) as proc:
        with trio.fail_after(TIMEOUT):
            events = proc.events
            while True:  # the child's progress: poll it
                if proc.statistics().retained_bytes >= tx.DEFAULT_RETAINED_BYTES // 2:
                    break
                await trio.sleep(0.01)
            async for event in events:
                if isinstance(event, tx.Output):
                    sizes.append(len(event.data))
                    data += event.data
    assert data == bytes(16 << 20)
    assert max(sizes) == behind


def test_a_pull_appends_chunks_of_at_most_read_chunk_bytes() -> None:
    # The session's task pulls while the consumers keep up: small chunks, fresh in the
    # cache, up to CHECKPOINT_BYTES per pull.
    read_fd, write_fd = full_pipe(PIPE_BUFFER_BYTES)
    try:
        log = ProcessLog(retain_bytes=8 * PIPE_BUFFER_BYTES)
        subscription = log.subscribe()
        pump = Pump(OutputStream.STDOUT, read_fd, log)
        assert pump.pull() is Pull.MORE
        assert pump.pull() is Pull.DRAINED
    finally:
        os.close(write_fd)
        os.close(read_fd)
    sizes, data = output_sizes(subscription)
    assert sizes == [READ_CHUNK_BYTES] * (PIPE_BUFFER_BYTES // READ_CHUNK_BYTES)
    assert data == b"".join(bytes([n % 251]) * 1024 for n in range(PIPE_BUFFER_BYTES // 1024))


@pytest.mark.parametrize(
    ("retain", "behind", "largest"),
    [
        (tx.DEFAULT_RETAINED_BYTES, BEHIND_CHUNK_BYTES, BEHIND_CHUNK_BYTES),
        (600 * 1024, BEHIND_CHUNK_BYTES, 300 * 1024),
        (200 * 1024, BEHIND_CHUNK_BYTES, READ_CHUNK_BYTES),
        (tx.DEFAULT_RETAINED_BYTES, READ_CHUNK_BYTES, READ_CHUNK_BYTES),
    ],
    ids=["server", "half-the-retention", "at-least-a-read", "plain-backend"],
)
async def test_a_held_back_stream_appends_chunks_up_to_the_largest(
    retain: int, behind: int, largest: int
) -> None:
    # The stream's own task (a slow subscription held it back) finds the pipe full: it
    # appends the largest chunks the retention allows, whole and in order.
    read_fd, write_fd = full_pipe(PIPE_BUFFER_BYTES)
    try:
        log = ProcessLog(retain_bytes=retain)
        subscription = log.subscribe()
        pump = Pump(OutputStream.STDOUT, read_fd, log, behind)
        sizes: list[int] = []
        data = b""
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump.run)
                while len(data) < PIPE_BUFFER_BYTES:
                    event = await subscription.receive()
                    assert isinstance(event, tx.Output)
                    sizes.append(len(event.data))
                    data += event.data
                pump.stop()
    finally:
        os.close(write_fd)
        os.close(read_fd)
    assert sizes[0] == max(sizes) == largest
    assert data == b"".join(bytes([n % 251]) * 1024 for n in range(PIPE_BUFFER_BYTES // 1024))
