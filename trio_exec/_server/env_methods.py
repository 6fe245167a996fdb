"""The environment methods: status, side, codex configuration, file metadata, watches.

What ``codex app-server`` asks of an exec server it uses as a remote environment, besides
processes (see :mod:`trio_exec._protocol.environment`), answered as the reference 0.169
answers: ``environment/status`` is ``ready``; ``environment/info`` is ``initialize``'s
``environmentInfo``; ``environmentConfig/read`` reports no configuration layers (this
server holds no codex configuration); ``fs/getMetadata`` stats a path, -32004 when it does
not exist; ``fs/watchMissing`` polls the watched paths and sends ``fs/missingChanged`` once
when something changed along them.

The server already runs any command a client asks for, so these methods add no access:
they read metadata only, never file contents, and refuse a ``sandbox`` they could not
enforce.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Final

import trio

from .._errors import RemoteError
from .._protocol import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    NOT_FOUND,
    EnvironmentConfigReadParams,
    EnvironmentInfoParams,
    EnvironmentStatusParams,
    EnvironmentStatusResult,
    FileMetadata,
    GetMetadataParams,
    MissingChangedNotification,
    RequestResult,
    WatchMissingParams,
    WatchMissingResult,
)
from .environment import _environment_config, _environment_info

if TYPE_CHECKING:  # the session owns the watches
    from .session import _Session

__all__ = [
    "MAX_WATCHED_PATHS",
    "MAX_WATCHES_PER_SESSION",
    "WATCH_POLL_INTERVAL",
    "EnvironmentParams",
    "_Watches",
    "_os_error_text",
    "environment_call",
]

MAX_WATCHES_PER_SESSION: Final = 64
"""Watches (``fs/watchMissing``) one session may hold, set or already notified.

When full, a new watch forgets the earliest one that has notified (its id can be used
again); when none has, it is refused with -32600 ``too many watches ...``. With
:data:`MAX_WATCHED_PATHS` it bounds the work of one poll. The reference has no such limit.
"""

MAX_WATCHED_PATHS: Final = 256
"""Paths one ``fs/watchMissing`` may name (``missing`` and ``present`` together); more is
-32602. codex names a few per directory level of a thread's working directory."""

WATCH_POLL_INTERVAL: Final = 1.0
"""Seconds between two looks at a watch's paths: a change is told at most this late.

The reference is told by the operating system at once; polling keeps this server free of
platform notification APIs, and codex only uses the notification to look again.
"""

EnvironmentParams = (
    EnvironmentStatusParams
    | EnvironmentInfoParams
    | EnvironmentConfigReadParams
    | GetMetadataParams
    | WatchMissingParams
)
"""The params of the methods this module performs."""


async def environment_call(session: _Session, params: EnvironmentParams) -> RequestResult:
    """Perform an environment method for ``session``; its result.

    Raises:
        RemoteError: the method failed, with the reference's code (-32004 for a missing
            path, -32602 for bad params, -32603 for another OS error).
    """
    match params:
        case EnvironmentStatusParams():
            await trio.lowlevel.checkpoint()
            return EnvironmentStatusResult()
        case EnvironmentInfoParams():
            await trio.lowlevel.checkpoint()
            return _environment_info()
        case EnvironmentConfigReadParams():
            await trio.lowlevel.checkpoint()
            try:
                return _environment_config(params)
            except ValueError as exc:
                raise RemoteError(INVALID_PARAMS, str(exc)) from None
        case GetMetadataParams():
            return await _get_metadata(params)
        case WatchMissingParams():
            return await session.watches.watch(session, params)


# -- fs/getMetadata ------------------------------------------------------------------------


async def _get_metadata(params: GetMetadataParams) -> FileMetadata:
    if params.sandbox is not None:
        await trio.lowlevel.checkpoint()
        raise RemoteError(INVALID_PARAMS, _NO_SANDBOX)
    try:
        # Abandoned when cancelled: a hung file system does not hold the session's end.
        return await trio.to_thread.run_sync(_stat, params.local_path, abandon_on_cancel=True)
    except FileNotFoundError as exc:
        raise RemoteError(NOT_FOUND, _os_error_text(exc)) from None
    except (OSError, ValueError) as exc:
        raise RemoteError(INTERNAL_ERROR, _os_error_text(exc)) from None


_NO_SANDBOX: Final = "this exec server does not sandbox filesystem access: send `sandbox: null`"


def _stat(path: str) -> FileMetadata:
    """The metadata of ``path`` (a link followed), as the reference reports it."""
    is_symlink = stat.S_ISLNK(os.lstat(path).st_mode)
    info = os.stat(path)
    birth = getattr(info, "st_birthtime_ns", None)
    return FileMetadata(
        is_directory=stat.S_ISDIR(info.st_mode),
        is_file=stat.S_ISREG(info.st_mode),
        is_symlink=is_symlink,
        size=info.st_size,
        created_at_ms=0 if birth is None else birth // 1_000_000,
        modified_at_ms=max(info.st_mtime_ns // 1_000_000, 0),
    )


def _os_error_text(exc: OSError | ValueError) -> str:
    """The OS error the way the reference (Rust's ``io::Error``) prints it."""
    if not isinstance(exc, OSError):
        return str(exc)
    text = exc.strerror or str(exc)
    if exc.errno is None:
        return text
    return f"{text} (os error {exc.errno})"


# -- fs/watchMissing -----------------------------------------------------------------------

_Snapshot = tuple[tuple[int, ...], bool]
"""For each missing path, how many of its leading components exist; whether ``present``
exists."""


class _Watch:
    def __init__(self, params: WatchMissingParams) -> None:
        self.watch_id = params.watch_id
        self.missing = params.missing_paths
        self.present = params.present_path
        self.notified = False


class _Watches:
    """The ``fs/watchMissing`` watches of one session, by id, earliest first."""

    def __init__(self) -> None:
        self._watches: dict[int, _Watch] = {}

    async def watch(self, session: _Session, params: WatchMissingParams) -> WatchMissingResult:
        """Set a watch, polled by a task of ``session`` until it notified or the session
        ends; ``watching`` tells whether it was set."""
        paths = len(params.missing) + (params.present is not None)
        if paths > MAX_WATCHED_PATHS:
            await trio.lowlevel.checkpoint()
            message = f"too many paths: a watch names at most {MAX_WATCHED_PATHS}, not {paths}"
            raise RemoteError(INVALID_PARAMS, message)
        if params.watch_id in self._watches or not params.missing:
            await trio.lowlevel.checkpoint()
            return WatchMissingResult(watching=False)
        watch = _Watch(params)
        snapshot = await trio.to_thread.run_sync(_snapshot, watch, abandon_on_cancel=True)
        depths, present = snapshot
        exists = any(
            depth == len(_parts(path)) for depth, path in zip(depths, watch.missing, strict=True)
        )
        if exists or not present or params.watch_id in self._watches:
            return WatchMissingResult(watching=False)
        self._make_room()
        self._watches[watch.watch_id] = watch
        assert session.nursery is not None
        session.nursery.start_soon(self._poll, session, watch, snapshot)
        return WatchMissingResult(watching=True)

    def _make_room(self) -> None:
        if len(self._watches) < MAX_WATCHES_PER_SESSION:
            return
        for watch in self._watches.values():
            if watch.notified:  # the earliest set of those done
                del self._watches[watch.watch_id]
                return
        raise RemoteError(
            INVALID_REQUEST,
            f"too many watches: this session already has {MAX_WATCHES_PER_SESSION} watches "
            "that have not notified (the server's limit)",
        )

    async def _poll(self, session: _Session, watch: _Watch, first: _Snapshot) -> None:
        """Look at the paths until they changed, then notify the attached connection."""
        while True:
            await trio.sleep(WATCH_POLL_INTERVAL)  # polling by design: see the constant
            if await trio.to_thread.run_sync(_snapshot, watch, abandon_on_cancel=True) != first:
                break
        watch.notified = True
        connection = session.connection
        if connection is not None:  # a detached client looks again when it comes back
            notification = MissingChangedNotification(watch_id=watch.watch_id)
            await connection.send_notification(notification)


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _snapshot(watch: _Watch) -> _Snapshot:
    """How far each missing path exists, and whether ``present`` does (a thread)."""
    depths = []
    for path in watch.missing:
        parts = _parts(path)
        depth = 0
        while depth < len(parts) and os.path.lexists("/" + "/".join(parts[: depth + 1])):
            depth += 1
        depths.append(depth)
    present = watch.present is None or os.path.exists(watch.present)
    return tuple(depths), present
