"""Raw JSON-RPC scenarios that record comparable transcripts from any exec server.

This driver speaks the wire protocol by hand (dicts over ``trio_websocket``), independent of
trio_exec's own client, so that it can check our server and the reference server
(``codex exec-server`` 0.169) by the same yardstick.

A *scenario* is an ``async def scenario(driver: RawDriver) -> Transcript``. It drives one
connection that has completed ``initialize`` + ``initialized`` and returns the transcript the
driver recorded: a list of normalised dicts, one per response received (``{"call": method,
"result": ...}`` or ``{"call": method, "error": {"code", "message"}}``) and one per process
whose notifications were collected (``{"events": processId, "output": {...}, "exitCode": ...,
"closed": ..., "violations": [...]}``).

Normalisation makes two servers' transcripts comparable:

* session ids and other UUIDs become ``"<session>"`` / ``"<uuid>"``; request ids are dropped;
* fields that PROTOCOL.md documents as differences are dropped: ``environmentInfo`` and
  ``extensions`` (initialize), ``firstRetainedSeq`` (read), ``sandboxDenied`` and ``signal``
  (exited);
* output is concatenated per stream, because chunk boundaries (and so the number of seqs)
  may differ; chunk seqs are kept only where a scenario makes them deterministic;
* notifications are put in seq order per process and checked against the ordering contract
  (seqs 1..n without holes or repeats, exactly one exited, closed last); breaches are
  listed under ``violations`` instead of raising, so they show up as differences.

:func:`compare_transcripts` lists the differences between two transcripts, field by field.
:data:`SCENARIOS` maps scenario names to scenario functions; :func:`run_scenario` runs one
against a server URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from fnmatch import fnmatchcase
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from ..helpers import open_websocket

__all__ = [
    "DEFAULT_ENV",
    "SCENARIOS",
    "STEP_TIMEOUT",
    "ProtocolViolation",
    "RawDriver",
    "Scenario",
    "Transcript",
    "compare_transcripts",
    "normalize_error",
    "normalize_result",
    "open_driver",
    "render_bytes",
    "run_scenario",
    "summarize_events",
]

Message = dict[str, Any]
"""One JSON-RPC message as decoded from a frame."""

Transcript = list[dict[str, Any]]
"""A normalised record of what a server answered during a scenario."""

Scenario = Callable[["RawDriver"], Awaitable[Transcript]]
"""A scenario: drives one initialised connection and returns the driver's transcript."""

STEP_TIMEOUT = 10.0
"""Seconds that any single I/O step (a request, a wait for output or for closed) may take."""

DEFAULT_ENV: dict[str, str] = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
"""The exact child environment used by scenarios that need no particular one."""

PYTHON = sys.executable
CWD = "file:///tmp"
RENDER_LIMIT = 1024
"""Output longer than this is rendered as its length and digest instead of its text."""

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# A peer address such as 127.0.0.1:39716 (the reference names the client in parse errors).
_ADDRESS_RE = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}:\d+\b")

# Fields PROTOCOL.md documents as allowed differences between trio_exec and the reference.
_DROPPED_INITIALIZE_FIELDS = frozenset({"environmentInfo", "extensions"})
_DROPPED_READ_FIELDS = frozenset({"firstRetainedSeq"})


class ProtocolViolation(Exception):
    """The server sent something the raw driver cannot interpret (not a JSON object, ...)."""


# --------------------------------------------------------------------------------------------
# Normalisation (pure functions)


def render_bytes(data: bytes) -> str:
    """A stable, readable rendering of output bytes for transcripts.

    Up to :data:`RENDER_LIMIT` bytes: the UTF-8 text, with undecodable bytes as ``\\xNN``.
    Longer: ``"<N bytes sha256=PREFIX>"``, which still detects any loss or reordering.
    """
    if len(data) <= RENDER_LIMIT:
        return data.decode("utf-8", "backslashreplace")
    return f"<{len(data)} bytes sha256={hashlib.sha256(data).hexdigest()[:16]}>"


def _scrub(value: Any) -> Any:
    """Replace UUIDs and IP:port addresses inside any string of a JSON value."""
    if isinstance(value, str):
        return _ADDRESS_RE.sub("<address>", _UUID_RE.sub("<uuid>", value))
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    return value


def _decode_chunk(chunk: Any) -> bytes:
    if not isinstance(chunk, str):
        raise ProtocolViolation(f"chunk is not a base64 string: {chunk!r}")
    return base64.b64decode(chunk, validate=True)


def _concat_chunks(chunks: list[Mapping[str, Any]]) -> dict[str, str]:
    """Concatenate chunk payloads per stream, in the order given; render each stream."""
    per_stream: dict[str, bytes] = {}
    for item in chunks:
        stream = str(item.get("stream"))
        per_stream[stream] = per_stream.get(stream, b"") + _decode_chunk(item.get("chunk"))
    return {stream: render_bytes(data) for stream, data in sorted(per_stream.items())}


def normalize_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """``{"code", "message"}`` of a JSON-RPC error, UUIDs scrubbed; ``data`` is dropped."""
    return {"code": error.get("code"), "message": _scrub(error.get("message"))}


def normalize_result(method: str, result: Any, *, keep_chunk_seqs: bool = False) -> Any:
    """Normalise the result of *method* for comparison between servers.

    * ``initialize``: only ``sessionId``, as ``"<session>"``.
    * ``process/read``: ``chunks`` becomes ``output`` (text per stream, see
      :func:`render_bytes`) and, with *keep_chunk_seqs*, ``chunkSeqs`` (the seqs in order);
      ``firstRetainedSeq`` is dropped; the other fields are kept as they are.
    * anything else: kept, with UUIDs scrubbed.
    """
    if method == "initialize" and isinstance(result, dict):
        kept = {k: v for k, v in result.items() if k not in _DROPPED_INITIALIZE_FIELDS}
        if "sessionId" in kept:
            kept["sessionId"] = "<session>"
        return _scrub(kept)
    if method == "process/read" and isinstance(result, dict):
        normalized: dict[str, Any] = {}
        for key, value in result.items():
            if key in _DROPPED_READ_FIELDS:
                continue
            if key == "chunks" and isinstance(value, list):
                normalized["output"] = _concat_chunks(value)
                if keep_chunk_seqs:
                    normalized["chunkSeqs"] = [item.get("seq") for item in value]
                continue
            normalized[key] = value
        return _scrub(normalized)
    return _scrub(result)


def summarize_events(process_id: str, notifications: list[Message]) -> dict[str, Any]:
    """Summarise one process's ``process/*`` notifications as a transcript entry.

    The notifications are ordered by ``seq`` (arrival order may differ); output is
    concatenated per stream; ``exitCode`` is that of the ``exited`` event (``None`` if none);
    ``closed`` says whether ``process/closed`` came. ``violations`` lists breaches of the
    ordering contract: seqs not exactly 1..n, not exactly one exited, closed not last.
    """
    ordered = sorted(notifications, key=lambda m: _seq_key(m))
    violations: list[str] = []
    seqs = [m["params"].get("seq") for m in ordered]
    if seqs != list(range(1, len(seqs) + 1)):
        violations.append(f"seqs are not 1..{len(seqs)}: {seqs}")
    output: list[Mapping[str, Any]] = []
    exit_codes: list[Any] = []
    closed_at: list[int] = []
    for index, message in enumerate(ordered):
        method = message.get("method")
        params = message["params"]
        if method == "process/output":
            output.append(params)
        elif method == "process/exited":
            exit_codes.append(params.get("exitCode"))
        elif method == "process/closed":
            closed_at.append(index)
        else:
            violations.append(f"unexpected notification {method!r}")
    if len(exit_codes) != 1:
        violations.append(f"{len(exit_codes)} exited events")
    if len(closed_at) > 1:
        violations.append(f"{len(closed_at)} closed events")
    if closed_at and closed_at[-1] != len(ordered) - 1:
        violations.append("closed is not the last event")
    return {
        "events": process_id,
        "output": _concat_chunks(output),
        "exitCode": exit_codes[0] if exit_codes else None,
        "closed": bool(closed_at),
        "violations": violations,
    }


def _seq_key(message: Message) -> int:
    seq = message["params"].get("seq")
    return seq if isinstance(seq, int) else -1


# --------------------------------------------------------------------------------------------
# Comparison


def compare_transcripts(
    ours: Transcript, theirs: Transcript, *, ignore: Collection[str] = ()
) -> list[str]:
    """List the differences between two transcripts, one line per differing field.

    Each line reads ``PATH: ours=X theirs=Y``, where ``PATH`` starts with the entry index and
    what the entry is (``[3] process/read`` or ``[5] events p1``), followed by the dotted
    field path (``.result.nextSeq``, ``.output.stdout``, ``.violations[0]``). Entries missing
    on one side, and keys present on only one side, are reported as ``<missing>``.

    *ignore* holds ``fnmatch`` patterns matched against the field path without the entry
    prefix, e.g. ``"error.message"`` or ``"result.*"``; matching fields are not compared.
    An empty list means the transcripts agree.
    """
    differences: list[str] = []
    for index in range(max(len(ours), len(theirs))):
        mine = ours[index] if index < len(ours) else _MISSING
        other = theirs[index] if index < len(theirs) else _MISSING
        label = _entry_label(index, mine if mine is not _MISSING else other)
        _diff(mine, other, label, "", ignore, differences)
    return differences


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _entry_label(index: int, entry: Any) -> str:
    if isinstance(entry, dict):
        if "call" in entry:
            return f"[{index}] {entry['call']}"
        if "events" in entry:
            return f"[{index}] events {entry['events']}"
    return f"[{index}]"


def _diff(
    mine: Any, other: Any, label: str, path: str, ignore: Collection[str], out: list[str]
) -> None:
    if path and any(fnmatchcase(path, pattern) for pattern in ignore):
        return
    if isinstance(mine, dict) and isinstance(other, dict):
        for key in [*mine, *(k for k in other if k not in mine)]:
            child = f"{path}.{key}" if path else key
            _diff(mine.get(key, _MISSING), other.get(key, _MISSING), label, child, ignore, out)
        return
    if isinstance(mine, list) and isinstance(other, list):
        for i in range(max(len(mine), len(other))):
            _diff(
                mine[i] if i < len(mine) else _MISSING,
                other[i] if i < len(other) else _MISSING,
                label,
                f"{path}[{i}]",
                ignore,
                out,
            )
        return
    # bool is an int in Python; True must not equal 1 here.
    if type(mine) is not type(other) or mine != other:
        where = f"{label}.{path}" if path else label
        out.append(f"{where}: ours={mine!r} theirs={other!r}")


# --------------------------------------------------------------------------------------------
# The driver


class RawDriver:
    """One websocket connection speaking raw JSON-RPC, recording a transcript.

    Every wait is bounded by :data:`STEP_TIMEOUT` (``trio.TooSlowError`` otherwise). There is
    no background task: the driver reads frames only while a method waits, and files each
    one away (responses by id, notifications by ``processId``), so nothing is lost whatever
    order the server sends things in.
    """

    def __init__(self, ws: WebSocketConnection, url: str) -> None:
        self.ws = ws
        self.url = url
        """The server URL, for scenarios that open a second connection."""
        self.transcript: Transcript = []
        """What the scenario has recorded so far."""
        self.initialize_result: Any = None
        """The raw ``initialize`` result, when :func:`open_driver` did the handshake."""
        self.notifications: defaultdict[str, list[Message]] = defaultdict(list)
        """``process/*`` notifications received so far, by processId, in arrival order."""
        self.other_notifications: list[Message] = []
        """Notifications without a processId."""
        self._responses: dict[Any, Message] = {}
        self._next_id = 1

    # -- sending and receiving ---------------------------------------------------------------

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one message as a compact JSON text frame."""
        await self.send_text(json.dumps(message, separators=(",", ":")))

    async def send_text(self, text: str) -> None:
        """Send one text frame as is (for malformed-frame tests)."""
        with trio.fail_after(STEP_TIMEOUT):
            await self.ws.send_message(text)

    async def _receive_one(self) -> None:
        raw = await self.ws.get_message()
        try:
            message = json.loads(raw)
        except ValueError as exc:
            raise ProtocolViolation(f"server sent a frame that is not JSON: {raw!r}") from exc
        if not isinstance(message, dict):
            raise ProtocolViolation(f"server sent a non-object: {message!r}")
        if "id" in message and ("result" in message or "error" in message):
            self._responses[_id_key(message["id"])] = message
        elif "method" in message and "id" not in message:
            params = message.get("params")
            if isinstance(params, dict) and isinstance(params.get("processId"), str):
                self.notifications[params["processId"]].append(message)
            else:
                self.other_notifications.append(message)
        else:
            raise ProtocolViolation(f"unexpected message from the server: {message!r}")

    async def wait_response(self, request_id: Any) -> Message:
        """Wait for the response (result or error) with *request_id*."""
        key = _id_key(request_id)
        with trio.fail_after(STEP_TIMEOUT):
            while key not in self._responses:
                await self._receive_one()
        return self._responses.pop(key)

    async def request(
        self, method: str, params: Any = None, *, omit_params: bool = False
    ) -> Message:
        """Send a request with the next integer id and return its raw response message."""
        request_id = self._next_id
        self._next_id += 1
        message: dict[str, Any] = {"id": request_id, "method": method}
        if not omit_params:
            message["params"] = params
        await self.send(message)
        return await self.wait_response(request_id)

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification."""
        await self.send({"method": method, "params": params})

    # -- recording ----------------------------------------------------------------------------

    def record(self, entry: dict[str, Any]) -> None:
        """Append an already normalised entry to the transcript."""
        self.transcript.append(entry)

    def record_response(
        self, method: str, response: Message, *, keep_chunk_seqs: bool = False
    ) -> dict[str, Any]:
        """Normalise *response* to *method* and append it to the transcript."""
        entry: dict[str, Any] = {"call": method}
        if "error" in response:
            entry["error"] = normalize_error(response["error"])
        else:
            entry["result"] = normalize_result(
                method, response.get("result"), keep_chunk_seqs=keep_chunk_seqs
            )
        self.record(entry)
        return entry

    async def call(
        self, method: str, params: Any = None, *, keep_chunk_seqs: bool = False
    ) -> Message:
        """:meth:`request` and record the normalised response; returns the raw response."""
        response = await self.request(method, params)
        self.record_response(method, response, keep_chunk_seqs=keep_chunk_seqs)
        return response

    # -- process helpers ----------------------------------------------------------------------

    async def start(
        self,
        process_id: str,
        argv: list[str],
        *,
        cwd: str = CWD,
        env: Mapping[str, str] | None = None,
        tty: bool = False,
        pipe_stdin: bool = False,
        **extra: Any,
    ) -> Message:
        """``process/start`` with the usual fields (recorded); returns the raw response."""
        params: dict[str, Any] = {
            "processId": process_id,
            "argv": argv,
            "cwd": cwd,
            "env": dict(DEFAULT_ENV if env is None else env),
            "tty": tty,
            "pipeStdin": pipe_stdin,
            **extra,
        }
        return await self.call("process/start", params)

    async def write(self, process_id: str, data: bytes, write_id: str) -> Message:
        """``process/write`` of *data* (recorded)."""
        chunk = base64.b64encode(data).decode("ascii")
        params = {"processId": process_id, "chunk": chunk, "writeId": write_id}
        return await self.call("process/write", params)

    def output(self, process_id: str, stream: str) -> bytes:
        """The bytes of *stream* received so far for *process_id*, in seq order."""
        ordered = sorted(self.notifications.get(process_id, []), key=_seq_key)
        return b"".join(
            _decode_chunk(m["params"].get("chunk"))
            for m in ordered
            if m.get("method") == "process/output" and m["params"].get("stream") == stream
        )

    async def wait_output(self, process_id: str, stream: str, needle: bytes) -> None:
        """Wait until *stream* of *process_id* contains *needle*."""
        with trio.fail_after(STEP_TIMEOUT):
            while needle not in self.output(process_id, stream):
                await self._receive_one()

    def _has(self, process_id: str, method: str) -> bool:
        return any(m.get("method") == method for m in self.notifications.get(process_id, []))

    async def wait_notification(self, process_id: str, method: str) -> None:
        """Wait until a *method* notification (e.g. ``process/exited``) arrived for it."""
        with trio.fail_after(STEP_TIMEOUT):
            while not self._has(process_id, method):
                await self._receive_one()

    async def wait_closed(self, process_id: str) -> None:
        """Wait for ``process/closed`` of *process_id*, then for every lower seq.

        ``closed`` may overtake events with lower seqs on the wire: the reference assigns a
        seq under its process lock and sends after releasing it, from one task per event
        source, so its ``exited`` now and then comes after ``closed``. A client that
        publishes in seq order waits for them, and so does this one, up to
        :data:`STEP_TIMEOUT` (a seq that never comes is then a hole, not an error).
        """
        await self.wait_notification(process_id, "process/closed")
        closed_seq = max(
            _seq_key(m)
            for m in self.notifications[process_id]
            if m.get("method") == "process/closed"
        )
        wanted = set(range(1, closed_seq))
        with trio.move_on_after(STEP_TIMEOUT):
            while not wanted <= {_seq_key(m) for m in self.notifications[process_id]}:
                await self._receive_one()

    async def collect(self, process_id: str) -> dict[str, Any]:
        """Wait for ``process/closed`` of *process_id* and for every lower seq, then record
        and return its summary.

        Events that ``closed`` overtook on the wire are waited for, see :meth:`wait_closed`;
        one that never comes shows as a hole in the summary's ``violations``. See
        :func:`summarize_events`.
        The notifications are consumed: a later collect of a reused processId sees only
        what arrived after this one.
        """
        await self.wait_closed(process_id)
        summary = summarize_events(process_id, self.notifications.pop(process_id))
        self.record(summary)
        return summary


def _id_key(request_id: Any) -> Any:
    # JSON ids are ints or strings; keep 1 and "1" apart.
    return (type(request_id).__name__, request_id)


@asynccontextmanager
async def open_driver(url: str, *, handshake: bool = True) -> AsyncIterator[RawDriver]:
    """Connect to *url*; with *handshake*, send ``initialize`` and ``initialized`` first.

    The ``initialize`` exchange is not recorded in the transcript (the raw result is kept in
    :attr:`RawDriver.initialize_result`); a failed ``initialize`` raises
    :class:`ProtocolViolation`.
    """
    async with open_websocket(
        url, connect_timeout=STEP_TIMEOUT, disconnect_timeout=STEP_TIMEOUT
    ) as connection:
        driver = RawDriver(connection, url)
        if handshake:
            response = await driver.request("initialize", {"clientName": "trio-exec-interop"})
            if "result" not in response:
                raise ProtocolViolation(f"initialize failed: {response!r}")
            driver.initialize_result = response["result"]
            await driver.notify("initialized", {})
        yield driver


async def run_scenario(url: str, scenario: Scenario) -> Transcript:
    """Open a fresh, initialised connection to *url* and run *scenario* on it."""
    async with open_driver(url) as driver:
        return await scenario(driver)


# --------------------------------------------------------------------------------------------
# Scenarios


def _py(code: str) -> list[str]:
    return [PYTHON, "-c", code]


async def scenario_streams_and_exit(d: RawDriver) -> Transcript:
    """stdout + stderr + exit 3: the notifications, then ``read`` from seq 0 after closed."""
    await d.start("p1", ["sh", "-c", "echo hi; echo err >&2; exit 3"])
    await d.collect("p1")
    # No maxBytes: nextSeq is the global next seq (2 outputs + exited + closed -> 5).
    await d.call("process/read", {"processId": "p1", "afterSeq": 0})
    # Everything is retained: reading again gives the same answer.
    await d.call("process/read", {"processId": "p1"})
    return d.transcript


_BIG_OUTPUT = (
    "import sys\n"
    "data = bytes(range(256)) * 1000\n"  # 256 000 bytes, many chunks, not UTF-8
    "sys.stdout.buffer.write(data)\n"
    "sys.stdout.flush()\n"
    "sys.stderr.buffer.write(b'\\xff\\xfe caf\\xc3\\xa9 \\x00 end\\n')\n"
    "sys.stderr.flush()\n"
)


async def scenario_large_binary_output(d: RawDriver) -> Transcript:
    """256 000 binary bytes on stdout, a short non-UTF-8 line on stderr: lossless, in order."""
    await d.start("big", _py(_BIG_OUTPUT))
    await d.collect("big")
    read = await d.request("process/read", {"processId": "big", "afterSeq": 0})
    result = read["result"]
    # Chunking may differ; record what does not depend on it.
    d.record(
        {
            "call": "process/read",
            "result": {
                "output": _concat_chunks(result["chunks"]),
                "exited": result["exited"],
                "exitCode": result["exitCode"],
                "closed": result["closed"],
            },
        }
    )
    return d.transcript


async def scenario_exit_codes(d: RawDriver) -> Transcript:
    """Exit codes 0, 255, and 128+N for SIGKILL / SIGTERM / SIGINT (non-tty)."""
    cases = {
        "true": ["true"],
        "exit255": ["sh", "-c", "exit 255"],
        "sigkill": ["sh", "-c", "kill -KILL $$"],
        "sigterm": ["sh", "-c", "kill -TERM $$"],
        "sigint": _py(
            "import os, signal\n"
            "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
            "os.kill(os.getpid(), signal.SIGINT)\n"
        ),
    }
    for process_id, argv in cases.items():
        await d.start(process_id, argv)
        await d.collect(process_id)
    return d.transcript


_ECHO_LINES = (
    "import sys\n"
    "for _ in range(3):\n"
    "    sys.stdout.write(sys.stdin.readline())\n"
    "    sys.stdout.flush()\n"
    "sys.stdin.readline()\n"  # wait for a last line, so exit comes after all output
)


async def scenario_pipe_stdin_write(d: RawDriver) -> Transcript:
    """``cat`` with pipeStdin: writes echo back, a repeated writeId is not written twice,
    an empty chunk is accepted and keeps stdin open, interrupt ends cat with 130."""
    await d.start("cat", ["cat"], pipe_stdin=True)
    await d.write("cat", b"hello\n", "w1")
    await d.wait_output("cat", "stdout", b"hello\n")
    await d.write("cat", b"hello\n", "w1")  # same writeId: acknowledged, not written
    await d.write("cat", b"second\n", "w2")
    await d.wait_output("cat", "stdout", b"second\n")
    await d.write("cat", b"", "w3")  # empty: accepted, does not close stdin
    await d.write("cat", b"third\n", "w4")  # cat still reads
    await d.wait_output("cat", "stdout", b"third\n")
    await d.call("process/signal", {"processId": "cat", "signal": "interrupt"})
    await d.collect("cat")
    return d.transcript


async def scenario_stdin_closed_without_pipe(d: RawDriver) -> Transcript:
    """Without pipeStdin the child reads EOF and a write answers ``stdinClosed``."""
    code = "import sys, time\nprint(repr(sys.stdin.read()), flush=True)\ntime.sleep(60)\n"
    await d.start("nopipe", _py(code))
    await d.wait_output("nopipe", "stdout", b"''\n")
    await d.write("nopipe", b"ignored\n", "w1")
    await d.call("process/terminate", {"processId": "nopipe"})
    await d.collect("nopipe")
    return d.transcript


async def scenario_tty(d: RawDriver) -> Transcript:
    """tty:true: one ``pty`` stream with stderr merged, CRLF line endings, 24x80 window."""
    await d.start("t1", ["sh", "-c", "stty size; echo out; echo err >&2; exit 4"], tty=True)
    await d.collect("t1")
    return d.transcript


async def scenario_tty_write(d: RawDriver) -> Transcript:
    """A write to a tty child is echoed by the line discipline and read by the child."""
    await d.start("t2", ["sh", "-c", 'read line; echo "got:$line"'], tty=True)
    await d.write("t2", b"hi\n", "w1")
    await d.collect("t2")
    return d.transcript


async def scenario_read_max_bytes(d: RawDriver) -> Transcript:
    """``process/read`` with afterSeq and maxBytes, and the reference's nextSeq quirk.

    Three 3-byte chunks (seq 1-3, made deterministic by waiting for each echo), then exited
    (seq 4) and closed (seq 5). With maxBytes, nextSeq is the last returned chunk's seq + 1
    even when nothing was cut off; without it, nextSeq is the global next seq (6).
    """
    await d.start("r", _py(_ECHO_LINES), pipe_stdin=True)
    for index, line in enumerate([b"aa\n", b"bb\n", b"cc\n"]):
        await d.write("r", line, f"w{index}")
        await d.wait_output("r", "stdout", line)
    await d.write("r", b"quit\n", "wq")
    await d.collect("r")
    reads: list[dict[str, Any]] = [
        {"afterSeq": 0},
        {"afterSeq": 0, "maxBytes": 1000},
        {"afterSeq": 0, "maxBytes": 6},
        {"afterSeq": 0, "maxBytes": 4},
        {"afterSeq": 0, "maxBytes": 1},
        {"afterSeq": 0, "maxBytes": 0},
        {"afterSeq": 1, "maxBytes": 1000},
        {"afterSeq": 2},
        {"afterSeq": 3, "maxBytes": 1000},
        {"afterSeq": 3},
        {"afterSeq": 5},
        {"afterSeq": 99},
    ]
    for params in reads:
        await d.call("process/read", {"processId": "r", **params}, keep_chunk_seqs=True)
    return d.transcript


async def scenario_read_long_poll(d: RawDriver) -> Transcript:
    """``waitMs`` makes read wait for new output; on a silent process it times out empty.

    The child prints once after a short delay, then stays silent until terminated. (With the
    reference's default ``--concurrent-requests 1`` a pending long-poll blocks every other
    request of the connection, so the scenario never overlaps requests.)
    """
    await d.start("lp", ["sh", "-c", "sleep 0.3; echo late; exec sleep 60"])
    await d.call("process/read", {"processId": "lp", "afterSeq": 0, "waitMs": 5000})
    await d.call("process/read", {"processId": "lp", "afterSeq": 1, "waitMs": 200})
    await d.call("process/terminate", {"processId": "lp"})
    await d.collect("lp")
    # afterSeq 1: no chunk, but exited (seq 2) is a terminal event the caller has not passed.
    await d.call("process/read", {"processId": "lp", "afterSeq": 1, "waitMs": 5000})
    return d.transcript


async def scenario_terminate_running(d: RawDriver) -> Transcript:
    """terminate kills the whole process group at once (a background grandchild too, or
    closed would never come); a second terminate answers running:false."""
    await d.start("term", ["sh", "-c", "sleep 100 & echo started; wait"])
    await d.wait_output("term", "stdout", b"started\n")
    await d.call("process/terminate", {"processId": "term"})
    await d.collect("term")
    await d.call("process/terminate", {"processId": "term"})
    await d.call("process/read", {"processId": "term", "afterSeq": 0})
    return d.transcript


async def scenario_signal_interrupt(d: RawDriver) -> Transcript:
    """signal interrupt delivers SIGINT: a trap runs; an untrapped child exits 130.

    The child writes with ``os.write`` (no buffer, no lock): a handler that used ``print``
    could hit "reentrant call inside BufferedWriter" when the signal lands while the main
    code is still returning from its own ``print``.
    """
    code = (
        "import os, signal, time\n"
        "def on_int(signum, frame):\n"
        "    os.write(1, b'trapped\\n')\n"
        "    os._exit(5)\n"
        "signal.signal(signal.SIGINT, on_int)\n"
        "os.write(1, b'ready\\n')\n"
        "time.sleep(60)\n"
    )
    await d.start("trap", _py(code))
    await d.wait_output("trap", "stdout", b"ready\n")
    await d.call("process/signal", {"processId": "trap", "signal": "interrupt"})
    await d.collect("trap")
    await d.start("plain", ["sleep", "60"])
    await d.call("process/signal", {"processId": "plain", "signal": "interrupt"})
    await d.collect("plain")
    # After exit, signal is a silent no-op.
    await d.call("process/signal", {"processId": "plain", "signal": "interrupt"})
    return d.transcript


async def scenario_unknown_process(d: RawDriver) -> Transcript:
    """Each process method on a processId that was never started."""
    await d.call("process/read", {"processId": "nope", "afterSeq": 0})
    await d.write("nope", b"x", "w1")
    await d.call("process/terminate", {"processId": "nope"})
    await d.call("process/signal", {"processId": "nope", "signal": "interrupt"})
    return d.transcript


async def scenario_invalid_params(d: RawDriver) -> Transcript:
    """-32602 for bad params, -32601 for an unknown method; the connection keeps working."""
    await d.start("e1", [])  # empty argv
    await d.start("e2", ["true"], cwd="/tmp")  # cwd not a file:// URI
    await d.call(  # tty missing
        "process/start",
        {"processId": "e3", "argv": ["true"], "cwd": CWD, "env": DEFAULT_ENV},
    )
    await d.call(  # processId not a string
        "process/start",
        {"processId": 7, "argv": ["true"], "cwd": CWD, "env": DEFAULT_ENV, "tty": False},
    )
    await d.start("live", ["cat"], pipe_stdin=True)
    await d.write("live", b"x", "")  # empty writeId
    await d.call("process/write", {"processId": "live", "chunk": "aGkK"})  # writeId missing
    await d.call("process/signal", {"processId": "live", "signal": "bogus"})
    await d.call("process/no-such-method", {"processId": "live"})
    await d.call("process/terminate", {"processId": "live"})
    await d.collect("live")
    return d.transcript


async def scenario_duplicate_process_id(d: RawDriver) -> Transcript:
    """A processId in use is refused (-32600), also after exit while it is retained."""
    await d.start("dup", ["sleep", "60"])
    await d.start("dup", ["true"])
    await d.call("process/terminate", {"processId": "dup"})
    await d.collect("dup")
    await d.start("dup", ["true"])
    return d.transcript


async def scenario_spawn_failure(d: RawDriver) -> Transcript:
    """Spawn failures are -32603 errors carrying the OS error; the id stays free."""
    await d.start("f1", ["/nonexistent/program"])
    await d.start("f2", ["true"], cwd="file:///nonexistent-dir")
    await d.start("f3", ["true"], cwd="file:///etc/passwd")  # cwd is a file
    await d.start("f4", ["/etc/passwd"])  # not executable
    await d.start("f1", ["true"])  # the failed id can be used
    await d.collect("f1")
    return d.transcript


async def scenario_env_cwd_arg0(d: RawDriver) -> Transcript:
    """env is the child's exact environment; cwd is a file URI; arg0 replaces argv[0]."""
    await d.start("env", ["env"], env={"PATH": "/usr/bin:/bin", "ONLY": "this"})
    await d.collect("env")
    await d.start("cwd", ["pwd"], cwd="file:///")
    await d.collect("cwd")
    code = "print(open('/proc/self/cmdline', 'rb').read().split(b'\\0')[0].decode())"
    await d.start("arg0", _py(code), arg0="customzero")
    await d.collect("arg0")
    return d.transcript


async def scenario_handshake(d: RawDriver) -> Transcript:
    """A second initialize is refused; a fresh connection must initialize first; a
    malformed frame gets an error with id -1 and the connection keeps working."""
    await d.call("initialize", {"clientName": "again"})
    await d.send_text("{not json")
    d.record_response("<malformed frame>", await d.wait_response(-1))
    await d.call("process/read", {"processId": "nope"})  # still served
    async with open_driver(d.url, handshake=False) as fresh:
        start = {"processId": "x", "argv": ["true"], "cwd": CWD, "env": {}, "tty": False}
        d.record_response("process/start", await fresh.request("process/start", start))
        d.record_response("process/read", await fresh.request("process/read", {"processId": "x"}))
        init = await fresh.request("initialize", {"clientName": "late"})
        d.record_response("initialize", init)
        # Between initialize and initialized.
        d.record_response("process/read", await fresh.request("process/read", {"processId": "x"}))
    return d.transcript


SCENARIOS: dict[str, Scenario] = {
    "streams_and_exit": scenario_streams_and_exit,
    "large_binary_output": scenario_large_binary_output,
    "exit_codes": scenario_exit_codes,
    "pipe_stdin_write": scenario_pipe_stdin_write,
    "stdin_closed_without_pipe": scenario_stdin_closed_without_pipe,
    "tty": scenario_tty,
    "tty_write": scenario_tty_write,
    "read_max_bytes": scenario_read_max_bytes,
    "read_long_poll": scenario_read_long_poll,
    "terminate_running": scenario_terminate_running,
    "signal_interrupt": scenario_signal_interrupt,
    "unknown_process": scenario_unknown_process,
    "invalid_params": scenario_invalid_params,
    "duplicate_process_id": scenario_duplicate_process_id,
    "spawn_failure": scenario_spawn_failure,
    "env_cwd_arg0": scenario_env_cwd_arg0,
    "handshake": scenario_handshake,
}
"""Every scenario by name, in a stable order."""
