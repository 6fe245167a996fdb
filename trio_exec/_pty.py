"""Pseudo-terminal allocation and window size (POSIX only).

The parent keeps the master side; the child gets the slave as its stdin, stdout and
stderr and makes it its controlling terminal (after ``setsid``) in
:func:`make_controlling_terminal`, which runs in the child between fork and exec.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
from typing import Final

__all__ = [
    "DEFAULT_COLS",
    "DEFAULT_ROWS",
    "eof_char",
    "get_window_size",
    "make_controlling_terminal",
    "open_pty",
    "set_window_size",
]

DEFAULT_ROWS: Final = 24
"""Rows of a new terminal (the reference server's fixed size)."""

DEFAULT_COLS: Final = 80
"""Columns of a new terminal."""

_WINSIZE: Final = struct.Struct("HHHH")


def open_pty(rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLS) -> tuple[int, int]:
    """Open a pseudo-terminal of the given size and return ``(master_fd, slave_fd)``.

    Both descriptors are close-on-exec; the caller owns them.
    """
    master, slave = os.openpty()
    try:
        set_window_size(master, rows, cols)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """Set the window size of the terminal behind ``fd``; its foreground group gets SIGWINCH."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, _WINSIZE.pack(rows, cols, 0, 0))


def get_window_size(fd: int) -> tuple[int, int]:
    """Return ``(rows, cols)`` of the terminal behind ``fd``."""
    rows, cols, _, _ = _WINSIZE.unpack(fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(_WINSIZE.size)))
    return rows, cols


def eof_char(fd: int) -> bytes:
    """The terminal's end-of-file character (VEOF, normally Ctrl-D)."""
    try:
        value = termios.tcgetattr(fd)[6][termios.VEOF]
    except termios.error:
        return b"\x04"
    return value if isinstance(value, bytes) else bytes([value])


def make_controlling_terminal() -> None:
    """Make stdin (the slave) the controlling terminal of the calling session leader.

    Runs in the child after ``setsid()``; async-signal-safe enough for ``preexec_fn``
    (one ioctl, no allocation beyond what the interpreter already holds).
    """
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
