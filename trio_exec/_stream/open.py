"""open_stream: start a process with piped stdin and own its session as a stream."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

from .._backend import DEFAULT_GRACE, Arg, ExecBackend, check_seconds
from .._events import OutputStream
from .._log import DEFAULT_RETAINED_BYTES
from .._util import open_service_nursery
from .process import DEFAULT_EOF_TIMEOUT, ProcessStream, _subscribe
from .stderr import StderrCapture, StderrSink

__all__ = ["open_stream"]

_STDERR_STREAMS: Final = frozenset({OutputStream.STDERR})
"""What :func:`open_stream` forwards to its ``stderr`` sink."""


def open_stream(
    backend: ExecBackend,
    argv: Sequence[Arg],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    stderr: StderrSink | StderrCapture = None,
    grace: float = DEFAULT_GRACE,
    eof_timeout: float = DEFAULT_EOF_TIMEOUT,
    process_id: str | None = None,
    retain_bytes: int = DEFAULT_RETAINED_BYTES,
) -> AbstractAsyncContextManager[ProcessStream]:
    """Start ``argv`` with piped stdin on ``backend`` and yield it as a :class:`ProcessStream`.

    ``send_all`` writes to its stdin, ``receive_some`` reads its stdout, ``send_eof``
    closes its stdin and ``aclose`` stops it; local and remote backends alike::

        async with open_stream(backend, ["cat"]) as stream:
            await stream.send_all(b"hello")
            await stream.send_eof()
            assert await stream.receive_some() == b"hello"

    Args:
        backend: where to run the child.
        argv, cwd, env, process_id, retain_bytes: as for :meth:`ExecBackend.open_process`.
        stderr: where the child's stderr goes, as it arrives: a callable gets every chunk
            (it must not block, and an exception it raises cancels the block and
            propagates); a :class:`logging.Logger` gets every line at INFO level, as
            ``"<process id>: <line>"`` (decoded as UTF-8 with replacement, lines above
            :data:`STDERR_LINE_BYTES` split); None (the default) is the logger
            :data:`STDERR_LOGGER_NAME`. Stderr flows to it whether or not stdout is read:
            an unread stdout holds back only the child's writes to stdout. A
            :class:`StderrCapture` wraps one of these and also keeps the end of the
            stderr, tells when it ended, and can hold back the sink's exception.
        grace: seconds between SIGTERM and SIGKILL when the child is terminated.
        eof_timeout: seconds ``aclose`` gives the child to see its stdin closed and exit
            by itself (see :meth:`ProcessStream.aclose`).

    Raises:
        SpawnError: the program could not be started.
        ValueError, TypeError: bad arguments.

    Leaving the block normally closes the stream (:meth:`ProcessStream.aclose`: stdin
    closed, ``eof_timeout`` for the child to exit, then terminate). Leaving it by an
    exception closes the stream at once and terminates the child (SIGTERM, SIGKILL after
    ``grace``). Either way the child is reaped and what is left of its process group
    killed: no process is left behind. The stream must not be used after the block.

    **Cancellation:** as for an exception: the child is terminated and reaped before
    Cancelled propagates.
    """
    capture = stderr if isinstance(stderr, StderrCapture) else StderrCapture(stderr)
    check_seconds("grace", grace)
    check_seconds("eof_timeout", eof_timeout)
    return _open_stream(
        backend,
        argv,
        cwd=cwd,
        env=env,
        capture=capture,
        grace=grace,
        eof_timeout=eof_timeout,
        process_id=process_id,
        retain_bytes=retain_bytes,
    )


@asynccontextmanager
async def _open_stream(
    backend: ExecBackend,
    argv: Sequence[Arg],
    *,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    capture: StderrCapture,
    grace: float,
    eof_timeout: float,
    process_id: str | None,
    retain_bytes: int,
) -> AsyncIterator[ProcessStream]:
    body_error: BaseException | None = None
    async with open_service_nursery() as nursery:  # a failing stderr callback as itself
        try:
            async with backend.open_process(
                argv,
                cwd=cwd,
                env=env,
                pipe_stdin=True,
                process_id=process_id,
                grace=grace,
                retain_bytes=retain_bytes,
            ) as proc:
                # Both subscriptions are taken before the first checkpoint: nothing is missed.
                stream = ProcessStream(proc, grace=grace, eof_timeout=eof_timeout)
                capture._attach(_subscribe(proc, _STDERR_STREAMS), proc.process_id)
                nursery.start_soon(capture._run)
                try:
                    yield stream
                except BaseException:
                    stream._abandon()
                    raise
                await stream.aclose()
        except BaseException as exc:  # re-raised below, after the nursery closed
            body_error = exc
        finally:
            nursery.cancel_scope.cancel()
    capture._finish()
    if body_error is not None:
        try:
            raise body_error
        finally:
            body_error = None
