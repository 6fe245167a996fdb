"""``trio-exec run``: one command, here, on an exec server or through a command such as
``ssh``, with its output streamed, stdin, signals and window changes forwarded, and its
exit status as ours (see :mod:`.status`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import BinaryIO, Final

import trio

from .._backend import ExecBackend, ExecProcess, ProcessOptions
from .._command import connect_command
from .._errors import SpawnError, UnsupportedOperation
from .._events import Event, Exited, Failed, Output, OutputStream
from .._local import LocalBackend
from .._util import open_service_nursery
from .events import event_to_json
from .parser import read_token
from .status import (
    EXIT_CONNECTION,
    EXIT_STDOUT_CLOSED,
    UsageError,
    flatten,
    one_line,
    spawn_exit_status,
    spawn_message,
)
from .terminal import raw_terminal, terminal_window

__all__ = ["STDIN_CHUNK_BYTES", "run_command"]

STDIN_CHUNK_BYTES: Final = 64 * 1024
"""Largest read from our stdin before it is forwarded to the child."""

_FORWARDED_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_NO_CLOSE_STDIN: Final = (
    "trio-exec run: this exec server cannot close the command's stdin (it lacks the "
    "`closeStdin` extension): the command will not see the end of its input"
)


def _say(message: str) -> None:
    """Print one line of ours on stderr (a closed stderr loses it)."""
    with contextlib.suppress(OSError):
        print(f"trio-exec run: {message}", file=sys.stderr, flush=True)


async def run_command(args: argparse.Namespace, local: LocalBackend) -> int:
    """Run ``args.argv`` where the options say; return the exit status.

    **Cancellation:** the command is terminated, the connection closed.
    """
    async with _open_backend(args, local) as backend:
        return await _run(args, backend)


@contextlib.asynccontextmanager
async def _open_backend(
    args: argparse.Namespace, local: LocalBackend
) -> AsyncIterator[ExecBackend]:
    if args.remote is not None:
        from .._remote import connect

        token = None if args.token_file is None else read_token(args.token_file)
        async with connect(args.remote, token=token) as remote:
            yield remote
    elif args.via_argv is not None:
        # The command's stderr is ours: ssh's own messages reach the user as they are.
        async with connect_command(args.via_argv) as relayed:
            yield relayed
    else:
        yield local


async def _run(args: argparse.Namespace, backend: ExecBackend) -> int:
    # The child's terminal starts at the size of ours: it never sees 24x80 first.
    window = terminal_window() if args.tty else None
    options: ProcessOptions = {
        "tty": args.tty,
        "pipe_stdin": True,
        "cwd": args.cwd,
        "extra_env": dict(args.env) or None,
    }
    try:
        try:
            sized: ProcessOptions = {**options, "window": window}
            opened = backend.open_process(args.argv, **sized)
        except UnsupportedOperation:  # a server that cannot size a terminal: it stays 24x80
            opened = backend.open_process(args.argv, **options)
        async with opened as proc:
            return await _session(args, proc, window)
    except SpawnError as exc:
        _say(spawn_message(exc, args.cwd))
        return spawn_exit_status(exc, args.cwd)
    except ValueError as exc:  # refused arguments, here or by the server
        raise UsageError(one_line(exc)) from None


async def _session(
    args: argparse.Namespace, proc: ExecProcess, window: tuple[int, int] | None
) -> int:
    status = EXIT_CONNECTION
    interactive = args.tty and os.isatty(0)
    terminal = (
        raw_terminal(0, keep_output_processing=args.json)
        if interactive
        else contextlib.nullcontext()
    )
    events = proc.events
    with terminal:
        async with open_service_nursery() as nursery:
            nursery.start_soon(_forward_stdin, proc)
            nursery.start_soon(_forward_signals, proc)
            if window is not None:
                nursery.start_soon(_forward_window_changes, proc, window)
            try:
                async for event in events:
                    _show(event, json_lines=args.json)
                    match event:
                        case Exited(exit_code=code):
                            status = code
                        case Failed(message=message):
                            _say(flatten(message))
                            status = EXIT_CONNECTION
                        case _:
                            pass
            except BrokenPipeError:
                # Our reader went away (`| head`): end the command, quietly, like `cat`.
                status = EXIT_STDOUT_CLOSED
            nursery.cancel_scope.cancel()
    return status


def _show(event: Event, *, json_lines: bool) -> None:
    """Write the event to stdout (``--json``: as a line) or its output to its stream."""
    if json_lines:
        line = json.dumps(event_to_json(event), ensure_ascii=False, separators=(",", ":"))
        _write(sys.stdout.buffer, line.encode() + b"\n")
    elif isinstance(event, Output):
        stream = sys.stderr if event.stream is OutputStream.STDERR else sys.stdout
        _write(stream.buffer, event.data)


def _write(stream: BinaryIO, data: bytes) -> None:
    stream.write(data)
    stream.flush()


async def _forward_stdin(proc: ExecProcess) -> None:
    while True:
        try:
            data = await trio.to_thread.run_sync(
                os.read, 0, STDIN_CHUNK_BYTES, abandon_on_cancel=True
            )
        except OSError:
            data = b""
        if not data:
            try:
                await proc.close_stdin()
            except UnsupportedOperation:  # the reference server: the command goes on
                with contextlib.suppress(OSError):
                    print(_NO_CLOSE_STDIN, file=sys.stderr, flush=True)
            return
        await proc.write(data)


async def _forward_window_changes(proc: ExecProcess, started: tuple[int, int]) -> None:
    """Resize the child's terminal whenever ours changes (SIGWINCH).

    ``started`` is the size the child started with: a change made before the signal
    receiver was installed is caught by comparing with it. A server that cannot resize
    (the reference) gets no resizes: its terminal keeps its size.
    """
    with trio.open_signal_receiver(signal.SIGWINCH) as changes:
        last = started
        while True:
            window = terminal_window()
            if window is not None and window != last:
                try:
                    await proc.resize(*window)
                except UnsupportedOperation:
                    return
                last = window
            await anext(changes)


async def _forward_signals(proc: ExecProcess) -> None:
    """Send SIGINT, SIGTERM and SIGHUP on to the child; a server that can send only
    SIGINT (the reference) terminates the child for the others."""
    with trio.open_signal_receiver(*_FORWARDED_SIGNALS) as signals:
        async for signum in signals:
            try:
                await proc.signal(signum)
            except UnsupportedOperation:
                await proc.terminate()
