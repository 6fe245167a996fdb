"""Processes as byte streams: :func:`open_stream`, :class:`ProcessStream`, :class:`LineReader`.

Theory of operation
-------------------
A :class:`ProcessStream` is a :class:`trio.abc.HalfCloseableStream` over a process session
started with a piped stdin. Writing goes to the child's stdin (:meth:`ExecProcess.write`);
reading comes from a subscription to the session's events, so stdout arrives in ``seq``
order with nothing lost or duplicated, exactly as the events carry it. The child's stdout
end of file is the session's ``Closed`` event: the child exited and every output pipe
reached end of file. A ``Failed`` event (a remote session broke) makes the receive side
raise :class:`trio.BrokenResourceError`. The subscription wants stdout (or the terminal)
only, so a stream nobody reads holds back the child's stdout and nothing else.

:func:`open_stream` owns the session: the stream is valid inside its ``async with`` block,
and leaving the block always leaves no process behind. Closing the stream
(:meth:`ProcessStream.aclose`) follows the MCP stdio shutdown sequence, which is also what
trio's graceful close means for a pipe: close stdin, give the child
:data:`DEFAULT_EOF_TIMEOUT` seconds to exit by itself, then terminate it (SIGTERM, SIGKILL
after ``grace``). A cancelled close kills the child at once. A second subscription, to
stderr only and read by a task of the block, hands the child's stderr to a callback or a
logger as it arrives, whether or not stdout is being read.

Why a context manager and not a plain ``await open_stream(...)``: a session runs tasks in a
nursery (a local session's task), and a Trio nursery must be left by the task that
entered it, in nesting order. A stream that owned its session could then only be closed by
the task that opened it, and only in reverse order of opening; trio's stream contract lets
any task close a stream. So the block owns the session and ``aclose`` only stops the child.

:class:`LineReader` splits any :class:`trio.abc.ReceiveStream` into lines, for JSON-lines
protocols such as MCP stdio: one message per line, a bounded line length.

Modules, imported bottom to top:

* ``process``: :class:`ProcessStream`, the stream over a session.
* ``stderr``: the forwarding of a child's stderr to a callback or a logger (lines), and
  the end of it kept (:class:`StderrCapture`).
* ``open``: :func:`open_stream`, the block that owns the session.
* ``reader``: :class:`LineReader`, on the one line splitter of ``trio_exec._lines``.
"""

from __future__ import annotations

from .open import open_stream
from .process import DEFAULT_EOF_TIMEOUT, KILL_TIMEOUT, ProcessStream
from .reader import LINE_READER_MAX_BYTES, LINE_RECEIVE_BYTES, LineReader, LineTooLongError
from .stderr import (
    STDERR_LINE_BYTES,
    STDERR_LOG_LEVEL,
    STDERR_LOGGER_NAME,
    StderrCapture,
    StderrSink,
)

__all__ = [
    "DEFAULT_EOF_TIMEOUT",
    "KILL_TIMEOUT",
    "LINE_READER_MAX_BYTES",
    "LINE_RECEIVE_BYTES",
    "STDERR_LINE_BYTES",
    "STDERR_LOGGER_NAME",
    "STDERR_LOG_LEVEL",
    "LineReader",
    "LineTooLongError",
    "ProcessStream",
    "StderrCapture",
    "StderrSink",
    "open_stream",
]
