"""The ``trio-exec`` command: a thin argparse front over the public API."""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import json
import os
import signal
import sys
import termios
import tty as _tty
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import trio

from ._backend import ExecBackend, ExecProcess
from ._errors import TrioExecError
from ._events import Closed, Event, Exited, Failed, Output, OutputStream

__all__ = ["main"]

FAILURE_EXIT_CODE: Final = 255
"""Exit status of ``trio-exec run`` when the session broke or the child could not start."""

STDIN_CHUNK_BYTES: Final = 64 * 1024
"""Largest read from our stdin before it is forwarded to the child."""

_FORWARDED_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-exec", description="Run processes as Trio sessions, here or on an exec server."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a command and stream its output",
        description="Run ARGV, stream its output live, forward stdin and Ctrl-C, "
        "and exit with its exit code.",
    )
    run.add_argument("--tty", action="store_true", help="run the command on a pseudo-terminal")
    run.add_argument("--json", action="store_true", help="print one JSON event per line")
    run.add_argument("--cwd", help="working directory of the command")
    run.add_argument(
        "--remote", metavar="URL", help="run on the exec server at URL (ws:// or wss://)"
    )
    run.add_argument(
        "--token-file", metavar="FILE", help="bearer token for --remote, read from FILE"
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- ARGV", help="the command")

    serve = commands.add_parser(
        "serve",
        help="run an exec server",
        description="Serve the exec-server protocol. With a websocket listener, the bound URL "
        "is the first line on stdout; logs go to stderr.",
    )
    serve.add_argument(
        "--listen",
        default="ws://127.0.0.1:0",
        metavar="ws://IP:PORT|stdio",
        help="where to listen (default ws://127.0.0.1:0, a free port); stdio serves one "
        "session on stdin/stdout",
    )
    serve.add_argument("--ws-auth", choices=["capability-token"], help="require a bearer token")
    serve.add_argument("--ws-token-file", metavar="FILE", help="the token, read from FILE")
    serve.add_argument("--ws-token-sha256", metavar="HEX", help="the token's SHA-256 digest")
    return parser


def event_to_json(event: Event) -> dict[str, Any]:
    """The ``--json`` form of an event: one object with an ``event`` member."""
    match event:
        case Output(seq=seq, stream=stream, data=data):
            return {
                "event": "output",
                "seq": seq,
                "stream": stream.value,
                "chunk": base64.b64encode(data).decode("ascii"),
            }
        case Exited(seq=seq, exit_code=code, signal=signum):
            return {"event": "exited", "seq": seq, "exitCode": code, "signal": signum}
        case Closed(seq=seq):
            return {"event": "closed", "seq": seq}
        case Failed(message=message):
            return {"event": "failed", "message": message}


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """Put our terminal in raw mode so keys (Ctrl-C too) go to the child's terminal."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    _tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _forward_stdin(proc: ExecProcess) -> None:
    while True:
        try:
            data = await trio.to_thread.run_sync(
                os.read, 0, STDIN_CHUNK_BYTES, abandon_on_cancel=True
            )
        except OSError:
            data = b""
        if not data:
            await proc.close_stdin()
            return
        await proc.write(data)


async def _forward_signals(proc: ExecProcess) -> None:
    with trio.open_signal_receiver(*_FORWARDED_SIGNALS) as signals:
        async for signum in signals:
            await proc.signal(signum)


def _write(stream: TextIO, data: bytes) -> None:
    stream.buffer.write(data)
    stream.flush()


async def _run(args: argparse.Namespace, backend: ExecBackend) -> int:
    argv: list[str] = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        print("trio-exec run: missing ARGV", file=sys.stderr)
        return 2
    interactive = args.tty and os.isatty(0)
    exit_code = FAILURE_EXIT_CODE
    async with backend.open_process(argv, tty=args.tty, pipe_stdin=True, cwd=args.cwd) as proc:
        events = proc.events
        if interactive and os.isatty(1):
            rows, cols = os.get_terminal_size(1).lines, os.get_terminal_size(1).columns
            await proc.resize(rows, cols)
        with _raw_terminal(0) if interactive else contextlib.nullcontext():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_forward_stdin, proc)
                nursery.start_soon(_forward_signals, proc)
                async for event in events:
                    if args.json:
                        line = json.dumps(event_to_json(event), separators=(",", ":"))
                        _write(sys.stdout, line.encode() + b"\n")
                    match event:
                        case Output(stream=stream, data=data) if not args.json:
                            _write(
                                sys.stderr if stream is OutputStream.STDERR else sys.stdout, data
                            )
                        case Exited(exit_code=code):
                            exit_code = code
                        case Failed(message=message):
                            print(f"trio-exec run: {message}", file=sys.stderr)
                            exit_code = FAILURE_EXIT_CODE
                        case _:
                            pass
                nursery.cancel_scope.cancel()
    return exit_code


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as exc:
        raise _UsageError(f"cannot read the token file: {exc.strerror}") from None
    if not token:
        raise _UsageError("the token file is empty")
    return token


class _UsageError(Exception):
    """A command line that cannot run; printed without a traceback, exit status 2."""


def _listen_address(listen: str) -> tuple[str, int] | None:
    """``None`` for stdio, else the IP and port of a ``ws://IP:PORT`` listener."""
    if listen in ("stdio", "stdio://"):
        return None
    parts = urlsplit(listen)
    try:
        port = parts.port
        ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        port = None
    if parts.scheme != "ws" or port is None or parts.path not in ("", "/"):
        raise _UsageError(f"invalid --listen URL {listen!r}: expected `ws://IP:PORT` or `stdio`")
    return parts.hostname or "", port


async def _serve(args: argparse.Namespace) -> int:
    from ._server import serve_stdio, serve_websocket

    address = _listen_address(args.listen)
    token_flags = args.ws_token_file is not None or args.ws_token_sha256 is not None
    if token_flags and args.ws_auth is None:
        raise _UsageError("websocket auth flags require `--ws-auth capability-token`")
    if args.ws_auth is not None:
        if address is None:
            raise _UsageError("WebSocket auth requires a WebSocket listener, not stdio")
        if not token_flags:
            raise _UsageError(
                "`--ws-token-file` or `--ws-token-sha256` is required when "
                "`--ws-auth capability-token` is set"
            )
        if args.ws_token_file is not None and args.ws_token_sha256 is not None:
            raise _UsageError("`--ws-token-file` and `--ws-token-sha256` are mutually exclusive")
    if address is None:
        await serve_stdio()
        return 0
    token = None if args.ws_token_file is None else _read_token(args.ws_token_file)
    host, port = address

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                url: str = await nursery.start(
                    partial(
                        serve_websocket, host, port, token=token, token_sha256=args.ws_token_sha256
                    )
                )
            except ValueError as exc:
                raise _UsageError(str(exc)) from None
            print(url, flush=True)
            # Serve until SIGINT or SIGTERM; leaving the nursery ends every session and
            # reaps every child.
            async for signum in signals:
                print(
                    f"trio-exec serve: {signal.Signals(signum).name}, shutting down",
                    file=sys.stderr,
                )
                nursery.cancel_scope.cancel()
                break
    return 0


async def _main(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return await _serve(args)
    if args.remote is None:
        from ._local import LocalBackend

        return await _run(args, LocalBackend())
    from ._remote import connect

    token = None if args.token_file is None else _read_token(args.token_file)
    async with connect(args.remote, token=token) as backend:
        return await _run(args, backend)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trio-exec`` command line and return its exit status."""
    args = _parser().parse_args(argv)
    try:
        return trio.run(_main, args)
    except _UsageError as exc:
        print(f"trio-exec {args.command}: {exc}", file=sys.stderr)
        return 2
    except (TrioExecError, OSError) as exc:
        print(f"trio-exec {args.command}: {exc}", file=sys.stderr)
        return FAILURE_EXIT_CODE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
