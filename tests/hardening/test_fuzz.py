"""Hostile frames against a live server over a real websocket: answered, never fatal.

A server (with a well-behaved client connection of its own) runs in a Trio loop on a
thread of its own for the whole test; hypothesis, on the main thread, sends it batches of
generated frames, one fresh websocket connection per batch. The frames are truncated
JSON, wrong types, huge integers, negative sizes, invalid base64, unknown methods,
notifications and client responses out of order, deep nesting, invalid UTF-8 in binary
frames, non-objects, junk, and sometimes one oversized frame to end a batch. Checked:

* every request frame gets exactly one well-formed response with its id (an error with
  the expected code for the malformed ones); every unparsable frame gets exactly one
  well-formed error with id -1; notifications and client responses get nothing
  (PROTOCOL.md); error messages stay short;
* an oversized frame gets the documented close (1009, ``Exceeded maximum message
  size: N bytes``); the next batch connects again;
* the well-behaved connection runs a process between batches and at the end;
* afterwards the server is back to its baseline (one connection, no process) and this
  test process has no child left (``ps --ppid``).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, Literal, TypeVar

import attrs
import pytest
import trio
import trio_websocket
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import trio_exec as tx
from trio_exec._server import ExecServer, ServerStatistics, serve_websocket
from trio_exec._transport import open_websocket_transport

from .helpers import TIMEOUT, child_processes, existing_children, wait_no_children

FRAME_LIMIT: Final = 64 * 1024
"""The fuzzed server's ``max_message_bytes``: small, so oversized frames are cheap."""
MIN_FRAMES: Final = 5000
"""Hostile frames the test must send in all."""
EXAMPLES: Final = 100
"""Batches (hypothesis examples)."""
BATCH_SIZE: Final = (55, 75)
"""Frames per batch, at least and at most (55 x 100 examples >= MIN_FRAMES)."""
MAX_ERROR_MESSAGE_CHARS: Final = 1000
"""An error message never echoes a long input back."""

INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
SERVER_METHODS: Final = frozenset(
    {
        "initialize",
        "process/start",
        "process/read",
        "process/write",
        "process/signal",
        "process/terminate",
        "process/closeStdin",
        "process/resize",
        "process/list",
        "environment/status",
        "environment/info",
        "environmentConfig/read",
        "fs/getMetadata",
        "fs/watchMissing",
    }
)
I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1
U64_MAX: Final = 2**64 - 1

Reply = Literal["parse", "request", "none"]
"""What a frame must get: one error with id -1, one response with its id, or nothing."""


@attrs.frozen(kw_only=True, repr=False)
class Frame:
    """A hostile frame and what the server must answer."""

    def __repr__(self) -> str:
        shown = repr(self.message if self.message is not None else self.raw)
        if len(shown) > 160:
            shown = f"{shown[:150]}... ({len(shown)} chars)"
        return f"<Frame {self.kind}: {shown}>"

    kind: str
    """The category, for failure messages."""
    reply: Reply
    message: dict[str, Any] | None = None
    """For ``request`` frames: the request; its ``id`` is set when the batch is sent."""
    raw: str | bytes | None = None
    """For other frames: the frame as sent."""
    codes: frozenset[int] | None = None
    """For ``request`` frames: the error codes allowed; None allows a result too."""
    binary: bool = False
    """Send a request as a binary frame (UTF-8 JSON)."""


@attrs.frozen(kw_only=True, repr=False)
class Batch:
    """One connection's worth of frames."""

    def __repr__(self) -> str:
        oversized = "" if self.oversized is None else f", then {len(self.oversized)} bytes"
        return f"<Batch initialize={self.initialize} frames={self.frames}{oversized}>"

    initialize: bool
    """Do the handshake first (else process methods answer -32600, or -32602)."""
    frames: list[Frame]
    oversized: str | bytes | None
    """Sent last, once every other frame was answered: the connection must close."""


# -- strategies ----------------------------------------------------------------------------------

T = TypeVar("T")

short_text = st.text(max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | short_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_text, inner, max_size=3),
    max_leaves=6,
)
process_ids = st.sampled_from(["a", "b", "c", ""])
small_ints = st.integers(0, 2**16)
valid_b64 = st.binary(max_size=48).map(lambda data: base64.b64encode(data).decode())
signals = st.sampled_from(["interrupt", "terminate", "kill", "hangup", "quit", "user1", "user2"])


def _optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


# The valid params of each method; frames below break them in one place.
VALID_PARAMS: Final[dict[str, st.SearchStrategy[dict[str, Any]]]] = {
    "initialize": st.fixed_dictionaries({"clientName": short_text}),
    "process/start": st.fixed_dictionaries(
        {
            "processId": process_ids,
            # Only harmless programs: a generated argv[0] could name anything.
            "argv": st.sampled_from([["true"], ["cat"], ["/nonexistent/program"]]),
            "cwd": st.sampled_from(["file:///tmp", "file:///nonexistent"]),
            "env": st.dictionaries(
                st.text(
                    st.characters(codec="ascii", exclude_characters="=\x00"), min_size=1, max_size=8
                ),
                st.text(max_size=12),
                max_size=3,
            ),
            "tty": st.booleans(),
        },
        optional={"pipeStdin": st.booleans(), "arg0": st.none() | short_text},
    ),
    "process/read": st.fixed_dictionaries(
        {"processId": process_ids},
        optional={"afterSeq": small_ints, "maxBytes": small_ints, "waitMs": small_ints},
    ),
    "process/write": st.fixed_dictionaries(
        {"processId": process_ids, "chunk": valid_b64, "writeId": st.text(min_size=1, max_size=8)}
    ),
    "process/signal": st.fixed_dictionaries({"processId": process_ids, "signal": signals}),
    "process/terminate": st.fixed_dictionaries(
        {"processId": process_ids}, optional={"graceMs": st.integers(0, 50)}
    ),
    "process/closeStdin": st.fixed_dictionaries({"processId": process_ids}),
    "process/resize": st.fixed_dictionaries(
        {"processId": process_ids, "rows": st.integers(1, 0xFFFF), "cols": st.integers(1, 0xFFFF)}
    ),
    "process/list": st.just({}),
}

# Typed fields, by kind; "?" marks a field that may be absent (or null).
FIELDS: Final[dict[str, dict[str, str]]] = {
    "initialize": {"clientName": "str"},
    "process/start": {
        "processId": "str",
        "argv": "strlist",
        "cwd": "str",
        "env": "strmap",
        "tty": "bool",
        "pipeStdin": "bool?",
        "arg0": "str?",
    },
    "process/read": {"processId": "str", "afterSeq": "int?", "maxBytes": "int?", "waitMs": "int?"},
    "process/write": {"processId": "str", "chunk": "str", "writeId": "str"},
    "process/signal": {"processId": "str", "signal": "str"},
    "process/terminate": {"processId": "str", "graceMs": "int?"},
    "process/closeStdin": {"processId": "str"},
    "process/resize": {"processId": "str", "rows": "int", "cols": "int"},
}
SIZE_FIELDS: Final = [
    ("process/read", "afterSeq"),
    ("process/read", "maxBytes"),
    ("process/read", "waitMs"),
    ("process/terminate", "graceMs"),
    ("process/resize", "rows"),
    ("process/resize", "cols"),
]

non_strings = (
    st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(scalars, max_size=2)
    | st.dictionaries(short_text, scalars, max_size=2)
)
WRONG_VALUES: Final[dict[str, st.SearchStrategy[Any]]] = {
    "str": non_strings,
    "int": st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | short_text
    | st.lists(scalars, max_size=2)
    | st.dictionaries(short_text, scalars, max_size=2),
    "bool": st.integers(-5, 5) | short_text | st.lists(scalars, max_size=2),
    "strlist": short_text
    | st.integers()
    | st.lists(non_strings, min_size=1, max_size=3)
    | st.dictionaries(short_text, scalars, max_size=2),
    "strmap": short_text
    | st.integers()
    | st.lists(scalars, max_size=2)
    | st.dictionaries(st.text(min_size=1, max_size=300), non_strings, min_size=1, max_size=2),
}


def _maybe_binary(draw: st.DrawFn, text: str) -> str | bytes:
    """``text`` as a text frame or, sometimes, as a binary frame of its UTF-8."""
    return text.encode() if draw(st.booleans()) else text


def _request(method: str, params: Any, **extra: Any) -> dict[str, Any]:
    return {"method": method, "params": params, **extra}


@st.composite
def wrong_type_frames(draw: st.DrawFn) -> Frame:
    method = draw(st.sampled_from(sorted(FIELDS)))
    params = dict(draw(VALID_PARAMS[method]))
    field, kind = draw(st.sampled_from(sorted(FIELDS[method].items())))
    params[field] = draw(WRONG_VALUES[kind.rstrip("?")])
    return Frame(
        kind="wrong type",
        reply="request",
        message=_request(method, params),
        codes=frozenset({INVALID_PARAMS}),
    )


@st.composite
def missing_field_frames(draw: st.DrawFn) -> Frame:
    method = draw(st.sampled_from(sorted(FIELDS)))
    params = dict(draw(VALID_PARAMS[method]))
    required = sorted(name for name, kind in FIELDS[method].items() if not kind.endswith("?"))
    del params[draw(st.sampled_from(required))]
    return Frame(
        kind="missing field",
        reply="request",
        message=_request(method, params),
        codes=frozenset({INVALID_PARAMS}),
    )


@st.composite
def params_not_object_frames(draw: st.DrawFn) -> Frame:
    method = draw(st.sampled_from(sorted(FIELDS)))
    params = draw(st.none() | st.lists(scalars, max_size=3) | scalars)
    return Frame(
        kind="params not an object",
        reply="request",
        message=_request(method, params),
        codes=frozenset({INVALID_PARAMS}),
    )


@st.composite
def negative_size_frames(draw: st.DrawFn) -> Frame:
    method, field = draw(st.sampled_from(SIZE_FIELDS))
    params = dict(draw(VALID_PARAMS[method]))
    if field in ("rows", "cols"):
        params[field] = draw(st.integers(I64_MIN, 0) | st.integers(0x10000, I64_MAX))
    else:
        params[field] = draw(st.integers(I64_MIN, -1))
    return Frame(
        kind="negative size",
        reply="request",
        message=_request(method, params),
        codes=frozenset({INVALID_PARAMS}),
    )


@st.composite
def huge_int_frames(draw: st.DrawFn) -> Frame:
    """Integers beyond 64 bits: out of range in a typed field, unparsable past 64 digits."""
    where = draw(st.sampled_from(["field", "id", "literal"]))
    if where == "field":
        method, field = draw(st.sampled_from(SIZE_FIELDS))
        params = dict(draw(VALID_PARAMS[method]))
        params[field] = draw(st.integers(U64_MAX + 1, 10**60) | st.integers(-(10**60), I64_MIN - 1))
        return Frame(
            kind="huge int field",
            reply="request",
            message=_request(method, params),
            codes=frozenset({INVALID_PARAMS}),
        )
    if where == "id":
        request_id = draw(st.integers(I64_MAX + 1, 10**60) | st.integers(-(10**60), I64_MIN - 1))
        text = json.dumps({"id": request_id, "method": "process/list", "params": {}})
        return Frame(kind="huge id", reply="parse", raw=text)
    digits = draw(st.integers(65, 5000))
    literal = "9" * digits
    text = draw(
        st.sampled_from(
            [
                f'{{"id":{literal},"method":"process/list"}}',
                f'{{"id":1,"method":"process/read","params":{{"processId":"a","afterSeq":{literal}}}}}',
                f'{{"id":1,"method":"process/read","params":{{"processId":"a","waitMs":-{literal}.5e3}}}}',
            ]
        )
    )
    return Frame(kind="number literal too long", reply="parse", raw=text)


def _invalid_base64(text: str) -> bool:
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return True
    return base64.b64encode(data).decode() != text


@st.composite
def invalid_base64_frames(draw: st.DrawFn) -> Frame:
    params = dict(draw(VALID_PARAMS["process/write"]))
    params["chunk"] = draw(
        st.text(alphabet="ABCabc012+/=-_ !\n\x00é", min_size=1, max_size=24).filter(_invalid_base64)
    )
    return Frame(
        kind="invalid base64",
        reply="request",
        message=_request("process/write", params),
        codes=frozenset({INVALID_PARAMS}),
    )


@st.composite
def unknown_method_frames(draw: st.DrawFn) -> Frame:
    method = draw(st.text(max_size=300).filter(lambda name: name not in SERVER_METHODS))
    params = draw(st.none() | json_values)
    return Frame(
        kind="unknown method",
        reply="request",
        message=_request(method, params),
        codes=frozenset({METHOD_NOT_FOUND}),
    )


@st.composite
def valid_frames(draw: st.DrawFn) -> Frame:
    """Well-formed requests, sometimes in a binary frame: a result or an error, any code."""
    method = draw(st.sampled_from(sorted(VALID_PARAMS)))
    params = draw(VALID_PARAMS[method])
    return Frame(
        kind=f"valid {method}",
        reply="request",
        message=_request(method, params),
        binary=draw(st.booleans()),
    )


@st.composite
def notification_frames(draw: st.DrawFn) -> Frame:
    """Notifications (``initialized`` out of order, server-only ones, unknown ones) and
    responses from the client: the server answers none of them."""
    choice = draw(st.sampled_from(["initialized", "server-only", "unknown", "result", "error"]))
    message: dict[str, Any]
    if choice == "initialized":
        message = {"method": "initialized", "params": draw(json_values)}
    elif choice == "server-only":
        method = draw(st.sampled_from(["process/output", "process/exited", "process/closed"]))
        message = {
            "method": method,
            "params": {"processId": draw(process_ids), "seq": draw(st.integers(0, 10))},
        }
    elif choice == "unknown":
        message = {"method": draw(short_text), "params": draw(json_values)}
    elif choice == "result":
        message = {"id": draw(st.integers(0, 1000) | short_text), "result": draw(json_values)}
    else:
        error = {"code": draw(st.integers(-40000, 0)), "message": draw(short_text)}
        message = {"id": draw(st.integers(0, 1000) | short_text), "error": error}
    text = json.dumps(message)
    return Frame(
        kind=f"notification {choice}",
        reply="none",
        raw=_maybe_binary(draw, text),
    )


@st.composite
def truncated_frames(draw: st.DrawFn) -> Frame:
    method = draw(st.sampled_from(sorted(VALID_PARAMS)))
    text = json.dumps({"id": 1, **_request(method, draw(VALID_PARAMS[method]))})
    cut = draw(st.integers(0, len(text) - 1))
    return Frame(
        kind="truncated JSON",
        reply="parse",
        raw=_maybe_binary(draw, text[:cut]),
    )


@st.composite
def deep_frames(draw: st.DrawFn) -> Frame:
    """Nesting past the decoder's recursion limit is a parse error; moderate nesting in
    params is an invalid parameter (or ignored by ``process/list``)."""
    if draw(st.booleans()):
        # Under FRAME_LIMIT: up to 20,000 lists or 10,000 objects.
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        depth = draw(st.integers(2_000, 60_000 // (len(opener) + len(closer))))
        return Frame(kind="deep nesting", reply="parse", raw=opener * depth + "1" + closer * depth)
    depth = draw(st.integers(50, 500))
    method = draw(st.sampled_from(sorted(FIELDS)))
    params = dict(draw(VALID_PARAMS[method]))
    nested: Any = 1
    for _ in range(depth):
        nested = [nested]
    params[draw(st.sampled_from(sorted(FIELDS[method])))] = nested
    return Frame(
        kind="nested params",
        reply="request",
        message=_request(method, params),
        codes=frozenset({INVALID_PARAMS}),
    )


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@st.composite
def invalid_utf8_frames(draw: st.DrawFn) -> Frame:
    junk = draw(st.binary(min_size=1, max_size=64).filter(_not_utf8))
    if draw(st.booleans()):  # invalid bytes inside an otherwise valid request
        text = json.dumps({"id": 1, "method": "process/list", "params": {"x": "XX"}}).encode()
        junk = text.replace(b"XX", junk.replace(b'"', b"").replace(b"\\", b"") or b"\xff")
        if not _not_utf8(junk):
            junk += b"\xff"
    return Frame(kind="invalid UTF-8", reply="parse", raw=junk)


def _not_an_object(text: str) -> bool:
    try:
        return type(json.loads(text)) is not dict
    except (ValueError, RecursionError):
        return True


@st.composite
def not_request_frames(draw: st.DrawFn) -> Frame:
    """JSON that is not a JSON-RPC message, bad ids, non-string methods, junk."""
    choice = draw(st.sampled_from(["non-object", "bad id", "bad method", "no kind", "junk"]))
    if choice == "non-object":
        value = draw(json_values.filter(lambda value: type(value) is not dict))
        text = json.dumps(value)
    elif choice == "bad id":
        bad_id = draw(
            st.none()
            | st.booleans()
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.lists(scalars, max_size=2)
            | st.dictionaries(short_text, scalars, max_size=2)
        )
        text = json.dumps({"id": bad_id, "method": "process/list", "params": {}})
    elif choice == "bad method":
        method = draw(non_strings | st.none())
        text = json.dumps({"id": 1, "method": method, "params": {}})
    elif choice == "no kind":
        text = json.dumps(
            draw(
                st.sampled_from(
                    [{}, {"id": 1}, {"result": 1}, {"params": {}}, {"id": 1, "error": 5}]
                )
            )
        )
    else:
        text = draw(st.text(max_size=40).filter(_not_an_object))
    return Frame(
        kind=f"not a request: {choice}",
        reply="parse",
        raw=_maybe_binary(draw, text),
    )


frames = st.one_of(
    truncated_frames(),
    wrong_type_frames(),
    missing_field_frames(),
    params_not_object_frames(),
    negative_size_frames(),
    huge_int_frames(),
    invalid_base64_frames(),
    unknown_method_frames(),
    notification_frames(),
    deep_frames(),
    invalid_utf8_frames(),
    not_request_frames(),
    valid_frames(),
)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    oversized: str | bytes | None = None
    if draw(st.integers(0, 9)) == 0:  # a few
        size = FRAME_LIMIT + draw(st.integers(1, 4096))
        oversized = b"\xff" * size if draw(st.booleans()) else "x" * size
    return Batch(
        initialize=draw(st.booleans()),
        frames=draw(st.lists(frames, min_size=BATCH_SIZE[0], max_size=BATCH_SIZE[1])),
        oversized=oversized,
    )


# -- the harness -----------------------------------------------------------------------------------


class Harness:
    """A live server and a well-behaved connection to it, in a Trio loop on a thread."""

    def __init__(self) -> None:
        # Sessions end with their connection (no detach time) and closed processes are
        # forgotten quickly, so that the baseline is reached soon after each batch.
        self.server = ExecServer(
            max_message_bytes=FRAME_LIMIT, max_read_wait=0.05, retention=0.2, detach_timeout=0
        )
        self.url = ""
        self.frames_sent = 0
        self.batches = 0
        self.oversized_closes = 0
        self.kinds: dict[str, int] = {}
        self._good: tx.ExecBackend | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, name="fuzz-server", daemon=True)

    def __enter__(self) -> Harness:
        self._thread.start()
        if not self._ready.wait(TIMEOUT) or self._token is None:
            raise RuntimeError(f"the fuzz server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "the fuzz server did not stop"
        if self._error is not None:
            raise self._error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.url = await nursery.start(
                lambda task_status: serve_websocket(
                    "127.0.0.1", 0, server=self.server, task_status=task_status
                )
            )
            async with tx.connect(self.url, client_name="well-behaved") as good:
                self._good = good
                self._ready.set()
                await self._stop.wait()
            nursery.cancel_scope.cancel()

    def run(self, function: Callable[[], Awaitable[T]]) -> T:
        """Run ``function`` in the server's loop and return its result (or raise)."""
        assert self._token is not None
        return trio.from_thread.run(function, trio_token=self._token)

    def statistics(self) -> ServerStatistics:
        """The server's statistics, taken in its loop."""
        assert self._token is not None
        return trio.from_thread.run_sync(self.server.statistics, trio_token=self._token)

    async def good_round_trip(self, text: str) -> None:
        """The well-behaved connection runs a process."""
        assert self._good is not None
        with trio.fail_after(TIMEOUT):
            done = await tx.run_process(["echo", text], backend=self._good)
        assert done.stdout == f"{text}\n".encode()

    async def send_batch(self, batch: Batch) -> None:
        """Send a batch on a fresh connection and check every answer."""
        with trio.fail_after(TIMEOUT):
            async with open_websocket_transport(self.url, max_message_bytes=2**24) as transport:
                await _Exchange(transport.websocket).run(batch)
        self.frames_sent += len(batch.frames) + (batch.oversized is not None)
        self.oversized_closes += batch.oversized is not None
        self.batches += 1
        for frame in batch.frames:
            self.kinds[frame.kind] = self.kinds.get(frame.kind, 0) + 1


def _request_id(index: int) -> int | str:
    """Unique, valid, never -1: ints of both signs near the ends of the range, strings."""
    match index % 4:
        case 0:
            return index + 1
        case 1:
            return f"fz-{index}"
        case 2:
            return -(index + 2)
        case _:
            return I64_MAX - index


class _Exchange:
    """One batch on one connection: a reader task records what the server sends."""

    def __init__(self, websocket: trio_websocket.WebSocketConnection) -> None:
        self.ws = websocket
        self.received: list[dict[str, Any]] = []
        self.closed: trio_websocket.CloseReason | None = None
        self._changed = trio.lowlevel.ParkingLot()

    async def _reader(self) -> None:
        try:
            while True:
                message = json.loads(await self.ws.get_message())
                assert type(message) is dict, message
                self.received.append(message)
                self._changed.unpark_all()
        except trio_websocket.ConnectionClosed as exc:
            self.closed = exc.reason
            self._changed.unpark_all()

    def _responses(self, request_id: int | str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.received
            if "method" not in m and m.get("id") == request_id and type(m["id"]) is type(request_id)
        ]

    async def _wait(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            assert self.closed is None, f"the server closed the connection: {self.closed}"
            await self._changed.park()

    async def run(self, batch: Batch) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reader)
            if batch.initialize:
                await self.ws.send_message(
                    json.dumps(
                        {"id": "init", "method": "initialize", "params": {"clientName": "fuzz"}}
                    )
                )
                await self._wait(lambda: bool(self._responses("init")))
                await self.ws.send_message(json.dumps({"method": "initialized"}))
            expected: dict[int | str, Frame] = {}
            parse_errors = 0
            for index, frame in enumerate(batch.frames):
                payload: str | bytes
                if frame.message is not None:
                    request_id = _request_id(index)
                    expected[request_id] = frame
                    text = json.dumps({"id": request_id, **frame.message})
                    payload = text.encode() if frame.binary else text
                else:
                    assert frame.raw is not None
                    payload = frame.raw
                    parse_errors += frame.reply == "parse"
                await self.ws.send_message(payload)
            # Unparsable frames are answered in order, by the reader; the sentinel's
            # answer comes after all of theirs.
            await self.ws.send_message(
                json.dumps({"id": "sentinel", "method": "process/list", "params": {}})
            )
            await self._wait(
                lambda: (
                    bool(self._responses("sentinel")) and all(self._responses(i) for i in expected)
                )
            )
            self._check(expected, parse_errors)
            if batch.oversized is not None:
                await self.ws.send_message(batch.oversized)
                while self.closed is None:
                    await self._changed.park()
                assert (self.closed.code, self.closed.reason) == (
                    1009,
                    f"Exceeded maximum message size: {FRAME_LIMIT} bytes",
                )
            nursery.cancel_scope.cancel()

    def _check(self, expected: dict[int | str, Frame], parse_errors: int) -> None:
        known_ids: set[Any] = {"init", "sentinel", -1, *expected}
        parse = []
        for message in self.received:
            if "method" in message:
                assert "id" not in message, message
                assert message["method"] in (
                    "process/output",
                    "process/exited",
                    "process/closed",
                ), message
                assert type(message["params"]["processId"]) is str, message
                continue
            _check_well_formed(message)
            assert message["id"] in known_ids, f"a response to nothing: {message}"
            if message["id"] == -1 and type(message["id"]) is int:
                parse.append(message)
                assert message["error"]["code"] == INVALID_REQUEST, message
        assert len(parse) == parse_errors, (len(parse), parse_errors, parse)
        for request_id, frame in expected.items():
            responses = self._responses(request_id)
            assert len(responses) == 1, (frame, responses)
            response = responses[0]
            if frame.codes is not None:
                assert "error" in response, (frame, response)
                assert response["error"]["code"] in frame.codes, (frame, response)


def _check_well_formed(message: dict[str, Any]) -> None:
    assert set(message) in ({"id", "result"}, {"id", "error"}), message
    assert type(message["id"]) in (int, str), message
    if "error" in message:
        error = message["error"]
        assert type(error) is dict, message
        assert set(error) <= {"code", "message", "data"}, message
        assert type(error["code"]) is int, message
        assert type(error["message"]) is str, message
        assert error["message"], message
        assert len(error["message"]) <= MAX_ERROR_MESSAGE_CHARS, message


def _load(statistics: ServerStatistics) -> tuple[int, int]:
    return statistics.connections, statistics.processes


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    """The live server with its well-behaved connection, for the whole module."""
    with Harness() as running:
        yield running


def test_hostile_frames_on_a_live_server(harness: Harness) -> None:
    existing = existing_children()  # e.g. the session's sshd, started by other tests
    baseline = harness.statistics()
    assert (baseline.connections, baseline.processes) == (1, 0)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        # No shrinking: each step replays a batch over the network, and a failing batch
        # is reported whole, every frame labelled with its kind.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batch=batches())
    def one_batch(batch: Batch) -> None:
        harness.run(lambda: harness.send_batch(batch))
        harness.run(lambda: harness.good_round_trip(f"between batches {harness.batches}"))

    one_batch()
    harness.run(lambda: harness.good_round_trip("at the end"))
    print(  # shown with -s, and on failure
        f"{harness.frames_sent} hostile frames in {harness.batches} batches, "
        f"{harness.oversized_closes} oversized; by kind: {sorted(harness.kinds.items())}"
    )
    assert harness.frames_sent >= MIN_FRAMES, harness.frames_sent
    assert harness.oversized_closes >= 1
    assert len(harness.kinds) >= 20, harness.kinds

    async def back_to_baseline() -> None:
        with trio.fail_after(TIMEOUT):
            while _load(harness.server.statistics()) != (1, 0):  # noqa: ASYNC110 - poll
                await trio.sleep(0.02)
        await wait_no_children(existing=existing)

    harness.run(back_to_baseline)
    final = harness.statistics()
    assert (final.connections, final.processes, final.running_processes) == (1, 0, 0)
    assert [c for c in child_processes() if c.pid not in existing] == []
