"""One exception class per JSON-RPC error code: ``RemoteError(code, ...)`` builds the class
of the code, and the client raises it for each code a server answers with, trio_exec's
server and the real reference alike."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import attrs
import pytest
import trio

import trio_exec as tx
from trio_exec import _protocol as protocol
from trio_exec._protocol import (
    Answered,
    ClientConnection,
    InitializedNotification,
    InitializeParams,
    InitializeResult,
    ReadParams,
    Reply,
    RequestParams,
    StartParams,
    encode_message,
    path_to_file_uri,
)
from trio_exec._transport import MessageTransport, open_websocket_transport

TIMEOUT: Final = 30.0
"""Bound on any single wait in a test; a hang fails the test instead of the run."""

CLASSES: Final[list[tuple[int, type[tx.RemoteError]]]] = [
    (protocol.PARSE_ERROR, tx.ParseError),
    (protocol.INVALID_REQUEST, tx.InvalidRequestError),
    (protocol.METHOD_NOT_FOUND, tx.MethodNotFoundError),
    (protocol.INVALID_PARAMS, tx.InvalidParamsError),
    (protocol.INTERNAL_ERROR, tx.InternalError),
    (protocol.SESSION_ALREADY_ATTACHED, tx.SessionAlreadyAttachedError),
]


@pytest.mark.parametrize(("code", "cls"), CLASSES, ids=[cls.__name__ for _, cls in CLASSES])
def test_each_wire_code_builds_its_class(code: int, cls: type[tx.RemoteError]) -> None:
    error = tx.RemoteError(code, "what went wrong", {"detail": 1})
    assert type(error) is cls
    assert code == cls.CODE  # type: ignore[attr-defined]
    assert isinstance(error, tx.RemoteError)
    assert isinstance(error, tx.TrioExecError)
    assert (error.code, error.message, error.data) == (code, "what went wrong", {"detail": 1})
    assert str(error) == f"[{code}] what went wrong"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert (copy.code, copy.message, copy.data) == (code, "what went wrong", {"detail": 1})
    # The subclass built directly is the same error.
    direct = cls(code, "what went wrong")
    assert type(direct) is cls
    assert direct.data is None


def test_another_code_builds_a_plain_remote_error() -> None:
    error = tx.RemoteError(-32000, "server defined")
    assert type(error) is tx.RemoteError
    assert error.code == -32000
    assert type(pickle.loads(pickle.dumps(error))) is tx.RemoteError


class RawClient:
    """Requests through the client's own connection rules (:class:`ClientConnection`), with
    the method or the params of a request replaced by anything, to provoke every code."""

    def __init__(self, transport: MessageTransport) -> None:
        self.transport = transport
        self.state = ClientConnection()

    async def request(
        self, params: RequestParams, *, method: str | None = None, raw_params: object = None
    ) -> Reply:
        request = self.state.send_request(params)
        if method is not None:
            request = attrs.evolve(request, method=method)
        if raw_params is not None:
            request = attrs.evolve(request, params=raw_params)
        with trio.fail_after(TIMEOUT):
            await self.transport.send(encode_message(request))
            while True:
                event = self.state.receive_frame(await self.transport.receive())
                if isinstance(event, Answered):
                    assert event.reply is not None
                    return event.reply

    async def initialize(self, resume_session_id: str | None = None) -> Reply:
        params = InitializeParams(
            client_name="trio-exec-tests", resume_session_id=resume_session_id
        )
        reply = await self.request(params)
        if reply.error is None:
            notification = self.state.send_notification(InitializedNotification())
            with trio.fail_after(TIMEOUT):
                await self.transport.send(encode_message(notification))
        return reply


@asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[RawClient]:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_transport(url) as transport:
            yield RawClient(transport)


def start_params(process_id: str, argv: tuple[str, ...]) -> StartParams:
    return StartParams(
        process_id=process_id, argv=argv, cwd=path_to_file_uri("/"), env={}, tty=False
    )


def raised(reply: Reply) -> tx.TrioExecError:
    """What the client raises for ``reply``."""
    with pytest.raises(tx.TrioExecError) as info:
        reply.expect(object)
    return info.value


async def test_each_code_a_server_answers_raises_its_class(server_url: str) -> None:
    """-32600, -32601, -32602, -32603 and -32010, each provoked on the server (the
    reference, then trio_exec's own), come out of the client as their class."""
    async with raw_client(server_url) as first:
        hello = (await first.initialize()).expect(InitializeResult)

        unknown = raised(await first.request(ReadParams(process_id="nope")))
        assert type(unknown) is tx.InvalidRequestError
        assert "nope" in unknown.message

        no_method = raised(await first.request(ReadParams(process_id="x"), method="process/nope"))
        assert type(no_method) is tx.MethodNotFoundError
        assert "process/nope" in no_method.message

        good = start_params("p1", ("true",))
        bad_params = {**attrs.asdict(good), "processId": "p1", "tty": "yes"}
        del bad_params["process_id"]
        wrong = raised(await first.request(good, raw_params=bad_params))
        assert type(wrong) is tx.InvalidParamsError

        missing = start_params("p2", ("/nonexistent/trio-exec-test-program",))
        spawn = raised(await first.request(missing))
        assert type(spawn) is tx.InternalError
        assert "os error" in spawn.message

        async with raw_client(server_url) as second:
            taken = raised(await second.initialize(resume_session_id=hello.session_id))
            assert type(taken) is tx.SessionAlreadyAttachedError
            assert hello.session_id in taken.message

        for error in (unknown, no_method, wrong, spawn, taken):
            assert isinstance(error, tx.RemoteError)
