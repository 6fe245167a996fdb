"""The exact exception of each error path of the public API.

Every case asserts ``type(exc) is`` the documented exception: an error comes as itself,
never wrapped in an exception group (trio's nurseries wrap even a single one), and
never as an undocumented type. Cases that take ``backend`` run on every backend kind
(local, remote, remote-stdio, remote-ssh); the reference server's cases are in
tests/remote/test_reference_client.py.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import trio_exec as tx
from trio_exec._transport import memory_transport_pair
from trio_exec.testing.pytest_plugin import ExecServerInfo, open_backend

from ..conformance.helpers import TIMEOUT
from ..remote.fake_server import FakeServer, answer_start, open_fake
from ..transports.helpers import STDIO_SERVER


class BodyError(Exception):
    """Raised by the body of a block, to see that it comes out as itself."""


async def error_of(call: Callable[[], Awaitable[object]]) -> BaseException:
    """The exception ``call()`` raises (an exception group is one too)."""
    with trio.fail_after(TIMEOUT):
        try:
            await call()
        except Exception as exc:
            return exc
    raise AssertionError("no exception was raised")


def check(exc: BaseException, expected: type[BaseException]) -> None:
    assert type(exc) is expected, f"expected {expected.__name__} as itself, got {exc!r}"


async def entering(manager: AbstractAsyncContextManager[object]) -> None:
    """Enter ``manager``, which must fail."""
    async with manager:
        raise AssertionError("the block must not be entered")


async def body_error_of(manager: AbstractAsyncContextManager[object]) -> None:
    """Enter ``manager`` and raise :class:`BodyError` in its block; it must come out as
    that very exception."""
    raised = BodyError("from the block")
    exc = await error_of(partial(_raise_in, manager, raised))
    assert exc is raised, f"the block's exception came out as {exc!r}"


async def _raise_in(manager: AbstractAsyncContextManager[object], exc: BaseException) -> None:
    async with manager:
        raise exc


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# -- run_process ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"argv": "echo hi"}, TypeError),
        ({"argv": []}, ValueError),
        ({"argv": ["echo", 3]}, TypeError),
        ({"argv": ["a\0b"]}, ValueError),
        ({"argv": ["true"], "input": "text"}, TypeError),
        ({"argv": ["true"], "input": 3}, TypeError),
        ({"argv": ["true"], "grace": -1.0}, ValueError),
        ({"argv": ["true"], "env": {"A": 1}}, TypeError),
        ({"argv": ["true"], "env": {"A=B": "x"}}, ValueError),
        ({"argv": ["/nonexistent/program"]}, tx.SpawnFileNotFoundError),
        ({"argv": ["true"], "cwd": "/nonexistent/dir"}, tx.SpawnFileNotFoundError),
        ({"argv": ["sh", "-c", "exit 3"]}, tx.CalledProcessError),
    ],
)
async def test_run_process(
    backend: tx.ExecBackend, kwargs: dict[str, Any], expected: type[Exception]
) -> None:
    check(await error_of(partial(tx.run_process, backend=backend, **kwargs)), expected)


async def test_run_process_validates_input_before_spawning(
    backend: tx.ExecBackend, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    argv = ["sh", "-c", f"touch {marker}; cat"]
    exc = await error_of(partial(tx.run_process, argv, backend=backend, input="text"))  # type: ignore[arg-type]
    check(exc, TypeError)
    assert not marker.exists(), "the child was started before the input was checked"


async def test_run_process_needs_a_backend() -> None:
    exc = await error_of(partial(tx.run_process, ["true"], backend="local"))  # type: ignore[arg-type]
    check(exc, TypeError)


async def test_run_process_over_a_lost_connection() -> None:
    async with open_fake() as (backend, server, nursery):

        async def start_then_die() -> None:
            await answer_start(server)
            await server.aclose()

        nursery.start_soon(start_then_die)
        check(await error_of(partial(tx.run_process, ["x"], backend=backend)), tx.ConnectionLost)


async def test_run_process_feeding_a_lost_connection() -> None:
    # The failure reaches run_process's feeding task and its event loop at once.
    async with open_fake(["closeStdin"]) as (backend, server, nursery):

        async def die_on_write() -> None:
            await answer_start(server)
            await server.request("process/write")
            await server.aclose()

        nursery.start_soon(die_on_write)
        call = partial(tx.run_process, ["cat"], backend=backend, input=b"data")
        check(await error_of(call), tx.ConnectionLost)


# -- open_process and the session's operations ---------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"argv": []}, ValueError),
        ({"argv": "true"}, TypeError),
        ({"argv": ["true", object()]}, TypeError),
        ({"argv": ["true"], "grace": float("nan")}, ValueError),
        ({"argv": ["true"], "arg0": "a\0b"}, ValueError),
        ({"argv": ["true"], "env": {"": "x"}}, ValueError),
        ({"argv": ["/nonexistent/program"]}, tx.SpawnFileNotFoundError),
        ({"argv": ["/"]}, tx.SpawnPermissionError),
        ({"argv": ["true"], "cwd": "/etc/passwd"}, tx.SpawnNotADirectoryError),
    ],
)
async def test_open_process(
    backend: tx.ExecBackend, kwargs: dict[str, Any], expected: type[Exception]
) -> None:
    options = dict(kwargs)
    argv = options.pop("argv")
    check(await error_of(lambda: entering(backend.open_process(argv, **options))), expected)


async def test_open_process_of_this_machine() -> None:
    check(await error_of(lambda: entering(tx.open_process([]))), ValueError)
    exc = await error_of(lambda: entering(tx.open_process(["/nonexistent/program"])))
    check(exc, tx.SpawnFileNotFoundError)
    await body_error_of(tx.open_process(["sleep", "30"]))


async def test_open_process_with_an_open_process_id(backend: tx.ExecBackend) -> None:
    async with backend.open_process(["sleep", "30"], process_id="twice"):
        exc = await error_of(lambda: entering(backend.open_process(["true"], process_id="twice")))
        check(exc, ValueError)


async def test_open_process_block_error_comes_as_itself(backend: tx.ExecBackend) -> None:
    await body_error_of(backend.open_process(["sleep", "30"]))
    await body_error_of(backend.open_process(["sh", "-c", "echo out; echo err >&2"]))
    await body_error_of(backend.open_process(["cat"], tty=True))


async def test_session_operations(backend: tx.ExecBackend) -> None:
    async with backend.open_process(["cat"], pipe_stdin=True) as proc:
        check(await error_of(partial(proc.write, "text")), TypeError)  # type: ignore[arg-type]
        check(await error_of(partial(proc.signal, 12345)), ValueError)
        check(await error_of(partial(proc.resize, 0, 80)), ValueError)
        check(await error_of(partial(proc.resize, 24, 80)), tx.UnsupportedOperation)
        check(await error_of(partial(proc.terminate, -1.0)), ValueError)
        check(await error_of(partial(proc.read, wait=-1.0)), ValueError)
        assert await proc.close_stdin() is tx.WriteStatus.ACCEPTED
        with trio.fail_after(TIMEOUT):
            assert await proc.wait() == 0
    async with backend.open_process(["cat"], tty=True) as proc:
        check(await error_of(partial(proc.resize, 24, 70000)), ValueError)


async def test_session_operations_over_a_lost_connection() -> None:
    async with open_fake() as (backend, server, nursery):
        nursery.start_soon(answer_start, server)
        async with backend.open_process(["x"]) as proc:
            await server.aclose()
            check(await error_of(proc.wait), tx.ConnectionLost)
            check(await error_of(proc.wait_closed), tx.ConnectionLost)
            check(await error_of(partial(proc.write, b"x")), tx.ConnectionLost)
            check(await error_of(partial(proc.signal, signal.SIGINT)), tx.ConnectionLost)
            check(await error_of(proc.terminate), tx.ConnectionLost)
            exc = await error_of(lambda: entering(backend.open_process(["y"])))
            check(exc, tx.ConnectionLost)


async def test_operations_the_server_lacks() -> None:
    async with open_fake() as (backend, server, nursery):  # no extension at all
        nursery.start_soon(server.serve_generic)
        async with backend.open_process(["x"], tty=True) as proc:
            check(await error_of(proc.close_stdin), tx.UnsupportedOperation)
            check(await error_of(partial(proc.resize, 30, 100)), tx.UnsupportedOperation)
            check(await error_of(partial(proc.signal, signal.SIGUSR1)), tx.UnsupportedOperation)


async def test_spawn_error_answer_without_os_error_text() -> None:
    async with open_fake() as (backend, server, nursery):

        async def refuse() -> None:
            request = await server.request("process/start")
            await server.error(request, -32603, "spawn failed somehow")

        nursery.start_soon(refuse)
        exc = await error_of(lambda: entering(backend.open_process(["x"])))
        check(exc, tx.SpawnError)
        assert isinstance(exc, tx.SpawnError)
        assert exc.errno is None
        assert str(exc) == "spawn failed somehow"


async def test_other_start_errors() -> None:
    async with open_fake() as (backend, server, nursery):

        async def refuse() -> None:
            request = await server.request("process/start")
            await server.error(request, -32602, "argv must not be empty")
            request = await server.request("process/start")
            await server.error(request, -32600, "process p already exists")

        nursery.start_soon(refuse)
        check(await error_of(lambda: entering(backend.open_process(["x"]))), ValueError)
        exc = await error_of(lambda: entering(backend.open_process(["x"], process_id="p")))
        check(exc, tx.InvalidRequestError)


def test_completed_process_and_called_process_error() -> None:
    done = tx.CompletedProcess(argv=("true",), exit_code=0, stdout=b"", stderr=b"")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        done.exit_code = 1  # type: ignore[misc]
    error = tx.CalledProcessError(["false"], 1, b"out", b"err")
    assert isinstance(error, tx.TrioExecError)
    assert (error.argv, error.exit_code, error.stdout, error.stderr) == (
        ["false"],
        1,
        b"out",
        b"err",
    )


# -- connections ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_connect(exec_server: ExecServerInfo, nursery: trio.Nursery) -> None:
    check(await error_of(lambda: entering(tx.connect("http://127.0.0.1:1"))), ValueError)
    exc = await error_of(lambda: entering(tx.connect(exec_server.url, resume_deadline=-1)))
    check(exc, ValueError)
    exc = await error_of(lambda: entering(tx.connect(f"ws://127.0.0.1:{free_port()}")))
    check(exc, tx.ConnectionLost)
    guarded: str = await nursery.start(partial(tx.serve_websocket, "127.0.0.1", 0, token="t"))
    check(await error_of(lambda: entering(tx.connect(guarded))), tx.ConnectionLost)
    await body_error_of(tx.connect(exec_server.url))
    await body_error_of(tx.connect(guarded, token="t"))


async def test_open_remote_backend() -> None:
    client_end, server_end = memory_transport_pair()
    await server_end.aclose()
    check(await error_of(lambda: entering(tx.open_remote_backend(client_end))), tx.ConnectionLost)

    client_end, server_end = memory_transport_pair()
    server = FakeServer(server_end)

    async def refuse_initialize() -> None:
        request = await server.request("initialize")
        await server.error(request, -32600, "unknown session id x")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refuse_initialize)
        exc = await error_of(lambda: entering(tx.open_remote_backend(client_end)))
    check(exc, tx.InvalidRequestError)

    client_end, server_end = memory_transport_pair()
    server = FakeServer(server_end)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handshake)
        await body_error_of(tx.open_remote_backend(client_end))
        nursery.cancel_scope.cancel()


async def test_connect_command() -> None:
    check(await error_of(lambda: entering(tx.connect_command([]))), ValueError)
    for argv in (["/nonexistent/command"], ["true"], ["echo", "not the protocol"]):
        exc = await error_of(partial(entering, tx.connect_command(argv)))
        check(exc, tx.ConnectionLost)
    check(await error_of(partial(entering, tx.connect_command("ssh host"))), TypeError)
    await body_error_of(tx.connect_command(STDIO_SERVER))


async def test_serve_websocket(nursery: trio.Nursery) -> None:
    call = partial(tx.serve_websocket, "127.0.0.1", 0, token="a", token_sha256="0" * 64)
    check(await error_of(call), ValueError)
    check(await error_of(partial(tx.serve_websocket, "0.0.0.0", 0)), ValueError)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        check(
            await error_of(partial(nursery.start, tx.serve_websocket, "127.0.0.1", port)), OSError
        )


async def test_the_testing_backends() -> None:
    check(await error_of(lambda: entering(open_backend("nowhere"))), ValueError)
    await body_error_of(open_backend("local"))
    await body_error_of(open_backend("remote"))


# -- streams --------------------------------------------------------------------------------


async def test_open_stream(backend: tx.ExecBackend) -> None:
    cases: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"stderr": 3}, TypeError),
        ({"grace": -1.0}, ValueError),
        ({"eof_timeout": -1.0}, ValueError),
    ]
    for kwargs, expected in cases:
        call = partial(tx.open_stream, backend, ["cat"], **kwargs)
        check(await error_of(lambda call=call: entering(call())), expected)  # type: ignore[misc]
    check(await error_of(lambda: entering(tx.open_stream(backend, []))), ValueError)
    exc = await error_of(lambda: entering(tx.open_stream(backend, ["/nonexistent/program"])))
    check(exc, tx.SpawnFileNotFoundError)
    await body_error_of(tx.open_stream(backend, ["cat"]))
    await body_error_of(backend.open_stream(["cat"], stderr=logging.getLogger("test")))


async def test_stream_operations(backend: tx.ExecBackend) -> None:
    async with tx.open_stream(backend, ["cat"]) as stream:
        check(await error_of(partial(stream.receive_some, 0)), ValueError)
        check(await error_of(partial(stream.receive_some, "x")), TypeError)  # type: ignore[arg-type]
        await stream.send_eof()
        check(await error_of(partial(stream.send_all, b"x")), trio.ClosedResourceError)
        await stream.aclose()
        check(await error_of(stream.receive_some), trio.ClosedResourceError)


async def test_a_failing_stderr_callback_comes_as_itself(backend: tx.ExecBackend) -> None:
    def broken(data: bytes) -> None:
        raise KeyError("callback")

    async def run() -> None:
        argv = ["sh", "-c", "echo x >&2; exec cat"]
        async with tx.open_stream(backend, argv, stderr=broken) as stream:
            await stream.receive_some()

    check(await error_of(run), KeyError)


async def test_line_reader() -> None:
    with pytest.raises(ValueError, match="max_line_bytes") as info:
        tx.LineReader(trio.testing.MemoryReceiveStream(), max_line_bytes=0)
    check(info.value, ValueError)
    async with tx.open_stream(tx.LocalBackend(), ["printf", "%s\\nok\\n", "x" * 100]) as stream:
        reader = tx.LineReader(stream, max_line_bytes=10)
        check(await error_of(reader.receive), tx.LineTooLongError)
        assert await reader.receive() == b"ok"
        check(await error_of(reader.receive), trio.EndOfChannel)


# -- supervisor -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: tx.ChildSpec(name="", argv=["true"]), ValueError),
        (lambda: tx.ChildSpec(name="a", argv=[]), ValueError),
        (lambda: tx.ChildSpec(name="a", argv="true"), TypeError),
        (lambda: tx.ChildSpec(name="a", argv=["true"], restart="sometimes"), ValueError),
        (lambda: tx.ChildSpec(name="a", argv=["true"], tty=1), TypeError),  # type: ignore[arg-type]
        (lambda: tx.ChildSpec(name="a", argv=["true"], grace=-1.0), ValueError),
        (lambda: tx.ReadyOnPort(port=0), ValueError),
        (lambda: tx.ReadyOnPort(port="80"), TypeError),  # type: ignore[arg-type]
        (lambda: tx.ReadyOnOutput(pattern=b"ready"), TypeError),  # type: ignore[arg-type]
        (lambda: tx.ReadyOnOutput(pattern="("), ValueError),
        (lambda: tx.ReadyOnCheck(check=3), TypeError),  # type: ignore[arg-type]
    ],
)
def test_child_specs(make: Callable[[], object], expected: type[Exception]) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the exact type is checked below
        make()
    check(info.value, expected)


async def test_supervisor() -> None:
    idle = tx.Supervisor()
    spec = tx.ChildSpec(name="sleeper", argv=["sleep", "30"])
    check(await error_of(partial(idle.start, spec)), RuntimeError)
    async with tx.open_supervisor() as supervisor:
        check(await error_of(partial(supervisor.start, "spec")), TypeError)  # type: ignore[arg-type]
        missing = tx.ChildSpec(name="missing", argv=["/nonexistent/program"], restart="never")
        check(await error_of(partial(supervisor.start, missing)), tx.ChildError)
        handle = await supervisor.start(spec)
        check(await error_of(partial(supervisor.start, spec)), ValueError)
        check(await error_of(partial(supervisor.stop, "nobody")), KeyError)
        check(await error_of(handle.wait_state), ValueError)
        check(await error_of(partial(handle.stop, -1.0)), ValueError)
        check(await error_of(partial(supervisor.run)), RuntimeError)
    check(await error_of(partial(supervisor.start, spec)), trio.ClosedResourceError)
    await body_error_of(tx.open_supervisor())
