"""The keeper process of ``LocalBackend(kill_orphans=True)``: its lifetime and its setup."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import trio

import trio_exec as tx
from trio_exec._keeper import Keeper

from ..conformance.helpers import TIMEOUT, group_alive

IGNORED = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP)


def keeper_of(backend: tx.LocalBackend) -> Keeper:
    keeper = backend._keeper
    assert keeper is not None
    return keeper


def ignored_signals(pid: int) -> set[int]:
    """The signals process ``pid`` ignores, from the ``SigIgn`` mask of its status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 65) if mask & (1 << (n - 1))}
    raise AssertionError("no SigIgn line")


def reaped(pid: int) -> bool:
    """Whether process ``pid`` is gone, not even a zombie."""
    return not Path(f"/proc/{pid}").exists()


async def test_started_by_entering_the_block_and_reaped_at_its_end() -> None:
    backend = tx.LocalBackend(kill_orphans=True)
    async with backend:
        pid = keeper_of(backend).pid
        assert pid is not None
        assert os.getsid(pid) == pid
        with trio.fail_after(TIMEOUT):
            await tx.run_process(["true"], backend=backend)
        assert keeper_of(backend).pid == pid  # the spawn used it
    assert keeper_of(backend).pid is None
    assert reaped(pid)
    async with tx.LocalBackend() as plain:  # no keeper to start
        assert plain._keeper is None


async def test_started_by_the_first_spawn_once_and_reaped_by_aclose() -> None:
    backend = tx.LocalBackend(kill_orphans=True)
    assert backend.kill_orphans
    assert keeper_of(backend).pid is None  # nothing started yet
    with trio.fail_after(TIMEOUT):
        await tx.run_process(["true"], backend=backend)
        pid = keeper_of(backend).pid
        assert pid is not None
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(partial(tx.run_process, ["true"], backend=backend))
        await tx.run_process(["sh", "-c", "echo tty"], backend=backend, tty=True)
        assert keeper_of(backend).pid == pid
        assert keeper_of(backend)._groups == set()  # every ended session was forgotten
        # In its own session, deaf to the terminal's signals.
        assert os.getsid(pid) == pid
        while not set(IGNORED) <= ignored_signals(pid):  # noqa: ASYNC110 - it starts up
            await trio.sleep(0.01)
        await backend.aclose()
    assert keeper_of(backend).pid is None
    assert reaped(pid)
    await backend.aclose()  # idempotent


async def test_sessions_outlive_aclose_and_a_later_spawn_restarts_it() -> None:
    async with tx.LocalBackend(kill_orphans=True) as backend:
        async with backend.open_process(["sleep", "60"]) as proc:
            first = keeper_of(backend).pid
            await backend.aclose()
            assert group_alive(proc.pid)
            with trio.fail_after(TIMEOUT):
                await tx.run_process(["true"], backend=backend)
            second = keeper_of(backend).pid
            assert second is not None
            assert second != first
            assert keeper_of(backend)._groups == {proc.pid}
        assert not group_alive(proc.pid)
    assert keeper_of(backend).pid is None
    assert reaped(second)


async def test_default_backend_starts_no_keeper() -> None:
    backend = tx.LocalBackend()
    assert not backend.kill_orphans
    with trio.fail_after(TIMEOUT):
        await tx.run_process(["true"], backend=backend)
    assert backend._keeper is None
    await backend.aclose()
