"""A neutral client of the exec-server wire protocol, for the remote benchmarks.

Neither trio_exec's client nor the reference's: a plain asyncio program written with the
``websockets`` package and the standard library's :mod:`json` and :mod:`base64`, as a user
of the protocol would write one. It connects, sends ``initialize`` and ``initialized``,
starts ``head -c BYTES /dev/zero``, and counts the decoded bytes of the ``process/output``
notifications until ``process/closed`` (it accepts notifications before the start
response, and output after ``process/exited``, as the reference sends them).

Run as ``python -m benchmarks.neutral_client URL BYTES [--server-pid PID]``, in a process
of its own so that it shares no interpreter with the server or the benchmark driver. It
prints one JSON object (see :class:`Drain`): the time from sending ``process/start`` to
receiving ``process/closed``, and with ``--server-pid`` the CPU time the server process
(all its threads) spent in that interval, from ``/proc/PID/stat``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from websockets.asyncio.client import connect

from ._common import PROCESS_ID

CLOSE_TIMEOUT: Final = 5.0
"""Seconds the client waits for the server's reply to its websocket close."""

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Drain:
    """What one drain saw."""

    bytes: int
    """Decoded output bytes."""
    messages: int
    """``process/output`` notifications."""
    seconds: float
    """From sending ``process/start`` to receiving ``process/closed``."""
    server_cpu_seconds: float | None
    """User + system CPU time of the server process in that interval, or None."""


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (live and
    ended) included, its children not (``utime + stime`` of ``/proc/PID/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _CLOCK_TICKS


def _request(request_id: int, method: str, params: dict[str, Any]) -> str:
    return json.dumps({"id": request_id, "method": method, "params": params})


def _check_reply(message: dict[str, Any], request_id: int) -> None:
    if message.get("id") == request_id and "error" in message:
        raise RuntimeError(f"request {request_id} failed: {message['error']}")


async def drain(url: str, size: int, server_pid: int | None = None) -> Drain:
    """Start ``head -c size /dev/zero`` on the server at ``url`` and count its output."""
    async with connect(
        url, compression=None, max_size=None, ping_interval=None, close_timeout=CLOSE_TIMEOUT
    ) as websocket:
        await websocket.send(_request(1, "initialize", {"clientName": "neutral-bench"}))
        reply = json.loads(await websocket.recv())
        _check_reply(reply, 1)
        await websocket.send(json.dumps({"method": "initialized", "params": {}}))
        start_params = {
            "processId": PROCESS_ID,
            "argv": ["head", "-c", str(size), "/dev/zero"],
            "cwd": Path.cwd().as_uri(),
            "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            "tty": False,
        }
        cpu_before = None if server_pid is None else process_cpu_seconds(server_pid)
        start = time.perf_counter()
        await websocket.send(_request(2, "process/start", start_params))
        total = messages = 0
        while True:
            message = json.loads(await websocket.recv())
            method = message.get("method")
            if method == "process/output":
                total += len(base64.b64decode(message["params"]["chunk"]))
                messages += 1
            elif method == "process/closed":
                break
            else:
                _check_reply(message, 2)
        seconds = time.perf_counter() - start
        cpu = None
        if server_pid is not None and cpu_before is not None:
            cpu = process_cpu_seconds(server_pid) - cpu_before
    if total != size:
        raise RuntimeError(f"expected {size} bytes of output, got {total}")
    return Drain(bytes=total, messages=messages, seconds=seconds, server_cpu_seconds=cpu)


def main() -> None:
    """The command line: drain once, print the :class:`Drain` as JSON."""
    parser = argparse.ArgumentParser(description="Drain head -c BYTES from an exec server.")
    parser.add_argument("url")
    parser.add_argument("bytes", type=int)
    parser.add_argument("--server-pid", type=int, default=None)
    args = parser.parse_args()
    result = asyncio.run(drain(args.url, args.bytes, args.server_pid))
    print(json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()
