"""``trio-exec serve``: an exec server on a websocket port or on stdin / stdout, its
options checked, its log on stderr, and its graceful stop on SIGINT / SIGTERM."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import urlsplit

import trio

from .._local import LocalBackend
from .._server import ExecServer, _is_loopback, serve_stdio, serve_websocket
from .._util import open_service_nursery
from .parser import read_token
from .status import UsageError

__all__ = ["LOG_FORMAT", "serve_command"]

_logger = logging.getLogger("trio_exec.server")

LOG_FORMAT: Final = "%(asctime)s trio-exec serve %(levelname)s %(message)s"
"""The format of the log lines ``serve`` writes on stderr (see ``--log-level``)."""


def _log_to_stderr(level: str) -> None:
    """Send trio_exec's log records from ``level`` on to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("trio_exec")
    logger.addHandler(handler)
    logger.setLevel(level.upper())


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
        raise UsageError(
            f"invalid --listen URL {listen!r}: expected `ws://IP:PORT` (`wss://IP:PORT` with "
            "--tls-cert) or `stdio`"
        )
    return parts.hostname or "", port


def _tls_context(args: argparse.Namespace, websocket: bool) -> ssl.SSLContext | None:
    """The server-side TLS context of ``--tls-cert`` / ``--tls-key``, or None without them."""
    wss = args.listen.startswith("wss://")
    if args.tls_cert is None and args.tls_key is None:
        if wss:
            raise UsageError("a `wss://` listener requires `--tls-cert` and `--tls-key`")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise UsageError("`--tls-cert` and `--tls-key` must be given together")
    if not websocket:
        raise UsageError("TLS requires a WebSocket listener, not stdio")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except OSError as exc:  # ssl.SSLError is an OSError
        detail = exc.strerror or getattr(exc, "reason", None) or type(exc).__name__
        raise UsageError(f"cannot load the TLS certificate or key: {detail}") from None
    return context


async def serve_command(args: argparse.Namespace, backend: LocalBackend) -> int:
    """Serve until end of input (stdio), or SIGINT / SIGTERM; return the exit status.

    **Cancellation:** every session ends at once (its children are still reaped).
    """
    _log_to_stderr(args.log_level)
    address = _listen_address(args.listen)
    token_flags = args.ws_token_file is not None or args.ws_token_sha256 is not None
    if token_flags and args.ws_auth is None:
        raise UsageError("websocket auth flags require `--ws-auth capability-token`")
    if args.ws_auth is not None:
        if address is None:
            raise UsageError("WebSocket auth requires a WebSocket listener, not stdio")
        if not token_flags:
            raise UsageError(
                "`--ws-token-file` or `--ws-token-sha256` is required when "
                "`--ws-auth capability-token` is set"
            )
        if args.ws_token_file is not None and args.ws_token_sha256 is not None:
            raise UsageError("`--ws-token-file` and `--ws-token-sha256` are mutually exclusive")
    ssl_context = _tls_context(args, address is not None)
    unauthenticated = args.ws_auth is None and not args.allow_unauthenticated_non_loopback
    if address is not None and unauthenticated and not _is_loopback(address[0]):
        raise UsageError(
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
        raise UsageError(str(exc)) from None
    token = None if args.ws_token_file is None else read_token(args.ws_token_file)

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
                raise UsageError(str(exc)) from None
            if url is not None:
                print(url, flush=True)
                _logger.info("listening on %s", url)
            else:
                _logger.info("serving one session on stdin / stdout")
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
