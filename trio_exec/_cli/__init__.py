"""The ``trio-exec`` command: a thin argparse front over the public API.

* :mod:`.parser`: the argparse definitions (:func:`make_parser`, which the documentation's
  CLI reference is generated from) and the checks of option values;
* :mod:`.status`: the exit statuses and one-line error messages;
* :mod:`.events`: the ``--json`` event lines;
* :mod:`.terminal`: raw mode and window size of our terminal;
* :mod:`.run`, :mod:`.serve`: the two subcommands.

:func:`main` runs the command line: it prints every expected failure on one line of
stderr, never a traceback, and exits with the status of :data:`.status.EXIT_STATUS_TABLE`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

import trio

from .._local import LocalBackend
from .._pump import BEHIND_CHUNK_BYTES
from .._util import sole_exception
from .parser import check_run, make_parser
from .run import run_command
from .serve import serve_command
from .status import (
    EXIT_SIGNAL_BASE,
    EXIT_STDOUT_CLOSED,
    EXIT_USAGE,
    UsageError,
    connection_exit_status,
    one_line,
)

__all__ = ["main", "make_parser"]


async def _main(args: argparse.Namespace) -> int:
    # Whatever this command starts dies with it, even when it is killed (SIGKILL, Ctrl-\).
    # It starts processes through trio_exec only: each spawns in its cgroup with vfork.
    # Its consumers (a client, a terminal) pay per event: the server's larger chunks.
    local = LocalBackend(
        kill_orphans=True, sole_spawner=True, behind_chunk_bytes=BEHIND_CHUNK_BYTES
    )
    async with local:
        if args.command == "serve":
            return await serve_command(args, local)
        return await run_command(args, local)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trio-exec`` command line and return its exit status."""
    args = make_parser().parse_args(argv)
    try:
        if args.command == "run":
            check_run(args)
        status = trio.run(_main, args)
    except KeyboardInterrupt:
        return EXIT_SIGNAL_BASE + signal.SIGINT
    except Exception as exc:
        error = sole_exception(exc)
        if isinstance(error, UsageError):
            status = EXIT_USAGE
        elif isinstance(error, BrokenPipeError):
            status = EXIT_STDOUT_CLOSED
        else:
            found = connection_exit_status(error)
            if found is None:
                raise
            status = found
        if status != EXIT_STDOUT_CLOSED:
            print(f"trio-exec {args.command}: {one_line(error)}", file=sys.stderr)
    if status == EXIT_STDOUT_CLOSED:
        _discard_stdout()
    return status


def _discard_stdout() -> None:
    """Our stdout's reader is gone: what is still buffered goes nowhere, so that the
    interpreter's last flush does not complain about the broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
