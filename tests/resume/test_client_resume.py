"""The client resumes its session after a lost connection (``connect()`` backends).

Our client talks to our websocket server through a TCP proxy on 127.0.0.1 that cuts every
connection on command (tests/resume/proxy.py): a network blip as both ends see it.
"""

from __future__ import annotations

import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

import trio_exec as tx
from trio_exec._remote import (
    DISCONNECTED,
    WRITE_CHUNK_BYTES,
    RemoteBackend,
    RemoteProcess,
    connect,
    open_remote_backend,
)
from trio_exec._server import ExecServer
from trio_exec._transport import memory_transport_pair
from trio_exec.testing import check_event_stream
from trio_exec.testing.reference import open_reference_server

from ..server.helpers import wait_group_gone
from .helpers import TIMEOUT, open_proxied_server, pattern, pattern_writer
from .proxy import CuttingProxy

STDOUT = tx.OutputStream.STDOUT


async def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate()`` (state of another component: nothing to wait on) until true."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - another component's state: poll it
            await trio.sleep(0.005)


async def collect(proc: tx.ExecProcess, timeout: float = TIMEOUT) -> list[tx.Event]:
    with trio.fail_after(timeout):
        return [event async for event in proc.events]


async def wait_lost(backend: RemoteBackend) -> None:
    """Wait until the backend noticed a cut (it is recovering, or has already recovered)."""
    resumes = backend.statistics().resumes
    await wait_for(
        lambda: backend.statistics().recovering or backend.statistics().resumes > resumes
    )


async def wait_recovered(backend: RemoteBackend, resumes: int) -> None:
    await wait_for(
        lambda: backend.statistics().resumes >= resumes and not backend.statistics().recovering
    )


# -- every byte exactly once ---------------------------------------------------------------------


async def test_random_cuts_during_50_mib_lose_and_repeat_nothing() -> None:
    """The child writes 50 MiB as fast as it can; the connection is cut at five random
    points of the stream, at least three times (a point may fall in the catch-up after an
    earlier cut: that resume attempt is retried, or the point is passed over); the consumer
    gets every byte once, in order.

    The server retains 16 MiB per process: what it had sent when the connection broke is
    lost in socket buffers and must still be retained for the catch-up (up to a few MiB
    here, with the proxy's two hops; see PROTOCOL.md, "Connection loss and resume").
    """
    lines = 50 * 1024 * 1024 // 16
    expected = pattern(lines)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    cut_points = sorted(rng.sample(range(len(expected) // 20, len(expected) * 9 // 10), 5))
    server = ExecServer(retain_bytes=16 * 1024 * 1024)
    async with open_proxied_server(server) as proxy, connect(proxy.url) as backend:
        with trio.fail_after(60):
            async with backend.open_process(pattern_writer(lines)) as proc:
                events: list[tx.Event] = []
                received = 0
                async for event in proc.events:
                    events.append(event)
                    if isinstance(event, tx.Output):
                        received += len(event.data)
                    # Cut at each point, when there is a connection to cut.
                    if cut_points and received >= cut_points[0] and proxy.links:
                        cut_points.pop(0)
                        proxy.cut()
                        await wait_lost(backend)
        note = f"seed {seed}, cut points left {cut_points}"
        # A point that falls in a catch-up (no connection to cut then) may be passed over
        # when the rest of the stream arrives through the catch-up reads.
        assert len(cut_points) <= 2, note
        summary = check_event_stream(
            events, expected_output={STDOUT: expected}, output_before_exit=True
        )
        assert summary.exit_code == 0, note
        await wait_recovered(backend, 1)
        stats = backend.statistics()
        assert 1 <= stats.resumes <= proxy.cuts, note
        assert 3 <= proxy.cuts <= 5, note
        assert proxy.accepted >= 1 + stats.resumes, note
        assert stats.failure is None


async def test_exit_while_disconnected_is_caught_up(tmp_path: Path) -> None:
    """Output, exit and close that happen during the outage come from the catch-up reads."""
    go = tmp_path / "go"
    code = (  # goes on once the file named by its argument exists
        "import os, sys, time\n"
        "print('before', flush=True)\n"
        "while not os.path.exists(sys.argv[1]):\n"
        "    time.sleep(0.01)\n"
        "print('during', flush=True)\n"
        "sys.exit(3)\n"
    )
    server = ExecServer()
    async with open_proxied_server(server) as proxy, connect(proxy.url) as backend:
        async with backend.open_process([sys.executable, "-c", code, str(go)]) as proc:
            events = proc.events
            with trio.fail_after(TIMEOUT):
                first = await events.receive()
            proxy.accepting = False
            proxy.cut()
            go.touch()
            # The child finishes while the network is down.
            await wait_for(lambda: server.statistics().running_processes == 0)
            proxy.accepting = True
            rest = await collect(proc)
        summary = check_event_stream([first, *rest], expected_output={STDOUT: b"before\nduring\n"})
        assert summary.exit_code == 3
        assert backend.statistics().resumes == 1


# -- writes --------------------------------------------------------------------------------------


async def test_a_write_during_the_outage_is_delivered_once() -> None:
    async with open_proxied_server(ExecServer()) as proxy, connect(proxy.url) as backend:
        async with backend.open_process(["cat"], pipe_stdin=True) as proc:
            assert await proc.write(b"before\n") is tx.WriteStatus.ACCEPTED
            events = proc.events
            with trio.fail_after(TIMEOUT):
                assert await events.receive() == tx.Output(seq=1, stream=STDOUT, data=b"before\n")
            proxy.accepting = False
            proxy.cut()
            await wait_for(lambda: backend.statistics().recovering)
            statuses: list[tx.WriteStatus] = []

            async def write() -> None:
                statuses.append(await proc.write(b"during\n"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await trio.sleep(0.3)
                assert statuses == []  # waits for the resume
                proxy.accepting = True
            assert statuses == [tx.WriteStatus.ACCEPTED]
            assert await proc.close_stdin() is tx.WriteStatus.ACCEPTED
            rest = await collect(proc)
        check_event_stream(
            [tx.Output(seq=1, stream=STDOUT, data=b"before\n"), *rest],
            expected_output={STDOUT: b"before\nduring\n"},
        )


async def test_a_write_in_flight_at_the_cut_is_resent_and_written_once(tmp_path: Path) -> None:
    """The server is blocked writing 1 MiB into a pipe nobody reads yet when the connection
    breaks; the client resends it with the same writeId after the resume."""
    payload = pattern(WRITE_CHUNK_BYTES // 16)
    go = tmp_path / "go"
    server = ExecServer()
    async with open_proxied_server(server) as proxy, connect(proxy.url) as backend:
        # Reads its stdin only once the file named by $0 exists.
        argv = ["sh", "-c", 'while [ ! -e "$0" ]; do sleep 0.01; done; exec cat', str(go)]
        async with backend.open_process(argv, pipe_stdin=True) as proc:
            assert isinstance(proc, RemoteProcess)
            statuses: list[tx.WriteStatus] = []

            async def write() -> None:
                statuses.append(await proc.write(payload))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                # The request reached the server, which is blocked on the full pipe.
                await wait_for(lambda: server.statistics().in_flight_requests == 1)
                assert statuses == []
                proxy.cut()
                go.touch()
            assert statuses == [tx.WriteStatus.ACCEPTED]
            assert await proc.close_stdin() is tx.WriteStatus.ACCEPTED
            events = await collect(proc)
        check_event_stream(events, expected_output={STDOUT: payload})
        assert backend.statistics().resumes == 1


async def test_a_signal_in_flight_at_the_cut_raises_and_is_not_repeated() -> None:
    """A call that is not safe to repeat raises ConnectionLost when the connection breaks
    before its answer (the server did deliver it); the process and the backend go on."""
    code = (  # one write per line: a signal cannot fall between a line and its newline
        "import os, signal, sys\n"
        "signal.signal(signal.SIGUSR1, lambda *_: os.write(1, b'usr1\\n'))\n"
        "os.write(1, b'ready\\n')\n"
        "sys.stdin.read()\n"
    )
    async with open_proxied_server(ExecServer()) as proxy, connect(proxy.url) as backend:
        async with backend.open_process([sys.executable, "-c", code], pipe_stdin=True) as proc:
            events = proc.events
            with trio.fail_after(TIMEOUT):
                first = await events.receive()
            proxy.blackhole = True  # the answer never comes back
            errors: list[tx.ConnectionLost] = []

            async def send_signal() -> None:
                try:
                    await proc.signal(signal.SIGUSR1)
                except tx.ConnectionLost as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_signal)
                await wait_for(lambda: backend.statistics().requests_in_flight == 1)
                # In flight means queued or sent, not delivered: wait until the server
                # answered or the child wrote "usr1" (the proxy swallows both).
                await wait_for(lambda: proxy.swallowed_bytes > 0)
                proxy.cut()
            assert len(errors) == 1
            assert str(errors[0]).startswith(DISCONNECTED)
            proxy.blackhole = False
            await wait_recovered(backend, 1)
            assert await proc.close_stdin() is tx.WriteStatus.ACCEPTED
            rest = await collect(proc)
        # Delivered once: the output that told so was caught up after the resume.
        check_event_stream([first, *rest], expected_output={STDOUT: b"ready\nusr1\n"})


# -- what cannot be recovered ------------------------------------------------------------------


async def test_output_evicted_meanwhile_fails_the_process_clearly() -> None:
    """Output the server sent that never arrived (swallowed here), and that the server no
    longer retains, cannot be recovered: that process fails, is terminated, and its calls
    raise ConnectionLost; the backend and its other processes go on."""
    retain = 64 * 1024
    server = ExecServer(retain_bytes=retain)
    code = (
        "import os, sys, time\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'%d\\n' % os.getpgrp()); out.flush()\n"
        "while True:\n"
        "    out.write(b'x' * 16384); out.flush()\n"
        "    time.sleep(0.001)\n"
    )
    async with open_proxied_server(server) as proxy, connect(proxy.url) as backend:
        async with backend.open_process([sys.executable, "-c", code]) as proc:
            events = proc.events
            with trio.fail_after(TIMEOUT):
                first = await events.receive()
            assert isinstance(first, tx.Output)
            pgid = int(first.data.split(b"\n")[0])
            # Output sent but lost on the way, far more than the server retains (16 times
            # on the wire, in base64: 12 times in output), so that the first chunk the
            # client missed is evicted.
            proxy.blackhole = True
            await wait_for(lambda: proxy.swallowed_bytes > 16 * retain)
            proxy.blackhole = False
            proxy.cut()
            with trio.fail_after(TIMEOUT):
                rest = [event async for event in events]
            failed = rest[-1]
            assert isinstance(failed, tx.Failed)
            assert failed.message.startswith(
                f"{DISCONNECTED}: failed to recover process {proc.process_id!r}: its events "
                "from seq "
            )
            assert "no longer retained by the server" in failed.message
            check_event_stream([first, *rest])
            with pytest.raises(tx.ConnectionLost, match="failed to recover process"):
                await proc.write(b"x")
            with pytest.raises(tx.ConnectionLost, match="failed to recover process"):
                await proc.wait()
            # The server was told to end it.
            await wait_group_gone(pgid, TIMEOUT)
        # The backend itself is fine.
        assert backend.failure is None
        async with backend.open_process(["echo", "still here"]) as other:
            check_event_stream(await collect(other), expected_output={STDOUT: b"still here\n"})


async def test_deadline_passes_fails_every_process_and_call() -> None:
    async with (
        open_proxied_server(ExecServer()) as proxy,
        connect(proxy.url, resume_deadline=1.0) as backend,
    ):
        async with backend.open_process(["cat"], pipe_stdin=True) as proc:
            events = proc.events
            proxy.accepting = False  # the network stays down
            proxy.cut()
            await wait_for(lambda: backend.statistics().recovering)
            start = trio.current_time()
            errors: list[tx.ConnectionLost] = []

            async def write() -> None:
                try:
                    await proc.write(b"never")
                except tx.ConnectionLost as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                with trio.fail_after(3.0):
                    received = [event async for event in events]
            elapsed = trio.current_time() - start
            assert 0.8 < elapsed < 3.0
            failed = received[-1]
            assert isinstance(failed, tx.Failed)
            assert failed.message.startswith(DISCONNECTED)
            assert "the session could not be resumed within 1 s" in failed.message
            assert len(errors) == 1
            assert str(errors[0]) == failed.message
            assert backend.failure == failed.message
            for call in (proc.write(b"x"), proc.signal(signal.SIGINT), proc.terminate()):
                with pytest.raises(tx.ConnectionLost, match="could not be resumed"):
                    await call
            with pytest.raises(tx.ConnectionLost, match="could not be resumed"):
                async with backend.open_process(["true"]):
                    raise AssertionError("must not start")
            leave_start = trio.current_time()
        assert trio.current_time() - leave_start < 1.0


async def test_an_expired_session_fails_at_once() -> None:
    """The server ended the session (here: it does not detach): the first resume answer
    (-32600 unknown session id) is final."""
    server = ExecServer(detach_timeout=0)
    async with (
        open_proxied_server(server) as proxy,
        connect(proxy.url) as backend,
        backend.open_process(["cat"], pipe_stdin=True) as proc,
    ):
        events = proc.events
        proxy.cut()
        with trio.fail_after(2.0):
            received = [event async for event in events]
        failed = received[-1]
        assert isinstance(failed, tx.Failed)
        assert f"unknown session id {backend.session_id}" in failed.message
        assert backend.failure == failed.message


# -- how the resume goes -----------------------------------------------------------------------


async def test_still_attached_is_retried_until_the_server_notices() -> None:
    """The server's side of the old connection lingers: the resume answers -32010
    meanwhile, and the client tries again."""
    async with open_proxied_server(ExecServer()) as proxy, connect(proxy.url) as backend:
        async with backend.open_process(["cat"], pipe_stdin=True) as proc:
            assert await proc.write(b"a\n") is tx.WriteStatus.ACCEPTED
            release = trio.Event()
            proxy.cut(keep_server_side=release)
            await wait_for(lambda: proxy.accepted >= 3)  # the first, and two attempts
            stats = backend.statistics()
            assert stats.recovering  # both attempts were refused: still attached
            assert stats.resumes == 0
            release.set()
            await wait_recovered(backend, 1)
            assert await proc.write(b"b\n") is tx.WriteStatus.ACCEPTED
            assert await proc.close_stdin() is tx.WriteStatus.ACCEPTED
            events = await collect(proc)
        check_event_stream(events, expected_output={STDOUT: b"a\nb\n"})


async def test_repr_follows_the_resume() -> None:
    """``repr`` shows the state: resuming while no connection is accepted, connected again
    once the session is resumed, broken once the block is left."""
    async with open_proxied_server(ExecServer()) as proxy, connect(proxy.url) as backend:
        assert repr(backend).startswith("<RemoteBackend connected ")
        proxy.accepting = False
        proxy.cut()
        await wait_for(lambda: backend.statistics().recovering)
        assert repr(backend).startswith("<RemoteBackend resuming ")
        proxy.accepting = True
        await wait_recovered(backend, 1)
        assert repr(backend).startswith("<RemoteBackend connected ")
    assert repr(backend).startswith(
        f"<RemoteBackend broken ({DISCONNECTED}: the client closed the connection) "
    )


async def test_slow_consumer_across_cuts() -> None:
    """A consumer slower than the child (the backpressure holds the child back) still gets
    every byte once across cuts."""
    lines = 4 * 1024 * 1024 // 16
    async with (
        open_proxied_server(ExecServer(retain_bytes=8 * 1024 * 1024)) as proxy,
        connect(proxy.url) as backend,
    ):
        async with backend.open_process(pattern_writer(lines, batch=1024)) as proc:
            events: list[tx.Event] = []
            received = 0
            next_cut = 512 * 1024
            with trio.fail_after(TIMEOUT):
                async for event in proc.events:
                    events.append(event)
                    if isinstance(event, tx.Output):
                        received += len(event.data)
                    if received >= next_cut and proxy.links:
                        next_cut = received + 512 * 1024
                        proxy.cut()
                        await wait_lost(backend)
                    await trio.sleep(0.005)
        check_event_stream(events, expected_output={STDOUT: pattern(lines)})
        await wait_recovered(backend, 1)
        assert proxy.cuts >= 3
        assert 1 <= backend.statistics().resumes <= proxy.cuts


async def test_transports_given_by_the_caller_are_not_resumed() -> None:
    """open_remote_backend (stdio, a command's pipes) never resumes: a loss fails at once."""
    server = ExecServer()
    client_end, server_end = memory_transport_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: server.serve_connection(server_end, detachable=True))
        async with (
            open_remote_backend(client_end) as backend,
            backend.open_process(["cat"], pipe_stdin=True) as proc,
        ):
            events = proc.events
            await client_end.aclose()
            with trio.fail_after(1.0):
                received = [event async for event in events]
            assert isinstance(received[-1], tx.Failed)
            assert backend.failure is not None
            assert backend.statistics().resumes == 0
        nursery.cancel_scope.cancel()


async def test_resume_deadline_is_checked() -> None:
    with pytest.raises(ValueError, match="resume_deadline"):
        async with connect("ws://127.0.0.1:1", resume_deadline=-1):
            raise AssertionError("unreachable")


# -- the reference server ----------------------------------------------------------------------


@pytest.mark.reference
async def test_resume_against_the_reference(reference_binary: Path) -> None:
    """The reference keeps a detached session for 80 s and lets it be resumed; it does not
    hold output back nor report ``firstRetainedSeq``: a slow stream survives cuts, and the
    exit is inferred from the read's ``exited`` / ``exitCode`` and the seq it leaves out."""
    code = (
        "import sys, time\n"
        "for i in range(60):\n"
        "    print(i, flush=True)\n"
        "    time.sleep(0.01)\n"
        "sys.exit(5)\n"
    )
    expected = b"".join(b"%d\n" % i for i in range(60))
    async with (
        open_reference_server(reference_binary) as url,
        trio.open_nursery() as nursery,
    ):
        proxy = CuttingProxy(int(url.rsplit(":", 1)[1]))
        await nursery.start(proxy.serve)
        async with connect(proxy.url) as backend:
            async with backend.open_process([sys.executable, "-c", code]) as proc:
                events: list[tx.Event] = []
                with trio.fail_after(TIMEOUT):
                    async for event in proc.events:
                        events.append(event)
                        if len(events) in (10, 30):
                            proxy.cut()
                            await wait_lost(backend)
            summary = check_event_stream(events, expected_output={STDOUT: expected})
            assert summary.exit_code == 5
            assert backend.statistics().resumes == proxy.cuts == 2
            assert backend.failure is None
        nursery.cancel_scope.cancel()
