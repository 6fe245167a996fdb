"""Every ``process/*`` method, its edge cases and the extensions, over an in-memory transport."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_exec._log import DEFAULT_RETAINED_BYTES
from trio_exec._protocol import path_to_file_uri
from trio_exec._server import WRITE_ID_MEMORY, ExecServer, _policy_env, _RecentIds

from .helpers import (
    ENV,
    TIMEOUT,
    b64,
    check_read_gap,
    group_alive,
    open_memory_client,
    python,
    start_params,
    unb64,
    wait_group_gone,
)

# -- process/start --------------------------------------------------------------------------


async def test_start_result_and_events() -> None:
    async with open_memory_client() as client:
        response = await client.start("p1", ["sh", "-c", "echo hi; echo err >&2; exit 3"])
        assert response["result"] == {"processId": "p1", "sandboxType": "none"}
        events = await client.wait_closed("p1")
        assert [m["params"]["seq"] for m in events] == [1, 2, 3, 4]
        assert client.output("p1") == b"hi\n"
        assert client.output("p1", "stderr") == b"err\n"
        assert events[-2] == {
            "method": "process/exited",
            "params": {"processId": "p1", "seq": 3, "exitCode": 3, "sandboxDenied": False},
        }
        assert events[-1] == {"method": "process/closed", "params": {"processId": "p1", "seq": 4}}


async def test_start_empty_process_id_is_accepted() -> None:
    async with open_memory_client() as client:
        assert (await client.start("", ["true"]))["result"]["processId"] == ""
        await client.wait_closed("")


async def test_start_invalid_params() -> None:
    async with open_memory_client() as client:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"argv": []}, "argv must not be empty"),
            ({"cwd": "/tmp"}, "invalid URI: relative URL without a base"),
            ({"cwd": "http://host/tmp"}, "not a file:// URI"),
            ({"argv": ["tr\0ue"]}, "argv items must not contain NUL"),
            ({"env": {"A=B": "x"}}, "invalid environment variable name"),
            ({"arg0": "a\0b"}, "arg0 must be a str without NUL"),
        ]
        for extra, message in cases:
            response = await client.request("process/start", start_params("bad", ["true"]) | extra)
            assert response["error"]["code"] == -32602, response
            assert message in response["error"]["message"]
        # None of them reserved the id.
        assert (await client.start("bad", ["true"]))["result"]["processId"] == "bad"


async def test_spawn_failures_carry_the_os_error(tmp_path: Path) -> None:
    async with open_memory_client() as client:
        script = tmp_path / "script"
        script.write_text("#!/bin/sh\necho hi\n")
        enoent = "No such file or directory (os error 2)"
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"argv": ["/nonexistent/program"]}, enoent, "/nonexistent/program"),
            ({"argv": ["no-such-program-anywhere"]}, enoent, "no-such-program-anywhere"),
            ({"cwd": "file:///nonexistent-dir"}, enoent, "/nonexistent-dir"),
            ({"cwd": "file:///etc/passwd"}, "Not a directory (os error 20)", "/etc/passwd"),
            ({"argv": [str(script)]}, "Permission denied (os error 13)", str(script)),
        ]
        for extra, message, culprit in cases:
            response = await client.request("process/start", start_params("f", ["true"]) | extra)
            # The message is the reference's; the optional data names the file at fault.
            errno_code = int(message.rpartition("os error ")[2].rstrip(")"))
            data = {"errno": errno_code, "filename": culprit}
            assert response["error"] == {"code": -32603, "message": message, "data": data}
            # No entry is kept.
            assert (await client.error("process/read", {"processId": "f"}))["message"] == (
                "unknown process id f"
            )
        assert (await client.start("f", ["true"]))["result"]["processId"] == "f"
        await client.wait_closed("f")


async def test_duplicate_process_id_while_running_and_retained() -> None:
    async with open_memory_client() as client:
        await client.start("dup", ["sleep", "60"])
        duplicate = {"code": -32600, "message": "process dup already exists"}
        assert (await client.start("dup", ["true"]))["error"] == duplicate
        assert await client.call("process/terminate", {"processId": "dup"}) == {"running": True}
        await client.wait_closed("dup")
        assert (await client.start("dup", ["true"]))["error"] == duplicate


async def test_concurrent_starts_with_one_id() -> None:
    async with open_memory_client() as client:
        ids = [await client.send_request("process/start", _params("same")) for _ in range(5)]
        responses = [await client.wait_response(i) for i in ids]
        assert sum("result" in r for r in responses) == 1
        assert [r["error"]["message"] for r in responses if "error" in r] == [
            "process same already exists"
        ] * 4


def _params(process_id: str, argv: list[str] | None = None) -> dict[str, object]:
    return {
        "processId": process_id,
        "argv": argv or ["true"],
        "cwd": "file:///tmp",
        "env": dict(ENV),
        "tty": False,
    }


async def test_id_is_reusable_after_retention() -> None:
    async with open_memory_client(ExecServer(retention=0.05)) as client:
        await client.start("r", ["sh", "-c", "echo first"])
        await client.wait_closed("r")
        with trio.fail_after(TIMEOUT):
            # The retention timer runs in the server: poll until it forgot the process.
            while "result" in await client.request("process/read", {"processId": "r"}):  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert (await client.error("process/read", {"processId": "r"}))["message"] == (
            "unknown process id r"
        )
        assert "result" in await client.start("r", ["sh", "-c", "echo second"])


async def test_retained_process_stays_readable() -> None:
    async with open_memory_client() as client:
        await client.start("p", ["sh", "-c", "echo out"])
        await client.wait_closed("p")
        result = await client.call("process/read", {"processId": "p", "afterSeq": 0})
        assert result == {
            "chunks": [{"seq": 1, "stream": "stdout", "chunk": b64(b"out\n")}],
            "nextSeq": 4,
            "exited": True,
            "exitCode": 0,
            "closed": True,
            "failure": None,
            "firstRetainedSeq": 1,
            "sandboxDenied": False,
        }


async def test_env_is_exact_and_sorted_cwd_and_arg0() -> None:
    async with open_memory_client() as client:
        await client.start("env", ["env"], env={"ZED": "1", "PATH": "/usr/bin:/bin", "A": "2"})
        await client.wait_closed("env")
        assert client.output("env") == b"A=2\nPATH=/usr/bin:/bin\nZED=1\n"
        await client.start("empty", ["/usr/bin/env"], env={})
        await client.wait_closed("empty")
        assert client.output("empty") == b""
        await client.start("cwd", ["pwd"], cwd=path_to_file_uri("/usr"))
        await client.wait_closed("cwd")
        assert client.output("cwd") == b"/usr\n"
        code = "import sys; print(open('/proc/self/cmdline','rb').read().split(b'\\0')[0].decode())"
        await client.start("arg0", python(code), arg0="customzero")
        await client.wait_closed("arg0")
        assert client.output("arg0") == b"customzero\n"


async def test_env_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_EXEC_TEST_INHERITED", "yes")
    monkeypatch.setenv("TRIO_EXEC_TEST_TOKEN", "secret")
    async with open_memory_client() as client:
        policy = {
            "inherit": "all",
            "ignoreDefaultExcludes": False,
            "exclude": [],
            "set": {"SET_BY_POLICY": "1"},
            "includeOnly": ["trio_exec_test_*", "set_by_policy", "overlay"],
        }
        await client.start("pol", ["/usr/bin/env"], env={"OVERLAY": "2"}, envPolicy=policy)
        await client.wait_closed("pol")
        assert client.output("pol") == b"OVERLAY=2\nSET_BY_POLICY=1\nTRIO_EXEC_TEST_INHERITED=yes\n"
        bad = await client.start("bad", ["true"], envPolicy={"inherit": "some"})
        assert bad["error"]["code"] == -32602
        assert "unknown variant `some`" in bad["error"]["message"]


def test_policy_env_rules() -> None:
    base = {"PATH": "/bin", "HOME": "/root", "API_KEY": "k", "FOO": "f", "my_secret": "s"}
    assert _policy_env({"inherit": "core"}, base) == {"PATH": "/bin", "HOME": "/root"}
    assert _policy_env({"inherit": "none", "set": {"X": "1"}}, base) == {"X": "1"}
    assert _policy_env({}, base) == {"PATH": "/bin", "HOME": "/root", "FOO": "f"}
    assert _policy_env({"ignoreDefaultExcludes": True, "exclude": ["p?th", "HOME"]}, base) == {
        "API_KEY": "k",
        "FOO": "f",
        "my_secret": "s",
    }
    with pytest.raises(ValueError, match="includeOnly"):
        _policy_env({"includeOnly": "PATH"}, base)
    with pytest.raises(ValueError, match="ignoreDefaultExcludes"):
        _policy_env({"ignoreDefaultExcludes": 1}, base)
    with pytest.raises(ValueError, match=r"envPolicy\.set"):
        _policy_env({"set": {"A": 1}}, base)


def test_policy_env_core_is_the_references_list() -> None:
    # Seen live on codex exec-server 0.169 with each of these set on the server.
    core = [
        "HOME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "LOGNAME",
        "PATH",
        "SHELL",
        "TEMP",
        "TMP",
        "TMPDIR",
        "USER",
    ]
    base = dict.fromkeys([*core, "USERNAME", "TERM", "EDITOR"], "v")
    policy = {"inherit": "core", "ignoreDefaultExcludes": True}
    assert sorted(_policy_env(policy, base)) == core


async def test_window_size_is_the_terminal_size_from_the_start() -> None:
    async with open_memory_client() as client:
        await client.start("t", ["stty", "size"], tty=True, windowSize={"rows": 40, "cols": 120})
        await client.wait_closed("t")
        assert client.output("t", "pty") == b"40 120\r\n"
        bad = await client.start("n", ["true"], windowSize={"rows": 40, "cols": 120})
        assert bad["error"] == {
            "code": -32602,
            "message": "window needs tty=True: only a terminal has a size",
        }
        bad = await client.start("z", ["true"], tty=True, windowSize={"rows": 0, "cols": 120})
        assert bad["error"]["code"] == -32602
        assert "rows must be in 1..65535" in bad["error"]["message"]


async def test_tty_stream_is_pty() -> None:
    async with open_memory_client() as client:
        await client.start("t", ["sh", "-c", "stty size; echo err >&2; exit 4"], tty=True)
        await client.wait_closed("t")
        assert client.output("t", "pty") == b"24 80\r\nerr\r\n"
        assert client.exited("t")["exitCode"] == 4


# -- process/read ---------------------------------------------------------------------------


async def test_read_unknown_process() -> None:
    async with open_memory_client() as client:
        assert await client.error("process/read", {"processId": "nope", "afterSeq": 0}) == {
            "code": -32600,
            "message": "unknown process id nope",
        }


async def test_read_max_bytes_and_next_seq() -> None:
    async with open_memory_client() as client:
        await client.start("r", python(_ECHO_LINES), pipeStdin=True)
        for index, line in enumerate([b"aa\n", b"bb\n", b"cc\n"]):
            await client.write("r", line, f"w{index}")
            await client.wait_output("r", line)
        await client.write("r", b"quit\n", "wq")
        await client.wait_closed("r")

        async def read(**params: object) -> tuple[list[int], int]:
            result = await client.call("process/read", {"processId": "r", **params})
            return [chunk["seq"] for chunk in result["chunks"]], result["nextSeq"]

        assert await read(afterSeq=0) == ([1, 2, 3], 6)
        assert await read(afterSeq=0, maxBytes=1000) == ([1, 2, 3], 4)
        assert await read(afterSeq=0, maxBytes=6) == ([1, 2], 3)
        assert await read(afterSeq=0, maxBytes=4) == ([1], 2)
        assert await read(afterSeq=0, maxBytes=0) == ([1], 2)
        assert await read(afterSeq=3, maxBytes=10) == ([], 6)
        assert await read(afterSeq=2**64 - 1) == ([], 6)
        negative = await client.error("process/read", {"processId": "r", "waitMs": -1})
        assert negative["code"] == -32602


_ECHO_LINES = (
    "import sys\n"
    "for _ in range(3):\n"
    "    sys.stdout.write(sys.stdin.readline())\n"
    "    sys.stdout.flush()\n"
    "sys.stdin.readline()\n"
)


async def test_read_long_poll_returns_on_output_exit_and_timeout() -> None:
    async with open_memory_client() as client:
        await client.start("lp", ["cat"], pipeStdin=True)
        poll = await client.send_request(
            "process/read", {"processId": "lp", "afterSeq": 0, "waitMs": 60_000}
        )
        await client.write("lp", b"late\n", "w1")
        result = (await client.wait_response(poll))["result"]
        assert [unb64(c["chunk"]) for c in result["chunks"]] == [b"late\n"]
        assert result["nextSeq"] == 2
        assert not result["exited"]
        # Times out empty.
        with trio.fail_after(TIMEOUT):
            result = await client.call(
                "process/read", {"processId": "lp", "afterSeq": 1, "waitMs": 50}
            )
        assert result["chunks"] == []
        assert result["nextSeq"] == 2
        # Returns on exit (a terminal event the caller has not passed).
        poll = await client.send_request(
            "process/read", {"processId": "lp", "afterSeq": 1, "waitMs": 60_000}
        )
        await client.call("process/closeStdin", {"processId": "lp"})
        result = (await client.wait_response(poll))["result"]
        assert result["exited"] is True
        assert result["exitCode"] == 0


async def test_read_gap_is_explicit() -> None:
    """Extension readGap: firstRetainedSeq shows that old output was evicted."""
    async with open_memory_client(ExecServer(retain_bytes=1000)) as client:
        await check_read_gap(client, lines=50, retain_bytes=1000)


# -- process/write --------------------------------------------------------------------------


async def test_write_dedup_empty_chunk_and_statuses() -> None:
    async with open_memory_client() as client:
        await client.start("cat", ["cat"], pipeStdin=True)
        assert await client.write("cat", b"hello\n", "w1") == "accepted"
        await client.wait_output("cat", b"hello\n")
        assert await client.write("cat", b"other\n", "w1") == "accepted"  # not written
        assert await client.write("cat", b"", "w2") == "accepted"  # keeps stdin open
        assert await client.write("cat", b"second\n", "w3") == "accepted"
        await client.wait_output("cat", b"second\n")
        assert client.output("cat") == b"hello\nsecond\n"
        # Write ids are scoped per process.
        await client.start("cat2", ["cat"], pipeStdin=True)
        assert await client.write("cat2", b"x\n", "w1") == "accepted"
        await client.wait_output("cat2", b"x\n")
        empty = await client.error(
            "process/write", {"processId": "cat", "chunk": "", "writeId": ""}
        )
        assert empty == {"code": -32602, "message": "writeId must not be empty"}
        missing = await client.error("process/write", {"processId": "cat", "chunk": ""})
        assert missing == {"code": -32602, "message": "missing field `writeId`"}
        bad = await client.error(
            "process/write", {"processId": "cat", "chunk": "*", "writeId": "x"}
        )
        assert bad["code"] == -32602
        assert await client.write("nope", b"x", "w1") == "unknownProcess"


async def test_write_without_pipe_stdin() -> None:
    async with open_memory_client() as client:
        code = "import sys, time\nprint(repr(sys.stdin.read()), flush=True)\ntime.sleep(60)\n"
        await client.start("nopipe", python(code))
        await client.wait_output("nopipe", b"''\n")
        assert await client.write("nopipe", b"ignored\n", "w1") == "stdinClosed"
        await client.call("process/terminate", {"processId": "nopipe"})
        await client.wait_closed("nopipe")
        assert client.exited("nopipe")["exitCode"] == 137


async def test_write_to_a_finished_process_is_stdin_closed() -> None:
    """A documented difference: the reference answers accepted and drops the bytes."""
    async with open_memory_client() as client:
        await client.start("done", ["true"], pipeStdin=True)
        await client.wait_closed("done")
        assert await client.write("done", b"x", "w1") == "stdinClosed"
        assert await client.call("process/closeStdin", {"processId": "done"}) == {
            "status": "stdinClosed"
        }


async def test_pipelined_writes_keep_their_order() -> None:
    async with open_memory_client() as client:
        await client.start("cat", ["cat"], pipeStdin=True)
        lines = [f"line {i:04d}\n".encode() for i in range(300)]
        ids = [
            await client.send_request(
                "process/write", {"processId": "cat", "chunk": b64(line), "writeId": f"w{i}"}
            )
            for i, line in enumerate(lines)
        ]
        for request_id in ids:
            assert (await client.wait_response(request_id))["result"] == {"status": "accepted"}
        await client.wait_output("cat", lines[-1])
        assert client.output("cat") == b"".join(lines)


async def test_large_write_is_echoed_whole() -> None:
    async with open_memory_client() as client:
        await client.start("cat", ["cat"], pipeStdin=True)
        data = os.urandom(3 * 1024 * 1024)
        assert await client.write("cat", data, "big") == "accepted"
        await client.call("process/closeStdin", {"processId": "cat"})
        await client.wait_closed("cat")
        assert client.output("cat") == data


def test_recent_ids_forget_the_oldest() -> None:
    ids = _RecentIds(WRITE_ID_MEMORY)
    for i in range(WRITE_ID_MEMORY + 1):
        ids.add(f"w{i}")
    assert "w0" not in ids
    assert "w1" in ids
    assert f"w{WRITE_ID_MEMORY}" in ids
    ids.add("w1")  # already known: order unchanged
    ids.discard("w1")
    assert "w1" not in ids


# -- process/signal and process/terminate ---------------------------------------------------


async def test_signal_interrupt_and_unknown() -> None:
    async with open_memory_client() as client:
        await client.start("s", ["sleep", "60"])
        assert await client.call("process/signal", {"processId": "s", "signal": "interrupt"}) == {}
        await client.wait_closed("s")
        assert client.exited("s") == {
            "processId": "s",
            "seq": 1,
            "exitCode": 130,
            "sandboxDenied": False,
            "signal": "SIGINT",
        }
        # After exit, and for an unknown process: a silent no-op.
        assert await client.call("process/signal", {"processId": "s", "signal": "interrupt"}) == {}
        assert await client.call("process/signal", {"processId": "x", "signal": "kill"}) == {}
        error = await client.error("process/signal", {"processId": "s", "signal": "bogus"})
        assert error["code"] == -32602


@pytest.mark.parametrize(
    ("name", "signum"),
    [
        ("terminate", signal.SIGTERM),
        ("kill", signal.SIGKILL),
        ("hangup", signal.SIGHUP),
        ("quit", signal.SIGQUIT),
        ("user1", signal.SIGUSR1),
        ("user2", signal.SIGUSR2),
    ],
)
async def test_signals_extension(name: str, signum: int) -> None:
    async with open_memory_client() as client:
        await client.start("s", ["sleep", "60"])
        await client.call("process/signal", {"processId": "s", "signal": name})
        await client.wait_closed("s")
        exited = client.exited("s")
        assert exited["exitCode"] == 128 + signum
        assert exited["signal"] == signal.Signals(signum).name


async def test_terminate_kills_the_group_at_once() -> None:
    async with open_memory_client() as client:
        code = "trap 'echo trapped' TERM; sleep 100 & echo started; wait"
        await client.start("t", ["sh", "-c", code])
        await client.wait_output("t", b"started\n")
        assert await client.call("process/terminate", {"processId": "t"}) == {"running": True}
        await client.wait_closed("t")  # the background sleep died too
        assert client.exited("t")["exitCode"] == 137
        assert client.exited("t")["signal"] == "SIGKILL"
        assert b"trapped" not in client.output("t")
        assert await client.call("process/terminate", {"processId": "t"}) == {"running": False}
        assert await client.call("process/terminate", {"processId": "x"}) == {"running": False}


async def test_graceful_terminate() -> None:
    async with open_memory_client() as client:
        code = (
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n"
        )
        await client.start("g", python(code))
        await client.wait_output("g", b"ready\n")
        params = {"processId": "g", "graceMs": 10_000}
        assert await client.call("process/terminate", params) == {"running": True}
        await client.wait_closed("g")
        assert client.exited("g")["exitCode"] == 7
        assert "signal" not in client.exited("g")
        # A child that ignores SIGTERM is killed after the grace.
        await client.start("i", ["sh", "-c", "trap '' TERM; echo ready; sleep 60"])
        await client.wait_output("i", b"ready\n")
        params = {"processId": "i", "graceMs": 100}
        assert await client.call("process/terminate", params) == {"running": True}
        await client.wait_closed("i")
        assert client.exited("i")["exitCode"] == 137
        params = {"processId": "i", "graceMs": 100}
        assert await client.call("process/terminate", params) == {"running": False}


# -- extensions: closeStdin, resize, list ---------------------------------------------------


async def test_close_stdin() -> None:
    async with open_memory_client() as client:
        await client.start("cat", ["cat"], pipeStdin=True)
        await client.write("cat", b"data\n", "w1")
        assert await client.call("process/closeStdin", {"processId": "cat"}) == {
            "status": "accepted"
        }
        await client.wait_closed("cat")
        assert client.output("cat") == b"data\n"
        assert client.exited("cat")["exitCode"] == 0
        await client.start("nopipe", ["sleep", "60"])
        assert await client.call("process/closeStdin", {"processId": "nopipe"}) == {
            "status": "stdinClosed"
        }
        assert await client.call("process/closeStdin", {"processId": "x"}) == {
            "status": "unknownProcess"
        }
        # On a terminal: the EOF character ends `cat`.
        await client.start("tcat", ["cat"], tty=True)
        assert await client.call("process/closeStdin", {"processId": "tcat"}) == {
            "status": "accepted"
        }
        await client.wait_closed("tcat")
        assert client.exited("tcat")["exitCode"] == 0


async def test_resize() -> None:
    async with open_memory_client() as client:
        code = (
            "import os, signal\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})\n"
            "print('ready', flush=True)\n"
            "signal.sigwait({signal.SIGWINCH})\n"
            "print(os.get_terminal_size(0), flush=True)\n"
        )
        await client.start("t", python(code), tty=True)
        await client.wait_output("t", b"ready", "pty")
        params = {"processId": "t", "rows": 50, "cols": 132}
        assert await client.call("process/resize", params) == {}
        await client.wait_closed("t")
        assert b"columns=132, lines=50" in client.output("t", "pty")
        await client.start("n", ["sleep", "60"])
        error = await client.error("process/resize", {"processId": "n", "rows": 5, "cols": 5})
        assert error == {
            "code": -32602,
            "message": "process n has no terminal (started without tty)",
        }
        assert await client.call("process/resize", {"processId": "x", "rows": 5, "cols": 5}) == {}
        bad = await client.error("process/resize", {"processId": "n", "rows": 0, "cols": 5})
        assert bad["code"] == -32602


async def test_list() -> None:
    async with open_memory_client() as client:
        assert await client.call("process/list", {}) == {"processes": []}
        await client.start("a", ["sleep", "60"])
        await client.start("b", ["sh", "-c", "exit 3"])
        await client.wait_closed("b")
        assert await client.call("process/list", {}) == {
            "processes": [
                {"processId": "a", "argv": ["sleep", "60"], "running": True, "exitCode": None},
                {"processId": "b", "argv": ["sh", "-c", "exit 3"], "running": False, "exitCode": 3},
            ]
        }


async def test_unknown_method() -> None:
    async with open_memory_client() as client:
        assert await client.error("process/nope", {"processId": "x"}) == {
            "code": -32601,
            "message": "exec-server stub does not implement `process/nope` yet",
        }


async def test_statistics_track_sessions() -> None:
    server = ExecServer()
    assert server.statistics().connections == 0
    async with open_memory_client(server) as client:
        await client.start("s", ["sleep", "60"])
        stats = server.statistics()
        assert stats.connections == 1
        assert stats.processes == stats.running_processes == 1
        assert stats.retained_bytes <= DEFAULT_RETAINED_BYTES
    assert server.statistics().connections == 0
    assert server.statistics().processes == 0


async def test_bad_client_input_never_ends_the_connection() -> None:
    async with open_memory_client() as client:
        garbage = [
            "{not json",
            "",
            "[1,2]",
            "null",
            '{"id":null,"method":"process/list"}',
            '{"id":1.5,"method":"process/list"}',
            '{"method":5}',
            '{"foo":1}',
            '{"id":1}',
            '{"id":7,"method":"process/list"} x',
            '{"id":' + "9" * 100 + ',"method":"process/list"}',
            "[" * 100_000,
        ]
        for text in garbage:
            await client.send_raw(text)
        await client.send({"id": "bin", "method": "process/start", "params": {"processId": ["x"]}})
        await client.transport.send("\udcff")  # a lone surrogate: not valid UTF-8 text
        assert await client.call("process/list", {}) == {"processes": []}
        errors = [m for m in client.received if m.get("id") == -1]
        assert len(errors) == len(garbage) + 1
        for message in errors:
            assert message["error"]["code"] == -32600
            assert message["error"]["message"].startswith("failed to parse JSON-RPC message")
        assert (await client.wait_response("bin"))["error"]["code"] == -32602


async def test_requests_pipelined_behind_a_start_wait_for_the_spawn() -> None:
    """The reference answers `starting` / `process id X is starting` in that window; we
    wait the few milliseconds the spawn takes."""
    async with open_memory_client() as client:
        start = await client.send_request(
            "process/start", start_params("cat", ["cat"], pipeStdin=True)
        )
        write = await client.send_request(
            "process/write", {"processId": "cat", "chunk": b64(b"early\n"), "writeId": "w1"}
        )
        read = await client.send_request("process/read", {"processId": "cat", "waitMs": 10_000})
        assert (await client.wait_response(start))["result"]["processId"] == "cat"
        assert (await client.wait_response(write))["result"] == {"status": "accepted"}
        chunks = (await client.wait_response(read))["result"]["chunks"]
        assert [unb64(chunk["chunk"]) for chunk in chunks] == [b"early\n"]
        start = await client.send_request("process/start", start_params("s", ["sleep", "60"]))
        terminate = await client.send_request("process/terminate", {"processId": "s"})
        assert "result" in await client.wait_response(start)
        assert (await client.wait_response(terminate))["result"] == {"running": True}
        await client.wait_closed("s")
        assert client.exited("s")["exitCode"] == 137


async def test_leftovers_of_a_closed_process_group_live_until_killed() -> None:
    """As in a local block, what is left of a closed process's group (a background child
    that closed its output) lives on until the client kills it (or the session or the
    retention ends); then nothing of the group outlives it."""
    async with open_memory_client() as client:
        await client.start("bg", ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $$"])
        await client.wait_closed("bg")
        pgid = int(client.output("bg"))
        assert group_alive(pgid)
        assert await client.call("process/signal", {"processId": "bg", "signal": "kill"}) == {}
        await wait_group_gone(pgid, TIMEOUT)
