"""Our server, ``trio_exec``'s :func:`serve_websocket`, driven by the raw interop scenarios.

Every scenario of :mod:`.scenarios` runs against our server (in-process, on 127.0.0.1 with a
free port) and its transcript is compared with the reference's expected transcript
(:data:`.test_reference_raw.EXPECTED`). The only allowed differences are listed below in
:data:`DOCUMENTED_DIFFERENCES`, each with its reason; anything else fails, and so does a
listed difference that no longer occurs.

Two more documented differences are checked by the last tests: an unknown notification does
not drop the connection, and a tty child that a signal ended reports ``128 + N``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from trio_exec._server import serve_websocket

from .scenarios import (
    SCENARIOS,
    STEP_TIMEOUT,
    compare_transcripts,
    open_driver,
    run_scenario,
)
from .test_reference_raw import EXPECTED

DOCUMENTED_DIFFERENCES: dict[str, dict[str, str]] = {
    "invalid_params": {
        # Our decoder appends the field and its value: which field broke is then obvious.
        "[1] process/start.error.message: "
        "ours=\"invalid URI: relative URL without a base (`cwd` is '/tmp')\" "
        "theirs='invalid URI: relative URL without a base'": "the message names the field",
        # serde says "number"; ours names the value and the JSON path of the field.
        "[3] process/start.error.message: "
        "ours='invalid type: integer `7`, expected a string at `processId`' "
        "theirs='invalid type: number, expected a string'": "the message names value and field",
        # We accept every signal of the `signals` extension, so the message lists them all.
        "[7] process/signal.error.message: "
        "ours='unknown variant `bogus`, expected one of `interrupt`, `terminate`, `kill`, "
        "`hangup`, `quit`, `user1`, `user2` at `signal`' "
        "theirs='unknown variant `bogus`, expected `interrupt`'": "extension `signals`",
    },
    "handshake": {
        # The prefix (with the client's address) is the reference's; the JSON syntax error
        # itself is Python's json module's wording, not serde's.
        "[1] <malformed frame>.error.message: "
        "ours='failed to parse websocket JSON-RPC message from exec-server websocket "
        "<address>: Expecting property name enclosed in double quotes at line 1 column 2' "
        "theirs='failed to parse websocket JSON-RPC message from exec-server websocket "
        "<address>: key must be a string at line 1 column 2'": "Python's JSON error wording",
    },
}
"""Per scenario, each allowed difference line of :func:`compare_transcripts` and why."""


@pytest.fixture
async def our_url() -> AsyncIterator[str]:
    """Our server on a free loopback port, for one test."""
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serve_websocket, "127.0.0.1", 0)
        yield url
        nursery.cancel_scope.cancel()


def test_documented_differences_name_real_scenarios() -> None:
    assert set(DOCUMENTED_DIFFERENCES) <= set(SCENARIOS)


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_our_server_scenario(our_url: str, name: str) -> None:
    transcript = await run_scenario(our_url, SCENARIOS[name])
    differences = compare_transcripts(transcript, EXPECTED[name])
    allowed = DOCUMENTED_DIFFERENCES.get(name, {})
    assert [line for line in differences if line not in allowed] == []
    # A documented difference that no longer occurs must be removed from the list.
    assert sorted(set(allowed) - set(differences)) == []


async def test_our_server_keeps_connection_on_unknown_notification(our_url: str) -> None:
    """Where the reference drops the websocket, we ignore the notification and keep serving
    (the session's processes would otherwise die with the connection)."""
    async with open_driver(our_url) as d:
        await d.notify("bogus/notification", {})
        with trio.fail_after(STEP_TIMEOUT):
            response = await d.request("process/read", {"processId": "x"})
        assert response["error"] == {"code": -32600, "message": "unknown process id x"}


async def test_our_server_tty_signal_death_reports_128_plus_n(our_url: str) -> None:
    """A documented difference: the reference reports exitCode 1 for a tty child that a
    signal ended; we report 128+N like for any other child."""
    async with open_driver(our_url) as d:
        await d.start("t", ["sleep", "60"], tty=True)
        await d.call("process/terminate", {"processId": "t"})
        summary = await d.collect("t")
        assert summary["exitCode"] == 137
        assert summary["violations"] == []
