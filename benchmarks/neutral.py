"""Remote throughput with a neutral client, its ceiling, and the servers' CPU per MiB.

The client (:mod:`benchmarks.neutral_client`) is neither ours nor the reference's, so
the figures compare the servers, not our client's per-message cost. Each run starts a
server in a process of its own, then the client in another, which drains ``head -c``
:data:`SIZE` bytes of ``/dev/zero`` and reads the server's CPU time from ``/proc/PID/stat`` before
``process/start`` and after ``process/closed``. The three servers, fresh for each of
:data:`REPEATS` rounds, in turn:

* ours, ``python -m trio_exec serve``;
* the reference, ``codex exec-server`` 0.169;
* the ceiling, :mod:`benchmarks.fake_server`, which sends pre-encoded notifications as
  fast as it can, in chunks of the size our server sent in the same round.

Printed: throughput ours / reference (target >= 1.5) and ours / the ceiling (target >=
0.9), each the best of the rounds; server CPU per MiB sent, ours / reference (target <=
1.0), over all the rounds together (the kernel counts CPU time in clock ticks, 10 ms, so
one run alone is coarse).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import trio

from trio_exec.testing.reference import (
    ensure_reference,
    open_reference_server,
    open_server_process,
)

from ._common import ROOT, child_pids, exit_status, new_child, report, sized
from .neutral_client import Drain

SIZE = sized(128 * 1024 * 1024, 1024 * 1024)
"""Bytes drained per run: 128 MiB, so that a run lasts about half a second with our
server (32 MiB lasted a tenth: the noise of a shared machine and the kernel's 10 ms CPU
tick weighed on it)."""
REPEATS = sized(5, 1)
MIB = 2**20

OUR_SERVER = [sys.executable, "-m", "trio_exec", "serve"]

Server = Callable[[], AbstractAsyncContextManager[str]]


def our_server() -> AbstractAsyncContextManager[str]:
    return open_server_process(OUR_SERVER)


def reference_server() -> AbstractAsyncContextManager[str]:
    return open_reference_server(ensure_reference())


def fake_server(chunk: int) -> Server:
    argv = [sys.executable, "-m", "benchmarks.fake_server", str(SIZE), str(chunk)]
    return lambda: open_server_process(argv, cwd=ROOT)


async def run_neutral_client(server: Server) -> Drain:
    """Start ``server``, drain :data:`SIZE` bytes from it with the neutral client, stop it."""
    before = child_pids()
    async with server() as url:
        pid = new_child(before)
        argv = [sys.executable, "-m", "benchmarks.neutral_client", url, str(SIZE)]
        done = await trio.run_process(
            [*argv, "--server-pid", str(pid)], capture_stdout=True, cwd=ROOT
        )
    return Drain(**json.loads(done.stdout))


def rate(drain: Drain) -> float:
    return drain.bytes / MIB / drain.seconds


def cpu_per_mib(drains: list[Drain]) -> float:
    """Server CPU milliseconds per MiB sent, over all ``drains``."""
    cpu = sum(drain.server_cpu_seconds or 0.0 for drain in drains)
    return cpu * 1000 / (sum(drain.bytes for drain in drains) / MIB)


async def main() -> int:
    ours: list[Drain] = []
    reference: list[Drain] = []
    ceiling: list[Drain] = []
    for _ in range(REPEATS):
        ours.append(await run_neutral_client(our_server))
        reference.append(await run_neutral_client(reference_server))
        chunk = -(-SIZE // ours[-1].messages)  # our server's mean message, rounded up
        ceiling.append(await run_neutral_client(fake_server(chunk)))
    label = f"{SIZE // MIB} MiB" if SIZE >= MIB else f"{SIZE // 1024} KiB"
    print(
        f"neutral client (websockets + json + base64), head -c {label}: output messages"
        f" trio_exec {ours[-1].messages}, reference {reference[-1].messages},"
        f" fake server {ceiling[-1].messages} (pre-encoded, {chunk}-byte chunks)",
        flush=True,
    )
    best = max(map(rate, ours))
    ok = report(
        f"neutral client, throughput {label}",
        best,
        max(map(rate, reference)),
        "MiB/s",
        "reference",
        1.5,
    )
    ok &= report(
        f"neutral client, throughput {label}",
        best,
        max(map(rate, ceiling)),
        "MiB/s",
        "client's ceiling",
        0.9,
    )
    ok &= report(
        "server CPU per MiB sent (/proc)",
        cpu_per_mib(ours),
        cpu_per_mib(reference),
        "ms/MiB",
        "reference",
        1.0,
        higher=False,
    )
    return exit_status(ok)


if __name__ == "__main__":
    sys.exit(trio.run(main))
