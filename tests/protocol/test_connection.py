"""The connection rules of both roles, without I/O: every state transition, every refusal,
the ERROR and CLOSED states. Frames are fed whole, as the readers do."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_exec._errors import ConnectionLost, ProtocolError, RemoteError
from trio_exec._protocol import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    SESSION_ALREADY_ATTACHED,
    UNKNOWN_REQUEST_ID,
    Answered,
    ClientConnection,
    ConnectionState,
    ErrorResponse,
    Ignored,
    InitializedNotification,
    InitializedReceived,
    InitializeParams,
    InitializeReceived,
    InitializeResult,
    ListParams,
    ListResult,
    NotificationReceived,
    Refusal,
    RequestReceived,
    Response,
    RpcDecodeError,
    RpcEndpoint,
    ServerConnection,
    TerminateParams,
    TerminateResult,
    encode_message,
    make_error_response,
    make_notification,
    make_request,
    make_response,
)

State = ConnectionState
HELLO = InitializeParams(client_name="tests")
WELCOME = InitializeResult(session_id="s1", extensions=("resume",))
READ_LIST = ListParams()


def now(connection: RpcEndpoint) -> ConnectionState:
    """The state (a call, so that a type checker does not narrow it across steps)."""
    return connection.state


def frame(message: object) -> str:
    return encode_message(message)  # type: ignore[arg-type]


# -- client ------------------------------------------------------------------------------------


def initializing() -> tuple[ClientConnection, int]:
    client = ClientConnection()
    request = client.send_request(HELLO)
    assert type(request.id) is int
    return client, request.id


def test_client_handshake_walks_new_initializing_initialized_ready() -> None:
    client = ClientConnection()
    assert now(client) is State.NEW
    assert client.failure is None
    request = client.send_request(HELLO)
    assert request.id == 1
    assert request.method == "initialize"
    assert now(client) is State.INITIALIZING
    event = client.receive_frame(frame(make_response(1, WELCOME)))
    assert isinstance(event, Answered)
    assert event.request_id == 1
    assert event.reply is not None
    assert event.reply.expect(InitializeResult) == WELCOME
    assert now(client) is State.INITIALIZED
    notification = client.send_notification(InitializedNotification())
    assert notification == make_notification(InitializedNotification())
    assert now(client) is State.READY
    assert client.send_request(READ_LIST).id == 2


@pytest.mark.parametrize("state", [State.NEW, State.INITIALIZING, State.INITIALIZED])
def test_client_refuses_exec_requests_before_ready(state: ConnectionState) -> None:
    client = ClientConnection()
    if state is not State.NEW:
        client.send_request(HELLO)
    if state is State.INITIALIZED:
        client.receive_frame(frame(make_response(1, WELCOME)))
    assert now(client) is state
    with pytest.raises(ProtocolError, match=f"cannot send process/list in state {state.name}"):
        client.send_request(READ_LIST)
    assert now(client) is state
    assert list(client.pending) == ([1] if state is State.INITIALIZING else [])


@pytest.mark.parametrize("state", [State.INITIALIZING, State.INITIALIZED, State.READY])
def test_client_sends_initialize_only_in_new(state: ConnectionState) -> None:
    client, request_id = initializing()
    if state is not State.INITIALIZING:
        client.receive_frame(frame(make_response(request_id, WELCOME)))
    if state is State.READY:
        client.send_notification(InitializedNotification())
    with pytest.raises(ProtocolError, match=f"cannot send initialize in state {state.name}"):
        client.send_request(HELLO)
    assert now(client) is state


@pytest.mark.parametrize("state", [State.NEW, State.INITIALIZING, State.READY])
def test_client_sends_initialized_only_after_the_initialize_result(
    state: ConnectionState,
) -> None:
    client = ClientConnection()
    if state is not State.NEW:
        client.send_request(HELLO)
    if state is State.READY:
        client.receive_frame(frame(make_response(1, WELCOME)))
        client.send_notification(InitializedNotification())
    with pytest.raises(ProtocolError, match=f"cannot send initialized in state {state.name}"):
        client.send_notification(InitializedNotification())
    assert now(client) is state


def test_client_initialize_error_goes_back_to_new_and_may_retry() -> None:
    client, request_id = initializing()
    refused = make_error_response(request_id, SESSION_ALREADY_ATTACHED, "attached elsewhere")
    event = client.receive_frame(frame(refused))
    assert isinstance(event, Answered)
    assert event.reply is not None
    assert isinstance(event.reply.error, RemoteError)
    assert event.reply.error.code == SESSION_ALREADY_ATTACHED
    assert now(client) is State.NEW
    assert client.send_request(HELLO).id == 2
    assert now(client) is State.INITIALIZING


def test_client_undecodable_initialize_result_goes_back_to_new() -> None:
    client, request_id = initializing()
    event = client.receive_frame(frame(Response(id=request_id, result={"sessionId": 5})))
    assert isinstance(event, Answered)
    assert event.reply is not None
    assert isinstance(event.reply.error, RpcDecodeError)
    assert now(client) is State.NEW


def test_client_abandoned_initialize_still_completes_the_step() -> None:
    client, request_id = initializing()
    client.abandon(request_id)
    event = client.receive_frame(frame(make_response(request_id, WELCOME)))
    assert event == Answered(request_id, None)
    assert now(client) is State.INITIALIZED


def test_client_abandoned_initialize_refused_goes_back_to_new() -> None:
    client, request_id = initializing()
    client.abandon(request_id)
    event = client.receive_frame(frame(make_error_response(request_id, INVALID_REQUEST, "no")))
    assert event == Answered(request_id, None)
    assert now(client) is State.NEW


def test_client_passes_notifications_on_before_and_after_ready() -> None:
    client, request_id = initializing()
    output = {"method": "process/output", "params": {"processId": "p", "seq": 1}}
    event = client.receive_frame(json.dumps(output).encode())  # bytes frames too
    assert isinstance(event, NotificationReceived)
    assert event.notification.method == "process/output"
    client.receive_frame(frame(make_response(request_id, WELCOME)))
    assert isinstance(client.receive_frame(json.dumps(output)), NotificationReceived)
    client.send_notification(InitializedNotification())
    assert isinstance(client.receive_frame(json.dumps(output)), NotificationReceived)
    assert now(client) is State.READY


def test_client_refuses_requests_of_the_server() -> None:
    client = ClientConnection()
    long_method = "network/" + "x" * 300
    event = client.receive_frame(json.dumps({"id": "r1", "method": long_method, "params": {}}))
    assert isinstance(event, Refusal)
    assert event.response == make_error_response(
        "r1", METHOD_NOT_FOUND, f"trio-exec client does not implement `{long_method[:200]}`"
    )
    assert now(client) is State.NEW  # a refusal changes nothing


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "malformed message from the server: failed to parse JSON-RPC message"),
        ('{"id": 9, "result": {}}', "response to unknown request id 9"),
        (
            '{"id": -1, "error": {"code": -32600, "message": "bad frame"}}',
            r"response to unknown request id -1 \(\[-32600\] bad frame\)",
        ),
    ],
)
def test_client_protocol_violation_enters_error_for_good(raw: str, message: str) -> None:
    client, request_id = initializing()
    with pytest.raises(ProtocolError, match=message):
        client.receive_frame(raw)
    assert now(client) is State.ERROR
    assert client.failure is not None
    # It refuses to be used any more.
    with pytest.raises(ProtocolError, match="in state ERROR"):
        client.receive_frame(frame(make_response(request_id, WELCOME)))
    with pytest.raises(ProtocolError, match="in state ERROR"):
        client.send_request(HELLO)
    with pytest.raises(ProtocolError, match="in state ERROR"):
        client.send_notification(InitializedNotification())
    # Closing it still fails what was pending, and it stays in ERROR.
    replies = client.close("lost")
    assert [reply.request_id for reply in replies] == [request_id]
    assert isinstance(replies[0].error, ConnectionLost)
    assert now(client) is State.ERROR


def test_client_close_fails_pending_then_ignores_frames() -> None:
    client, request_id = initializing()
    replies = client.close("exec-server transport disconnected: gone")
    assert [reply.request_id for reply in replies] == [request_id]
    assert now(client) is State.CLOSED
    assert client.failure == "exec-server transport disconnected: gone"
    # A frame the reader held as the connection closed needs nothing.
    event = client.receive_frame(frame(make_response(request_id, WELCOME)))
    assert isinstance(event, Ignored)
    assert client.receive_frame("{not json") == event
    with pytest.raises(ConnectionLost, match="gone"):
        client.send_request(HELLO)
    with pytest.raises(ConnectionLost, match="gone"):
        client.send_notification(InitializedNotification())
    assert client.close("again") == []
    assert client.failure == "exec-server transport disconnected: gone"


@given(
    methods=st.lists(st.booleans(), min_size=1, max_size=30),
    data=st.data(),
)
def test_client_matches_responses_in_any_order(methods: list[bool], data: st.DataObject) -> None:
    """Random requests, answered in a random order with some abandoned: every response
    finds its own request, each exactly once, and an abandoned one is dropped."""
    client, request_id = initializing()
    client.receive_frame(frame(make_response(request_id, WELCOME)))
    client.send_notification(InitializedNotification())
    sent = {}
    for is_list in methods:
        params = READ_LIST if is_list else TerminateParams(process_id="p")
        request = client.send_request(params)
        assert type(request.id) is int
        sent[request.id] = params.METHOD
    abandoned = data.draw(st.sets(st.sampled_from(sorted(sent))))
    for abandoned_id in abandoned:
        client.abandon(abandoned_id)
    order = data.draw(st.permutations(sorted(sent)))
    for answered_id in order:
        if sent[answered_id] == "process/list":
            response = make_response(answered_id, ListResult(processes=()))
            expected: object = ListResult(processes=())
        else:
            response = make_response(answered_id, TerminateResult(running=False))
            expected = TerminateResult(running=False)
        event = client.receive_frame(frame(response))
        assert isinstance(event, Answered)
        assert event.request_id == answered_id
        if answered_id in abandoned:
            assert event.reply is None
        else:
            assert event.reply is not None
            assert event.reply.method == sent[answered_id]
            assert event.reply.result == expected
    assert not client.pending
    assert now(client) is State.READY


# -- server ------------------------------------------------------------------------------------


def request_frame(request_id: int, params: object) -> str:
    return frame(make_request(request_id, params))  # type: ignore[arg-type]


INITIALIZED = frame(make_notification(InitializedNotification()))


def server_in(state: ConnectionState) -> ServerConnection:
    server = ServerConnection()
    if state is State.NEW:
        return server
    server.receive_frame(request_frame(1, HELLO))
    if state is State.INITIALIZING:
        return server
    server.accept_initialize(1, WELCOME)
    if state is State.READY:
        server.receive_frame(INITIALIZED)
    assert now(server) is state
    return server


def test_server_handshake_walks_new_initializing_initialized_ready() -> None:
    server = ServerConnection()
    assert now(server) is State.NEW
    event = server.receive_frame(request_frame(7, HELLO))
    assert event == InitializeReceived(7, HELLO)
    assert now(server) is State.INITIALIZING
    assert server.accept_initialize(7, WELCOME) == make_response(7, WELCOME)
    assert now(server) is State.INITIALIZED
    assert server.receive_frame(INITIALIZED) == InitializedReceived()
    assert now(server) is State.READY
    event = server.receive_frame(request_frame(8, READ_LIST))
    assert event == RequestReceived(8, READ_LIST)
    assert now(server) is State.READY


@pytest.mark.parametrize(
    ("state", "word"),
    [
        (State.NEW, "call initialize"),
        (State.INITIALIZING, "call initialize"),
        (State.INITIALIZED, "send initialized"),
    ],
)
def test_server_refuses_exec_methods_before_ready(state: ConnectionState, word: str) -> None:
    server = server_in(state)
    event = server.receive_frame(request_frame(5, READ_LIST))
    assert event == Refusal(
        make_error_response(5, INVALID_REQUEST, f"client must {word} before using exec methods")
    )
    assert now(server) is state


@pytest.mark.parametrize("state", [State.INITIALIZING, State.INITIALIZED, State.READY])
def test_server_takes_initialize_only_once(state: ConnectionState) -> None:
    server = server_in(state)
    event = server.receive_frame(request_frame(5, HELLO))
    assert event == Refusal(
        make_error_response(5, INVALID_REQUEST, "initialize may only be sent once per connection")
    )
    assert now(server) is state


def test_server_refused_initialize_goes_back_to_new() -> None:
    server = server_in(State.INITIALIZING)
    answer = server.refuse_initialize(1, SESSION_ALREADY_ATTACHED, "attached", {"x": 1})
    assert answer == make_error_response(1, SESSION_ALREADY_ATTACHED, "attached", {"x": 1})
    assert now(server) is State.NEW
    assert server.receive_frame(request_frame(2, HELLO)) == InitializeReceived(2, HELLO)


@pytest.mark.parametrize("state", [State.NEW, State.INITIALIZED, State.READY])
def test_server_answers_initialize_only_while_one_waits(state: ConnectionState) -> None:
    server = server_in(state)
    with pytest.raises(ProtocolError, match="no initialize with id 1 waits"):
        server.accept_initialize(1, WELCOME)
    with pytest.raises(ProtocolError, match="no initialize with id 1 waits"):
        server.refuse_initialize(1, INVALID_REQUEST, "no")
    assert now(server) is state


def test_server_answers_initialize_only_with_its_id() -> None:
    server = server_in(State.INITIALIZING)
    with pytest.raises(ProtocolError, match="no initialize with id 2 waits"):
        server.accept_initialize(2, WELCOME)
    assert now(server) is State.INITIALIZING


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (State.NEW, "ignored `initialized` before `initialize`"),
        (State.INITIALIZING, "ignored `initialized` before `initialize`"),
        (State.READY, "ignored a repeated `initialized`"),
    ],
)
def test_server_ignores_initialized_out_of_turn(state: ConnectionState, reason: str) -> None:
    server = server_in(state)
    assert server.receive_frame(INITIALIZED) == Ignored(reason)
    assert now(server) is state


@pytest.mark.parametrize("state", list(State)[:4])
def test_server_ignores_other_notifications_and_responses(state: ConnectionState) -> None:
    server = server_in(state)
    notification = json.dumps({"method": "process/output", "params": {}})
    assert server.receive_frame(notification) == Ignored("ignored notification 'process/output'")
    assert server.receive_frame(frame(Response(id=3, result={}))) == Ignored(
        "ignored a response from the client (id 3)"
    )
    error = frame(ErrorResponse(id="x", error=make_error_response("x", -1, "e").error))
    assert server.receive_frame(error) == Ignored("ignored a response from the client (id 'x')")
    assert now(server) is state


@pytest.mark.parametrize("state", [State.NEW, State.READY])
def test_server_answers_bad_params_before_the_handshake_rules(state: ConnectionState) -> None:
    server = server_in(state)
    event = server.receive_frame(json.dumps({"id": 4, "method": "process/start", "params": {}}))
    assert isinstance(event, Refusal)
    assert event.response.id == 4
    assert event.response.error.code == INVALID_PARAMS
    event = server.receive_frame(json.dumps({"id": 5, "method": "process/nope"}))
    assert isinstance(event, Refusal)
    assert event.response.error.code == METHOD_NOT_FOUND
    assert now(server) is state


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (None, "failed to parse JSON-RPC message: "),
        (
            "failed to parse JSON-RPC message from exec-server stdio",
            "failed to parse JSON-RPC message from exec-server stdio: ",
        ),
    ],
)
def test_server_answers_unparsable_frames_with_its_prefix(
    prefix: str | None, expected: str
) -> None:
    server = ServerConnection(parse_error_prefix=prefix)
    event = server.receive_frame("{not json")
    assert isinstance(event, Refusal)
    assert event.response.id == UNKNOWN_REQUEST_ID
    assert event.response.error.code == INVALID_REQUEST
    assert event.response.error.message.startswith(expected)
    assert "message: message" not in event.response.error.message
    assert now(server) is State.NEW


def test_server_prefix_replaces_the_parse_prefix_exactly() -> None:
    server = ServerConnection(
        parse_error_prefix="failed to parse websocket JSON-RPC message from X"
    )
    event = server.receive_frame('{"id": 1}')
    assert event == Refusal(
        make_error_response(
            UNKNOWN_REQUEST_ID,
            INVALID_REQUEST,
            "failed to parse websocket JSON-RPC message from X: "
            "data did not match any variant of untagged enum JSONRPCMessage",
        )
    )


def test_server_close_ignores_frames() -> None:
    server = server_in(State.READY)
    assert server.close("ended") == []
    assert now(server) is State.CLOSED
    assert isinstance(server.receive_frame(request_frame(9, READ_LIST)), Ignored)


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_server_never_enters_error(raw: str | bytes) -> None:
    """Whatever a client sends, the server answers or ignores it (it has no ERROR path)."""
    for state in (State.NEW, State.INITIALIZED, State.READY):
        server = server_in(state)
        event = server.receive_frame(raw)
        assert isinstance(event, Refusal | Ignored | InitializeReceived | RequestReceived) or (
            event == InitializedReceived()
        )
        assert now(server) is not State.ERROR
