"""Request / response matching without I/O, through the client's connection rules.

Each test starts from a connection whose handshake is done (:func:`ready`): the
``initialize`` took id 1. Frames are fed whole, as the reader does.
"""

from __future__ import annotations

import pytest

from trio_exec._errors import ConnectionLost, ProtocolError, RemoteError
from trio_exec._protocol import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    Answered,
    ClientConnection,
    ConnectionState,
    ErrorResponse,
    InitializedNotification,
    InitializeParams,
    InitializeResult,
    ListParams,
    ListResult,
    Reply,
    Request,
    Response,
    RpcDecodeError,
    SignalResult,
    StartParams,
    StartResult,
    TerminateParams,
    TerminateResult,
    decode_message,
    encode_message,
    make_error_response,
    make_response,
)

START = StartParams(process_id="p1", argv=("true",), cwd="file:///tmp", env={}, tty=False)


def ready() -> ClientConnection:
    """A client connection after its handshake (``initialize`` was id 1)."""
    connection = ClientConnection()
    request = connection.send_request(InitializeParams(client_name="tests"))
    connection.receive_frame(
        encode_message(make_response(request.id, InitializeResult(session_id="s")))
    )
    connection.send_notification(InitializedNotification())
    assert connection.state is ConnectionState.READY
    return connection


def receive(connection: ClientConnection, message: Response | ErrorResponse) -> Reply | None:
    """Feed one response as a whole frame; return its reply (None: abandoned)."""
    event = connection.receive_frame(encode_message(message))
    assert isinstance(event, Answered)
    assert event.request_id == message.id
    return event.reply


def test_ids_count_from_one_and_requests_are_pending() -> None:
    state = ready()
    first = state.send_request(START)
    second = state.send_request(TerminateParams(process_id="p1"))
    third = state.send_request(ListParams())
    assert (first.id, second.id, third.id) == (2, 3, 4)
    assert first.method == "process/start"
    assert encode_message(first) == (
        '{"id":2,"method":"process/start","params":{"processId":"p1","argv":["true"],'
        '"cwd":"file:///tmp","env":{},"tty":false,"pipeStdin":false,"arg0":null}}'
    )
    assert dict(state.pending) == {2: "process/start", 3: "process/terminate", 4: "process/list"}


def test_pending_is_read_only() -> None:
    state = ready()
    state.send_request(ListParams())
    with pytest.raises(TypeError):
        state.pending[5] = "x"  # type: ignore[index]


def test_responses_are_matched_out_of_order_and_typed() -> None:
    state = ready()
    start = state.send_request(START)
    terminate = state.send_request(TerminateParams(process_id="p1"))
    reply = receive(state, make_response(terminate.id, TerminateResult(running=False)))
    assert reply is not None
    assert reply.request_id == terminate.id
    assert reply.method == "process/terminate"
    assert reply.expect(TerminateResult) == TerminateResult(running=False)
    # through the wire, as the client would see it
    frame = encode_message(make_response(start.id, StartResult(process_id="p1")))
    message = decode_message(frame)
    assert isinstance(message, Response)
    reply = receive(state, message)
    assert reply is not None
    assert reply.result == StartResult(process_id="p1")
    assert reply.error is None
    assert not state.pending


def test_error_response_becomes_remote_error() -> None:
    state = ready()
    request = state.send_request(START)
    reply = receive(
        state,
        make_error_response(request.id, INTERNAL_ERROR, "No such file or directory (os error 2)"),
    )
    assert reply is not None
    assert reply.result is None
    assert isinstance(reply.error, RemoteError)
    assert reply.error.code == INTERNAL_ERROR
    with pytest.raises(RemoteError, match="os error 2") as info:
        reply.expect(StartResult)
    assert info.value.code == -32603
    assert not state.pending


def test_undecodable_result_is_a_reply_error_not_a_crash() -> None:
    state = ready()
    request = state.send_request(START)
    reply = receive(state, Response(id=request.id, result={"processId": 5}))
    assert reply is not None
    assert isinstance(reply.error, RpcDecodeError)
    assert reply.error.code == INVALID_PARAMS
    with pytest.raises(RpcDecodeError, match="expected a string at `processId`"):
        reply.expect(StartResult)
    assert not state.pending


def test_expect_checks_the_result_type() -> None:
    state = ready()
    request = state.send_request(START)
    reply = receive(state, make_response(request.id, StartResult(process_id="p1")))
    assert reply is not None
    with pytest.raises(ProtocolError, match="process/start returned StartResult, not SignalResult"):
        reply.expect(SignalResult)


@pytest.mark.parametrize(
    "response",
    [
        Response(id=1, result={}),  # the initialize, answered already
        Response(id=5, result={}),
        Response(id="2", result={}),
        ErrorResponse(id=-1, error=make_error_response(-1, -32600, "failed to parse").error),
    ],
)
def test_unmatched_response_is_a_protocol_error(response: Response | ErrorResponse) -> None:
    state = ready()
    with pytest.raises(ProtocolError, match="unknown request id"):
        receive(state, response)
    assert state.state is ConnectionState.ERROR


def test_unmatched_error_response_shows_the_peer_message() -> None:
    state = ready()
    with pytest.raises(ProtocolError, match=r"\[-32600\] failed to parse"):
        receive(state, make_error_response(-1, -32600, "failed to parse"))


def test_string_id_does_not_match_integer_request() -> None:
    state = ready()
    request = state.send_request(ListParams())
    with pytest.raises(ProtocolError):
        receive(state, Response(id=str(request.id), result={"processes": []}))
    assert request.id in state.pending


def test_second_response_to_one_request_is_a_protocol_error() -> None:
    state = ready()
    request = state.send_request(TerminateParams(process_id="p"))
    assert receive(state, make_response(request.id, TerminateResult(running=True)))
    with pytest.raises(ProtocolError):
        receive(state, make_response(request.id, TerminateResult(running=True)))


def test_abandoned_request_response_is_dropped_once() -> None:
    state = ready()
    request = state.send_request(TerminateParams(process_id="p"))
    state.abandon(request.id)
    assert not state.pending
    assert receive(state, make_response(request.id, TerminateResult(running=True))) is None
    with pytest.raises(ProtocolError):
        receive(state, make_response(request.id, TerminateResult(running=True)))


def test_abandon_unknown_id_does_not_hide_stray_responses() -> None:
    state = ready()
    state.abandon(42)
    with pytest.raises(ProtocolError):
        receive(state, Response(id=42, result={}))


def test_fail_all_fails_every_pending_request() -> None:
    state = ready()
    requests: list[Request] = [state.send_request(ListParams()) for _ in range(3)]
    answered = requests[1]
    assert receive(state, make_response(answered.id, ListResult(processes=())))
    replies = state.close("exec-server transport disconnected")
    assert [reply.request_id for reply in replies] == [requests[0].id, requests[2].id]
    for reply in replies:
        assert isinstance(reply.error, ConnectionLost)
        with pytest.raises(ConnectionLost, match="transport disconnected"):
            reply.expect(StartResult)
    assert not state.pending
    assert state.close("again") == []
    assert state.state is ConnectionState.CLOSED
    with pytest.raises(ConnectionLost, match="transport disconnected"):
        state.send_request(ListParams())
