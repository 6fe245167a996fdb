"""The ``trio-exec`` command: a thin argparse front over the public API."""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import json
import os
import signal
import ssl
import sys
import termios
import tty as _tty
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import trio

from ._backend import ExecBackend, ExecProcess
from ._errors import TrioExecError, UnsupportedOperation
from ._events import Closed, Event, Exited, Failed, Output, OutputStream
from ._local import LocalBackend
from ._log import DEFAULT_RETAINED_BYTES
from ._server import (
    MAX_IN_FLIGHT_REQUESTS,
    MAX_PROCESSES_PER_SESSION,
    MAX_READ_WAIT,
    ExecServer,
)
from ._transport import DEFAULT_MAX_MESSAGE_BYTES
from ._util import open_service_nursery

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
    run.add_argument(
        "--tty",
        action="store_true",
        help="run the command on a pseudo-terminal of this terminal's size (following its changes)",
    )
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
        help="where to listen (default ws://127.0.0.1:0, a free port; with --tls-cert the "
        "listener serves wss://); stdio serves one session on stdin/stdout; an address "
        "that is not loopback needs --ws-auth or --allow-unauthenticated-non-loopback",
    )
    serve.add_argument("--ws-auth", choices=["capability-token"], help="require a bearer token")
    serve.add_argument("--ws-token-file", metavar="FILE", help="the token, read from FILE")
    serve.add_argument("--ws-token-sha256", metavar="HEX", help="the token's SHA-256 digest")
    serve.add_argument(
        "--allow-unauthenticated-non-loopback",
        action="store_true",
        help="serve without --ws-auth on an address that is not loopback (refused by default: "
        "anyone who can reach the port could run commands)",
    )
    serve.add_argument(
        "--tls-cert", metavar="FILE", help="serve wss:// with this PEM certificate chain"
    )
    serve.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    limits = serve.add_argument_group("limits")
    limits.add_argument(
        "--max-processes",
        type=_positive_int,
        default=MAX_PROCESSES_PER_SESSION,
        metavar="N",
        help="processes per session, closed-but-retained ones included (default %(default)s)",
    )
    limits.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=MAX_IN_FLIGHT_REQUESTS,
        metavar="N",
        help="requests handled at once per connection; one beyond it gets a -32600 error "
        "(default %(default)s)",
    )
    limits.add_argument(
        "--max-read-wait",
        type=_seconds,
        default=MAX_READ_WAIT,
        metavar="SECONDS",
        help="longest process/read long-poll; a longer waitMs is clamped (default %(default)s)",
    )
    limits.add_argument(
        "--max-message-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        metavar="N",
        help="largest websocket message or stdio line accepted (default %(default)s)",
    )
    limits.add_argument(
        "--retain-bytes",
        type=_positive_int,
        default=DEFAULT_RETAINED_BYTES,
        metavar="N",
        help="output retained per process for process/read (default %(default)s)",
    )
    return parser


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trio-exec``, which the documentation's CLI page renders."""
    return _parser()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text}")
    return value


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


def _terminal_window() -> tuple[int, int] | None:
    """``(rows, cols)`` of our terminal (stdin's, else stdout's or stderr's), if any."""
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.lines > 0 and size.columns > 0:
            return size.lines, size.columns
    return None


async def _forward_window_changes(proc: ExecProcess, started: tuple[int, int]) -> None:
    """Resize the child's terminal whenever ours changes (SIGWINCH).

    ``started`` is the size the child started with: a change made before the signal
    receiver was installed is caught by comparing with it.
    """
    with trio.open_signal_receiver(signal.SIGWINCH) as changes:
        last = started
        while True:
            window = _terminal_window()
            if window is not None and window != last:
                try:
                    await proc.resize(*window)
                except UnsupportedOperation:  # a server that cannot resize
                    return
                last = window
            await anext(changes)


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
    # The child's terminal starts at the size of ours: it never sees 24x80 first.
    window = _terminal_window() if args.tty else None
    try:
        opened = backend.open_process(
            argv, tty=args.tty, pipe_stdin=True, cwd=args.cwd, window=window
        )
    except UnsupportedOperation:  # a server that cannot size a terminal: it stays 24x80
        opened = backend.open_process(argv, tty=args.tty, pipe_stdin=True, cwd=args.cwd)
    async with opened as proc:
        events = proc.events
        with _raw_terminal(0) if interactive else contextlib.nullcontext():
            async with open_service_nursery() as nursery:
                nursery.start_soon(_forward_stdin, proc)
                nursery.start_soon(_forward_signals, proc)
                if window is not None:
                    nursery.start_soon(_forward_window_changes, proc, window)
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
    if parts.scheme not in ("ws", "wss") or port is None or parts.path not in ("", "/"):
        raise _UsageError(
            f"invalid --listen URL {listen!r}: expected `ws://IP:PORT` (`wss://IP:PORT` with "
            "--tls-cert) or `stdio`"
        )
    return parts.hostname or "", port


def _tls_context(args: argparse.Namespace, websocket: bool) -> ssl.SSLContext | None:
    """The server-side TLS context of ``--tls-cert`` / ``--tls-key``, or None without them."""
    wss = args.listen.startswith("wss://")
    if args.tls_cert is None and args.tls_key is None:
        if wss:
            raise _UsageError("a `wss://` listener requires `--tls-cert` and `--tls-key`")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise _UsageError("`--tls-cert` and `--tls-key` must be given together")
    if not websocket:
        raise _UsageError("TLS requires a WebSocket listener, not stdio")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except OSError as exc:  # ssl.SSLError is an OSError
        detail = exc.strerror or getattr(exc, "reason", None) or type(exc).__name__
        raise _UsageError(f"cannot load the TLS certificate or key: {detail}") from None
    return context


async def _serve(args: argparse.Namespace, backend: LocalBackend) -> int:
    from ._server import ExecServer, _is_loopback, serve_stdio, serve_websocket

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
    ssl_context = _tls_context(args, address is not None)
    unauthenticated = args.ws_auth is None and not args.allow_unauthenticated_non_loopback
    if address is not None and unauthenticated and not _is_loopback(address[0]):
        raise _UsageError(
            f"refusing to listen on {address[0]}, which is not a loopback address, "
            "without authentication: anyone who can reach it could run commands. Use "
            "`--ws-auth capability-token` (with `--ws-token-file` or `--ws-token-sha256`), "
            "or pass `--allow-unauthenticated-non-loopback`"
        )
    try:
        server = ExecServer(
            backend=backend,
            max_processes=args.max_processes,
            max_in_flight=args.max_in_flight,
            max_read_wait=args.max_read_wait,
            max_message_bytes=args.max_message_bytes,
            retain_bytes=args.retain_bytes,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    token = None if args.ws_token_file is None else _read_token(args.ws_token_file)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        # A bind error comes out as itself (an OSError), for a one-line message.
        async with open_service_nursery() as nursery:

            async def serve(*, task_status: trio.TaskStatus[str | None]) -> None:
                if address is None:
                    task_status.started(None)
                    await serve_stdio(server=server)  # until end of file on stdin
                else:
                    await serve_websocket(
                        *address,
                        token=token,
                        token_sha256=args.ws_token_sha256,
                        ssl_context=ssl_context,
                        server=server,
                        allow_unauthenticated_non_loopback=args.allow_unauthenticated_non_loopback,
                        task_status=task_status,
                    )
                nursery.cancel_scope.cancel()  # served to the end, or stopped

            try:
                url: str | None = await nursery.start(serve)
            except ValueError as exc:
                raise _UsageError(str(exc)) from None
            if url is not None:
                print(url, flush=True)
            await _stop_on_signal(server, signals, nursery.cancel_scope)
    return 0


async def _stop_on_signal(
    server: ExecServer, signals: AsyncIterator[int], scope: trio.CancelScope
) -> None:
    """On SIGINT or SIGTERM, stop the server gracefully: each client gets the final events
    of its processes, then close code 1001 (stdio: end of file). A second signal during
    the stop cancels ``scope``: every session ends at once (children still reaped)."""
    async for signum in signals:
        print(f"trio-exec serve: {signal.Signals(signum).name}, shutting down", file=sys.stderr)
        break
    async with trio.open_nursery() as nursery:

        async def stop_at_once_on_signal() -> None:
            async for signum in signals:
                name = signal.Signals(signum).name
                print(f"trio-exec serve: {name} again, stopping at once", file=sys.stderr)
                scope.cancel()

        nursery.start_soon(stop_at_once_on_signal)
        await server.aclose()
        nursery.cancel_scope.cancel()


async def _main(args: argparse.Namespace) -> int:
    # Whatever this command starts dies with it, even when it is killed (SIGKILL, Ctrl-\).
    async with LocalBackend(kill_orphans=True) as local:
        if args.command == "serve":
            return await _serve(args, local)
        if args.remote is None:
            return await _run(args, local)
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
