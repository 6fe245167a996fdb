"""The keeper process itself: ``python -I -S trio_exec/_keeper_main.py``, started by
:class:`trio_exec._keeper.Keeper` (whose docstring tells the whole story).

It reads its owner's records from its stdin until end of file (its owner died, or closed
the pipe), then SIGKILLs every process group still registered and kills and removes every
cgroup still registered. It imports ``os``, ``signal``, ``sys`` and ``time`` only, so that
it starts in about 16 ms, half of what the owner's own keeper module costs (``logging``,
``subprocess``, ``dataclasses``: 31 ms); the cgroup module (``trio_exec._cgroup``,
standard library only) is loaded from the file beside this one once the owner is dead,
and only if a cgroup is registered. Run by path, with no package on ``sys.path``: it must
not import from trio_exec.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Final

__all__ = ["KEEPER_BATCH_DELAY", "serve_keeper"]

KEEPER_BATCH_DELAY: Final = 0.05
"""Seconds the keeper sleeps after each read, so that it wakes at most about 20 times a
second however fast its owner spawns (records pile up in the pipe meanwhile), instead of
twice per spawn; it is also the most that noticing the owner's death is delayed by."""

_READ_BYTES: Final = 64 * 1024
_IGNORED_SIGNALS: Final = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP)

KillAndRemove = Callable[[list[str]], object]


def serve_keeper(fd: int = 0, kill_and_remove: KillAndRemove | None = None) -> None:
    """Read records from ``fd``; at end of file, SIGKILL the groups registered and, with
    ``kill_and_remove``, kill and remove the cgroups registered."""
    for signum in _IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    groups: set[int] = set()
    cgroups: set[bytes] = set()
    pending = b""
    while True:
        try:
            data = os.read(fd, _READ_BYTES)
        except OSError:
            data = b""
        if not data:
            break
        *records, pending = (pending + data).split(b"\n")
        for record in records:
            if record[:1] == b">":
                cgroups.add(record[1:])
            elif record[:1] == b"<":
                cgroups.discard(record[1:])
            elif record[:1] in (b"+", b"-") and record[1:].isdigit():
                pgid = int(record[1:])
                if record[:1] == b"+":
                    groups.add(pgid)
                else:
                    groups.discard(pgid)
        time.sleep(KEEPER_BATCH_DELAY)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    if kill_and_remove is not None and cgroups:
        kill_and_remove([os.fsdecode(path) for path in cgroups])


def _kill_and_remove(paths: list[str]) -> None:
    """``trio_exec._cgroup.kill_and_remove``, from the file beside this one."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cgroup.py")
    spec = importlib.util.spec_from_file_location("trio_exec_keeper_cgroup", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    module.kill_and_remove(paths)


if __name__ == "__main__":
    serve_keeper(kill_and_remove=_kill_and_remove)
