"""The ``trio-exec`` command line: the argparse definitions and the checks of their values.

:func:`make_parser` is also what the documentation's CLI reference is generated from, so
the exit-status table and the ``--json`` format live in the parsers' epilogs.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Final, NoReturn
from urllib.parse import urlsplit

from .. import __version__
from .._log import DEFAULT_RETAINED_BYTES
from .._server import MAX_IN_FLIGHT_REQUESTS, MAX_PROCESSES_PER_SESSION, MAX_READ_WAIT
from .._transport import DEFAULT_MAX_MESSAGE_BYTES
from .events import JSON_FORMAT
from .status import EXIT_STATUS_TABLE, EXIT_USAGE, UsageError

__all__ = [
    "DEFAULT_SERVER_COMMAND",
    "LOG_LEVELS",
    "check_run",
    "make_parser",
    "read_token",
    "remote_url",
]

DEFAULT_SERVER_COMMAND: Final = "trio-exec serve --listen stdio"
"""The server command ``--via`` runs on the other side, unless ``--server-command``."""

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
"""The values of ``serve --log-level``."""

_RUN_EXAMPLES: Final = """\
examples:
  trio-exec run -- make test                      run here, like the command itself
  trio-exec run --tty -- htop                     on a terminal of this one's size
  trio-exec run --remote ws://10.0.0.5:4444 -- uname -a
                                                  on an exec server (trio-exec serve,
                                                  codex exec-server)
  trio-exec run --via 'ssh build-host' -- uname -a
                                                  through ssh, like `ssh build-host uname -a`
  trio-exec run --via 'kubectl exec -i my-pod --' -- ls /
  trio-exec run --via 'docker exec -i my-container' -- ls /
  trio-exec run --json -- sh -c 'echo hi'         one JSON event per line
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``trio-exec run: <message> (see ...)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def make_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``trio-exec`` command, with its ``run`` and ``serve``
    subcommands (``--help`` shows the exit statuses and the ``--json`` format)."""
    parser = _Parser(
        prog="trio-exec",
        description="Run processes as Trio sessions, here or on an exec server.",
        epilog=EXIT_STATUS_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_serve(commands)
    return parser


def _add_run(commands: argparse._SubParsersAction[_Parser]) -> None:
    run = commands.add_parser(
        "run",
        help="run a command and stream its output",
        description="Run ARGV, here or on an exec server, stream its output live, forward\n"
        "stdin, Ctrl-C and terminal size changes, and exit with its exit status.",
        epilog=f"{EXIT_STATUS_TABLE}\n{JSON_FORMAT}\n{_RUN_EXAMPLES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--tty",
        action="store_true",
        help="run the command on a pseudo-terminal of this terminal's size (following its changes)",
    )
    run.add_argument(
        "--json", action="store_true", help="print one JSON event per line (format below)"
    )
    run.add_argument("--cwd", metavar="DIR", help="working directory of the command")
    run.add_argument(
        "--env",
        action="append",
        type=_env_item,
        default=[],
        metavar="NAME=VALUE",
        help="set NAME in the command's environment (repeatable); the rest of it is the "
        "environment of the side that runs it (the server's, remotely)",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--remote",
        metavar="URL",
        type=remote_url,
        help="run on the exec server at URL (ws://HOST:PORT or wss://HOST:PORT)",
    )
    where.add_argument(
        "--via",
        metavar="COMMAND",
        type=_command,
        help="reach the exec server through COMMAND, which runs the server command "
        "appended to it on the other side: 'ssh HOST', 'docker exec -i CONTAINER', "
        "'kubectl exec -i POD --'",
    )
    run.add_argument(
        "--server-command",
        metavar="COMMAND",
        type=_command,
        help=f"the server command --via runs (default: {DEFAULT_SERVER_COMMAND})",
    )
    run.add_argument(
        "--token-file", metavar="FILE", help="bearer token for --remote, read from FILE"
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- ARGV", help="the command")


def _add_serve(commands: argparse._SubParsersAction[_Parser]) -> None:
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
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="warning",
        help="log to stderr from this level on; info logs connections, refused ones "
        "(401, 403, Origin) and sessions (default %(default)s)",
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


def check_run(args: argparse.Namespace) -> None:
    """Check what ``run`` options need of each other; normalise ``argv`` and set ``via_argv``.

    Raises:
        UsageError: a command line that cannot run.
    """
    if args.argv[:1] == ["--"]:
        args.argv = args.argv[1:]
    if not args.argv:
        raise UsageError("missing ARGV: the command to run, after `--`")
    if args.token_file is not None and args.remote is None:
        raise UsageError("--token-file needs --remote (a token is sent to a websocket server)")
    if args.server_command is not None and args.via is None:
        raise UsageError("--server-command needs --via")
    if args.via is not None:
        args.via_argv = [*args.via, *(args.server_command or shlex.split(DEFAULT_SERVER_COMMAND))]
    else:
        args.via_argv = None


def remote_url(text: str) -> str:
    """Check a ``--remote`` value: a ``ws://`` or ``wss://`` URL with a host and a valid port.

    Raises:
        argparse.ArgumentTypeError: with what is wrong, on one line.
    """
    expected = "expected ws://HOST:PORT or wss://HOST:PORT"
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss"):
        hint = ""
        if parts.scheme in ("http", "https"):
            hint = f" (an exec server speaks websocket: {'ws' + parts.scheme[4:]}://...)"
        elif "://" not in text and ":" in text:
            hint = f" (did you mean ws://{text}?)"
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: {expected}{hint}")
    if not parts.hostname:
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: no host; {expected}")
    try:
        port = parts.port
    except ValueError:
        port_text = parts.netloc.rpartition(":")[2]
        raise argparse.ArgumentTypeError(
            f"invalid URL {text!r}: the port {port_text!r} is not a number from 1 to 65535"
        ) from None
    if port == 0:
        raise argparse.ArgumentTypeError(
            f"invalid URL {text!r}: the port 0 is not a number from 1 to 65535"
        )
    return text


def _env_item(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    if "\0" in text:
        raise argparse.ArgumentTypeError("NAME=VALUE may not hold NUL")
    return name, value


def _command(text: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r} into words: {exc}") from None
    if not argv:
        raise argparse.ArgumentTypeError("an empty command")
    return argv


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text}")
    return value


def read_token(path: str) -> str:
    """The token in the file ``path`` (``--token-file``, ``--ws-token-file``), stripped.

    Raises:
        UsageError: the file cannot be read, or is empty.
    """
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the token file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError("the token file is not UTF-8 text") from None
    if not token:
        raise UsageError("the token file is empty")
    return token
