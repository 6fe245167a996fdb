"""When the owner of processes dies abruptly, nothing it started stays alive.

The owners: ``trio-exec serve`` (websocket and stdio) and ``trio-exec run`` by default,
and a program that embeds ``LocalBackend(kill_orphans=True)``. Each starts a tree (a shell
and two sleeps in one group), is killed (SIGKILL, or SIGQUIT by Ctrl-\\ on a terminal), and
every process under it, its keeper included, must be gone within
:data:`~.helpers.CLEANUP_DEADLINE` seconds.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import trio_exec as tx
from trio_exec._command import connect_command
from trio_exec._pty import make_controlling_terminal

from ..conformance.helpers import TIMEOUT
from ..transports.helpers import STDIO_SERVER, first_line_numbers
from .helpers import TREE, Process, descendants, kill_all, wait_dead

CLI = [sys.executable, "-m", "trio_exec"]


async def read_line(stream: trio.abc.ReceiveStream) -> bytes:
    """Read up to the first newline (what follows it is dropped)."""
    data = b""
    with trio.fail_after(TIMEOUT):
        while b"\n" not in data:
            chunk = await stream.receive_some()
            assert chunk, f"end of file after {data!r}"
            data += chunk
    return data.partition(b"\n")[0]


async def kill_and_wait(pid: int, tree: list[Process], sig: int = signal.SIGKILL) -> float:
    """Kill the owner ``pid``; return how long its ``tree`` took to die."""
    since = time.monotonic()
    os.kill(pid, sig)
    try:
        return await wait_dead(tree, since)
    finally:
        kill_all(tree)


def check_tree(tree: list[Process], pgid: int) -> None:
    """The snapshot holds the child's group: the shell and its sleeps (with the keeper)."""
    assert len([p for p in tree if p.pgid == pgid]) >= 2, tree


@asynccontextmanager
async def serve_websocket_cli() -> AsyncIterator[str]:
    """``trio-exec serve --listen ws://127.0.0.1:0`` as a child; yields its URL."""
    server = await trio.lowlevel.open_process(
        [*CLI, "serve", "--listen", "ws://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert server.stdout is not None
    try:
        yield (await read_line(server.stdout)).decode()
    finally:
        with trio.CancelScope(shield=True):
            server.kill()
            await server.wait()
            await server.stdout.aclose()


async def test_killed_websocket_server_leaves_nothing() -> None:
    async with (
        serve_websocket_cli() as url,
        tx.connect(url, resume_deadline=0) as backend,
        backend.open_process(["sh", "-c", TREE]) as proc,
    ):
        pgid, server = await first_line_numbers(proc)
        tree = descendants(server)
        check_tree(tree, pgid)
        elapsed = await kill_and_wait(server, tree)
    print(f"websocket server SIGKILLed: its tree was gone after {elapsed:.3f} s")


async def test_killed_stdio_server_leaves_nothing() -> None:
    async with (
        connect_command(STDIO_SERVER) as backend,
        backend.open_process(["sh", "-c", TREE]) as proc,
    ):
        pgid, server = await first_line_numbers(proc)
        tree = descendants(server)
        check_tree(tree, pgid)
        elapsed = await kill_and_wait(server, tree)
    print(f"stdio server SIGKILLed: its tree was gone after {elapsed:.3f} s")


async def kill_started_owner(argv: list[str], *, pipe_stdin: bool = False) -> float:
    """Start ``argv`` (an owner that runs :data:`TREE` and passes on its first line), SIGKILL
    it once the tree is up, and return the seconds until nothing of the tree was alive."""
    owner = await trio.lowlevel.open_process(
        argv,
        stdin=subprocess.PIPE if pipe_stdin else None,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert owner.stdout is not None
    try:
        pgid, parent = map(int, (await read_line(owner.stdout)).split())
        assert parent == owner.pid
        tree = descendants(owner.pid)
        check_tree(tree, pgid)
        return await kill_and_wait(owner.pid, tree)
    finally:
        with trio.CancelScope(shield=True):
            owner.kill()
            await owner.wait()
            await owner.stdout.aclose()
            if owner.stdin is not None:
                await owner.stdin.aclose()


async def test_killed_run_leaves_nothing() -> None:
    elapsed = await kill_started_owner([*CLI, "run", "--", "sh", "-c", TREE], pipe_stdin=True)
    print(f"trio-exec run SIGKILLed: its tree was gone after {elapsed:.3f} s")


def _on_terminal() -> None:
    """In the child: no core dump (Ctrl-\\ dumps core), and the slave as controlling tty."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    make_controlling_terminal()


async def test_ctrl_backslash_on_a_terminal_leaves_nothing() -> None:
    master, slave = os.openpty()
    try:
        run = await trio.lowlevel.open_process(
            [*CLI, "run", "--", "sh", "-c", TREE],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_on_terminal,
        )
    finally:
        os.close(slave)
    terminal = trio.lowlevel.FdStream(master)
    try:
        pgid, parent = map(int, (await read_line(terminal)).split())
        assert parent == run.pid
        tree = descendants(run.pid)
        check_tree(tree, pgid)
        since = time.monotonic()
        await terminal.send_all(b"\x1c")  # Ctrl-\: the terminal sends SIGQUIT to its owner
        try:
            with trio.fail_after(TIMEOUT):
                assert await run.wait() == -signal.SIGQUIT
            elapsed = await wait_dead(tree, since)
        finally:
            kill_all(tree)
    finally:
        with trio.CancelScope(shield=True):
            run.kill()
            await run.wait()
            await terminal.aclose()
    print(f"trio-exec run quit by Ctrl-\\: its tree was gone after {elapsed:.3f} s")


EMBEDDED = """
import os, sys
import trio
import trio_exec as tx

async def main() -> None:
    backend = tx.LocalBackend(kill_orphans=True)
    async with backend.open_process(["sh", "-c", sys.argv[1]]) as proc:
        async for event in proc.events:
            os.write(1, event.data)
            await trio.sleep_forever()

trio.run(main)
"""


async def test_killed_embedding_program_leaves_nothing() -> None:
    elapsed = await kill_started_owner([sys.executable, "-c", EMBEDDED, TREE])
    print(f"embedding program SIGKILLed: its tree was gone after {elapsed:.3f} s")


REPLACED_KEEPER = """
import os, signal, sys
import trio
import trio_exec as tx

async def main() -> None:
    backend = tx.LocalBackend(kill_orphans=True)
    async with backend.open_process(["sleep", "60"]) as first:
        keeper = backend._keeper.pid
        os.kill(keeper, signal.SIGKILL)
        while open(f"/proc/{keeper}/stat").read().rpartition(")")[2].split()[0] != "Z":
            await trio.sleep(0.01)
        # The dead keeper is replaced at the next spawn and told of both groups.
        async with backend.open_process(["sh", "-c", sys.argv[1]]) as proc:
            assert backend._keeper.pid != keeper
            async for event in proc.events:
                os.write(1, b"%d " % first.pid + event.data)
                await trio.sleep_forever()

trio.run(main)
"""

FORKED = """
import os, sys, time
import trio
import trio_exec as tx

async def main() -> None:
    backend = tx.LocalBackend(kill_orphans=True)
    async with backend.open_process(["sh", "-c", sys.argv[1]]) as proc:
        async for event in proc.events:
            if os.fork() == 0:  # a forked child must not hold the keeper's pipe open
                time.sleep(60)
                os._exit(0)
            os.write(1, event.data)
            await trio.sleep_forever()

trio.run(main)
"""


@pytest.mark.parametrize("program", [REPLACED_KEEPER, FORKED], ids=["replaced", "forked"])
async def test_keeper_survives_its_owners_accidents(program: str) -> None:
    owner = await trio.lowlevel.open_process(
        [sys.executable, "-c", program, TREE], stdout=subprocess.PIPE, start_new_session=True
    )
    assert owner.stdout is not None
    forked: list[Process] = []
    try:
        *first, pgid, parent = map(int, (await read_line(owner.stdout)).split())
        assert parent == owner.pid
        tree = descendants(owner.pid)
        check_tree(tree, pgid)
        if first:  # the group started before the keeper was replaced
            assert [p for p in tree if p.pgid == first[0]]
        forked = [p for p in tree if p.pgid == os.getpgid(owner.pid)]
        await kill_and_wait(owner.pid, [p for p in tree if p not in forked])
    finally:
        with trio.CancelScope(shield=True):
            owner.kill()
            await owner.wait()
            await owner.stdout.aclose()
            kill_all(forked)
