"""The pump: reads one output descriptor of a local child into its process log."""

from __future__ import annotations

import enum
import errno
import fcntl
import os
import termios
from typing import Final

import trio

from ._events import OutputStream
from ._log import ProcessLog

__all__ = [
    "BEHIND_CHUNK_BYTES",
    "CHECKPOINT_BYTES",
    "PIPE_BUFFER_BYTES",
    "READS_PER_CHUNK",
    "READ_CHUNK_BYTES",
    "Pull",
    "Pump",
    "largest_chunk",
    "pending_bytes",
]

READ_CHUNK_BYTES: Final = 128 * 1024
"""Largest chunk appended to the log at once, so the largest ``Output.data`` (128 KiB),
unless the backend allows more while a stream is held back (:data:`BEHIND_CHUNK_BYTES`).

A pump gathers a chunk from consecutive reads while the pipe has data, so that a child
writing in small pieces (``head`` writes 4 KiB at a time) still costs one event per
128 KiB, and its bytes are read while they are fresh in the cache, a few KiB after the
child wrote them. Measured on the drain benchmark: 64 KiB chunks pay the per-event cost
twice as often, 256 KiB chunks no longer fit the cache with the pipe's pages."""

BEHIND_CHUNK_BYTES: Final = 512 * 1024
"""Largest chunk that the exec server's local backend appends at once while a slow
subscription holds a stream back (the task of :meth:`Pump.run`), so the largest output
notification it sends (512 KiB): ``LocalBackend(behind_chunk_bytes=...)``, which the
server and ``trio-exec serve`` set to this. Never more than half the log's
``retain_bytes`` (see :func:`largest_chunk`).

Once the consumer is the slower side, the pipe is full and its bytes are no longer fresh
in the cache. Where each event costs much further on (a notification, a websocket frame,
a client's decoding), larger chunks pay: measured with our client and server over
loopback, 512 KiB chunks carried 64 MiB 35 % faster than 128 KiB ones, with 30 % less
of the client's CPU time. A local consumer pays little per event, and more for the cold
bytes of a large chunk: the same 512 KiB chunks took the local drain benchmark from
1.00-1.08 to 0.81-0.86 of raw reads, so a plain backend keeps :data:`READ_CHUNK_BYTES`."""

READS_PER_CHUNK: Final = 32
"""Most reads a pump gathers into one chunk; a trickle of tiny writes stops the gathering
there, so a chunk is appended after at most this many ``read`` calls."""

CHECKPOINT_BYTES: Final = 1024 * 1024
"""Most bytes a pump reads and sequences between two checkpoints (1 MiB).

A pump goes on reading while the pipe has data, so that a fast child costs one trip
through the scheduler per this many bytes rather than per chunk; the bound keeps the
other tasks (and a cancellation of the pump) from waiting longer than that. Once the
pipe is drained it waits until it is readable again, and a wait for room in the log is
a checkpoint too."""


PIPE_BUFFER_BYTES: Final = 1024 * 1024
"""Kernel buffer asked for an output pipe (Linux ``F_SETPIPE_SZ``; the default is 64 KiB)
once its child writes a whole default buffer's worth at once. A larger buffer lets a
chatty child run ahead of a busy event loop between reads; it counts toward the bound on
memory held for a paused consumer. A child that writes little never costs the kernel
the larger buffer, nor its spawn the ``fcntl``."""

_DEFAULT_PIPE_BYTES: Final = 64 * 1024
"""The kernel's default pipe buffer: a read this large means the child filled it."""


def largest_chunk(retain_bytes: int, behind_bytes: int = BEHIND_CHUNK_BYTES) -> int:
    """The largest chunk a pump allowed ``behind_bytes`` when held back appends to a log
    that retains ``retain_bytes``: at most half of ``retain_bytes`` (so that two fit
    within the bound that holds a slow consumer back), and never less than
    :data:`READ_CHUNK_BYTES`. The default is the server's."""
    return max(READ_CHUNK_BYTES, min(behind_bytes, retain_bytes // 2))


def grow_pipe(fd: int) -> None:
    """Ask for a :data:`PIPE_BUFFER_BYTES` pipe buffer: fewer wake-ups for a chatty child."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BUFFER_BYTES)
    except OSError:  # above /proc/sys/fs/pipe-max-size for an unprivileged user
        pass


def pending_bytes(fd: int) -> int:
    """Bytes waiting to be read from a pipe or PTY master."""
    try:
        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, "little", signed=True)


class Pull(enum.Enum):
    """Why :meth:`Pump.pull` returned."""

    DRAINED = "drained"
    """The descriptor has nothing more for now: wait until it is readable."""
    MORE = "more"
    """:data:`CHECKPOINT_BYTES` were sequenced and more may be waiting: checkpoint first."""
    HELD = "held"
    """The log had no room for the chunk read: the pump holds it, :meth:`Pump.run`
    appends it once there is room and goes on reading in a task of its own."""
    EOF = "eof"
    """End of file: :attr:`Pump.at_eof` is set."""


class Pump:
    """Reads one output descriptor into the log until end of file.

    Two ways: the session's task calls :meth:`pull` when the descriptor is readable (the
    common case: no task per stream), and a stream that a slow subscription holds back
    moves to a task of its own, :meth:`run`, which can wait for room in the log while the
    session's task goes on with the other streams and the exit.
    """

    def __init__(
        self,
        stream: OutputStream,
        fd: int,
        log: ProcessLog,
        behind_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        self.stream = stream
        self.fd = fd
        self._log = log
        self._grow = stream is not OutputStream.PTY
        """Whether the pipe still has its default buffer (see :data:`PIPE_BUFFER_BYTES`)."""
        self.read_total = 0
        """Bytes read from the descriptor."""
        self.appended_total = 0
        """Bytes sequenced into the log."""
        self.at_eof = trio.Event()
        """Set once no more output will be appended: end of file, or :meth:`stop`."""
        self._progress = trio.lowlevel.ParkingLot()
        self._held: bytes | None = None
        self._reading: trio.CancelScope | None = None
        """The scope of :meth:`run`, once it runs (most pumps never do)."""
        self._behind_bytes = behind_bytes
        """What the backend allows :meth:`run` (see :data:`BEHIND_CHUNK_BYTES`); the
        largest chunk is worked out when it runs (:func:`largest_chunk`)."""

    def pull(self) -> Pull:
        """Read and sequence what the descriptor has, without waiting, until it is
        drained, at end of file, :data:`CHECKPOINT_BYTES` later, or until the log has no
        room for a chunk (held then, for :meth:`run`)."""
        if self.at_eof.is_set():
            return Pull.EOF
        log = self._log
        budget = CHECKPOINT_BYTES
        while True:
            data, drained, eof = self._gather(READ_CHUNK_BYTES)
            if data is not None:
                if not log.append_output_if_room(self.stream, data):
                    self._held = data
                    return Pull.HELD
                self._appended(len(data))
                budget -= len(data)
            if eof:
                self._finish()
                return Pull.EOF
            if drained:
                return Pull.DRAINED
            if budget <= 0:
                return Pull.MORE

    async def run(self) -> None:
        """Append the held chunk (if any), then read the descriptor into the log until end
        of file or :meth:`stop`, waiting for room in the log as needed.

        **Cancellation:** shielded; only :meth:`stop` ends it early.
        """
        self._reading = trio.CancelScope(shield=True)
        if self.at_eof.is_set():  # stopped before its task ran
            self._reading.cancel()
        with self._reading:
            held, self._held = self._held, None
            if held is not None:
                await self._log.append_output(self.stream, held)
                self._appended(len(held))
            await self._read_to_eof()
        self._finish()

    @property
    def ran(self) -> bool:
        """Whether :meth:`run` was called: only then did trio wait on :attr:`fd`."""
        return self._reading is not None

    def stop(self) -> None:
        """Stop reading: what has not been appended yet is dropped; sets :attr:`at_eof`."""
        self._held = None
        if self._reading is not None:
            self._reading.cancel()
        if not self.at_eof.is_set():  # else the waiters were woken then
            self._finish()

    def _finish(self) -> None:
        self.at_eof.set()
        if self._progress:
            self._progress.unpark_all()

    def _appended(self, size: int) -> None:
        self.appended_total += size
        if self._progress:
            self._progress.unpark_all()

    def _gather(self, limit: int) -> tuple[bytes | None, bool, bool]:
        """Read one chunk: consecutive reads while the descriptor has data, up to ``limit``
        bytes. Returns the chunk (None if nothing was read), whether the descriptor was
        drained, and whether it is at end of file."""
        fd = self.fd
        parts: list[bytes] = []
        size = 0
        drained = eof = False
        for _ in range(READS_PER_CHUNK):
            try:
                data = os.read(fd, limit - size)
            except BlockingIOError:
                drained = True
                break
            except OSError as exc:
                # A PTY master reads EIO once every slave descriptor is closed.
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                eof = True
                break
            parts.append(data)
            size += len(data)
            if size >= limit:
                break
        if not size:
            return None, drained, eof
        if size >= _DEFAULT_PIPE_BYTES and self._grow:
            self._grow = False
            grow_pipe(fd)
        self.read_total += size
        return (parts[0] if len(parts) == 1 else b"".join(parts)), drained, eof

    async def _read_to_eof(self) -> None:
        log = self._log
        stream = self.stream
        limit = largest_chunk(log.retain_bytes, self._behind_bytes)
        unchecked = 0  # bytes sequenced since the last checkpoint
        while True:
            data, drained, eof = self._gather(limit)
            if data is not None:
                await log.append_output(stream, data)
                self._appended(len(data))
                unchecked += len(data)
            if eof:
                return
            if drained:
                unchecked = 0
                await trio.lowlevel.wait_readable(self.fd)
            elif unchecked >= CHECKPOINT_BYTES:
                unchecked = 0
                await trio.lowlevel.checkpoint()

    async def wait_appended(self, target: int) -> None:
        """Wait until ``target`` bytes were sequenced, or end of file."""
        while self.appended_total < target and not self.at_eof.is_set():
            await self._progress.park()
