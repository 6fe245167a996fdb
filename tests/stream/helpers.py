"""Helpers of the stream tests: stream hosting and a connected pair of process streams."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Final

import trio

import trio_exec as tx
from trio_exec._stream import ProcessStream, open_stream

TIMEOUT: Final = 30.0
"""Bound on any single wait in a test; a hang fails the test instead of the run."""

PAIR_EOF_TIMEOUT: Final = 0.3
"""``eof_timeout`` of the pair's streams. A pair end never exits by itself while its peer
lives, so every graceful close waits this long; it only has to let ``cat`` copy what is
already in its stdin pipe to the FIFO."""


async def host_stream(
    backend: tx.ExecBackend,
    argv: list[str],
    *,
    task_status: trio.TaskStatus[ProcessStream] = trio.TASK_STATUS_IGNORED,
    **kwargs: Any,
) -> None:
    """Run an :func:`open_stream` block in a task of its own until the stream is closed.

    This lets a test hand out streams the way trio's stream checks want them (from an
    async factory, closed by any task) while the block, and so the process session, stays
    properly nested in the nursery that runs this task.
    """
    async with open_stream(backend, argv, **kwargs) as stream:
        task_status.started(stream)
        await stream._close_done.wait()


def pair_end(send_to: Path, receive_from: Path, *, send_first: bool) -> list[str]:
    """One end of a pair: stdin is copied to the FIFO ``send_to``; stdout is ``receive_from``.

    The shell opens both FIFOs (in an order that cannot deadlock with the peer: the end
    with ``send_first`` opens its writing end first), says ``ready`` on stderr, then
    starts a background job that copies stdin to ``send_to`` and becomes
    ``cat <receive_from``. The job is the only holder of the stdin pipe and of
    ``send_to``; the ``cat`` is the only writer of the stdout and stderr pipes. So:

    * ``send_eof`` ends the job, which closes ``send_to``: the peer's ``cat`` reads end of
      file and exits, so the peer's stream reads ``b""`` (its session is Closed) while the
      peer's own job still copies its stdin: half-close works both ways.
    * closing the peer kills its ``cat``: our job gets SIGPIPE writing ``send_to`` and
      dies, and our next ``send_all`` fails with BrokenResourceError.
    """
    opens = '4>"$1" 5<"$2"' if send_first else '5<"$2" 4>"$1"'
    script = (
        f"exec {opens}; exec 3<&0; echo ready >&2; "
        "cat <&3 >&4 2>/dev/null 3<&- 4>&- 5<&- & "
        "exec cat <&5 3<&- 4>&- 5<&-"
    )
    return ["sh", "-c", script, "pair-end", str(send_to), str(receive_from)]


class _Ready:
    """A stderr callback that notices the ``ready`` line of :func:`pair_end`."""

    def __init__(self) -> None:
        self.event = trio.Event()
        self._seen = b""

    def __call__(self, data: bytes) -> None:
        if not self.event.is_set():
            self._seen += data
            if b"ready\n" in self._seen:
                self.event.set()


class StreamPairMaker:
    """An async factory of connected :class:`ProcessStream` pairs, for trio's stream checks.

    ``s1.send_all`` -> child 1's stdin -> FIFO ``a`` -> child 2's stdout -> ``s2.receive_some``,
    and the same the other way through FIFO ``b``. The pair is returned once both children
    opened both FIFOs: a FIFO opened by one side only would block its opener forever.
    """

    def __init__(
        self, backend: tx.ExecBackend, nursery: trio.Nursery, directory: Path, **kwargs: Any
    ) -> None:
        self._backend = backend
        self._nursery = nursery
        self._directory = directory
        self._kwargs = {"eof_timeout": PAIR_EOF_TIMEOUT, **kwargs}
        self._counter = itertools.count()

    async def __call__(self) -> tuple[ProcessStream, ProcessStream]:
        where = self._directory / f"pair-{next(self._counter)}"
        where.mkdir()
        a, b = where / "a", where / "b"
        os.mkfifo(a)
        os.mkfifo(b)
        streams = []
        readies = []
        for argv in (pair_end(a, b, send_first=True), pair_end(b, a, send_first=False)):
            ready = _Ready()
            readies.append(ready)
            kwargs = {**self._kwargs, "stderr": ready}
            streams.append(await self._nursery.start(_host, self._backend, argv, kwargs))
        for ready in readies:
            await ready.event.wait()
        return streams[0], streams[1]


async def _host(
    backend: tx.ExecBackend,
    argv: list[str],
    kwargs: dict[str, Any],
    *,
    task_status: trio.TaskStatus[ProcessStream] = trio.TASK_STATUS_IGNORED,
) -> None:
    await host_stream(backend, argv, task_status=task_status, **kwargs)
