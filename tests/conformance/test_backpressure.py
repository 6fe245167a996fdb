"""Invariant 5: a consumer that stops reading slows the child; memory stays flat."""

from __future__ import annotations

import trio

import trio_exec as tx

from .helpers import TIMEOUT

TOTAL = 256 * 1024 * 1024
PAUSE = 1.0
"""Long enough for an unthrottled child to write all of TOTAL many times over."""


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def test_paused_consumer_holds_the_child_back(backend: tx.ExecBackend) -> None:
    argv = ["head", "-c", str(TOTAL), "/dev/zero"]
    received = 0
    peak_rss = 0
    async with backend.open_process(argv) as proc:
        events = proc.events
        baseline = rss_bytes()
        with trio.fail_after(TIMEOUT):
            while received < 8 * 1024 * 1024:
                event = await events.receive()
                assert isinstance(event, tx.Output)
                received += len(event.data)
        await trio.sleep(PAUSE)  # the pause under test, not a synchronisation
        stats = proc.statistics()
        # The child is blocked: it would have finished long ago otherwise.
        assert proc.exit_code is None
        assert stats.retained_bytes <= stats.retain_limit + 64 * 1024
        with trio.fail_after(4 * TIMEOUT):
            async for event in events:
                if isinstance(event, tx.Output):
                    received += len(event.data)
                    if len(event.data) and received % (16 << 20) < len(event.data):
                        peak_rss = max(peak_rss, rss_bytes())
                elif isinstance(event, tx.Exited):
                    assert event.exit_code == 0
    assert received == TOTAL
    # Memory is flat: the log's bound and a few chunks, nowhere near the 256 MiB that passed.
    assert peak_rss - baseline < 64 * 1024 * 1024
