"""connect_command: an exec server on the other end of a command's stdin and stdout.

Theory of operation
-------------------
:func:`connect_command` runs a command whose stdin and stdout speak the exec-server
protocol as newline-delimited JSON (``trio-exec serve --listen stdio``, usually behind
``ssh``, ``kubectl exec -i`` or ``docker exec -i``) and runs :func:`open_remote_backend`
over its pipes (a :class:`~trio_exec._transport.StreamTransport`).

* **stderr.** By default the command inherits this process's stderr, so the messages of
  ``ssh`` (or the server's logs) appear where ours do. Given a callback or a logger, the
  command's stderr is piped instead and read continuously (so the command never blocks on a
  full pipe) by a task of the block, then by the shutdown; the last
  :data:`STDERR_TAIL_BYTES` of it are kept for error messages.
* **Shutdown.** Leaving the block first leaves the :class:`RemoteBackend` (its calls fail,
  its tasks stop), then closes the command's stdin. End of file ends the server's session,
  which terminates and reaps every process of the session, and the server exits (``ssh``
  and friends pass the end of file on and exit with it). The command gets
  :data:`COMMAND_EXIT_TIMEOUT` seconds for this; then SIGTERM, then SIGKILL after
  :data:`COMMAND_TERMINATE_TIMEOUT` seconds; it is always reaped. Meanwhile its stdout and
  stderr are drained, so it never blocks on a full pipe while it winds down. The shutdown
  is shielded: a cancelled block is left the same way.
* **Failure.** When the command exits (or closes its stdout) during the session, the
  connection is lost as with any transport (pending and later calls raise
  :class:`ConnectionLost`, open processes get ``Failed``), and the message says how the
  command ended and, when its stderr is captured, how its stderr ended. A command that
  cannot be started, exits, or does not answer ``initialize`` with the protocol makes
  :func:`connect_command` raise :class:`ConnectionLost` with the same details.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final, TypeAlias

import trio

from ._backend import Arg, check_argv
from ._errors import ConnectionLost
from ._lines import LineSplitter, TooLong
from ._remote import RemoteBackend, open_remote_backend
from ._stream import STDERR_LINE_BYTES
from ._transport import StreamTransport
from ._util import open_service_nursery

__all__ = [
    "COMMAND_EXIT_TIMEOUT",
    "COMMAND_TERMINATE_TIMEOUT",
    "EXIT_REPORT_TIMEOUT",
    "STDERR_DRAIN_TIMEOUT",
    "STDERR_LINE_BYTES",
    "STDERR_LOG_LEVEL",
    "STDERR_TAIL_BYTES",
    "CommandStderr",
    "connect_command",
]

COMMAND_EXIT_TIMEOUT: Final = 5.0
"""Seconds the command gets to exit by itself after its stdin was closed.

End of file ends the server's session: it terminates the session's processes (``trio-exec
serve`` waits up to 1 s between SIGTERM and SIGKILL) and exits; ``ssh`` and the like then
exit too. After this time the command gets SIGTERM."""

COMMAND_TERMINATE_TIMEOUT: Final = 2.0
"""Seconds between SIGTERM and SIGKILL of a command that did not exit after end of file."""

EXIT_REPORT_TIMEOUT: Final = 1.0
"""Seconds a lost connection waits for the command to exit and its stderr to end, so that
the :class:`ConnectionLost` message can tell how the command ended. Pending calls fail at
most this much later."""

STDERR_DRAIN_TIMEOUT: Final = 1.0
"""Seconds the shutdown still reads the command's captured stderr after the command exited
(a process it left behind may hold stderr open); what comes later is not read."""

STDERR_TAIL_BYTES: Final = 4096
"""How much of the end of the command's captured stderr goes in error messages."""

STDERR_LOG_LEVEL: Final = logging.INFO
"""The level of the records a ``stderr`` logger gets."""

CommandStderr: TypeAlias = Callable[[bytes], None] | logging.Logger | None
"""Where :func:`connect_command` sends the command's stderr: None (inherit this process's
stderr), a callback that gets every chunk as it arrives, or a logger that gets every line."""

_STDOUT_DRAIN_BYTES: Final = 64 * 1024


class _StderrCapture:
    """Reads a piped stderr: hands it to the sink and keeps its tail."""

    def __init__(self, stream: trio.abc.ReceiveStream, sink: CommandStderr, name: str) -> None:
        assert sink is not None
        self._stream = stream
        self._name = name
        self._logger = sink if isinstance(sink, logging.Logger) else None
        self._callback = None if isinstance(sink, logging.Logger) else sink
        self._lines = LineSplitter(STDERR_LINE_BYTES, too_long=TooLong.CUT)
        self._tail: deque[bytes] = deque()
        self._tail_bytes = 0
        self.eof = trio.Event()
        """Set when the command's stderr reached end of file (or broke)."""
        self.error: Exception | None = None
        """What the callback or the logger raised; from then on, stderr is only drained."""

    async def drain(self) -> None:
        """Read until end of file; may be cancelled and run again later."""
        while not self.eof.is_set():
            try:
                data = bytes(await self._stream.receive_some())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.eof.set()
                break
            self._keep(data)
            self._deliver(self._callback or self._log, data)

    def finish(self) -> None:
        """Log the last, unterminated line."""
        line = self._lines.feed_eof()
        if line is not None:
            self._deliver(self._log_line, line)

    def _deliver(self, sink: Callable[[bytes], None], data: bytes) -> None:
        if self.error is not None:
            return
        try:
            sink(data)
        except Exception as exc:
            self.error = exc

    def tail(self) -> str:
        """The end of what the command wrote to stderr, decoded, stripped."""
        text = b"".join(self._tail)[-STDERR_TAIL_BYTES:]
        return text.decode("utf-8", "replace").strip()

    def _keep(self, data: bytes) -> None:
        self._tail.append(data)
        self._tail_bytes += len(data)
        while self._tail_bytes - len(self._tail[0]) >= STDERR_TAIL_BYTES:
            self._tail_bytes -= len(self._tail.popleft())

    def _log(self, data: bytes) -> None:
        for line in self._lines.split(data):
            self._log_line(line)

    def _log_line(self, line: bytes) -> None:
        assert self._logger is not None
        text = line.decode("utf-8", "replace")
        self._logger.log(STDERR_LOG_LEVEL, "%s: %s", self._name, text)


class _Command:
    """The running command: its pipes, its stderr, its shutdown."""

    def __init__(
        self, argv: list[str], process: trio.Process, stderr: _StderrCapture | None
    ) -> None:
        self.argv = argv
        self.process = process
        self.stderr = stderr
        assert process.stdin is not None
        assert process.stdout is not None
        self.stdin: trio.abc.SendStream = process.stdin
        self.stdout: trio.abc.ReceiveStream = process.stdout
        self._signalled: signal.Signals | None = None

    def describe(self) -> str:
        """How the command ended (or that it runs) and what its stderr said, for messages."""
        if self.stderr is None:
            output = "its stderr went to this process's stderr"
        else:
            tail = self.stderr.tail()
            output = f"its stderr ended with:\n{tail}" if tail else "it wrote nothing to stderr"
        return f"the command {shlex.join(self.argv)} {self._status()}; {output}"

    def _status(self) -> str:
        code = self.process.returncode
        if code is None:
            return "is still running"
        ended = f"exited with code {code}"
        if code < 0:
            try:
                ended = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                ended = f"was killed by signal {-code}"
        if self._signalled is not None:
            ended += f" (sent {self._signalled.name} after it did not exit by itself)"
        return ended

    async def wait_ended(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the command to exit and its stderr to end."""
        with trio.move_on_after(timeout):
            await self.process.wait()
            if self.stderr is not None:
                await self.stderr.eof.wait()

    async def shutdown(self) -> None:
        """Close stdin, wait for the exit, SIGTERM, SIGKILL; always reap. Run shielded."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._discard_stdout)
                if self.stderr is not None:
                    nursery.start_soon(self.stderr.drain)
                try:
                    await self.stdin.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                await self._stop()
                if self.stderr is not None:
                    with trio.move_on_after(STDERR_DRAIN_TIMEOUT):
                        await self.stderr.eof.wait()
                nursery.cancel_scope.cancel()
            if self.stderr is not None:
                self.stderr.finish()
        finally:
            for stream in (self.stdout, self.process.stderr):
                if stream is not None:
                    await stream.aclose()

    async def _stop(self) -> None:
        process = self.process
        with trio.move_on_after(COMMAND_EXIT_TIMEOUT):
            await process.wait()
        for sig, timeout in (
            (signal.SIGTERM, COMMAND_TERMINATE_TIMEOUT),
            (signal.SIGKILL, None),
        ):
            if process.returncode is not None:
                return
            self._signalled = sig
            process.send_signal(sig)
            if timeout is None:
                await process.wait()
            else:
                with trio.move_on_after(timeout):
                    await process.wait()

    async def _discard_stdout(self) -> None:
        """Keep reading stdout so that a server writing its last messages never blocks."""
        try:
            while await self.stdout.receive_some(_STDOUT_DRAIN_BYTES):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class _CommandTransport(StreamTransport):
    """The command's pipes as a transport; a lost connection's message tells how the
    command ended (once the session is established; before, :func:`connect_command` does)."""

    def __init__(self, command: _Command) -> None:
        super().__init__(command.stdin, command.stdout)
        self._command = command
        self.established = False

    async def receive(self) -> str | bytes:
        """See :meth:`StreamTransport.receive`."""
        try:
            return await super().receive()
        except ConnectionLost as exc:
            if not self.established:
                raise
            await self._command.wait_ended(EXIT_REPORT_TIMEOUT)
            raise ConnectionLost(f"{exc}: {self._command.describe()}") from None


@asynccontextmanager
async def connect_command(
    argv: Sequence[Arg],
    *,
    env: Mapping[str, str] | None = None,
    stderr: CommandStderr = None,
    client_name: str = "trio-exec",
    cwd: str | os.PathLike[str] | None = None,
) -> AsyncIterator[RemoteBackend]:
    """Run a command that serves the exec-server protocol on its stdin / stdout; yield a
    :class:`RemoteBackend` on it.

    The command speaks newline-delimited JSON, as ``trio-exec serve --listen stdio`` does::

        argv = ["ssh", "build-host", "trio-exec", "serve", "--listen", "stdio"]
        async with tx.connect_command(argv) as backend:
            result = await tx.run_process(["uname", "-a"], backend=backend)

    ``kubectl exec -i POD -- trio-exec serve --listen stdio`` and ``docker exec -i
    CONTAINER trio-exec serve --listen stdio`` work the same way (``-i``: keep stdin open;
    no ``-t``: a terminal would mangle the stream). ``ssh`` joins its remote command with
    spaces for the remote shell: quote it (:func:`shlex.join`) when it needs quoting.
    Processes opened without ``cwd`` or ``env`` run in the server's working directory with
    the server's environment (the login's over ``ssh``, the container's with ``docker
    exec``), never this process's.

    Args:
        argv: the command and its arguments (run directly, not through a shell).
        env: the command's exact environment; None: this process's environment.
        stderr: where the command's stderr goes. None: it inherits this process's stderr.
            A callable gets every chunk as it arrives (it must not block). A
            :class:`logging.Logger` gets every line at :data:`STDERR_LOG_LEVEL`, as
            ``"<program>: <line>"``. Either way the stderr is read continuously, and its
            last :data:`STDERR_TAIL_BYTES` go in the messages of :class:`ConnectionLost`.
            If the callback (or the logger) raises an exception, it gets no more stderr
            (which is still drained), and the exception is raised when the block is left,
            after the command was reaped, unless the block raised one of its own.
        client_name: sent in ``initialize``.
        cwd: the command's working directory; None: this process's. A server the command
            runs here (``trio-exec serve --listen stdio``) starts its children there when
            they are opened without ``cwd``.

    Raises:
        ConnectionLost: the command cannot be started, or it exited, closed its stdout,
            wrote something that is not the protocol, or did not answer ``initialize``
            within :data:`~trio_exec._remote.INITIALIZE_TIMEOUT` seconds. The message
            says how the command ended and, when its stderr is captured, how its stderr
            ended.
        RemoteError: the server refused ``initialize``.
        ValueError: ``argv`` is empty (or an item holds NUL).
        TypeError: ``argv`` is a single string, or an item is not a str, bytes or path.

    While the block runs, the command exiting is a lost connection: pending and later
    calls raise :class:`ConnectionLost` and open processes end with ``Failed``, with the
    command's exit status (and the end of its stderr) in the message.

    Leaving the block (processes opened on the backend must be left first; the usual
    nesting does this) closes the command's stdin: the server ends the session, which
    terminates and reaps its processes, and exits. The command gets
    :data:`COMMAND_EXIT_TIMEOUT` seconds to exit, then SIGTERM, then SIGKILL after
    :data:`COMMAND_TERMINATE_TIMEOUT` seconds, and it is always reaped. A server that had
    to be killed may leave its processes behind (over ``ssh``, the remote server still
    sees end of file when the connection drops).

    The command runs in this process's process group: a terminal's Ctrl-C reaches it too
    (``ssh`` then drops the connection, and the remote server ends the session as on end
    of file).

    **Cancellation:** the command is shut down exactly as when the block is left, shielded
    from the cancellation, so a cancelled caller waits at most
    :data:`COMMAND_EXIT_TIMEOUT` + :data:`COMMAND_TERMINATE_TIMEOUT` +
    :data:`STDERR_DRAIN_TIMEOUT` seconds plus the reaping after SIGKILL; no process is
    left behind.
    """
    argv = check_argv(argv)
    try:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if stderr is None else subprocess.PIPE,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
    except OSError as exc:
        raise ConnectionLost(f"cannot run the command {shlex.join(argv)}: {exc}") from exc
    capture = None
    if process.stderr is not None:
        capture = _StderrCapture(process.stderr, stderr, os.path.basename(argv[0]))
    command = _Command(argv, process, capture)
    transport = _CommandTransport(command)
    startup_error: ConnectionLost | None = None
    try:
        async with open_service_nursery() as nursery:
            if capture is not None:
                nursery.start_soon(capture.drain)
            try:
                async with open_remote_backend(transport, client_name=client_name) as backend:
                    transport.established = True
                    yield backend
            except ConnectionLost as exc:
                if transport.established:
                    raise
                startup_error = exc
            finally:
                nursery.cancel_scope.cancel()  # the shutdown drains stderr from now on
    finally:
        with trio.CancelScope(shield=True):
            await command.shutdown()
    if startup_error is not None:
        raise ConnectionLost(
            f"no exec-server session over the command's stdio ({startup_error}): "
            f"{command.describe()}"
        ) from None
    if capture is not None and capture.error is not None:
        raise capture.error
