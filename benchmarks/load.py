"""Load benchmark: many clients at once, each running short processes that write 64 KiB.

50 clients connect at once; each runs 40 processes one after the other (``cat`` of a
64 KiB file of random bytes, a different file for each neighbour, so that a mix-up
shows) and checks that every byte arrived, in order. The same load runs against our
server (``trio-exec serve``) and the reference (``codex exec-server`` 0.169), each in a
process of its own driven by the same client (trio_exec's ``RemoteBackend``). Printed:

* throughput in processes per second and in MiB of output per second (ratio ours /
  reference; higher is better);
* the peak resident set size of each server process (``VmHWM`` of ``/proc/PID/status``)
  at the end of the run. These are absolute figures of two different programs (a Python
  server against a Rust one), shown side by side; the ratio is reference / ours.

``tests/hardening/test_load.py`` runs the same load (:func:`run_load`) against our server
only and asserts completeness, order and a memory bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Final

import attrs
import trio

import trio_exec as tx
from trio_exec.testing import check_event_stream
from trio_exec.testing.reference import (
    ensure_reference,
    open_reference_server,
    open_server_process,
)

from ._common import exit_status, report, sized

CLIENTS: Final = sized(50, 2)
"""Clients connected at once."""
PROCESSES_PER_CLIENT: Final = sized(40, 2)
"""Processes each client runs, one after the other."""
OUTPUT_BYTES: Final = 64 * 1024
"""Bytes each process writes."""
PAYLOADS: Final = 40
"""Distinct payload files; client ``c`` runs file ``(c + k) % PAYLOADS`` as its k-th process."""
OUR_SERVER: Final = (sys.executable, "-m", "trio_exec", "serve")
"""Our server's command line (it prints its URL, as the reference does)."""


@attrs.frozen(kw_only=True)
class LoadResult:
    """What one run of :func:`run_load` did."""

    seconds: float
    """Wall time from the first connect to the last process closed."""
    processes: int
    """Processes run to completion, every byte checked."""
    output_bytes: int
    """Output bytes received and checked."""

    @property
    def processes_per_second(self) -> float:
        """Processes completed per second."""
        return self.processes / self.seconds

    @property
    def mib_per_second(self) -> float:
        """Output throughput, MiB per second."""
        return self.output_bytes / 2**20 / self.seconds


def make_payloads(directory: Path, count: int = PAYLOADS) -> list[tuple[Path, bytes]]:
    """Write ``count`` files of :data:`OUTPUT_BYTES` random bytes; return paths and contents."""
    payloads = []
    for index in range(count):
        data = os.urandom(OUTPUT_BYTES)
        path = directory / f"payload-{index}"
        path.write_bytes(data)
        payloads.append((path, data))
    return payloads


async def _client(
    url: str,
    index: int,
    payloads: Sequence[tuple[Path, bytes]],
    processes: int,
    output_before_exit: bool,
    done: list[int],
) -> None:
    async with tx.connect(url, client_name=f"load-{index}") as backend:
        for k in range(processes):
            path, data = payloads[(index + k) % len(payloads)]
            async with backend.open_process(["cat", str(path)]) as proc:
                events = [event async for event in proc.events]
            summary = check_event_stream(
                events,
                expected_output={tx.OutputStream.STDOUT: data},
                output_before_exit=output_before_exit,
            )
            assert summary.exit_code == 0, summary
            done[0] += 1
            done[1] += len(data)


async def run_load(
    url: str,
    payloads: Sequence[tuple[Path, bytes]],
    *,
    clients: int = CLIENTS,
    processes: int = PROCESSES_PER_CLIENT,
    output_before_exit: bool = True,
) -> LoadResult:
    """Run the load against the server at ``url``; every byte is checked, in order.

    Args:
        output_before_exit: also require all output before ``Exited`` (our server
            guarantees it; the reference may sequence output after ``Exited``).

    Raises:
        AssertionError: a stream was incomplete, out of order or mixed up.
    """
    done = [0, 0]
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for index in range(clients):
            nursery.start_soon(_client, url, index, payloads, processes, output_before_exit, done)
    seconds = trio.current_time() - start
    assert done[0] == clients * processes, done
    return LoadResult(seconds=seconds, processes=done[0], output_bytes=done[1])


def server_pid(marker: str) -> int:
    """The pid of the one child of this process whose command line contains ``marker``."""
    ps = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(os.getpid())],  # -ww: never cut args
        capture_output=True,
        text=True,
        check=True,
    )
    found = [
        int(line.split(None, 1)[0])
        for line in ps.stdout.splitlines()
        if marker in line and not line.split(None, 1)[1].startswith("ps ")
    ]
    assert len(found) == 1, ps.stdout
    return found[0]


def peak_rss(pid: int) -> int:
    """The peak resident set size of ``pid`` in bytes (``VmHWM`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            assert unit == "kB", line
            return int(value) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


async def measure(
    server: AbstractAsyncContextManager[str],
    marker: str,
    payloads: Sequence[tuple[Path, bytes]],
    output_before_exit: bool,
) -> tuple[LoadResult, int]:
    """Start ``server``, run the load, and return the result and the server's peak RSS."""
    async with server as url:
        pid = server_pid(marker)
        result = await run_load(url, payloads, output_before_exit=output_before_exit)
        return result, peak_rss(pid)


async def main() -> int:
    """Run the load against both servers and print the figures; 1 if a target is missed."""
    with TemporaryDirectory(prefix="trio-exec-load-") as directory:
        payloads = make_payloads(Path(directory))
        ours, our_rss = await measure(
            open_server_process(OUR_SERVER), "trio_exec serve", payloads, True
        )
        theirs, their_rss = await measure(
            open_reference_server(ensure_reference()), "exec-server", payloads, False
        )
    total = CLIENTS * PROCESSES_PER_CLIENT
    print(
        f"load: {CLIENTS} clients x {PROCESSES_PER_CLIENT} processes x 64 KiB ({total} processes)"
    )
    ok = report(
        "load: processes",
        ours.processes_per_second,
        theirs.processes_per_second,
        "/s",
        "reference",
        1.0,
    )
    ok &= report(
        "load: output", ours.mib_per_second, theirs.mib_per_second, "MiB/s", "reference", 1.0
    )
    print(
        f"load: peak server RSS (absolute, lower is better): trio_exec {our_rss / 2**20:.1f} MiB"
        f" | reference {their_rss / 2**20:.1f} MiB | ratio reference/ours {their_rss / our_rss:.2f}"
        f" | wall time trio_exec {ours.seconds:.2f} s, reference {theirs.seconds:.2f} s",
        flush=True,
    )
    return exit_status(ok)


if __name__ == "__main__":
    sys.exit(trio.run(main))
