"""The exit statuses of ``trio-exec`` and the one-line error each failure prints.

The statuses follow the shell's and ``ssh``'s conventions (see :data:`EXIT_STATUS_TABLE`).
They are chosen from the exception types, never from the text of a message:
:class:`~trio_exec.SpawnError` (and its errno subclasses) for a command that could not
start, locally or remotely (the remote client turns the server's error, with its ``errno``
and ``filename``, into the same types), and the connection errors for everything between
this process and the server.
"""

from __future__ import annotations

import os
import signal
from typing import Final

from .._errors import ConnectionLost, ProtocolError, RemoteError, SpawnError
from .._util import sole_exception

__all__ = [
    "EXIT_CANNOT_EXECUTE",
    "EXIT_CONNECTION",
    "EXIT_NOT_FOUND",
    "EXIT_SIGNAL_BASE",
    "EXIT_STATUS_TABLE",
    "EXIT_STDOUT_CLOSED",
    "EXIT_USAGE",
    "UsageError",
    "connection_exit_status",
    "flatten",
    "one_line",
    "spawn_exit_status",
    "spawn_message",
]

EXIT_USAGE: Final = 2
"""A command line that cannot run: an unknown option, a malformed ``--remote`` URL, an
option that needs another (``--token-file`` without ``--remote``), an unreadable file."""

EXIT_CANNOT_EXECUTE: Final = 126
"""The program exists but cannot be executed (no permission, a directory, not an
executable format), or the working directory is bad (missing, not a directory)."""

EXIT_NOT_FOUND: Final = 127
"""The program was not found (ENOENT)."""

EXIT_SIGNAL_BASE: Final = 128
"""The command was killed by signal N: the status is ``128 + N`` (e.g. 143 for SIGTERM)."""

EXIT_STDOUT_CLOSED: Final = EXIT_SIGNAL_BASE + signal.SIGPIPE
"""Our stdout was closed by its reader (``trio-exec run -- yes | head -1``): the command is
ended and ``trio-exec`` exits quietly with 141, the status of a process killed by SIGPIPE,
as ``cat`` does in the same place."""

EXIT_CONNECTION: Final = 255
"""The exec server could not be reached, refused the connection, broke the protocol or
went away: ``ssh``'s status for its own errors."""

EXIT_STATUS_TABLE: Final = f"""\
exit status:
  N        the command's own exit status (0-255)
  128+N    the command was killed by signal N (e.g. {EXIT_SIGNAL_BASE + signal.SIGTERM} for SIGTERM)
  {EXIT_USAGE}        usage error (bad option, malformed --remote URL, ...)
  {EXIT_CANNOT_EXECUTE}      the program cannot be executed (permission, a directory, bad format),
           or the working directory (--cwd) is bad
  {EXIT_NOT_FOUND}      the program was not found
  {EXIT_STDOUT_CLOSED}      stdout was closed by its reader (e.g. `| head`): the command was ended
  {EXIT_CONNECTION}      connection problem: the exec server cannot be reached, refused us,
           broke the protocol or went away
"""
"""The table printed at the end of ``trio-exec run --help`` (and in the CLI reference)."""


class UsageError(Exception):
    """A command line that cannot run; printed on one line, exit status :data:`EXIT_USAGE`."""


def spawn_exit_status(error: SpawnError, cwd: str | None) -> int:
    """The exit status for a command that could not start: 127 or 126.

    A bad working directory is 126 whatever its errno (``filename`` names it). Otherwise
    ENOENT is 127 (not found) and every other errno 126 (cannot execute), as in ``sh``.
    The reference server does not say whether a missing file is the program or the
    ``--cwd`` directory: that case is 127.
    """
    program = error.program
    if (
        cwd is not None
        and program is not None
        and os.path.normpath(program) == os.path.normpath(cwd)
    ):
        return EXIT_CANNOT_EXECUTE
    if isinstance(error, FileNotFoundError):
        return EXIT_NOT_FOUND
    return EXIT_CANNOT_EXECUTE


def spawn_message(error: SpawnError, cwd: str | None) -> str:
    """The one-line message for a command that could not start, naming a bad ``--cwd``."""
    if _is_the_cwd(error, cwd) and error.strerror:
        return f"cannot use the working directory {cwd!r}: {error.strerror}"
    return one_line(error)


def _is_the_cwd(error: SpawnError, cwd: str | None) -> bool:
    """Whether the file at fault is the working directory (when the server said which)."""
    program = error.program
    return (
        cwd is not None
        and program is not None
        and os.path.normpath(program) == os.path.normpath(cwd)
    )


def connection_exit_status(error: BaseException) -> int | None:
    """:data:`EXIT_CONNECTION` for an error between us and the server, else None."""
    if isinstance(error, ConnectionLost | ProtocolError | RemoteError | OSError):
        return EXIT_CONNECTION
    return None


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line: a group of one is its member, lines joined."""
    error = sole_exception(error) if isinstance(error, BaseExceptionGroup) else error
    return flatten(str(error) or type(error).__name__)


def flatten(text: str) -> str:
    """``text`` on one line: its lines stripped and joined with spaces."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
