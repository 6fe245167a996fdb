"""The remote client against a scripted fake server: demux, ordering, calls, errors, limits.

Deterministic unit tests of the client layer; the same client is tested against the real
reference server in test_reference_client.py and with random inputs in test_ordering.py.
"""

from __future__ import annotations

import base64
import errno
import os
import signal
from collections.abc import Sequence
from unittest.mock import ANY

import pytest
import trio
import trio.testing

import trio_exec as tx
from trio_exec._protocol import Extension
from trio_exec._remote import (
    CLOSE_TIMEOUT,
    INITIALIZE_TIMEOUT,
    MAX_IN_FLIGHT_REQUESTS,
    MAX_REORDER_EVENTS,
    READ_AHEAD_BYTES,
    SHUTDOWN_TIMEOUT,
    WRITE_CHUNK_BYTES,
    RemoteBackend,
    RemoteProcess,
    open_remote_backend,
)
from trio_exec._transport import MEMORY_TRANSPORT_BUFFER, MemoryTransport, memory_transport_pair
from trio_exec.testing import check_event_stream

from .fake_server import (
    TIMEOUT,
    FakeServer,
    JsonDict,
    answer_start,
    generic_result,
    notification,
    open_fake,
    send_events,
    simple_stream,
)

STDOUT, STDERR = tx.OutputStream.STDOUT, tx.OutputStream.STDERR
ALL_EXTENSIONS = ("closeStdin", "resize", "signals", "gracefulTerminate", "exitSignal", "readGap")


async def collect(proc: tx.ExecProcess) -> list[tx.Event]:
    with trio.fail_after(TIMEOUT):
        return [event async for event in proc.events]


# -- handshake and start --------------------------------------------------------------------


async def test_handshake_records_session_and_extensions() -> None:
    async with open_fake(["closeStdin", "somethingNew"]) as (backend, server, _):
        assert backend.session_id == "session-1"
        assert backend.extensions == {"closeStdin", "somethingNew"}
        assert backend.supports(Extension.CLOSE_STDIN)
        assert not backend.supports(Extension.RESIZE)
        assert server.received[0]["params"] == {"clientName": "trio-exec"}
        assert "connected" in repr(backend)


async def test_start_request_defaults_and_mapping() -> None:
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(server.serve_generic)
        async with backend.open_process(["echo", "hi"]) as proc:
            assert isinstance(proc, RemoteProcess)
            assert proc.process_id.startswith("proc-")
            assert not proc.tty
        assert server.methods() == ["process/start", "process/terminate"]
        params = server.received[2]["params"]
        assert params["argv"] == ["echo", "hi"]
        # The server's side by default; this server told nothing of its directory.
        assert params["cwd"] == "file:///"
        assert params["env"] == {}
        assert params["envPolicy"] == INHERIT_ALL
        assert (params["tty"], params["pipeStdin"], params["arg0"]) == (False, False, None)
        assert params["processId"] == proc.process_id
        assert "windowSize" not in params

        async with backend.open_process(
            ["sh"],
            cwd="/tmp",
            env={"A": "1"},
            tty=True,
            pipe_stdin=True,
            arg0="zero",
            process_id="x",
        ) as proc:
            assert proc.tty
            assert proc.process_id == "x"
        assert server.methods()[2:] == ["process/start", "process/terminate"]
        params = server.received[4]["params"]
        assert params == {
            "processId": "x",
            "argv": ["sh"],
            "cwd": "file:///tmp",
            "env": {"A": "1"},
            "tty": True,
            "pipeStdin": True,
            "arg0": "zero",
        }


INHERIT_ALL: JsonDict = {
    "inherit": "all",
    "ignoreDefaultExcludes": True,
    "exclude": [],
    "set": {},
    "includeOnly": [],
}
"""The ``envPolicy`` of a start without ``env``: the server's whole environment."""


async def test_defaults_are_the_servers_side() -> None:
    info = {"shell": {"name": "sh", "path": "/bin/sh"}, "cwd": "file:///srv/a%20b"}
    async with open_fake(environment_info=info) as (backend, server, nursery):
        nursery.start_soon(server.serve_generic)
        assert backend.environment_info is not None
        assert backend.environment_info.cwd == "file:///srv/a%20b"
        async with backend.open_process(["true"]):
            pass
        params = server.received[2]["params"]
        assert (params["cwd"], params["env"], params["envPolicy"]) == (
            "file:///srv/a%20b",
            {},
            INHERIT_ALL,
        )
        # extra_env adds to the server's environment ...
        async with backend.open_process(["true"], extra_env={"K": "V"}):
            pass
        params = server.received[4]["params"]
        assert (params["env"], params["envPolicy"]) == ({}, {**INHERIT_ALL, "set": {"K": "V"}})
        # ... or to the exact env given, which is sent without a policy.
        async with backend.open_process(
            ["true"], cwd="/tmp", env={"A": "1", "K": "old"}, extra_env={"K": "V"}
        ):
            pass
        params = server.received[6]["params"]
        assert params["cwd"] == "file:///tmp"
        assert params["env"] == {"A": "1", "K": "V"}
        assert "envPolicy" not in params


async def test_window_goes_in_the_start_request() -> None:
    async with open_fake(["windowSize", "resize"]) as (backend, server, nursery):
        nursery.start_soon(server.serve_generic)
        async with backend.open_process(["vi"], tty=True, window=(40, 120)):
            pass
        assert server.methods() == ["process/start", "process/terminate"]
        assert server.received[2]["params"]["windowSize"] == {"rows": 40, "cols": 120}


async def test_window_without_the_extension_is_a_resize_at_once() -> None:
    async with open_fake(["resize"]) as (backend, server, nursery):
        nursery.start_soon(server.serve_generic)
        async with backend.open_process(["vi"], tty=True, window=(40, 120)):
            assert server.methods() == ["process/start", "process/resize"]
        assert "windowSize" not in server.received[2]["params"]
        assert server.received[3]["params"] == {"processId": ANY, "rows": 40, "cols": 120}


async def test_window_needs_a_server_that_sizes_terminals() -> None:
    async with open_fake() as (backend, server, _):
        with pytest.raises(tx.UnsupportedOperation, match="resize"):
            backend.open_process(["vi"], tty=True, window=(40, 120))
        assert server.methods() == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"cwd": "relative/dir"}, ValueError),
        ({"extra_env": {"A=B": "1"}}, ValueError),
        ({"window": (24, 80)}, ValueError),  # without tty
        ({"window": (0, 80), "tty": True}, ValueError),
        ({"window": (24, 80.0), "tty": True}, TypeError),
        ({"window": 24, "tty": True}, TypeError),
        ({"env": {"A=B": "1"}}, ValueError),
        ({"env": {"A": 1}}, TypeError),
        ({"arg0": "a\0b"}, ValueError),
        ({"grace": -1.0}, ValueError),
        ({"retain_bytes": -1}, ValueError),
    ],
)
async def test_bad_arguments_fail_before_sending(kwargs: JsonDict, error: type[Exception]) -> None:
    async with open_fake() as (backend, server, _):
        with pytest.raises(error):
            backend.open_process(["true"], **kwargs)
        assert server.methods() == []


async def test_duplicate_open_process_id_is_rejected() -> None:
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["cat"], process_id="same"):
            with pytest.raises(ValueError, match="already open"):
                async with backend.open_process(["cat"], process_id="same"):
                    raise AssertionError("must not start")
            nursery.start_soon(server.serve_generic)  # answers the terminate on exit


@pytest.mark.parametrize(
    ("code", "message", "check", "error_type"),
    [
        (-32603, "No such file or directory (os error 2)", "enoent", tx.SpawnError),
        (-32603, "Permission denied (os error 13)", "eacces", tx.SpawnError),
        (-32603, "something else broke", "spawn-no-errno", tx.SpawnError),
        (-32602, "argv must not be empty", "value", ValueError),
        (-32600, "process p already exists", "remote", tx.RemoteError),
    ],
)
async def test_start_errors_are_mapped(
    code: int, message: str, check: str, error_type: type[Exception]
) -> None:
    async with open_fake() as (backend, server, _):

        async def refuse() -> None:
            request = await server.request("process/start")
            # The route must be gone after the error: these are ignored.
            await server.error(request, code, message)
            await send_events(server, "p", simple_stream(b"late"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refuse)
            with pytest.raises(error_type) as info:
                async with backend.open_process(["prog"], process_id="p"):
                    raise AssertionError("must not start")
        error = info.value
        if check == "enoent":
            assert type(error) is tx.SpawnFileNotFoundError
            assert isinstance(error, OSError)
            assert error.errno == errno.ENOENT
            # No cwd was given: the directory is the server's own, so the program is named.
            assert error.filename == "prog"
        elif check == "eacces":
            assert type(error) is tx.SpawnPermissionError
            assert error.errno == errno.EACCES
        elif check == "spawn-no-errno":
            assert isinstance(error, tx.SpawnError)
            assert error.errno is None
            assert "something else broke" in str(error)
        elif check == "value":
            assert type(error) is ValueError
            assert "argv must not be empty" in str(error)
        else:
            assert isinstance(error, tx.RemoteError)
            assert error.code == -32600
        await trio.testing.wait_all_tasks_blocked()
        assert backend.statistics().routed_processes == 0
        assert backend.statistics().open_processes == 0


@pytest.mark.parametrize(
    ("data", "errno_code", "filename"),
    [
        ({"errno": errno.ENOENT, "filename": "/the/dir"}, errno.ENOENT, "/the/dir"),
        ({"errno": errno.ENOTDIR, "filename": "/a/file"}, errno.ENOTDIR, "/a/file"),
        ({"filename": "/a/file"}, errno.ENOENT, "/a/file"),  # the errno from the message
        ({"errno": "2", "filename": 7}, errno.ENOENT, None),  # ill-typed fields are ignored
        ("not an object", errno.ENOENT, None),
    ],
)
async def test_spawn_error_data_names_the_culprit(
    data: object, errno_code: int, filename: str | None
) -> None:
    async with open_fake() as (backend, server, _):

        async def refuse() -> None:
            request = await server.request("process/start")
            message = "No such file or directory (os error 2)"
            error = {"code": -32603, "message": message, "data": data}
            await server.send({"error": error, "id": request["id"]})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refuse)
            with pytest.raises(tx.SpawnError) as info:
                async with backend.open_process(["prog"], cwd="/the/dir"):
                    raise AssertionError("must not start")
    assert info.value.errno == errno_code
    assert info.value.strerror is not None
    assert info.value.strerror.startswith(os.strerror(errno.ENOENT))
    assert info.value.filename == filename
    if filename is None:
        # The message alone cannot tell the program from the given working directory.
        assert "the program 'prog' or the working directory '/the/dir'" in str(info.value)


# -- ordering and demux ---------------------------------------------------------------------


async def test_events_before_the_start_response_are_kept() -> None:
    stream = simple_stream(b"one", b"two", exit_code=3)
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(lambda: answer_start(server, before=stream))
        async with backend.open_process(["x"]) as proc:
            events = await collect(proc)
    assert events == stream


async def test_out_of_order_duplicates_and_noise() -> None:
    stream = simple_stream(b"a", b"b", b"c", exit_code=1)
    a, b, c, exited, closed = stream
    delivery: Sequence[tx.Event] = [c, exited, a, a, closed, b, c, b, exited]
    async with open_fake() as (backend, server, nursery):

        async def script() -> None:
            request = await server.request("process/start")
            await server.respond(request, generic_result(request))
            pid = request["params"]["processId"]
            await server.send(notification("someone-else", a))
            await server.send({"method": "process/unknownThing", "params": {"processId": pid}})
            await server.send({"method": "initialized"})
            await send_events(server, pid, delivery)
            # After Closed: ignored (the route is gone), even with a higher seq.
            await server.send(notification(pid, tx.Output(seq=6, stream=STDOUT, data=b"x")))

        nursery.start_soon(script)
        async with backend.open_process(["x"]) as proc:
            events = await collect(proc)
            assert backend.statistics().routed_processes == 0
    assert events == stream


async def test_interleaved_processes_are_demultiplexed() -> None:
    first = simple_stream(b"1a", b"1b", exit_code=1)
    second = simple_stream(b"2a", exit_code=2, stream=STDERR)
    async with open_fake() as (backend, server, nursery):

        async def script() -> None:
            one = await server.request("process/start")
            two = await server.request("process/start")
            pid_one, pid_two = one["params"]["processId"], two["params"]["processId"]
            for index in range(4):
                if index < len(second):
                    await server.send(notification(pid_two, second[index]))
                await server.send(notification(pid_one, first[index]))
            await server.respond(two, generic_result(two))
            await server.respond(one, generic_result(one))

        nursery.start_soon(script)
        results: dict[str, list[tx.Event]] = {}

        async def run(name: str) -> None:
            async with backend.open_process(["x"], process_id=name) as proc:
                results[name] = await collect(proc)

        async with trio.open_nursery() as inner:
            inner.start_soon(run, "one")
            await trio.testing.wait_all_tasks_blocked()
            inner.start_soon(run, "two")
    assert results == {"one": first, "two": second}


async def test_exit_signal_is_decoded() -> None:
    stream: list[tx.Event] = [tx.Exited(seq=1, exit_code=137, signal=9), tx.Closed(seq=2)]
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(lambda: answer_start(server, after=stream))
        async with backend.open_process(["x"]) as proc:
            assert await collect(proc) == stream
            assert await proc.wait() == 137


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        ([{"seq": 1, "stream": "stdout", "chunk": ""}], "empty output chunk"),
        ([{"seq": 1, "exitCode": 0}, {"seq": 2, "exitCode": 1}], "second exited"),
        ([{"seq": 1, "closed": True}], "closed before exited"),
        ([{"seq": "one", "stream": "stdout", "chunk": "eA=="}], "bad `process/output`"),
    ],
)
async def test_protocol_errors_fail_only_that_process(events: list[JsonDict], problem: str) -> None:
    healthy = simple_stream(b"fine")
    async with open_fake() as (backend, server, nursery):

        async def script() -> None:
            for _ in range(2):
                request = await server.request("process/start")
                await server.respond(request, generic_result(request))
            for params in events:
                method = (
                    "process/closed"
                    if params.pop("closed", False)
                    else "process/exited"
                    if "exitCode" in params
                    else "process/output"
                )
                await server.send({"method": method, "params": {"processId": "bad", **params}})
            await send_events(server, "good", healthy)

        nursery.start_soon(script)
        async with (
            backend.open_process(["x"], process_id="bad") as bad,
            backend.open_process(["x"], process_id="good") as good,
        ):
            bad_events = await collect(bad)
            good_events = await collect(good)
            assert backend.failure is None
            nursery.start_soon(server.serve_generic)
    assert isinstance(bad_events[-1], tx.Failed)
    assert problem in bad_events[-1].message
    check_event_stream(bad_events)
    assert good_events == healthy


async def test_a_hole_that_never_fills_is_bounded() -> None:
    async with open_fake() as (backend, server, nursery):

        async def script() -> None:
            request = await server.request("process/start")
            await server.respond(request, generic_result(request))
            for seq in range(2, MAX_REORDER_EVENTS + 3):
                await server.send(notification("p", tx.Output(seq=seq, stream=STDOUT, data=b"x")))
            await server.serve_generic()

        nursery.start_soon(script)
        async with backend.open_process(["x"], process_id="p") as proc:
            events = await collect(proc)
    assert len(events) == 1
    assert isinstance(events[0], tx.Failed)
    assert "seq 1" in events[0].message
    assert "never arrived" in events[0].message


# -- operations -----------------------------------------------------------------------------


async def test_read_is_served_from_the_local_log() -> None:
    stream = simple_stream(b"one", b"two", exit_code=5)
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(lambda: answer_start(server, after=stream))
        async with backend.open_process(["x"]) as proc:
            await proc.wait_closed()
            everything = await proc.read()
            assert [c.data for c in everything.chunks] == [b"one", b"two"]
            assert everything.next_seq == 5
            assert everything.closed
            assert everything.exit_code == 5
            assert everything.first_retained_seq == 1
            rest = await proc.read(after_seq=1)
            assert [c.seq for c in rest.chunks] == [2]
            first = await proc.read(max_bytes=0)
            assert first.next_seq == 2
    assert "process/read" not in server.methods()


async def test_write_ids_are_unique_and_large_writes_are_split() -> None:
    data = os.urandom(2 * WRITE_CHUNK_BYTES + 10)
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["cat"], pipe_stdin=True) as proc:
            nursery.start_soon(server.serve_generic)
            assert await proc.write(data) is tx.WriteStatus.ACCEPTED
            assert await proc.write(b"") is tx.WriteStatus.ACCEPTED
            ab = bytearray(b"ab")  # any bytes-like object is accepted
            assert await proc.write(ab) is tx.WriteStatus.ACCEPTED  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await proc.write("text")  # type: ignore[arg-type]
    writes = [m["params"] for m in server.received if m.get("method") == "process/write"]
    assert len(writes) == 5
    assert b"".join(base64.b64decode(w["chunk"]) for w in writes[:3]) == data
    assert [base64.b64decode(w["chunk"]) for w in writes[3:]] == [b"", b"ab"]
    ids = [w["writeId"] for w in writes]
    assert len(set(ids)) == len(ids)
    assert all(ids)


async def test_write_stops_at_the_first_refused_piece() -> None:
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["cat"]) as proc:

            async def refuse() -> None:
                request = await server.request("process/write")
                await server.respond(request, {"status": "stdinClosed"})
                await server.serve_generic()

            nursery.start_soon(refuse)
            status = await proc.write(b"x" * (WRITE_CHUNK_BYTES + 1))
            assert status is tx.WriteStatus.STDIN_CLOSED
    assert server.methods().count("process/write") == 1


async def test_operations_without_extensions_are_unsupported() -> None:
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"], tty=True) as proc:
            with pytest.raises(tx.UnsupportedOperation, match="closeStdin"):
                await proc.close_stdin()
            with pytest.raises(tx.UnsupportedOperation, match="`resize`"):
                await proc.resize(10, 20)
            with pytest.raises(tx.UnsupportedOperation, match="`signals`"):
                await proc.signal(signal.SIGTERM)
            with pytest.raises(tx.UnsupportedOperation, match="SIGWINCH"):
                await proc.signal(signal.SIGWINCH)
            with pytest.raises(ValueError, match="rows"):
                await proc.resize(0, 10)
            assert server.methods() == ["process/start"]
            nursery.start_soon(server.serve_generic)
            await proc.signal(signal.SIGINT)  # core protocol
        assert server.received[3]["params"]["signal"] == "interrupt"
        # Leaving the running process's block terminates it, at once (no graceMs).
        terminate = server.received[4]
        assert terminate["method"] == "process/terminate"
        assert terminate["params"] == {"processId": proc.process_id}


async def test_extensions_are_used_when_advertised() -> None:
    async with open_fake(ALL_EXTENSIONS) as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"], tty=True, process_id="p") as proc:

            async def serve() -> None:
                while True:
                    request = await server.request()
                    if request["method"] == "process/terminate":
                        await server.respond(request, {"running": True})
                        await send_events(server, "p", simple_stream(b"bye", exit_code=143))
                    else:
                        await server.respond(request, generic_result(request))

            nursery.start_soon(serve)
            assert await proc.close_stdin() is tx.WriteStatus.ACCEPTED
            await proc.resize(40, 132)
            await proc.signal(signal.SIGUSR1)
            with trio.fail_after(TIMEOUT):
                assert await proc.terminate(grace=2.5) is True
            assert proc.exit_code == 143
            assert await proc.terminate() is False
        sent = [(m["method"], m["params"]) for m in server.received[2:]]
        assert sent[1:] == [
            ("process/closeStdin", {"processId": "p"}),
            ("process/resize", {"processId": "p", "rows": 40, "cols": 132}),
            ("process/signal", {"processId": "p", "signal": "user1"}),
            ("process/terminate", {"processId": "p", "graceMs": 2500}),
            # Leaving the block: the rest of the process group is killed.
            ("process/signal", {"processId": "p", "signal": "kill"}),
        ]
        # After the block: statuses, no requests.
        assert await proc.write(b"x") is tx.WriteStatus.UNKNOWN_PROCESS
        assert await proc.close_stdin() is tx.WriteStatus.UNKNOWN_PROCESS
        await proc.signal(signal.SIGTERM)
        await proc.resize(5, 5)
        assert len(server.received) == 2 + len(sent)


async def test_leaving_the_block_terminates_gracefully_when_supported() -> None:
    async with open_fake(["gracefulTerminate"]) as (backend, server, nursery):

        async def serve() -> None:
            await answer_start(server)
            request = await server.request("process/terminate")
            await server.respond(request, {"running": True})
            await send_events(server, "p", simple_stream(exit_code=143))

        nursery.start_soon(serve)
        with trio.fail_after(TIMEOUT):
            async with backend.open_process(["x"], process_id="p", grace=0.25) as proc:
                pass
        assert proc.exit_code == 143
        assert server.received[-1]["params"] == {"processId": "p", "graceMs": 250}


async def test_leaving_after_exit_kills_the_group_when_signals_are_supported() -> None:
    async with open_fake(["signals"]) as (backend, server, nursery):
        # Exited, but a grandchild still holds the output open: no Closed yet.
        stream = [tx.Exited(seq=1, exit_code=0)]
        nursery.start_soon(lambda: answer_start(server, after=stream))
        async with backend.open_process(["x"], process_id="p") as proc:
            assert await proc.wait() == 0
            nursery.start_soon(server.serve_generic)  # answers the kill, sends Closed
        signal_request = server.received[-1]
        assert signal_request["method"] == "process/signal"
        assert signal_request["params"] == {"processId": "p", "signal": "kill"}
        assert isinstance((await collect(proc))[-1], tx.Closed)


async def test_leaving_while_running_terminates_then_kills_the_group() -> None:
    """As a local block: terminate the child, then SIGKILL what is left of its group (a
    grandchild that holds the output open), after which the server ends the output."""
    async with open_fake(["gracefulTerminate", "signals"]) as (backend, server, nursery):

        async def serve() -> None:
            await answer_start(server)
            request = await server.request("process/terminate")
            await server.respond(request, {"running": True})
            await send_events(server, "p", [tx.Exited(seq=1, exit_code=143)])
            kill = await server.request("process/signal")
            assert kill["params"] == {"processId": "p", "signal": "kill"}
            await server.respond(kill, {})
            await send_events(server, "p", [tx.Closed(seq=2)])

        nursery.start_soon(serve)
        with trio.fail_after(TIMEOUT):
            async with backend.open_process(["x"], process_id="p", grace=0.25) as proc:
                pass
            received = await collect(proc)
        assert server.methods() == ["process/start", "process/terminate", "process/signal"]
        assert [type(event) for event in received] == [tx.Exited, tx.Closed]


async def test_leaving_after_close_kills_what_is_left_of_the_group() -> None:
    async with open_fake(["signals"]) as (backend, server, nursery):
        nursery.start_soon(lambda: answer_start(server, after=simple_stream(b"x")))
        async with backend.open_process(["x"], process_id="p") as proc:
            await proc.wait_closed()
            nursery.start_soon(server.serve_generic)
        assert server.methods() == ["process/start", "process/signal"]
        assert server.received[-1]["params"] == {"processId": "p", "signal": "kill"}


async def test_leaving_after_close_without_signals_sends_nothing() -> None:
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(lambda: answer_start(server, after=simple_stream(b"x")))
        async with backend.open_process(["x"]) as proc:
            await proc.wait_closed()
        assert server.methods() == ["process/start"]


async def test_leaving_is_bounded_when_the_server_never_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        start = trio.current_time()
        async with backend.open_process(["x"], grace=100.0) as proc:
            events = proc.events
        # Not graceful (no extension): the grace does not apply.
        assert trio.current_time() - start == pytest.approx(SHUTDOWN_TIMEOUT, abs=0.5)
        assert (await server.request())["method"] == "process/terminate"
        failed = await events.receive()
        assert isinstance(failed, tx.Failed)
        assert "did not report the end" in failed.message
        with pytest.raises(trio.EndOfChannel):
            await events.receive()
        assert backend.statistics().routed_processes == 0


async def test_leaving_after_exit_waits_at_most_close_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake() as (backend, server, nursery):
        stream: list[tx.Event] = [
            tx.Output(seq=1, stream=STDOUT, data=b"x"),
            tx.Exited(seq=2, exit_code=0),
        ]
        nursery.start_soon(lambda: answer_start(server, after=stream))
        async with backend.open_process(["x"]) as proc:
            assert await proc.wait() == 0
            start = trio.current_time()
        assert trio.current_time() - start == pytest.approx(CLOSE_TIMEOUT, abs=0.5)
        assert server.methods() == ["process/start"]  # exited: nothing to terminate
        events = await collect(proc)
        assert events[:2] == stream
        assert isinstance(events[2], tx.Failed)


async def cancel_around_the_backend_block(
    client_end: MemoryTransport, server: FakeServer, nursery: trio.Nursery, *, answer: bool
) -> tuple[trio.abc.ReceiveChannel[tx.Event], float]:
    """Open a backend over ``client_end`` and a process on ``server``, cancel the scope around both, and return
    the process's events and how long leaving took. ``answer``: the server answers the
    requests that follow the start (the terminate of the cancelled block)."""
    with trio.fail_after(TIMEOUT), trio.CancelScope() as scope:
        async with open_remote_backend(client_end) as backend:
            await server.handshake_done.wait()
            nursery.start_soon(answer_start, server)
            async with backend.open_process(["x"], process_id="p") as proc:
                events = proc.events
                if answer:
                    nursery.start_soon(server.serve_generic)
                scope.cancel()
                cancelled_at = trio.current_time()
                await trio.sleep_forever()
    assert scope.cancelled_caught
    return events, trio.current_time() - cancelled_at


async def test_a_cancelled_backend_block_still_shuts_its_processes_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The scope around the backend block is cancelled: the backend's tasks outlive the
    cancellation until the process block inside has shut down, so its terminate request
    goes out, its answer and the exit come in, and leaving takes no time."""
    client_end, server_end = memory_transport_pair()
    server = FakeServer(server_end)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handshake)
        events, elapsed = await cancel_around_the_backend_block(
            client_end, server, nursery, answer=True
        )
        assert elapsed < 0.1
        assert server.methods() == ["process/start", "process/terminate"]
        assert [await events.receive(), await events.receive()] == [
            tx.Exited(seq=1, exit_code=137),
            tx.Closed(seq=2),
        ]
        nursery.cancel_scope.cancel()


async def test_a_cancelled_backend_block_is_left_in_bounded_time_if_the_server_is_silent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The terminate request of the cancelled block is sent, but never answered: the
    shutdown gives up after SHUTDOWN_TIMEOUT, then the backend's tasks end."""
    client_end, server_end = memory_transport_pair()
    server = FakeServer(server_end)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handshake)
        events, elapsed = await cancel_around_the_backend_block(
            client_end, server, nursery, answer=False
        )
        assert elapsed == pytest.approx(SHUTDOWN_TIMEOUT, abs=0.5)
        with trio.fail_after(TIMEOUT):
            assert (await server.request())["method"] == "process/terminate"
        failed = await events.receive()
        assert isinstance(failed, tx.Failed)
        assert "did not report the end" in failed.message
        nursery.cancel_scope.cancel()


async def test_cancelled_while_starting_terminates_what_started() -> None:
    async with open_fake() as (backend, server, nursery):

        async def slow_server() -> None:
            request = await server.request("process/start")
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            await server.respond(request, generic_result(request))
            terminate = await server.request("process/terminate")
            await server.respond(terminate, {"running": True})
            await send_events(server, "p", simple_stream(exit_code=137))

        nursery.start_soon(slow_server)
        with trio.fail_after(TIMEOUT), trio.CancelScope() as scope:
            async with backend.open_process(["x"], process_id="p"):
                raise AssertionError("must not be entered")
        assert scope.cancelled_caught
        assert server.methods() == ["process/start", "process/terminate"]
        assert backend.statistics().open_processes == 0
        assert backend.statistics().routed_processes == 0


async def test_cancelled_terminate_kills_at_once() -> None:
    async with open_fake(["gracefulTerminate"]) as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"], process_id="p") as proc:

            async def serve() -> None:
                graceful = await server.request("process/terminate")
                await server.respond(graceful, {"running": True})
                scope.cancel()
                immediate = await server.request("process/terminate")
                await server.respond(immediate, {"running": True})
                await send_events(server, "p", simple_stream(exit_code=137))

            nursery.start_soon(serve)
            with trio.fail_after(TIMEOUT), trio.CancelScope() as scope:
                await proc.terminate(grace=60)
            assert scope.cancelled_caught
            with trio.fail_after(TIMEOUT):
                assert await proc.wait() == 137
        terminates = [m["params"] for m in server.received if m["method"] == "process/terminate"]
        assert terminates == [{"processId": "p", "graceMs": 60000}, {"processId": "p"}]


# -- the request layer ----------------------------------------------------------------------


async def test_in_flight_requests_are_capped() -> None:
    total = MAX_IN_FLIGHT_REQUESTS + 40
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"]) as proc:
            await trio.testing.wait_all_tasks_blocked()
            received: list[JsonDict] = []

            async def take() -> None:
                for _ in range(total):
                    received.append(await server.request("process/signal"))

            nursery.start_soon(take)
            done = 0

            async def call() -> None:
                nonlocal done
                await proc.signal(signal.SIGINT)
                done += 1

            async with trio.open_nursery() as calls:
                for _ in range(total):
                    calls.start_soon(call)
                await trio.testing.wait_all_tasks_blocked()
                assert len(received) == MAX_IN_FLIGHT_REQUESTS
                assert backend.statistics().requests_in_flight == MAX_IN_FLIGHT_REQUESTS
                answered = 0
                while answered < total:
                    await server.respond(received[answered], {})
                    answered += 1
                    await trio.testing.wait_all_tasks_blocked()
                    assert len(received) - answered <= MAX_IN_FLIGHT_REQUESTS
                    assert len(received) == min(total, answered + MAX_IN_FLIGHT_REQUESTS)
            assert done == total
            assert backend.statistics().requests_in_flight == 0
            nursery.start_soon(server.serve_generic)


async def test_a_cancelled_call_is_abandoned_cleanly() -> None:
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"]) as proc:
            with trio.CancelScope() as scope:
                nursery.start_soon(lambda: _cancel_when_sent(server, scope))
                await proc.signal(signal.SIGINT)
            assert scope.cancelled_caught
            # The slot is held until the late response arrives, which is then dropped.
            assert backend.statistics().requests_in_flight == 1
            await server.respond(server.received[-1], {})
            await trio.testing.wait_all_tasks_blocked()
            assert backend.statistics().requests_in_flight == 0
            assert backend.failure is None
            nursery.start_soon(server.serve_generic)
            await proc.signal(signal.SIGINT)  # the connection still works
        assert backend.failure is None


async def _cancel_when_sent(server: FakeServer, scope: trio.CancelScope) -> None:
    await server.request("process/signal")
    scope.cancel()


async def test_server_requests_get_method_not_found() -> None:
    async with open_fake() as (backend, server, _):
        await server.send({"id": "srv-1", "method": "network/policyRequest", "params": {}})
        with trio.fail_after(TIMEOUT):
            reply = await server.receive()
        assert reply["id"] == "srv-1"
        assert reply["error"]["code"] == -32601
        assert backend.failure is None


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ("this is not json", "malformed message"),
        ('{"id": 999, "result": {}}', "unknown request id 999"),
        ('{"id": -1, "error": {"code": -32600, "message": "bad frame"}}', "bad frame"),
    ],
)
async def test_protocol_errors_break_the_connection(frame: str, problem: str) -> None:
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"]) as proc:
            events = proc.events
            async with trio.open_nursery() as inner:

                async def pending_call() -> None:
                    with pytest.raises(tx.ConnectionLost, match=problem):
                        await proc.signal(signal.SIGINT)

                inner.start_soon(pending_call)
                await server.request("process/signal")
                await server.send(frame)
            with trio.fail_after(1):
                failed = await events.receive()
            assert isinstance(failed, tx.Failed)
            assert failed.message.startswith("exec-server transport disconnected: protocol error")
            with pytest.raises(tx.ConnectionLost):
                await proc.signal(signal.SIGINT)


async def test_initialize_errors() -> None:
    client_end, server_end = memory_transport_pair()
    server = FakeServer(server_end)

    async def refuse() -> None:
        request = await server.request("initialize")
        await server.error(request, -32600, "unknown session id x")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refuse)
        with pytest.raises(tx.RemoteError, match="unknown session id"):
            async with open_remote_backend(client_end):
                raise AssertionError("must not be entered")


async def test_initialize_timeout(autojump_clock: trio.testing.MockClock) -> None:
    client_end, _server_end = memory_transport_pair()
    start = trio.current_time()
    with pytest.raises(tx.ConnectionLost, match="initialize"):
        async with open_remote_backend(client_end):
            raise AssertionError("must not be entered")
    assert trio.current_time() - start == pytest.approx(INITIALIZE_TIMEOUT)


async def test_body_exception_propagates_as_itself() -> None:
    client_end, server_end = memory_transport_pair()
    server = FakeServer(server_end)
    backends: list[RemoteBackend] = []

    async def body() -> None:
        async with open_remote_backend(client_end) as backend:
            backends.append(backend)
            with trio.fail_after(TIMEOUT):
                await server.handshake_done.wait()
            raise KeyError("boom")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handshake)
        with pytest.raises(KeyError):
            await body()
    (backend,) = backends
    assert backend.failure is not None
    assert "closed the connection" in backend.failure
    with pytest.raises(tx.ConnectionLost):
        async with backend.open_process(["x"]):
            raise AssertionError("must not start")


# -- backpressure ---------------------------------------------------------------------------


async def _flood(
    server: FakeServer, process_id: str, chunk: bytes, count: int, sent: list[int]
) -> None:
    for seq in range(1, count + 1):
        await server.send(notification(process_id, tx.Output(seq=seq, stream=STDOUT, data=chunk)))
        sent[0] += 1
    await server.finish(process_id, exit_code=0)


async def test_a_slow_subscriber_holds_the_server_back_without_loss() -> None:
    chunk, count, retain = b"x" * 50_000, 200, 100_000  # 10 MB in all
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"], process_id="p", retain_bytes=retain) as proc:
            events = proc.events  # subscribed: it holds the log back
            sent = [0]
            nursery.start_soon(_flood, server, "p", chunk, count, sent)
            await trio.testing.wait_all_tasks_blocked()
            # The server is blocked: the log's bound, the read-ahead and the transport's
            # buffer are full, and nothing was dropped.
            assert sent[0] < count
            held = retain + READ_AHEAD_BYTES + (MEMORY_TRANSPORT_BUFFER + 2) * len(chunk)
            assert sent[0] * len(chunk) <= held
            stats = proc.statistics()
            assert stats.retained_bytes <= retain + len(chunk)
            assert stats.first_retained_seq == 1
            with trio.fail_after(TIMEOUT):
                received = [event async for event in events]
    check_event_stream(received, expected_output={STDOUT: chunk * count})


async def test_output_without_subscribers_never_holds_back() -> None:
    chunk, count, retain = b"y" * 50_000, 200, 100_000
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"], process_id="p", retain_bytes=retain) as proc:
            sent = [0]
            nursery.start_soon(_flood, server, "p", chunk, count, sent)
            with trio.fail_after(TIMEOUT):
                await proc.wait_closed()
            result = await proc.read()
            assert sent[0] == count
            assert len(result.chunks) > 0
            assert result.first_retained_seq is not None
            assert result.first_retained_seq > 1  # older output was evicted, visibly


async def test_leaving_the_block_releases_a_stalled_subscription() -> None:
    chunk, count = b"z" * 50_000, 200
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        with trio.fail_after(TIMEOUT):
            async with backend.open_process(["x"], process_id="p", retain_bytes=100_000) as proc:
                events = proc.events
                sent = [0]
                nursery.start_soon(_flood, server, "p", chunk, count, sent)
                await trio.testing.wait_all_tasks_blocked()
                assert sent[0] < count
                nursery.start_soon(server.serve_generic)
            # Left while the child "ran": terminate, then the rest arrives without waiting.
            assert server.methods()[:2] == ["process/start", "process/terminate"]
            tail = [event async for event in events]
        assert isinstance(tail[-1], tx.Closed)
        assert backend.failure is None
        assert backend.statistics().routed_processes == 0


async def test_what_arrived_before_a_disconnect_is_kept_in_order() -> None:
    chunk, count = b"w" * 50_000, 20
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"], process_id="p", retain_bytes=100_000) as proc:
            events = proc.events
            await _flood(server, "p", chunk, count, [0])  # fits in the read-ahead
            await server.aclose()
            with trio.fail_after(TIMEOUT):
                received = [event async for event in events]
    # The whole stream had arrived: it ends with Closed, nothing lost.
    check_event_stream(received, expected_output={STDOUT: chunk * count})
    assert isinstance(received[-1], tx.Closed)
