"""Run one command on a remote exec server, stream its output, exit with its exit code.

The few lines a script needs to use another machine: connect to the server (with a bearer
token if it requires one), open a process session, copy its output to our stdout and
stderr as it arrives, forward Ctrl-C, and exit with the child's exit code. ``trio-exec run
--remote URL`` does the same (plus stdin, terminals and JSON output).

    trio-exec serve --listen ws://127.0.0.1:8765          # on the server
    python examples/remote_command.py ws://127.0.0.1:8765 -- uname -a
    python examples/remote_command.py wss://host:8765 --token-file token -- make test

Exit status: the child's exit code (``128 + N`` when signal N ended it), 255 when the server
could not be reached or the connection broke, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import trio

import trio_exec as tx

FAILURE = 255


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="remote_command.py",
        usage="%(prog)s URL [--token-file FILE] -- ARGV...",
        description="Run ARGV on the exec server at URL.",
    )
    parser.add_argument("url", help="the server's websocket URL, ws://HOST:PORT or wss://...")
    parser.add_argument("--token-file", type=Path, help="read the bearer token from this file")
    # Everything after the first "--" is the command, options included.
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.argv = argv[split + 1 :]
    if not args.argv:
        parser.error("missing the command: add -- ARGV...")
    return args


def copy(data: bytes, stream: tx.OutputStream) -> None:
    out = sys.stderr if stream is tx.OutputStream.STDERR else sys.stdout
    out.buffer.write(data)
    out.buffer.flush()


async def forward_interrupts(proc: tx.ExecProcess, interrupts: AsyncIterator[int]) -> None:
    """Ctrl-C here becomes SIGINT there (the child decides what it means)."""
    async for signum in interrupts:
        try:
            await proc.signal(signum)
        except tx.ConnectionLost:
            return  # the event loop reports the broken connection


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        token = None if args.token_file is None else args.token_file.read_text().strip()
        # Catch Ctrl-C from the start, so that none arrives between the spawn and the
        # forwarding task (a queued one is forwarded once the child runs).
        with trio.open_signal_receiver(signal.SIGINT) as interrupts:
            async with (
                tx.connect(args.url, token=token) as backend,
                backend.open_process(args.argv) as proc,
            ):
                failure = None
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(forward_interrupts, proc, interrupts)
                    async for event in proc.events:  # ends after Closed or Failed
                        match event:
                            case tx.Output(data=data, stream=stream):
                                copy(data, stream)
                            case tx.Failed(message=message):
                                failure = message
                            case tx.Exited() | tx.Closed():
                                pass
                    nursery.cancel_scope.cancel()
                if failure is not None:
                    raise tx.ConnectionLost(failure)  # the session broke mid-way
                return await proc.wait()
    except (tx.TrioExecError, OSError) as exc:
        # No token file, unreachable server, refused token (HTTP 401), lost connection,
        # spawn failure.
        print(f"remote_command: {exc}", file=sys.stderr)
        return FAILURE


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1:]))
