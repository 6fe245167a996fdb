"""connect_command: an exec server on the other end of a command's stdin and stdout.

Theory of operation
-------------------
:func:`connect_command` runs a command whose stdin and stdout speak the exec-server
protocol as newline-delimited JSON (``trio-exec serve --listen stdio``, usually behind
``ssh``, ``kubectl exec -i`` or ``docker exec -i``) and runs :func:`open_remote_backend`
over its pipes. The command is a process session of our own process API:
:func:`~trio_exec._stream.open_stream` on a :class:`LocalBackend` made for it, and the
:class:`~trio_exec.ProcessStream` it yields is both byte streams of a
:class:`~trio_exec._transport.StreamTransport`.

* **Process group.** The backend has ``start_new_session=False``: the command stays in
  this process's process group, so a terminal's Ctrl-C reaches ``ssh`` as it reaches us.
  Its signals (SIGTERM, SIGKILL) go to the command alone, never to a group.
* **stderr.** By default the backend has ``inherit_stderr=True``: the command writes to
  this process's stderr, so the messages of ``ssh`` (or the server's logs) appear where
  ours do. Given a callback or a logger, the command's stderr is piped into its session
  and handed over by a :class:`~trio_exec.StderrCapture` (a task of the stream's block,
  which reads it continuously, so the command never blocks on a full pipe); the capture
  keeps the last :data:`STDERR_TAIL_BYTES` for error messages and holds back an exception
  of the sink until the command was reaped.
* **Shutdown.** Leaving the block first leaves the :class:`RemoteBackend` (its calls fail,
  its tasks stop), then closes the stream (:meth:`ProcessStream.aclose`, shielded): the
  command's stdin is closed. End of file ends the server's session, which terminates and
  reaps every process of the session, and the server exits (``ssh`` and friends pass the
  end of file on and exit with it). The command gets :data:`COMMAND_EXIT_TIMEOUT` seconds
  for this (the stream's ``eof_timeout``); then SIGTERM, then SIGKILL after
  :data:`COMMAND_TERMINATE_TIMEOUT` seconds (its ``grace``). Meanwhile its stdout is no
  longer held back and its stderr still handed over, so it never blocks on a full pipe
  while it winds down. Leaving the stream's block reaps it, after its pipes reached end
  of file or :data:`STDERR_DRAIN_TIMEOUT` seconds.
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
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Final, TypeAlias

import trio

from ._backend import Arg, check_argv
from ._errors import ConnectionLost, SpawnError
from ._events import Exited
from ._local import LocalBackend
from ._local_process import CLOSE_DRAIN_TIMEOUT
from ._log import EventSubscription
from ._remote import RemoteBackend, open_remote_backend
from ._stream import (
    STDERR_LINE_BYTES,
    STDERR_LOG_LEVEL,
    ProcessStream,
    StderrCapture,
    open_stream,
)
from ._transport import StreamTransport

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

STDERR_DRAIN_TIMEOUT: Final = CLOSE_DRAIN_TIMEOUT
"""Seconds the shutdown still reads the command's stdout and captured stderr after the
command exited (a process it left behind may hold them open); what comes later is not
read. It is the local session's bound on the end of its pipes once the child was killed
(:data:`~trio_exec._local_process.CLOSE_DRAIN_TIMEOUT`)."""

STDERR_TAIL_BYTES: Final = 4096
"""How much of the end of the command's captured stderr goes in error messages."""

CommandStderr: TypeAlias = Callable[[bytes], None] | logging.Logger | None
"""Where :func:`connect_command` sends the command's stderr: None (inherit this process's
stderr), a callback that gets every chunk as it arrives, or a logger that gets every line."""


class _Command:
    """The running command: its stream, its stderr, how it ended."""

    def __init__(
        self, argv: list[str], stream: ProcessStream, stderr: StderrCapture | None
    ) -> None:
        self.argv = argv
        self.stream = stream
        self.stderr = stderr
        # Exited, Closed only (no output, so it holds nothing back): how the command ended.
        events = stream.process.subscribe(streams=())
        assert isinstance(events, EventSubscription)
        self._events = events
        self._exited: Exited | None = None

    def describe(self) -> str:
        """How the command ended (or that it runs) and what its stderr said, for messages."""
        if self.stderr is None:
            output = "its stderr went to this process's stderr"
        else:
            tail = self.stderr.tail().decode("utf-8", "replace").strip()
            output = f"its stderr ended with:\n{tail}" if tail else "it wrote nothing to stderr"
        return f"the command {shlex.join(self.argv)} {self._status()}; {output}"

    def _status(self) -> str:
        exited = self._exit()
        if exited is None:
            return "is still running"
        ended = f"exited with code {exited.exit_code}"
        if exited.signal is not None:
            try:
                ended = f"was killed by {signal.Signals(exited.signal).name}"
            except ValueError:
                ended = f"was killed by signal {exited.signal}"
        if self.stream.terminated:
            # SIGTERM first; SIGKILL once the grace ran out (the only way it gets one).
            sent = signal.SIGKILL if exited.signal == signal.SIGKILL else signal.SIGTERM
            ended += f" (sent {sent.name} after it did not exit by itself)"
        return ended

    def _exit(self) -> Exited | None:
        """The command's ``Exited`` event, once it came."""
        try:
            while self._exited is None:
                event = self._events.receive_nowait()
                if isinstance(event, Exited):
                    self._exited = event
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            pass
        return self._exited

    async def wait_ended(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the command to exit and its stderr to end."""
        with trio.move_on_after(timeout):
            await self.stream.process.wait()
            if self.stderr is not None:
                await self.stderr.ended.wait()

    async def shutdown(self) -> None:
        """Close the stream: stdin closed, the exit waited for, SIGTERM, SIGKILL. Shielded."""
        with trio.CancelScope(shield=True):
            await self.stream.aclose()
        self._exit()

    def close(self) -> None:
        """Release the subscription that tells how the command ended."""
        self._events.close()


class _CommandTransport(StreamTransport):
    """The command's stream as a transport; a lost connection's message tells how the
    command ended (once the session is established; before, :func:`connect_command` does)."""

    def __init__(self, command: _Command) -> None:
        super().__init__(command.stream, command.stream)
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

    async def aclose(self) -> None:
        """Close the command's stdin, so that it sees end of file; the rest of the
        shutdown (waiting for the exit, the signals) is :func:`connect_command`'s."""
        try:
            await self._command.stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass


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

        argv = ["ssh", "build-host", "trio-exec", "serve", "--listen",
                "stdio"]
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

    The command runs in this process's process group (a :class:`LocalBackend` with
    ``start_new_session=False``): a terminal's Ctrl-C reaches it too (``ssh`` then drops
    the connection, and the remote server ends the session as on end of file). Its
    SIGTERM and SIGKILL go to the command alone, as there is no group of its own to kill:
    a local process the command started and left behind is not killed (``ssh`` leaves
    none unless told to, as with ``ControlPersist``).

    **Cancellation:** the command is shut down exactly as when the block is left, shielded
    from the cancellation, so a cancelled caller waits at most
    :data:`COMMAND_EXIT_TIMEOUT` + :data:`COMMAND_TERMINATE_TIMEOUT` +
    :data:`STDERR_DRAIN_TIMEOUT` seconds plus the reaping after SIGKILL; the command is
    never left behind.
    """
    argv = check_argv(argv)
    # In this process's group, so that a terminal's Ctrl-C reaches the command.
    local = LocalBackend(start_new_session=False, inherit_stderr=stderr is None)
    capture = None
    if stderr is not None:
        capture = StderrCapture(
            stderr,
            label=os.path.basename(argv[0]),
            tail_bytes=STDERR_TAIL_BYTES,
            defer_errors=True,
        )
    startup_error: ConnectionLost | None = None
    command: _Command | None = None
    try:
        async with AsyncExitStack() as stack:
            try:
                stream = await stack.enter_async_context(
                    open_stream(
                        local,
                        argv,
                        cwd=cwd,
                        env=env,
                        stderr=capture,
                        grace=COMMAND_TERMINATE_TIMEOUT,
                        eof_timeout=COMMAND_EXIT_TIMEOUT,
                    )
                )
            except SpawnError as exc:
                raise ConnectionLost(f"cannot run the command {shlex.join(argv)}: {exc}") from exc
            command = _Command(argv, stream, capture)
            transport = _CommandTransport(command)
            try:
                async with open_remote_backend(transport, client_name=client_name) as backend:
                    transport.established = True
                    yield backend
            except ConnectionLost as exc:
                if transport.established:
                    raise
                startup_error = exc
            finally:
                await command.shutdown()
        # Left: the command is reaped and its whole stderr handed over.
        if startup_error is not None:
            raise ConnectionLost(
                f"no exec-server session over the command's stdio ({startup_error}): "
                f"{command.describe()}"
            ) from None
    finally:
        if command is not None:
            command.close()
    if capture is not None and capture.error is not None:
        raise capture.error
