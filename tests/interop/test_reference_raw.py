"""The reference server, ``codex exec-server`` 0.169, driven by the raw scenarios.

Each ``@pytest.mark.reference`` test installs the pinned npm package once per session (see
:func:`trio_exec.testing.reference.ensure_reference`; no network or no npm is a failure, not
a skip), starts a fresh server, runs a scenario from :mod:`.scenarios` and checks the
transcript against the reference's documented behaviour (``reference/codex-exec-server-0.169.md``).
The expected transcripts below are therefore also the spec that our own server is compared
with. The unmarked tests check the harness itself: normalisation, :func:`compare_transcripts`
and the installer's failure paths.

Seen on the live 0.169.0 binary beyond, or against, the reference doc:

* stdout and stderr race for seqs: ``echo hi; echo err >&2`` sometimes gives stderr seq 1 and
  stdout seq 2 (the doc's transcript shows stdout first). Transcripts join output per stream.
* SIGTERM stops the websocket server in about 10 ms, killing its children, even with a client
  connected and a child running (the doc saw about 4 s).
* A failed ``process/start`` (spawn error) does not reserve the processId.
* A missing program and a missing ``cwd`` give the same -32603 message, ``No such file or
  directory (os error 2)``; a non-executable program gives ``Permission denied (os error 13)``.
* The malformed-frame error names the client's address (``... exec-server websocket
  127.0.0.1:PORT: key must be a string ...``); transcripts scrub it to ``<address>``.
* ``writeId`` is validated before the process is looked up: ``""`` on an unknown process is
  -32602, not ``unknownProcess``.
* ``process/closed`` now and then comes before ``process/exited`` on the wire (seen under
  load with a tty child: seqs 1, 3, 4, then 2): each event source assigns its seq under the
  process lock and sends after releasing it. The driver waits for the lower seqs after
  ``closed`` (:meth:`RawDriver.wait_closed`).
* With ``CODEX_HOME`` under ``/tmp`` it logs a harmless warning that it refuses to create
  helper binaries (PATH aliases) there.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from trio_exec.testing.reference import (
    REFERENCE_PACKAGE,
    REFERENCE_VERSION,
    SHUTDOWN_GRACE,
    ensure_reference,
    open_reference_server,
)

from . import scenarios
from .scenarios import (
    SCENARIOS,
    STEP_TIMEOUT,
    RawDriver,
    Transcript,
    compare_transcripts,
    normalize_result,
    open_driver,
    render_bytes,
    run_scenario,
    summarize_events,
)

# --------------------------------------------------------------------------------------------
# Expected transcripts: the reference's behaviour, as documented and observed.


def _start(process_id: str) -> dict[str, Any]:
    return {"call": "process/start", "result": {"processId": process_id, "sandboxType": "none"}}


def _events(process_id: str, exit_code: int, **output: str) -> dict[str, Any]:
    return {
        "events": process_id,
        "output": output,
        "exitCode": exit_code,
        "closed": True,
        "violations": [],
    }


def _ok(method: str, result: Any) -> dict[str, Any]:
    return {"call": method, "result": result}


def _err(method: str, code: int, message: str) -> dict[str, Any]:
    return {"call": method, "error": {"code": code, "message": message}}


def _read(
    output: dict[str, str],
    next_seq: int,
    *,
    exit_code: int | None,
    closed: bool = True,
    seqs: list[int] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"output": output}
    if seqs is not None:
        result["chunkSeqs"] = seqs
    result.update(
        {
            "nextSeq": next_seq,
            "exited": exit_code is not None,
            "exitCode": exit_code,
            "closed": closed,
            "failure": None,
            "sandboxDenied": False,
        }
    )
    return _ok("process/read", result)


ACCEPTED = _ok("process/write", {"status": "accepted"})

EXPECTED: dict[str, Transcript] = {
    "streams_and_exit": [
        _start("p1"),
        _events("p1", 3, stderr="err\n", stdout="hi\n"),
        # Without maxBytes nextSeq is global: 2 output chunks + exited + closed -> 5.
        _read({"stderr": "err\n", "stdout": "hi\n"}, 5, exit_code=3),
        _read({"stderr": "err\n", "stdout": "hi\n"}, 5, exit_code=3),
    ],
    "large_binary_output": [
        _start("big"),
        _events(
            "big",
            0,
            stderr="\\xff\\xfe caf\u00e9 \x00 end\n",
            stdout=render_bytes(bytes(range(256)) * 1000),
        ),
        _ok(
            "process/read",
            {
                "output": {
                    "stderr": "\\xff\\xfe caf\u00e9 \x00 end\n",
                    "stdout": render_bytes(bytes(range(256)) * 1000),
                },
                "exited": True,
                "exitCode": 0,
                "closed": True,
            },
        ),
    ],
    "exit_codes": [
        _start("true"),
        _events("true", 0),
        _start("exit255"),
        _events("exit255", 255),
        _start("sigkill"),
        _events("sigkill", 137),
        _start("sigterm"),
        _events("sigterm", 143),
        _start("sigint"),
        _events("sigint", 130),
    ],
    "pipe_stdin_write": [
        _start("cat"),
        ACCEPTED,  # w1 hello
        ACCEPTED,  # w1 again: acknowledged, not written (no second "hello" below)
        ACCEPTED,  # w2 second
        ACCEPTED,  # w3 empty chunk: does not close stdin
        ACCEPTED,  # w4 third: cat still reading
        _ok("process/signal", {}),
        _events("cat", 130, stdout="hello\nsecond\nthird\n"),
    ],
    "stdin_closed_without_pipe": [
        _start("nopipe"),
        _ok("process/write", {"status": "stdinClosed"}),
        _ok("process/terminate", {"running": True}),
        _events("nopipe", 137, stdout="''\n"),
    ],
    "tty": [
        _start("t1"),
        _events("t1", 4, pty="24 80\r\nout\r\nerr\r\n"),
    ],
    "tty_write": [
        _start("t2"),
        ACCEPTED,
        _events("t2", 0, pty="hi\r\ngot:hi\r\n"),
    ],
    "read_max_bytes": [
        _start("r"),
        ACCEPTED,
        ACCEPTED,
        ACCEPTED,
        ACCEPTED,
        _events("r", 0, stdout="aa\nbb\ncc\n"),
        # afterSeq 0, no maxBytes: everything, global nextSeq (exited 4, closed 5 -> 6).
        _read({"stdout": "aa\nbb\ncc\n"}, 6, exit_code=0, seqs=[1, 2, 3]),
        # maxBytes 1000, nothing cut off: nextSeq is still last chunk + 1 (the quirk).
        _read({"stdout": "aa\nbb\ncc\n"}, 4, exit_code=0, seqs=[1, 2, 3]),
        # maxBytes 6: two 3-byte chunks reach the budget exactly.
        _read({"stdout": "aa\nbb\n"}, 3, exit_code=0, seqs=[1, 2]),
        # maxBytes 4: the second chunk would exceed it.
        _read({"stdout": "aa\n"}, 2, exit_code=0, seqs=[1]),
        # maxBytes 1 and 0: the first chunk is always returned.
        _read({"stdout": "aa\n"}, 2, exit_code=0, seqs=[1]),
        _read({"stdout": "aa\n"}, 2, exit_code=0, seqs=[1]),
        # afterSeq 1, maxBytes 1000.
        _read({"stdout": "bb\ncc\n"}, 4, exit_code=0, seqs=[2, 3]),
        # afterSeq 2, no maxBytes: global nextSeq.
        _read({"stdout": "cc\n"}, 6, exit_code=0, seqs=[3]),
        # afterSeq 3 with maxBytes: no chunk qualifies, so nextSeq is global again.
        _read({}, 6, exit_code=0, seqs=[]),
        _read({}, 6, exit_code=0, seqs=[]),
        # afterSeq at or past the end: empty at once.
        _read({}, 6, exit_code=0, seqs=[]),
        _read({}, 6, exit_code=0, seqs=[]),
    ],
    "read_long_poll": [
        _start("lp"),
        _read({"stdout": "late\n"}, 2, exit_code=None, closed=False),
        _read({}, 2, exit_code=None, closed=False),
        _ok("process/terminate", {"running": True}),
        _events("lp", 137, stdout="late\n"),
        _read({}, 4, exit_code=137),
    ],
    "terminate_running": [
        _start("term"),
        _ok("process/terminate", {"running": True}),
        # closed came, so the background `sleep 100` holding the pipe died too.
        _events("term", 137, stdout="started\n"),
        _ok("process/terminate", {"running": False}),
        _read({"stdout": "started\n"}, 4, exit_code=137),
    ],
    "signal_interrupt": [
        _start("trap"),
        _ok("process/signal", {}),
        _events("trap", 5, stdout="ready\ntrapped\n"),
        _start("plain"),
        _ok("process/signal", {}),
        _events("plain", 130),
        _ok("process/signal", {}),
    ],
    "unknown_process": [
        _err("process/read", -32600, "unknown process id nope"),
        _ok("process/write", {"status": "unknownProcess"}),
        _ok("process/terminate", {"running": False}),
        _ok("process/signal", {}),
    ],
    "invalid_params": [
        _err("process/start", -32602, "argv must not be empty"),
        _err("process/start", -32602, "invalid URI: relative URL without a base"),
        _err("process/start", -32602, "missing field `tty`"),
        _err("process/start", -32602, "invalid type: number, expected a string"),
        _start("live"),
        _err("process/write", -32602, "writeId must not be empty"),
        _err("process/write", -32602, "missing field `writeId`"),
        _err("process/signal", -32602, "unknown variant `bogus`, expected `interrupt`"),
        _err(
            "process/no-such-method",
            -32601,
            "exec-server stub does not implement `process/no-such-method` yet",
        ),
        _ok("process/terminate", {"running": True}),
        _events("live", 137),
    ],
    "duplicate_process_id": [
        _start("dup"),
        _err("process/start", -32600, "process dup already exists"),
        _ok("process/terminate", {"running": True}),
        _events("dup", 137),
        # Still reserved after exit, while the finished process is retained (80 s).
        _err("process/start", -32600, "process dup already exists"),
    ],
    "spawn_failure": [
        _err("process/start", -32603, "No such file or directory (os error 2)"),
        _err("process/start", -32603, "No such file or directory (os error 2)"),
        _err("process/start", -32603, "Not a directory (os error 20)"),
        _err("process/start", -32603, "Permission denied (os error 13)"),
        _start("f1"),  # a failed start does not reserve the id
        _events("f1", 0),
    ],
    "env_cwd_arg0": [
        _start("env"),
        _events("env", 0, stdout="ONLY=this\nPATH=/usr/bin:/bin\n"),
        _start("cwd"),
        _events("cwd", 0, stdout="/\n"),
        _start("arg0"),
        _events("arg0", 0, stdout="customzero\n"),
    ],
    "handshake": [
        _err("initialize", -32600, "initialize may only be sent once per connection"),
        _err(
            "<malformed frame>",
            -32600,
            "failed to parse websocket JSON-RPC message from exec-server websocket <address>: "
            "key must be a string at line 1 column 2",
        ),
        _err("process/read", -32600, "unknown process id nope"),
        _err("process/start", -32600, "client must call initialize before using exec methods"),
        _err("process/read", -32600, "client must call initialize before using exec methods"),
        _ok("initialize", {"sessionId": "<session>"}),
        _err("process/read", -32600, "client must send initialized before using exec methods"),
    ],
}


# --------------------------------------------------------------------------------------------
# The scenarios against the reference


def test_every_scenario_has_an_expected_transcript() -> None:
    assert set(EXPECTED) == set(SCENARIOS)


@pytest.mark.reference
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_reference_scenario(reference_url: str, name: str) -> None:
    transcript = await run_scenario(reference_url, SCENARIOS[name])
    assert compare_transcripts(transcript, EXPECTED[name]) == []


@pytest.mark.reference
async def test_reference_streams_and_exit_details(reference_url: str) -> None:
    """The headline facts, spelled out: exit code 3, stderr text, seqs 1..4, closed last."""
    async with open_driver(reference_url) as d:
        assert isinstance(d.initialize_result["sessionId"], str)
        assert d.initialize_result["environmentInfo"]["executorVersion"] == REFERENCE_VERSION
        await d.start("p1", ["sh", "-c", "echo hi; echo err >&2; exit 3"])
        await d.wait_closed("p1")
        received = sorted(d.notifications["p1"], key=lambda m: m["params"]["seq"])
        assert [m["params"]["seq"] for m in received] == [1, 2, 3, 4]
        assert received[-1]["method"] == "process/closed"
        exited = [m["params"] for m in received if m["method"] == "process/exited"]
        assert len(exited) == 1
        assert exited[0]["exitCode"] == 3
        assert exited[0]["sandboxDenied"] is False
        assert d.output("p1", "stderr") == b"err\n"
        assert d.output("p1", "stdout") == b"hi\n"


@pytest.mark.reference
async def test_reference_tty_signal_death_reports_exit_code_1(reference_url: str) -> None:
    """A documented divergence (ours reports 128+N): the reference maps any signal death of
    a tty child to exitCode 1."""
    async with open_driver(reference_url) as d:
        await d.start("t", ["sleep", "60"], tty=True)
        await d.call("process/terminate", {"processId": "t"})
        summary = await d.collect("t")
        assert summary["exitCode"] == 1
        assert summary["violations"] == []


@pytest.mark.reference
async def test_reference_closes_connection_on_unknown_notification(reference_url: str) -> None:
    """A documented reference quirk: an unknown notification drops the websocket, with no
    error reply (the README's "error with id -1" is stale)."""
    async with open_driver(reference_url) as d:
        await d.notify("bogus/notification", {})
        with trio.fail_after(STEP_TIMEOUT), pytest.raises(ConnectionClosed):
            await d.request("process/read", {"processId": "x"})


@pytest.mark.reference
async def test_reference_scenarios_are_deterministic(reference_binary: Path) -> None:
    """Two fresh servers give identical normalised transcripts for every scenario: the
    normalisation hides all run-to-run noise (ids, chunking, stream interleaving)."""
    async with open_reference_server(reference_binary) as first_url:
        first = {name: await run_scenario(first_url, sc) for name, sc in SCENARIOS.items()}
    async with open_reference_server(reference_binary) as second_url:
        second = {name: await run_scenario(second_url, sc) for name, sc in SCENARIOS.items()}
    for name in SCENARIOS:
        assert compare_transcripts(first[name], second[name]) == [], name


# --------------------------------------------------------------------------------------------
# The harness: open_reference_server and ensure_reference


def _process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie waiting for init is dead


@pytest.mark.reference
async def test_open_reference_server_stops_server_and_children(reference_binary: Path) -> None:
    async with open_reference_server(reference_binary) as url:
        assert url.startswith("ws://127.0.0.1:")
        async with open_driver(url) as d:
            await d.start("bg", ["sh", "-c", "echo $$; exec sleep 60"])
            await d.wait_output("bg", "stdout", b"\n")
            child = int(d.output("bg", "stdout"))
            assert not _process_gone(child)
        started = time.monotonic()
    assert time.monotonic() - started < SHUTDOWN_GRACE  # SIGTERM sufficed
    # The orphaned child is reaped by init, not by us: nothing to wait on but its /proc entry.
    with trio.fail_after(STEP_TIMEOUT):
        while not _process_gone(child):  # noqa: ASYNC110
            await trio.sleep(0.01)


@pytest.mark.reference
async def test_open_reference_server_passes_body_exception_through(
    reference_binary: Path,
) -> None:
    with pytest.raises(KeyError, match="boom"):
        async with open_reference_server(reference_binary):
            raise KeyError("boom")


@pytest.mark.reference
async def test_open_reference_server_cancelled_inside(reference_binary: Path) -> None:
    with trio.move_on_after(0.05) as scope:
        async with open_reference_server(reference_binary) as url, open_driver(url) as d:
            await d.start("s", ["sleep", "60"])
            await trio.sleep_forever()
    assert scope.cancelled_caught


@pytest.mark.reference
async def test_open_reference_server_reports_startup_failure(reference_binary: Path) -> None:
    with pytest.raises(RuntimeError, match="unexpected argument '--no-such-flag'"):
        async with open_reference_server(reference_binary, extra_args=["--no-such-flag"]):
            pytest.fail("the server should not have started")


@pytest.mark.reference
async def test_open_reference_server_extra_args(reference_binary: Path) -> None:
    """With --concurrent-requests 2 a long-poll no longer blocks the connection."""
    async with (
        open_reference_server(reference_binary, extra_args=["--concurrent-requests", "2"]) as url,
        open_driver(url) as d,
    ):
        await d.start("s", ["sleep", "60"])
        await d.send(
            {
                "id": "poll",
                "method": "process/read",
                "params": {"processId": "s", "waitMs": 3000},
            }
        )
        # Answered while the long-poll is still pending.
        with trio.fail_after(2):
            response = await d.request("process/terminate", {"processId": "s"})
        assert response["result"] == {"running": True}
        poll = await d.wait_response("poll")
        assert poll["result"]["exited"] is True


def test_ensure_reference_installed_layout(reference_binary: Path) -> None:
    assert reference_binary.name == "codex"
    assert os.access(reference_binary, os.X_OK)
    assert "node_modules" in reference_binary.parts
    # A second call finds the finished install without running npm again.
    again_start = time.monotonic()
    assert ensure_reference() == reference_binary
    assert time.monotonic() - again_start < 1.0


def _fake_npm(directory: Path, script: str) -> None:
    npm = directory / "npm"
    npm.write_text("#!/bin/sh\n" + script)
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)


def test_ensure_reference_reports_npm_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_npm(bin_dir, 'echo "npm error network ECONNREFUSED registry" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(RuntimeError, match="ECONNREFUSED registry") as info:
        ensure_reference(tmp_path / "cache")
    assert f"{REFERENCE_PACKAGE}@{REFERENCE_VERSION}" in str(info.value)
    assert "exit code 1" in str(info.value)


def test_ensure_reference_reports_missing_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_npm(bin_dir, "exit 0\n")  # "succeeds" but installs nothing
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(RuntimeError, match="no codex binary"):
        ensure_reference(tmp_path / "cache")


def test_ensure_reference_without_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="npm is not on PATH"):
        ensure_reference(tmp_path / "cache")


def test_ensure_reference_uses_env_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_npm(bin_dir, 'echo "args: $*" >&2\nexit 7\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("TRIO_EXEC_REFERENCE_CACHE", str(tmp_path / "from-env"))
    with pytest.raises(RuntimeError, match="exit code 7") as info:
        ensure_reference()
    expected_prefix = tmp_path / "from-env" / f"codex-{REFERENCE_VERSION}"
    assert f"--prefix {expected_prefix}" in str(info.value)
    assert "--no-save" in str(info.value)


# --------------------------------------------------------------------------------------------
# Normalisation and compare_transcripts


def _notification(method: str, seq: int, **params: Any) -> dict[str, Any]:
    return {"method": method, "params": {"processId": "p", "seq": seq, **params}}


def test_summarize_events_orders_by_seq_and_joins_streams() -> None:
    notifications = [
        _notification("process/exited", 3, exitCode=0, sandboxDenied=False, signal=None),
        _notification("process/output", 2, stream="stdout", chunk="Yg=="),  # b
        _notification("process/output", 1, stream="stdout", chunk="YQ=="),  # a
        _notification("process/output", 4, stream="stderr", chunk="eA=="),  # x, after exited
        _notification("process/closed", 5),
    ]
    assert summarize_events("p", notifications) == {
        "events": "p",
        "output": {"stderr": "x", "stdout": "ab"},
        "exitCode": 0,
        "closed": True,
        "violations": [],
    }


def test_summarize_events_lists_violations() -> None:
    notifications = [
        _notification("process/output", 1, stream="stdout", chunk="YQ=="),
        _notification("process/closed", 2),
        _notification("process/exited", 4, exitCode=1),
        _notification("process/exited", 4, exitCode=1),
    ]
    summary = summarize_events("p", notifications)
    assert summary["violations"] == [
        "seqs are not 1..4: [1, 2, 4, 4]",
        "2 exited events",
        "closed is not the last event",
    ]


def test_normalize_result_drops_documented_differences() -> None:
    init = {
        "sessionId": "6f610e40-85e6-4bf4-aacd-747711d13198",
        "environmentInfo": {"cwd": "file:///"},
        "extensions": ["closeStdin"],
    }
    assert normalize_result("initialize", init) == {"sessionId": "<session>"}
    read = {
        "chunks": [
            {"seq": 1, "stream": "stdout", "chunk": "aGk="},
            {"seq": 2, "stream": "stdout", "chunk": "IQ=="},
        ],
        "nextSeq": 3,
        "firstRetainedSeq": 1,
        "exited": False,
    }
    assert normalize_result("process/read", read) == {
        "output": {"stdout": "hi!"},
        "nextSeq": 3,
        "exited": False,
    }
    assert normalize_result("process/read", read, keep_chunk_seqs=True)["chunkSeqs"] == [1, 2]
    message = "session 6f610e40-85e6-4bf4-aacd-747711d13198 from 10.0.0.1:5555"
    assert normalize_result("x", {"m": message}) == {"m": "session <uuid> from <address>"}


def test_render_bytes() -> None:
    assert render_bytes(b"caf\xc3\xa9 \xff") == "caf\u00e9 \\xff"
    long = render_bytes(b"a" * 5000)
    assert long.startswith("<5000 bytes sha256=")
    assert long != render_bytes(b"a" * 4999 + b"b")


def test_compare_transcripts_equal() -> None:
    transcript = [
        _start("p"),
        _events("p", 0, stdout="x"),
        _read({"stdout": "x"}, 4, exit_code=0),
    ]
    assert compare_transcripts(transcript, [dict(e) for e in transcript]) == []
    assert compare_transcripts([], []) == []


def test_compare_transcripts_field_differences() -> None:
    theirs = [_read({"stdout": "x"}, 4, exit_code=0), _events("p", 3, stderr="err\n")]
    ours = [_read({"stdout": "x"}, 6, exit_code=0), _events("p", 3, stderr="er\n")]
    ours[1]["violations"] = ["closed is not the last event"]
    assert compare_transcripts(ours, theirs) == [
        "[0] process/read.result.nextSeq: ours=6 theirs=4",
        "[1] events p.output.stderr: ours='er\\n' theirs='err\\n'",
        "[1] events p.violations[0]: ours='closed is not the last event' theirs=<missing>",
    ]


def test_compare_transcripts_missing_keys_entries_and_types() -> None:
    theirs: Transcript = [
        _ok("process/terminate", {"running": True}),
        _err("process/start", -32603, "boom"),
    ]
    ours: Transcript = [_ok("process/terminate", {"running": 1, "extra": None})]
    assert compare_transcripts(ours, theirs) == [
        "[0] process/terminate.result.running: ours=1 theirs=True",
        "[0] process/terminate.result.extra: ours=None theirs=<missing>",
        "[1] process/start: ours=<missing> theirs={'call': 'process/start', "
        "'error': {'code': -32603, 'message': 'boom'}}",
    ]


def test_compare_transcripts_result_versus_error() -> None:
    ours = [_ok("process/start", {"processId": "p", "sandboxType": "none"})]
    theirs = [_err("process/start", -32600, "process p already exists")]
    assert compare_transcripts(ours, theirs) == [
        "[0] process/start.result: ours={'processId': 'p', 'sandboxType': 'none'} theirs=<missing>",
        "[0] process/start.error: ours=<missing> "
        "theirs={'code': -32600, 'message': 'process p already exists'}",
    ]


def test_compare_transcripts_ignore_patterns() -> None:
    ours = [_err("process/start", -32603, "No such file or directory")]
    theirs = [_err("process/start", -32603, "No such file or directory (os error 2)")]
    assert len(compare_transcripts(ours, theirs)) == 1
    assert compare_transcripts(ours, theirs, ignore=["error.message"]) == []
    assert compare_transcripts(ours, theirs, ignore=["error.*"]) == []
    assert compare_transcripts(ours, theirs, ignore=["result.*"]) != []


def test_raw_driver_files_messages() -> None:
    """RawDriver keeps notifications by processId and orders output by seq."""
    driver = RawDriver(ws=None, url="ws://127.0.0.1:1")  # type: ignore[arg-type]
    driver.notifications["p"].extend(
        [
            _notification("process/output", 2, stream="stdout", chunk="Yg=="),
            _notification("process/output", 1, stream="stdout", chunk="YQ=="),
            _notification("process/output", 3, stream="stderr", chunk="eA=="),
        ]
    )
    assert driver.output("p", "stdout") == b"ab"
    assert driver.output("p", "stderr") == b"x"
    assert driver.output("q", "stdout") == b""


async def _scripted_server(
    frames: list[dict[str, Any]], *, task_status: trio.TaskStatus[str]
) -> None:
    """A websocket server on loopback that sends *frames* to its one client, in order,
    with a pause before the last, then waits for the client to leave."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        for index, frame in enumerate(frames):
            if index == len(frames) - 1:
                await trio.sleep(0.05)
            await ws.send_message(json.dumps(frame))
        with contextlib.suppress(ConnectionClosed):
            await ws.get_message()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        task_status.started(f"ws://127.0.0.1:{server.port}")


async def test_collect_waits_for_events_that_closed_overtook() -> None:
    """collect() does not stop at ``closed``: an exited event with a lower seq that comes
    after it on the wire (as the reference sends now and then) is waited for and counted."""
    frames = [
        _notification("process/output", 1, stream="pty", chunk="YQ=="),
        _notification("process/output", 3, stream="pty", chunk="Yg=="),
        _notification("process/closed", 4),
        _notification("process/exited", 2, exitCode=4, sandboxDenied=False, signal=None),
    ]
    async with trio.open_nursery() as nursery:
        url = await nursery.start(_scripted_server, frames)
        async with open_driver(url, handshake=False) as d:
            summary = await d.collect("p")
        nursery.cancel_scope.cancel()
    assert summary == {
        "events": "p",
        "output": {"pty": "ab"},
        "exitCode": 4,
        "closed": True,
        "violations": [],
    }


async def test_collect_reports_a_seq_that_never_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hole below closed's seq is waited for only up to STEP_TIMEOUT, then reported."""
    monkeypatch.setattr(scenarios, "STEP_TIMEOUT", 0.3)
    frames = [
        _notification("process/output", 1, stream="stdout", chunk="YQ=="),
        _notification("process/closed", 3),
    ]
    async with trio.open_nursery() as nursery:
        url = await nursery.start(_scripted_server, frames)
        async with open_driver(url, handshake=False) as d:
            summary = await d.collect("p")
        nursery.cancel_scope.cancel()
    assert summary["exitCode"] is None
    assert summary["violations"] == ["seqs are not 1..2: [1, 3]", "0 exited events"]
