"""ProcessLog: subscriptions that want some streams pin only those, and reads across holes."""

from __future__ import annotations

import sys
import time

import pytest
import trio
import trio.testing

from trio_exec import Closed, Exited, Failed, Output, OutputStream
from trio_exec._log import DEFAULT_RETAINED_BYTES, EventSubscription, ProcessLog

STDOUT = OutputStream.STDOUT
STDERR = OutputStream.STDERR
PTY = OutputStream.PTY

TIMEOUT = 30.0
"""Bound on any single wait in a test; a hang fails the test instead of the run."""


def drain(subscription: EventSubscription) -> list[Output | Exited | Closed | Failed]:
    """Every event the subscription can return without waiting."""
    events: list[Output | Exited | Closed | Failed] = []
    while True:
        try:
            event = subscription.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return events
        assert isinstance(event, Output | Exited | Closed | Failed)
        events.append(event)


def seqs(events: list[Output | Exited | Closed | Failed]) -> list[int]:
    """The seqs of sequenced events (all of them must be)."""
    result = []
    for event in events:
        assert not isinstance(event, Failed)
        result.append(event.seq)
    return result


def data_of(events: list[Output | Exited | Closed | Failed], stream: OutputStream) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Output) and e.stream is stream)


async def is_blocked(nursery: trio.Nursery, log: ProcessLog, stream: OutputStream) -> trio.Event:
    """Start appending one 100-byte chunk; return an event set once it was sequenced."""
    done = trio.Event()

    async def append() -> None:
        await log.append_output(stream, b"w" * 100)
        done.set()

    nursery.start_soon(append)
    await trio.testing.wait_all_tasks_blocked()
    return done


# -- filtered pinning ------------------------------------------------------------------------


async def test_a_stdout_subscription_does_not_pin_stderr() -> None:
    log = ProcessLog(retain_bytes=1000)
    stdout = log.subscribe(streams={STDOUT})  # never read until the end
    assert stdout.streams == frozenset({STDOUT})
    with trio.fail_after(TIMEOUT):
        await log.append_output(STDOUT, b"o" * 1000)  # the stdout reader is a full bound behind
        for i in range(50):  # 5000 bytes of stderr, five times the bound
            await log.append_output(STDERR, bytes([i]) * 100)
    assert log.retained_bytes_of(STDOUT) == 1000
    assert log.retained_bytes_of(STDERR) == 100  # the newest chunk, which nobody pins
    assert log.first_retained_seq == 51
    events = drain(stdout)
    assert [type(e) for e in events] == [Output]
    assert seqs(events) == [1]
    assert data_of(events, STDOUT) == b"o" * 1000


async def test_backpressure_on_a_stream_comes_only_from_its_subscribers() -> None:
    log = ProcessLog(retain_bytes=1000)
    stdout = log.subscribe(streams={STDOUT})
    stderr = log.subscribe(streams={STDERR})
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(9):
                await log.append_output(STDOUT, b"o" * 100)
            await log.append_output(STDOUT, b"o" * 100)  # lag 1000: full
            stdout_done = await is_blocked(nursery, log, STDOUT)
            assert not stdout_done.is_set()  # the stdout subscriber is 1000 bytes behind
            # Stderr flows as long as its own subscriber keeps up.
            for _ in range(30):
                await log.append_output(STDERR, b"e" * 100)
                assert data_of(drain(stderr), STDERR) == b"e" * 100
            # And a stderr subscriber that falls behind stops stderr, not stdout's reader.
            for _ in range(10):
                await log.append_output(STDERR, b"e" * 100)
            stderr_done = await is_blocked(nursery, log, STDERR)
            assert not stderr_done.is_set()
            assert not stdout_done.is_set()
            assert len(data_of(drain(stdout), STDOUT)) == 1000
            await stdout_done.wait()
            assert not stderr_done.is_set()
            assert len(data_of(drain(stderr), STDERR)) == 1000
            await stderr_done.wait()


async def test_a_subscription_to_every_stream_holds_them_back_together() -> None:
    """One lag across streams: what the log retains for it stays within retain_bytes."""
    log = ProcessLog(retain_bytes=1000)
    everything = log.subscribe()
    assert everything.streams == frozenset(OutputStream)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                await log.append_output(STDOUT, b"o" * 100)
                await log.append_output(STDERR, b"e" * 100)
            stdout_done = await is_blocked(nursery, log, STDOUT)
            stderr_done = await is_blocked(nursery, log, STDERR)
            assert not stdout_done.is_set()
            assert not stderr_done.is_set()
            assert log.retained_bytes == 1000
            assert len(drain(everything)) == 10
            await stdout_done.wait()
            await stderr_done.wait()


async def test_memory_stays_bounded_while_stdout_is_paused_and_stderr_flows() -> None:
    """Invariant 5 with split streams: a paused stdout reader holds retain_bytes of stdout
    and stops stdout; 64 MiB of stderr flow past it to their own subscriber; the log never
    holds more than 2 * retain_bytes (stdout's and stderr's share), plus nothing else."""
    retain = DEFAULT_RETAINED_BYTES
    chunk = 64 * 1024
    stderr_total = 64 * 1024 * 1024
    log = ProcessLog(retain_bytes=retain)
    stdout = log.subscribe(streams={STDOUT})  # paused: read only at the end
    stderr = log.subscribe(streams={STDERR})
    peak = 0
    peak_stdout = 0
    stdout_appended = 0
    stderr_chunks = 0

    async def stdout_producer() -> None:
        nonlocal stdout_appended
        while True:
            await log.append_output(STDOUT, b"o" * chunk)
            stdout_appended += chunk

    async def stderr_producer() -> None:
        nonlocal peak, peak_stdout
        for i in range(stderr_total // chunk):
            await log.append_output(STDERR, bytes([i % 251]) * chunk)
            peak = max(peak, log.retained_bytes)
            peak_stdout = max(peak_stdout, log.retained_bytes_of(STDOUT))
            await trio.lowlevel.checkpoint()

    async def stderr_consumer() -> None:
        nonlocal stderr_chunks
        received = 0
        async for event in stderr:
            assert isinstance(event, Output)
            assert event.stream is STDERR
            assert event.data == bytes([(received // chunk) % 251]) * chunk
            received += len(event.data)
            stderr_chunks += 1
            if received == stderr_total:
                return

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stdout_producer)
            nursery.start_soon(stderr_consumer)
            await stderr_producer()
            await trio.testing.wait_all_tasks_blocked()
            # The stdout producer is held back at retain_bytes: it would be far past it.
            assert stdout_appended == retain
            nursery.cancel_scope.cancel()
    assert stderr_chunks == stderr_total // chunk
    assert peak_stdout == retain
    assert peak <= 2 * retain
    assert len(data_of(drain(stdout), STDOUT)) == retain  # and nothing of it was lost


# -- reads and subscriptions across holes ------------------------------------------------------


async def holed_log() -> tuple[ProcessLog, EventSubscription]:
    """A log whose stdout chunk seq 1 is pinned by a stdout subscription while stderr after
    it was evicted: seq 1 (stdout, 400 B), seq 2..21 (stderr, 100 B each), bound 1000."""
    log = ProcessLog(retain_bytes=1000)
    stdout = log.subscribe(streams={STDOUT})
    with trio.fail_after(TIMEOUT):
        await log.append_output(STDOUT, b"o" * 400)
        for i in range(20):  # nobody wants stderr: nothing waits
            await log.append_output(STDERR, bytes([i]) * 100)
    return log, stdout


async def test_reads_skip_the_hole_and_first_retained_seq_stays_honest() -> None:
    log, _stdout = await holed_log()
    assert log.retained_bytes_of(STDOUT) == 400  # pinned
    assert log.retained_bytes_of(STDERR) == 600  # the rest, newest first kept
    assert log.retained_bytes == 1000
    first = log.first_retained_seq
    assert first == 16  # stderr seq 2..15 evicted; stdout seq 1 is held but not readable
    result = log.read()
    assert [c.seq for c in result.chunks] == list(range(16, 22))
    assert all(c.stream is STDERR for c in result.chunks)
    assert result.first_retained_seq == first
    assert result.next_seq == 22
    # Reads from inside the hole or before it start at first_retained_seq.
    assert [c.seq for c in log.read(after_seq=3).chunks] == list(range(16, 22))
    assert [c.seq for c in log.read(after_seq=17).chunks] == [18, 19, 20, 21]
    # The reference's max_bytes rules still hold: whole chunks, the first always, and
    # next_seq one past the last chunk returned.
    page = log.read(after_seq=0, max_bytes=250)
    assert [c.seq for c in page.chunks] == [16, 17]
    assert page.next_seq == 18
    one = log.read(after_seq=0, max_bytes=1)
    assert [c.seq for c in one.chunks] == [16]
    assert one.next_seq == 17
    assert log.read(after_seq=21, max_bytes=100).chunks == ()


async def test_subscriptions_resume_where_their_streams_are_whole() -> None:
    log, stdout = await holed_log()
    # The pinned stdout chunk is still delivered to its subscription.
    first = drain(stdout)
    assert [type(e) for e in first] == [Output]
    assert seqs(first) == [1]
    # A new subscription to stdout starts at stdout's oldest chunk; one to everything,
    # or to stderr, where none of their output is missing (past the hole).
    assert log.subscribe(streams={STDOUT}).cursor == 1
    assert log.subscribe().cursor == 16
    assert log.subscribe(streams={STDERR}).cursor == 16
    whole = log.subscribe(from_seq=1)
    events = drain(whole)
    assert seqs(events) == list(range(16, 22))


async def test_forced_eviction_moves_a_subscription_past_its_hole() -> None:
    log = ProcessLog(retain_bytes=300)
    mixed = log.subscribe(streams={STDOUT, STDERR})
    log.append_output_nowait(STDOUT, b"a" * 100)  # seq 1
    log.append_output_nowait(STDERR, b"b" * 100)  # seq 2
    log.set_exited(0)  # seq 3
    for i in range(6):  # seq 4..9: forced, so seq 1..6 are evicted from under `mixed`
        log.append_output_nowait(STDERR if i % 2 else STDOUT, bytes([i]) * 100)
    assert log.first_retained_seq == 7
    events = drain(mixed)
    # Exited is scalar state: delivered anyway, in seq order; output resumes at seq 7.
    assert seqs(events) == [3, 7, 8, 9]
    assert isinstance(events[0], Exited)


async def test_terminal_events_reach_every_subscription() -> None:
    log = ProcessLog(retain_bytes=1000)
    subscriptions = [
        log.subscribe(streams=set()),
        log.subscribe(streams={STDERR}),
        log.subscribe(streams=[STDOUT, PTY]),
        log.subscribe(),
    ]
    log.append_output_nowait(STDOUT, b"out")
    log.append_output_nowait(STDERR, b"err")
    log.set_exited(3)
    log.set_closed()
    seen = [[type(e).__name__ for e in drain(s)] for s in subscriptions]
    assert seen == [
        ["Exited", "Closed"],
        ["Output", "Exited", "Closed"],
        ["Output", "Exited", "Closed"],
        ["Output", "Output", "Exited", "Closed"],
    ]
    assert log.subscription_count == 0
    broken = ProcessLog()
    stderr = broken.subscribe(streams={STDERR})
    broken.append_output_nowait(STDOUT, b"out")
    broken.fail("lost")
    assert drain(stderr) == [Failed(message="lost")]


def test_streams_are_checked() -> None:
    log = ProcessLog()
    with pytest.raises(TypeError, match="collection of OutputStream"):
        log.subscribe(streams=STDOUT)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="collection of OutputStream"):
        log.subscribe(streams="stdout")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="OutputStream members"):
        log.subscribe(streams=["stdout"])  # type: ignore[list-item]
    assert log.subscription_count == 0


# -- cost ------------------------------------------------------------------------------------


async def test_many_small_chunks_across_a_pinned_stream_are_not_quadratic() -> None:
    """40 000 one-byte stdout chunks stay pinned while 120 000 stderr chunks flow past and
    are evicted behind them, with reads and receives in between: linear work (about a
    second); a scan of the retained chunks per append would take many minutes."""
    pinned = 40_000
    log = ProcessLog(retain_bytes=pinned + 1000)  # room for 1000 stderr chunks to read
    stdout = log.subscribe(streams={STDOUT})
    stderr = log.subscribe(streams={STDERR})
    started = time.perf_counter()
    with trio.fail_after(TIMEOUT):  # nothing waits: each append finds room at once
        for _ in range(pinned):
            await log.append_output(STDOUT, b"o")
        for i in range(3 * pinned):
            await log.append_output(STDERR, b"e")
            assert isinstance(stderr.receive_nowait(), Output)
            if i % 1000 == 999 and i > 1000:  # once stderr is evicted behind stdout
                assert len(log.read(after_seq=0, max_bytes=10).chunks) == 10
                assert len(log.read(after_seq=0).chunks) == 1000
    elapsed = time.perf_counter() - started
    assert log.retained_bytes_of(STDOUT) == pinned
    assert log.retained_bytes == pinned + 1000
    assert len(drain(stdout)) == pinned
    assert elapsed < 20.0, f"{elapsed:.1f} s"


def test_evicted_output_is_released_at_once() -> None:
    # The bytes of an evicted chunk are freed when it is evicted, not when the stream's
    # list is next compacted: the log never holds more than its bound in output.
    log = ProcessLog(retain_bytes=1000)
    pieces = [bytes([n]) * 500 for n in range(10)]
    held = [sys.getrefcount(piece) for piece in pieces]
    for n in range(len(pieces)):
        log.append_output_nowait(STDOUT, pieces[n])
    assert log.retained_bytes == 1000
    # Only the last two chunks are still referenced by the log.
    now = [sys.getrefcount(piece) for piece in pieces]
    assert [after - before for after, before in zip(now, held, strict=True)] == [0] * 8 + [1, 1]
