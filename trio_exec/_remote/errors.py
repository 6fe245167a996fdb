"""What the remote client raises for a failed ``process/start``."""

from __future__ import annotations

import errno as _errno
import re
from typing import Final

from .._errors import RemoteError, SpawnError
from .._protocol import INTERNAL_ERROR, INVALID_PARAMS, StartParams

__all__ = ["_start_error"]

_OS_ERROR: Final = re.compile(r"\s*\(os error (\d+)\)\s*$")

_PATH_ERRNOS: Final = frozenset(
    {_errno.ENOENT, _errno.ENOTDIR, _errno.EACCES, _errno.ELOOP, _errno.ENAMETOOLONG}
)
"""Errnos that a bad working directory gives as well as a bad program."""


def _start_error(exc: RemoteError, params: StartParams, *, default_cwd: str) -> Exception:
    """Map an error answer to ``process/start`` to the exception to raise.

    ``default_cwd`` is the directory sent when the caller gave none (the server's own).
    """
    if exc.code == INTERNAL_ERROR:
        return _spawn_error(exc, params, default_cwd=default_cwd)
    if exc.code == INVALID_PARAMS:
        return ValueError(f"the exec server rejected the arguments: {exc.message}")
    return exc


def _spawn_error(exc: RemoteError, params: StartParams, *, default_cwd: str) -> SpawnError:
    """The :class:`SpawnError` for a -32603 answer to ``process/start``.

    The message is the OS error text, ending in ``(os error N)``, the errno. trio_exec's
    server also sends ``data: {errno, filename}``, the file at fault. The reference sends
    the message only: then a path error may be the program's or the working directory's,
    and the error says so rather than guess, unless the directory is the server's own
    (``default_cwd``: the caller gave none), which names the program.
    """
    data = exc.data if isinstance(exc.data, dict) else {}
    match = _OS_ERROR.search(exc.message)
    text = exc.message if match is None else exc.message[: match.start()]
    code = data.get("errno")
    if type(code) is not int:
        code = None if match is None else int(match.group(1))
    filename = data.get("filename")
    if isinstance(filename, str):
        return SpawnError(code, text, filename)
    program = params.argv[0]
    directory = params.cwd_path if params.cwd and params.cwd != default_cwd else None
    if code in _PATH_ERRNOS and directory is not None:
        text += (
            f": the program {program!r} or the working directory {directory!r}"
            " (the exec server does not say which)"
        )
        return SpawnError(code, text)
    return SpawnError(code, text, program)
