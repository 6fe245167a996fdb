"""Our client and our server together, against the local drain, in one run.

``head -c`` 64 MiB of ``/dev/zero`` is drained through ``proc.events`` twice per round:
over :func:`trio_exec.connect` to ``python -m trio_exec serve`` (a process of its own,
fresh each round, on loopback), and locally with :func:`trio_exec.open_process`. The
remote figure can only approach the local one (every byte also crosses the server, the
socket and the codec); the target is at least 0.3 of it. Each figure is the best of
:data:`REPEATS` rounds, the two sides alternating; timing runs from ``open_process`` to
the end of ``proc.events`` (the connection is made before).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import trio

import trio_exec as tx
from trio_exec.testing.reference import open_server_process

from ._common import exit_status, report, sized, timed

SIZE = sized(64 * 1024 * 1024, 1024 * 1024)
REPEATS = sized(3, 1)
MIB = 2**20

OUR_SERVER = [sys.executable, "-m", "trio_exec", "serve"]


Opener = Callable[[list[str]], AbstractAsyncContextManager[tx.ExecProcess]]


async def drain(open_process: Opener) -> None:
    """Run ``head -c SIZE /dev/zero`` with ``open_process`` and count its output."""
    total = 0
    async with open_process(["head", "-c", str(SIZE), "/dev/zero"]) as proc:
        async for event in proc.events:
            if isinstance(event, tx.Output):
                total += len(event.data)
    assert total == SIZE, total


async def remote_rate() -> float:
    async with open_server_process(OUR_SERVER) as url, tx.connect(url) as backend:
        return SIZE / MIB / await timed(lambda: drain(backend.open_process))


async def local_rate() -> float:
    return SIZE / MIB / await timed(lambda: drain(tx.open_process))


async def main() -> int:
    remote = local = 0.0
    for _ in range(REPEATS):
        local = max(local, await local_rate())
        remote = max(remote, await remote_rate())
    label = f"{SIZE // MIB} MiB"
    ok = report(f"our client + our server, {label}", remote, local, "MiB/s", "local drain", 0.3)
    return exit_status(ok)


if __name__ == "__main__":
    sys.exit(trio.run(main))
