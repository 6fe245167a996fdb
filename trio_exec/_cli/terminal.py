"""This process's terminal for ``trio-exec run --tty``: raw mode and its window size."""

from __future__ import annotations

import contextlib
import os
import termios
import tty as _tty
from collections.abc import Iterator

__all__ = ["raw_terminal", "terminal_window"]


@contextlib.contextmanager
def raw_terminal(fd: int, *, keep_output_processing: bool = False) -> Iterator[None]:
    """Put the terminal ``fd`` in raw mode so keys (Ctrl-C too) go to the child's terminal.

    Args:
        keep_output_processing: keep the terminal's output processing (``OPOST``: a
            newline also returns the carriage), for output that is ours rather than the
            child's terminal's (``--json`` lines): raw output would staircase.

    Nothing happens when ``fd`` is not a terminal. The mode is restored on the way out.
    """
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    _tty.setraw(fd)
    if keep_output_processing:
        mode = termios.tcgetattr(fd)
        mode[1] = saved[1]  # the output flags (oflag) as they were
        termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_window() -> tuple[int, int] | None:
    """``(rows, cols)`` of our terminal (stdin's, else stdout's or stderr's), if any."""
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.lines > 0 and size.columns > 0:
            return size.lines, size.columns
    return None
