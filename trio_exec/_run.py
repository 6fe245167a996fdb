"""``run_process``: run a command to completion on any backend and collect its output."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import attrs

from ._backend import DEFAULT_GRACE, Arg, ExecBackend, ExecProcess, check_argv
from ._errors import CalledProcessError, ConnectionLost
from ._events import Closed, Exited, Failed, Output, OutputStream
from ._local import LocalBackend
from ._util import open_service_nursery

__all__ = ["CompletedProcess", "run_process"]


@attrs.frozen(kw_only=True)
class CompletedProcess:
    """What :func:`run_process` returns."""

    argv: tuple[str, ...]
    """The command that ran."""
    exit_code: int
    """Its exit code (``128 + N`` when signal N ended it)."""
    stdout: bytes
    """Everything written to stdout (or to the terminal when ``tty=True``)."""
    stderr: bytes
    """Everything written to stderr (empty when ``tty=True``)."""


async def run_process(
    argv: Sequence[Arg],
    *,
    backend: ExecBackend | None = None,
    input: bytes | None = None,
    check: bool = True,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    tty: bool = False,
    grace: float = DEFAULT_GRACE,
) -> CompletedProcess:
    """Run ``argv`` to completion and return its exit code and output.

    Args:
        backend: where to run (default: a :class:`LocalBackend`).
        input: bytes to write to stdin, which is then closed. None gives the child
            ``/dev/null`` as stdin.
        check: raise :class:`CalledProcessError` on a non-zero exit code.
        argv: as for :meth:`ExecBackend.open_process`.
        cwd, env, tty, grace: the options of the same names, see :class:`ProcessOptions`.

    Raises:
        CalledProcessError: ``check`` is true and the exit code is not 0.
        SpawnError: the program could not be started; as for :class:`OSError`, a missing
            program or directory is also a :class:`FileNotFoundError`, one that cannot
            be executed or entered a :class:`PermissionError`, and so on.
        TypeError, ValueError: bad arguments, raised before anything is started.
        ConnectionLost: a remote session broke.

    Each comes as itself, never wrapped in an exception group.

    The whole output is kept in memory, like :func:`subprocess.run`.

    **Cancellation:** the child is terminated (SIGTERM, SIGKILL after ``grace``) and reaped
    before Cancelled propagates; its output is lost.
    """
    args = check_argv(argv)
    if input is not None and not isinstance(input, bytes | bytearray | memoryview):
        raise TypeError(f"input must be bytes or None, not {type(input).__name__}")
    if backend is None:
        backend = LocalBackend()
    elif not isinstance(backend, ExecBackend):
        raise TypeError(f"backend must be an ExecBackend, not {type(backend).__name__}")
    out: dict[OutputStream, list[bytes]] = {stream: [] for stream in OutputStream}
    async with backend.open_process(
        args, cwd=cwd, env=env, tty=tty, pipe_stdin=input is not None and not tty, grace=grace
    ) as proc:
        events = proc.events
        async with open_service_nursery() as nursery:
            if input is not None:
                nursery.start_soon(_feed, proc, input)
            async for event in events:
                match event:
                    case Output(stream=stream, data=data):
                        out[stream].append(data)
                    case Exited() | Closed():
                        pass
                    case Failed(message=message):
                        raise ConnectionLost(message)
        exit_code = await proc.wait()
    stdout = b"".join(out[OutputStream.STDOUT] + out[OutputStream.PTY])
    stderr = b"".join(out[OutputStream.STDERR])
    if check and exit_code != 0:
        raise CalledProcessError(args, exit_code, stdout, stderr)
    return CompletedProcess(argv=tuple(args), exit_code=exit_code, stdout=stdout, stderr=stderr)


async def _feed(proc: ExecProcess, data: bytes) -> None:
    try:
        if data:
            await proc.write(data)
        await proc.close_stdin()
    except ConnectionLost:
        pass  # the session broke: its events end with Failed, raised by run_process once
