"""Remote benchmarks: our exec server against the reference server, in one run.

Both servers run on loopback, each in a process of its own (``trio-exec serve`` and
``codex exec-server``), and are driven by the same client (trio_exec's ``RemoteBackend``),
so the ratio compares the servers:

* sequential start-to-closed round trips of ``/bin/true`` (target: ours >= 10x);
* output throughput of 64 MiB from ``head -c`` (target: ours >= 1.5x);
* 200 processes at once on one connection, each writing 1 MiB: every byte arrives,
  in order; wall time for both.

Ratios are ours / reference for rates, reference / ours for wall times (higher is better).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import trio

import trio_exec as tx
from trio_exec.testing import check_event_stream
from trio_exec.testing.reference import (
    ensure_reference,
    open_reference_server,
    open_server_process,
)

from ._common import exit_status, report, sized, timed

ROUND_TRIPS_OURS = sized(200, 2)
ROUND_TRIPS_REFERENCE = sized(20, 2)
THROUGHPUT_BYTES = sized(64 * 1024 * 1024, 1024 * 1024)
FAN_OUT = sized(200, 3)
FAN_OUT_BYTES = sized(1024 * 1024, 64 * 1024)
REPEATS = sized(2, 1)


def our_server() -> AbstractAsyncContextManager[str]:
    # A process of its own, like the reference: the client does not share its core.
    return open_server_process([sys.executable, "-m", "trio_exec", "serve"])


def reference_server() -> AbstractAsyncContextManager[str]:
    return open_reference_server(ensure_reference())


async def drain(backend: tx.ExecBackend, argv: list[str]) -> list[tx.Event]:
    async with backend.open_process(argv) as proc:
        return [event async for event in proc.events]


async def round_trips(url: str, count: int) -> float:
    async with tx.connect(url) as backend:
        seconds = await timed(lambda: _round_trips(backend, count))
    return count / seconds


async def _round_trips(backend: tx.ExecBackend, count: int) -> None:
    for _ in range(count):
        events = await drain(backend, ["/bin/true"])
        assert isinstance(events[-1], tx.Closed), events


async def throughput(url: str) -> float:
    async with tx.connect(url) as backend:
        argv = ["head", "-c", str(THROUGHPUT_BYTES), "/dev/zero"]
        events: list[tx.Event] = []

        async def run() -> None:
            events.extend(await drain(backend, argv))

        seconds = await timed(run)
    summary = check_event_stream(events)
    assert sum(len(data) for data in summary.output.values()) == THROUGHPUT_BYTES
    return THROUGHPUT_BYTES / 2**20 / seconds


async def fan_out(url: str) -> float:
    code = f"import os\nblock = bytes(range(256)) * 4096\nos.write(1, block[:{FAN_OUT_BYTES}])"
    expected = (bytes(range(256)) * 4096)[:FAN_OUT_BYTES]
    async with tx.connect(url) as backend:

        async def one() -> None:
            events = await drain(backend, [sys.executable, "-c", code])
            check_event_stream(events, expected_output={tx.OutputStream.STDOUT: expected})

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(FAN_OUT):
                    nursery.start_soon(one)

        return await timed(run)


async def best(
    server: Callable[[], AbstractAsyncContextManager[str]],
    measure: Callable[[str], Awaitable[float]],
    higher: bool,
) -> float:
    results = []
    for _ in range(REPEATS):
        async with server() as url:
            results.append(await measure(url))
    return max(results) if higher else min(results)


async def main() -> int:
    ok = True
    ours = await best(our_server, lambda url: round_trips(url, ROUND_TRIPS_OURS), True)
    theirs = await best(reference_server, lambda url: round_trips(url, ROUND_TRIPS_REFERENCE), True)
    ok &= report("start-to-closed /bin/true", ours, theirs, "/s", "reference", 10.0)
    ours = await best(our_server, throughput, True)
    theirs = await best(reference_server, throughput, True)
    ok &= report("throughput 64 MiB head -c", ours, theirs, "MiB/s", "reference", 1.5)
    ours = await best(our_server, fan_out, False)
    theirs = await best(reference_server, fan_out, False)
    print(
        f"200 processes x 1 MiB, all bytes in order: trio_exec {ours:.2f} s | reference {theirs:.2f} s | ratio {theirs / ours:.2f}"
    )
    return exit_status(ok)


if __name__ == "__main__":
    sys.exit(trio.run(main))
