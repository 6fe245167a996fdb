"""The pump: reads one output descriptor of a local child into its process log."""

from __future__ import annotations

import errno
import fcntl
import os
import termios
from typing import Final

import trio

from ._events import OutputStream
from ._log import ProcessLog

__all__ = ["READ_CHUNK_BYTES", "Pump", "pending_bytes"]

READ_CHUNK_BYTES: Final = 256 * 1024
"""Largest chunk read from a pipe or PTY at once, so the largest ``Output.data`` (256 KiB)."""


def pending_bytes(fd: int) -> int:
    """Bytes waiting to be read from a pipe or PTY master."""
    try:
        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, "little", signed=True)


class Pump:
    """Reads one output descriptor into the log until end of file."""

    def __init__(self, stream: OutputStream, fd: int, log: ProcessLog) -> None:
        self.stream = stream
        self.fd = fd
        self._log = log
        self.read_total = 0
        """Bytes read from the descriptor."""
        self.appended_total = 0
        """Bytes sequenced into the log."""
        self.at_eof = trio.Event()
        """Set once no more output will be appended: end of file, or :meth:`stop`."""
        self._progress = trio.lowlevel.ParkingLot()
        self._reading = trio.CancelScope()

    async def run(self) -> None:
        """Read the descriptor into the log until end of file or :meth:`stop`."""
        with self._reading:
            await self._read_to_eof()
        self.at_eof.set()
        self._progress.unpark_all()

    def stop(self) -> None:
        """Stop reading: what has not been appended yet is dropped; sets :attr:`at_eof`."""
        self._reading.cancel()

    async def _read_to_eof(self) -> None:
        fd = self.fd
        while True:
            try:
                data = os.read(fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            except OSError as exc:
                # A PTY master reads EIO once every slave descriptor is closed.
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                break
            self.read_total += len(data)
            await self._log.append_output(self.stream, data)
            self.appended_total += len(data)
            self._progress.unpark_all()
            await trio.lowlevel.checkpoint()

    async def wait_appended(self, target: int) -> None:
        """Wait until ``target`` bytes were sequenced, or end of file."""
        while self.appended_total < target and not self.at_eof.is_set():
            await self._progress.park()
