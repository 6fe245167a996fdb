"""Cancelling the scope around a ``connect()`` block with a process block inside it.

The process block shuts down shielded, through the backend's connection: its terminate
request must still be sent and answered (the backend's tasks outlive the cancellation
until the process block was left), so leaving is prompt and leaves nothing running.
(The same over a command's stdio: tests/transports/test_command.py.)
"""

from __future__ import annotations

from typing import Final

import trio

import trio_exec as tx
from trio_exec._remote import connect

from ..conformance.helpers import group_alive
from .fake_server import TIMEOUT

PROMPT: Final = 2.0
"""Seconds a cancelled block may take to be left (without the fix: grace + SHUTDOWN_TIMEOUT)."""


async def test_cancelled_blocks_are_left_promptly(server_url: str) -> None:
    with trio.fail_after(TIMEOUT), trio.CancelScope() as scope:
        async with (
            connect(server_url) as backend,
            backend.open_process(["sh", "-c", "echo $$; exec sleep 60"], grace=0.5) as proc,
        ):
            events = proc.events
            first = await events.receive()
            assert isinstance(first, tx.Output)
            pgid = int(first.data)
            scope.cancel()
            cancelled_at = trio.current_time()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert trio.current_time() - cancelled_at < PROMPT
    assert not group_alive(pgid)
