"""Our client against the real reference server, ``codex exec-server`` 0.169 (and ours).

Every test gets a fresh server. Tests taking ``server_url`` run against the reference and
against trio_exec's own server; where the two differ (documented in
:mod:`trio_exec._remote` and :mod:`trio_exec._server`) the test asks the backend which
extensions it has. Tests taking ``reference_url`` pin down the reference's behaviour as
seen through our client: close_stdin is unsupported, terminate kills at once, and a
terminal child killed by a signal reports exit code 1.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_exec as tx
from trio_exec._protocol import (
    Extension,
    ProcessSignal,
    ReadParams,
    SignalParams,
    SignalResult,
    TerminateParams,
    TerminateResult,
    WriteParams,
    WriteResult,
    path_to_file_uri,
)
from trio_exec._remote import RemoteBackend, connect, open_remote_backend
from trio_exec._transport import MessageTransport, open_websocket_transport
from trio_exec.testing import check_event_stream
from trio_exec.testing.reference import open_reference_server, open_server_process

from .conftest import SERVER_KINDS
from .helpers import process_alive

pytestmark = pytest.mark.reference

TIMEOUT = 30.0
STDOUT, STDERR, PTY = tx.OutputStream.STDOUT, tx.OutputStream.STDERR, tx.OutputStream.PTY


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def collect(proc: tx.ExecProcess) -> list[tx.Event]:
    with trio.fail_after(TIMEOUT):
        return [event async for event in proc.events]


@asynccontextmanager
async def client(url: str) -> AsyncIterator[RemoteBackend]:
    with trio.fail_after(TIMEOUT):
        async with connect(url) as backend:
            yield backend


# -- events ---------------------------------------------------------------------------------


async def test_handshake(server_url: str) -> None:
    async with client(server_url) as backend:
        assert backend.session_id
        assert backend.failure is None
        if backend.extensions:  # ours advertises every extension; the reference none
            assert {e.value for e in Extension} <= backend.extensions


async def test_stdout_stderr_exit_code(server_url: str) -> None:
    async with (
        client(server_url) as backend,
        backend.open_process(["sh", "-c", "echo hi; echo err >&2; exit 3"]) as proc,
    ):
        events = await collect(proc)
        assert await proc.wait() == 3
    summary = check_event_stream(events, expected_output={STDOUT: b"hi\n", STDERR: b"err\n"})
    assert summary.exit_code == 3
    assert summary.closed == events[-1]
    assert summary.closed.seq == 4


@pytest.fixture(params=SERVER_KINDS)
async def server_elsewhere(
    request: pytest.FixtureRequest, reference_binary: Path, tmp_path: Path
) -> AsyncIterator[tuple[str, Path]]:
    """Each server in turn, run in a directory of its own with a marker variable; yields
    its URL and its directory."""
    server_dir = tmp_path / "server side"
    server_dir.mkdir()
    env = dict(os.environ, TRIO_EXEC_MARKER="from-the-server", TRIO_EXEC_TEST_TOKEN="kept")
    if request.param == "reference":
        server = open_reference_server(reference_binary, cwd=server_dir, env=env)
    else:
        argv = [sys.executable, "-m", "trio_exec", "serve", "--listen", "ws://127.0.0.1:0"]
        server = open_server_process(argv, env=env, cwd=server_dir)
    async with server as url:
        yield url, server_dir


async def test_defaults_are_the_servers_cwd_and_environment(
    server_elsewhere: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, server_dir = server_elsewhere
    monkeypatch.setenv("TRIO_EXEC_CLIENT_ONLY", "from-the-client")
    monkeypatch.chdir(tmp_path)
    where = await trio.Path(server_dir).resolve()
    script = (
        'printf "%s|%s|%s|%s" "$(pwd -P)" "$TRIO_EXEC_MARKER" "${TRIO_EXEC_TEST_TOKEN-dropped}"'
        ' "${TRIO_EXEC_CLIENT_ONLY-unset}"'
    )
    async with client(url) as backend:
        assert backend.environment_info is not None
        assert backend.environment_info.cwd == path_to_file_uri(server_dir)
        async with backend.open_process(["sh", "-c", script]) as proc:
            events = await collect(proc)
        out = check_event_stream(events).output[STDOUT].decode()
        assert out == f"{where}|from-the-server|kept|unset"
        async with backend.open_process(
            ["sh", "-c", 'printf "%s|%s" "$TRIO_EXEC_MARKER" "$ADDED"'], extra_env={"ADDED": "1"}
        ) as proc:
            events = await collect(proc)
        assert check_event_stream(events).output[STDOUT] == b"from-the-server|1"
        env = {"ONLY": "value", "PATH": os.environ["PATH"]}
        code = "import os, json; print(json.dumps(sorted(os.environ)))"
        async with backend.open_process(python(code), env=env, cwd="/") as proc:
            events = await collect(proc)
        names = json.loads(check_event_stream(events).output[STDOUT])
        assert set(names) - {"LC_CTYPE"} == {"ONLY", "PATH"}
        async with backend.open_process(["sh", "-c", "echo $0"], arg0="custom-zero") as proc:
            events = await collect(proc)
        assert check_event_stream(events).output[STDOUT] == b"custom-zero\n"


async def test_pipe_stdin_write_and_interrupt(server_url: str) -> None:
    async with (
        client(server_url) as backend,
        backend.open_process(["cat"], pipe_stdin=True) as proc,
    ):
        events = proc.events
        with trio.fail_after(TIMEOUT):
            assert await proc.write(b"hello\n") is tx.WriteStatus.ACCEPTED
            first = await events.receive()
            assert await proc.write(b"second\n") is tx.WriteStatus.ACCEPTED
            second = await events.receive()
            await proc.signal(signal.SIGINT)
            rest = [event async for event in events]
            assert await proc.wait() == 130
    summary = check_event_stream(
        [first, second, *rest], expected_output={STDOUT: b"hello\nsecond\n"}
    )
    assert summary.exit_code == 130


async def test_write_without_pipe_stdin_is_stdin_closed(server_url: str) -> None:
    async with client(server_url) as backend:
        async with backend.open_process(["cat"]) as proc:
            assert await proc.write(b"x") is tx.WriteStatus.STDIN_CLOSED
            events = await collect(proc)  # cat reads /dev/null
        assert check_event_stream(events).exit_code == 0
        assert await proc.write(b"x") is tx.WriteStatus.UNKNOWN_PROCESS  # the block was left


async def test_large_write_is_echoed_whole(server_url: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    async with (
        client(server_url) as backend,
        backend.open_process(["cat"], pipe_stdin=True) as proc,
    ):
        received = bytearray()
        events = proc.events

        async def consume() -> None:
            async for event in events:
                if isinstance(event, tx.Output):
                    received.extend(event.data)
                    if len(received) == len(data):
                        return

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                assert await proc.write(data) is tx.WriteStatus.ACCEPTED
    assert bytes(received) == data


async def test_tty(server_url: str) -> None:
    script = "test -t 0 && test -t 1 && test -t 2 && stty size; echo out; echo err >&2; exit 4"
    async with (
        client(server_url) as backend,
        backend.open_process(["sh", "-c", script], tty=True) as proc,
    ):
        assert proc.tty
        events = await collect(proc)
    summary = check_event_stream(events)
    assert set(summary.output) == {PTY}
    assert summary.output[PTY] == b"24 80\r\nout\r\nerr\r\n"
    assert summary.exit_code == 4


async def test_tty_write_and_ctrl_d(server_url: str) -> None:
    async with (
        client(server_url) as backend,
        backend.open_process(["sh", "-c", "stty -echo; echo ready; cat"], tty=True) as proc,
    ):
        events = proc.events
        with trio.fail_after(TIMEOUT):
            first = await events.receive()
            assert first == tx.Output(seq=1, stream=PTY, data=b"ready\r\n")
            assert await proc.write(b"typed\n") is tx.WriteStatus.ACCEPTED
            assert await proc.write(b"\x04") is tx.WriteStatus.ACCEPTED  # EOF at line start
            rest = [event async for event in events]
    summary = check_event_stream([first, *rest])
    assert summary.output[PTY] == b"ready\r\ntyped\r\n"
    assert summary.exit_code == 0


# -- reads ----------------------------------------------------------------------------------

_STEPPED = "import os\nfor i in range(4):\n    os.read(0, 1)\n    os.write(1, b'chunk%d' % i)"


async def test_read_with_after_seq_and_long_poll(server_url: str) -> None:
    async with (
        client(server_url) as backend,
        backend.open_process(python(_STEPPED), pipe_stdin=True) as proc,
    ):
        with trio.fail_after(TIMEOUT):
            empty = await proc.read(wait=0.05)
            assert empty.chunks == ()
            assert not empty.exited
            assert not empty.closed
            last = 0
            for index in range(4):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(proc.write, b".")
                    result = await proc.read(after_seq=last, wait=TIMEOUT)
                if not result.chunks and index == 3:
                    # The reference may sequence Exited before the last chunk: the long
                    # poll then returns at the exit, and the chunk follows it.
                    assert result.exited
                    await proc.wait_closed()
                    result = await proc.read(after_seq=last)
                assert [c.data for c in result.chunks] == [b"chunk%d" % index]
                last = result.chunks[-1].seq
            await proc.wait_closed()
        everything = await proc.read()
        assert b"".join(c.data for c in everything.chunks) == b"chunk0chunk1chunk2chunk3"
        assert everything.exited
        assert everything.closed
        assert everything.exit_code == 0
        # Past every chunk, Exited and Closed (seqs are contiguous; the reference may
        # sequence Exited before the last chunk, so count rather than add to the last seq).
        assert everything.next_seq == len(everything.chunks) + 3
        first = await proc.read(max_bytes=0)
        assert len(first.chunks) == 1
        assert first.next_seq == first.chunks[0].seq + 1
        rest = await proc.read(after_seq=first.chunks[0].seq)
        assert rest.chunks == everything.chunks[1:]
        assert (await proc.read(after_seq=everything.next_seq)).chunks == ()
        # The server's own answer agrees with the local log.
        served = await proc._server_read()
        assert served.chunks == everything.chunks
        assert served.exit_code == 0
        assert served.closed
        assert served.failure is None


# -- termination and signals ----------------------------------------------------------------


async def test_terminate(server_url: str) -> None:
    async with client(server_url) as backend:
        graceful = backend.supports(Extension.GRACEFUL_TERMINATE)
        async with backend.open_process(["sh", "-c", "echo ready; exec sleep 30"]) as proc:
            events = proc.events
            with trio.fail_after(TIMEOUT):
                await events.receive()
                assert await proc.terminate(grace=5) is True
                assert proc.exit_code == (143 if graceful else 137)  # the reference: SIGKILL
                rest = [event async for event in events]
            assert await proc.terminate() is False
        check_event_stream([tx.Output(seq=1, stream=STDOUT, data=b"ready\n"), *rest])


async def test_tty_killed_by_a_signal(server_url: str) -> None:
    async with client(server_url) as backend:
        async with backend.open_process(
            ["sh", "-c", "echo ready; exec sleep 30"], tty=True
        ) as proc:
            events = proc.events
            with trio.fail_after(TIMEOUT):
                await events.receive()
                assert await proc.terminate(grace=5) is True
        if backend.supports(Extension.GRACEFUL_TERMINATE):
            assert proc.exit_code == 143
        else:
            assert proc.exit_code == 1  # the reference reports 1 for any signal death on a tty


async def test_leaving_the_block_kills_the_group(server_url: str) -> None:
    async with client(server_url) as backend:
        with trio.fail_after(TIMEOUT):
            async with backend.open_process(["sh", "-c", "sleep 60 & echo $!; wait"]) as proc:
                first = await proc.events.receive()
                assert isinstance(first, tx.Output)
                grandchild = int(first.data)
            assert proc.exit_code is not None
            # The server kills the group; poll, as there is nothing to wait on.
            for _ in range(int(TIMEOUT * 100)):
                if not process_alive(grandchild):
                    break
                await trio.sleep(0.01)
            assert not process_alive(grandchild)


async def test_reference_lacks_the_extensions(reference_url: str) -> None:
    async with client(reference_url) as backend:
        assert backend.extensions == frozenset()
        async with backend.open_process(["cat"], pipe_stdin=True, tty=False) as proc:
            with pytest.raises(tx.UnsupportedOperation, match="closeStdin") as info:
                await proc.close_stdin()
            assert "codex exec-server 0.169 has none" in str(info.value)
            with pytest.raises(tx.UnsupportedOperation, match="signals"):
                await proc.signal(signal.SIGTERM)
            with pytest.raises(tx.UnsupportedOperation, match="tty=True"):
                await proc.resize(10, 10)
        async with backend.open_process(["cat"], tty=True) as proc:
            with pytest.raises(tx.UnsupportedOperation, match="`resize`"):
                await proc.resize(10, 10)


async def test_window_size_from_the_start(server_url: str) -> None:
    async with client(server_url) as backend:
        if not backend.supports(Extension.WINDOW_SIZE):  # the reference: 24x80, fixed
            assert not backend.supports(Extension.RESIZE)
            with pytest.raises(tx.UnsupportedOperation, match="`resize`"):
                backend.open_process(["stty", "size"], tty=True, window=(40, 120))
            return
        async with backend.open_process(["stty", "size"], tty=True, window=(40, 120)) as proc:
            events = await collect(proc)
        assert check_event_stream(events).output[PTY] == b"40 120\r\n"


async def test_close_stdin(server_url: str) -> None:
    async with client(server_url) as backend:
        async with backend.open_process(["cat"], pipe_stdin=True) as proc:
            await proc.write(b"data")
            if not backend.supports(Extension.CLOSE_STDIN):  # the reference
                with pytest.raises(tx.UnsupportedOperation, match="closeStdin"):
                    await proc.close_stdin()
                with trio.fail_after(TIMEOUT):
                    first = await proc.events.receive()
                await proc.signal(signal.SIGINT)
                events = [first, *await collect(proc)]
                assert (
                    check_event_stream(events, expected_output={STDOUT: b"data"}).exit_code == 130
                )
                return
            assert await proc.close_stdin() is tx.WriteStatus.ACCEPTED
            events = await collect(proc)
        assert check_event_stream(events, expected_output={STDOUT: b"data"}).exit_code == 0


async def test_unknown_process_statuses(server_url: str) -> None:
    async with client(server_url) as backend:
        rpc = backend._rpc
        with trio.fail_after(TIMEOUT):
            write = await rpc.call(
                WriteParams(process_id="nope", chunk=b"x", write_id="w1"), WriteResult
            )
            assert write.status is tx.WriteStatus.UNKNOWN_PROCESS
            terminate = await rpc.call(TerminateParams(process_id="nope"), TerminateResult)
            assert terminate.running is False
            await rpc.call(
                SignalParams(process_id="nope", signal=ProcessSignal.INTERRUPT), SignalResult
            )
            with pytest.raises(tx.RemoteError) as info:
                await rpc.call(ReadParams(process_id="nope"), tx.ReadResult)
            assert info.value.code == -32600
            assert "nope" in info.value.message
        assert backend.failure is None


# -- start errors ---------------------------------------------------------------------------


async def test_spawn_errors(server_url: str, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    afile = tmp_path / "file"
    afile.write_bytes(b"")
    async with client(server_url) as backend:
        cases = [
            (["/nonexistent/program"], {}, errno.ENOENT),
            (["true"], {"cwd": "/nonexistent/dir"}, errno.ENOENT),
            ([str(script)], {}, errno.EACCES),
        ]
        for argv, kwargs, code in cases:
            with pytest.raises(tx.SpawnError) as info:
                async with backend.open_process(argv, **kwargs):  # type: ignore[arg-type]
                    raise AssertionError("must not start")
            assert isinstance(info.value, OSError)
            assert info.value.errno == code
        # A failed start reserves nothing: the id can be used at once.
        with pytest.raises(tx.SpawnError):
            async with backend.open_process(["/nonexistent/program"], process_id="again"):
                raise AssertionError("must not start")
        async with backend.open_process(["true"], process_id="again") as proc:
            assert check_event_stream(await collect(proc)).exit_code == 0
        assert backend.statistics().open_processes == 0
        assert backend.statistics().routed_processes == 0


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("missing program", tx.SpawnFileNotFoundError),
        ("missing cwd", tx.SpawnFileNotFoundError),
        ("cwd is a file", tx.SpawnNotADirectoryError),
        ("not executable", tx.SpawnPermissionError),
        ("directory as program", tx.SpawnPermissionError),
    ],
)
async def test_spawn_errno_is_the_builtin_subclass(
    server_url: str, tmp_path: Path, case: str, error: type[tx.SpawnError]
) -> None:
    """The errno of the server's ``(os error N)`` picks the OSError subclass, so that
    ``except FileNotFoundError`` works remotely too. The culprit is named when the server
    says which (ours, in the error's data); the reference's message cannot tell a bad
    program from a bad working directory, and the error says so instead of guessing."""
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    afile = tmp_path / "file"
    afile.write_bytes(b"")
    program, cwd = {
        "missing program": ("/nonexistent/program", str(tmp_path)),
        "missing cwd": ("true", "/nonexistent/dir"),
        "cwd is a file": ("true", str(afile)),
        "not executable": (str(script), str(tmp_path)),
        "directory as program": (str(tmp_path), str(tmp_path)),
    }[case]
    culprit = cwd if case.endswith(("cwd", "a file")) else program
    async with client(server_url) as backend:
        with pytest.raises(OSError, match=r"^\[Errno ") as info:
            async with backend.open_process([program], cwd=cwd):
                raise AssertionError("must not start")
        exc = info.value
        assert type(exc) is error
        assert (
            exc.errno
            == {
                tx.SpawnFileNotFoundError: errno.ENOENT,
                tx.SpawnNotADirectoryError: errno.ENOTDIR,
                tx.SpawnPermissionError: errno.EACCES,
            }[error]
        )
        assert exc.strerror is not None
        assert "os error" not in exc.strerror
        if backend.extensions:  # ours names the culprit
            assert exc.filename == culprit
        else:  # the reference: no guess, both candidates in the message
            assert exc.filename is None
            assert repr(program) in str(exc)
            assert repr(cwd) in str(exc)
            assert "does not say which" in str(exc)


async def test_exec_format_error_names_the_program(server_url: str, tmp_path: Path) -> None:
    # ENOEXEC cannot come from the working directory: even the reference's bare message
    # tells which file is at fault.
    binary = tmp_path / "garbage"
    binary.write_bytes(b"\x7fELF-not-really\n")
    binary.chmod(0o755)
    async with client(server_url) as backend:
        with pytest.raises(tx.SpawnError) as info:
            async with backend.open_process([str(binary)]):
                raise AssertionError("must not start")
    assert type(info.value) is tx.SpawnError
    assert info.value.errno == errno.ENOEXEC
    assert info.value.filename == str(binary)


async def test_path_like_argv_is_sent_as_str(server_url: str, tmp_path: Path) -> None:
    code = "import sys; print(sys.argv[1])"
    async with client(server_url) as backend:
        with trio.fail_after(TIMEOUT):
            done = await tx.run_process(
                [Path(sys.executable), b"-c", code, tmp_path / "x"], backend=backend
            )
    assert done.stdout == f"{tmp_path / 'x'}\n".encode()
    assert done.argv == (sys.executable, "-c", code, str(tmp_path / "x"))


async def test_undecodable_argv_is_refused_before_sending(server_url: str) -> None:
    # The reference drops the whole connection over a lone surrogate in JSON text.
    async with client(server_url) as backend:
        for argv in ([b"printf", b"\xff"], ["printf", "\udcff"]):
            with pytest.raises(ValueError, match="UTF-8"):
                async with backend.open_process(argv):
                    raise AssertionError("must not start")
        async with backend.open_process(["printf", "%s", "é"]) as proc:
            events = await collect(proc)
        assert check_event_stream(events).output[STDOUT] == "é".encode()
        assert backend.failure is None


async def test_run_process_input_without_close_stdin_is_unsupported(reference_url: str) -> None:
    # The reference cannot close a pipe: run_process(input=...) says so, as itself.
    async with client(reference_url) as backend:
        with trio.fail_after(TIMEOUT), pytest.raises(tx.UnsupportedOperation) as info:
            await tx.run_process(["cat"], input=b"data", backend=backend)
    assert type(info.value) is tx.UnsupportedOperation


async def test_retained_process_id_is_a_remote_error(reference_url: str) -> None:
    async with client(reference_url) as backend:
        async with backend.open_process(["true"], process_id="p") as proc:
            await collect(proc)
        # The reference keeps a finished process's id for 80 s.
        with pytest.raises(tx.RemoteError, match="already exists") as info:
            async with backend.open_process(["true"], process_id="p"):
                raise AssertionError("must not start")
        assert info.value.code == -32600


# -- early notifications and pipelining -----------------------------------------------------


class RecordingTransport(MessageTransport):
    """Records the order of incoming messages: which process notifications came before
    their process's start response."""

    def __init__(self, inner: MessageTransport) -> None:
        self.inner = inner
        self.start_ids: dict[int, str] = {}
        self.answered: set[str] = set()
        self.early: set[str] = set()

    async def send(self, message: str) -> None:
        decoded = json.loads(message)
        if decoded.get("method") == "process/start":
            self.start_ids[decoded["id"]] = decoded["params"]["processId"]
        await self.inner.send(message)

    async def receive(self) -> str | bytes:
        message = await self.inner.receive()
        decoded = json.loads(message)
        if decoded.get("id") in self.start_ids:
            self.answered.add(self.start_ids[decoded["id"]])
        elif str(decoded.get("method", "")).startswith("process/"):
            process_id = decoded["params"]["processId"]
            if process_id not in self.answered:
                self.early.add(process_id)
        return message

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_notifications_before_the_start_response_are_not_lost(reference_url: str) -> None:
    """The reference often sends a quick child's output, exit and close before answering
    ``process/start``; every stream must still be complete. Rounds of concurrent quick
    processes run until such an early notification was seen (it takes one to three
    rounds in practice), so the test is known to have exercised the case."""
    with trio.fail_after(4 * TIMEOUT):
        async with open_websocket_transport(reference_url) as transport:
            recording = RecordingTransport(transport)
            async with open_remote_backend(recording) as backend:
                for round_ in range(30):
                    streams: dict[int, list[tx.Event]] = {}

                    async def run(
                        index: int,
                        streams: dict[int, list[tx.Event]] = streams,
                        round_: int = round_,
                    ) -> None:
                        argv = ["echo", f"line {index}"]
                        async with backend.open_process(
                            argv, process_id=f"r{round_}-{index}"
                        ) as proc:
                            streams[index] = await collect(proc)

                    async with trio.open_nursery() as nursery:
                        for index in range(30):
                            nursery.start_soon(run, index)
                    for index, events in streams.items():
                        summary = check_event_stream(
                            events, expected_output={STDOUT: f"line {index}\n".encode()}
                        )
                        assert summary.exit_code == 0
                    if recording.early:
                        break
    assert recording.early, "no notification ever came before its start response"


async def test_many_concurrent_starts_do_not_deadlock_the_reference(reference_url: str) -> None:
    """The reference deadlocks near 230 pipelined requests; the in-flight cap avoids it."""
    count = 300
    done = 0
    async with client(reference_url) as backend:

        async def run(index: int) -> None:
            nonlocal done
            async with backend.open_process(["true"], process_id=f"t{index}") as proc:
                assert check_event_stream(await collect(proc)).exit_code == 0
            done += 1

        with trio.fail_after(2 * TIMEOUT):
            async with trio.open_nursery() as nursery:
                for index in range(count):
                    nursery.start_soon(run, index)
        assert done == count
        assert backend.statistics().requests_in_flight == 0
