"""Hypothesis strategies for every protocol message type."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from trio_exec._events import Output, OutputStream, ReadResult, WriteStatus
from trio_exec._protocol import (
    REQUEST_ID_MAX,
    REQUEST_ID_MIN,
    WIRE_INT_MAX,
    ClosedNotification,
    CloseStdinParams,
    CloseStdinResult,
    ConfigLayer,
    ConfigLayers,
    EnvironmentConfig,
    EnvironmentConfigReadParams,
    EnvironmentInfo,
    EnvironmentInfoParams,
    EnvironmentStatusParams,
    EnvironmentStatusResult,
    ErrorObject,
    ErrorResponse,
    ExitedNotification,
    FileMetadata,
    GetMetadataParams,
    InitializedNotification,
    InitializeParams,
    InitializeResult,
    ListParams,
    ListResult,
    Message,
    MissingChangedNotification,
    Notification,
    NotificationParams,
    OutputNotification,
    ProcessInfo,
    ProcessSignal,
    ReadParams,
    Request,
    RequestId,
    RequestParams,
    RequestResult,
    ResizeParams,
    ResizeResult,
    Response,
    ShellInfo,
    SignalParams,
    SignalResult,
    StartParams,
    StartResult,
    TerminateParams,
    TerminateResult,
    WatchMissingParams,
    WatchMissingResult,
    WindowSize,
    WriteParams,
    WriteResult,
    path_to_file_uri,
)

texts = st.text(max_size=16)
u64 = st.integers(min_value=0, max_value=WIRE_INT_MAX)
optional_u64 = st.none() | u64
i32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
request_ids: st.SearchStrategy[RequestId] = (
    st.integers(min_value=REQUEST_ID_MIN, max_value=REQUEST_ID_MAX) | texts
)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
json_objects: st.SearchStrategy[dict[str, Any]] = st.dictionaries(texts, json_values, max_size=4)

path_segments = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\0/"),
    min_size=1,
    max_size=8,
)
absolute_paths = st.lists(path_segments, max_size=4).map(lambda parts: "/" + "/".join(parts))
file_uris = absolute_paths.map(path_to_file_uri)

outputs = st.builds(
    Output, seq=u64, stream=st.sampled_from(OutputStream), data=st.binary(max_size=32)
)

initialize_params = st.builds(
    InitializeParams, client_name=texts, resume_session_id=st.none() | texts
)
start_params = st.builds(
    StartParams,
    process_id=texts,
    argv=st.lists(texts, min_size=1, max_size=4).map(tuple),
    cwd=file_uris,
    env=st.dictionaries(texts, texts, max_size=4),
    tty=st.booleans(),
    pipe_stdin=st.booleans(),
    arg0=st.none() | texts,
    env_policy=st.none() | json_objects,
    window_size=st.none()
    | st.builds(
        WindowSize,
        rows=st.integers(min_value=1, max_value=0xFFFF),
        cols=st.integers(min_value=1, max_value=0xFFFF),
    ),
)
read_params = st.builds(
    ReadParams,
    process_id=texts,
    after_seq=optional_u64,
    max_bytes=optional_u64,
    wait_ms=optional_u64,
)
write_params = st.builds(
    WriteParams, process_id=texts, chunk=st.binary(max_size=64), write_id=st.text(min_size=1)
)
signal_params = st.builds(SignalParams, process_id=texts, signal=st.sampled_from(ProcessSignal))
terminate_params = st.builds(TerminateParams, process_id=texts, grace_ms=optional_u64)
close_stdin_params = st.builds(CloseStdinParams, process_id=texts)
resize_params = st.builds(
    ResizeParams,
    process_id=texts,
    rows=st.integers(min_value=1, max_value=0xFFFF),
    cols=st.integers(min_value=1, max_value=0xFFFF),
)
list_params = st.just(ListParams())
get_metadata_params = st.builds(GetMetadataParams, path=file_uris, sandbox=st.none() | json_objects)
watch_missing_params = st.builds(
    WatchMissingParams,
    watch_id=u64,
    missing=st.lists(file_uris, max_size=3).map(tuple),
    present=st.none() | file_uris,
)
key_paths = st.lists(st.lists(texts, min_size=1, max_size=3).map(tuple), max_size=3).map(tuple)
environment_config_read_params = st.builds(
    EnvironmentConfigReadParams, cwd=file_uris, config_paths=key_paths, requirements_paths=key_paths
)

request_params: st.SearchStrategy[RequestParams] = st.one_of(
    initialize_params,
    start_params,
    read_params,
    write_params,
    signal_params,
    terminate_params,
    close_stdin_params,
    resize_params,
    list_params,
    st.just(EnvironmentStatusParams()),
    st.just(EnvironmentInfoParams()),
    get_metadata_params,
    watch_missing_params,
    environment_config_read_params,
)

environment_infos = st.builds(
    EnvironmentInfo,
    shell=st.none() | st.builds(ShellInfo, name=texts, path=texts),
    cwd=st.none() | file_uris,
    user_home_dir=st.none() | file_uris,
    platform_os=st.none() | texts,
    temporary_directories=st.none() | st.lists(file_uris, max_size=2).map(tuple),
    temp_dir=st.none() | file_uris,
    capabilities=st.none() | st.dictionaries(texts, st.booleans(), max_size=3),
)
initialize_results = st.builds(
    InitializeResult,
    session_id=texts,
    extensions=st.lists(texts, max_size=4).map(tuple),
    environment_info=st.none() | environment_infos,
)
start_results = st.builds(StartResult, process_id=texts, sandbox_type=texts)
read_results = st.builds(
    ReadResult,
    chunks=st.lists(outputs, max_size=4).map(tuple),
    next_seq=u64,
    exited=st.booleans(),
    exit_code=st.none() | i32,
    closed=st.booleans(),
    failure=st.none() | texts,
    first_retained_seq=optional_u64,
)
write_statuses = st.sampled_from(WriteStatus)
write_results = st.builds(WriteResult, status=write_statuses)
terminate_results = st.builds(TerminateResult, running=st.booleans())
close_stdin_results = st.builds(CloseStdinResult, status=write_statuses)
process_infos = st.builds(
    ProcessInfo,
    process_id=texts,
    argv=st.lists(texts, max_size=3).map(tuple),
    running=st.booleans(),
    exit_code=st.none() | i32,
)
list_results = st.builds(ListResult, processes=st.lists(process_infos, max_size=3).map(tuple))

file_metadata = st.builds(
    FileMetadata,
    is_directory=st.booleans(),
    is_file=st.booleans(),
    is_symlink=st.booleans(),
    size=u64,
    created_at_ms=u64,
    modified_at_ms=u64,
)
config_layers = st.builds(
    ConfigLayers,
    layers=st.lists(
        st.builds(ConfigLayer, source=texts, base_dir=file_uris, toml=texts), max_size=2
    ).map(tuple),
    cloud_insertion_index=u64,
)
environment_configs = st.builds(
    EnvironmentConfig,
    user_home_dir=file_uris,
    codex_home_dir=file_uris,
    hostname=texts,
    config=config_layers,
    requirements=config_layers,
)

#: (method, result) pairs: the method decides how a result is decoded.
method_results: st.SearchStrategy[tuple[str, RequestResult]] = st.one_of(
    initialize_results.map(lambda r: ("initialize", r)),
    start_results.map(lambda r: ("process/start", r)),
    read_results.map(lambda r: ("process/read", r)),
    write_results.map(lambda r: ("process/write", r)),
    st.just(("process/signal", SignalResult())),
    terminate_results.map(lambda r: ("process/terminate", r)),
    close_stdin_results.map(lambda r: ("process/closeStdin", r)),
    st.just(("process/resize", ResizeResult())),
    list_results.map(lambda r: ("process/list", r)),
    st.builds(EnvironmentStatusResult, status=texts).map(lambda r: ("environment/status", r)),
    environment_infos.map(lambda r: ("environment/info", r)),
    file_metadata.map(lambda r: ("fs/getMetadata", r)),
    st.builds(WatchMissingResult, watching=st.booleans()).map(lambda r: ("fs/watchMissing", r)),
    environment_configs.map(lambda r: ("environmentConfig/read", r)),
)

output_notifications = st.builds(
    OutputNotification,
    process_id=texts,
    seq=u64,
    stream=st.sampled_from(OutputStream),
    chunk=st.binary(max_size=64),
)
exited_notifications = st.builds(
    ExitedNotification,
    process_id=texts,
    seq=u64,
    exit_code=i32,
    signal=st.none() | st.sampled_from(["SIGKILL", "SIGTERM", "SIGINT"]) | texts,
    sandbox_denied=st.booleans(),
)
closed_notifications = st.builds(ClosedNotification, process_id=texts, seq=u64)
notification_params: st.SearchStrategy[NotificationParams] = st.one_of(
    st.just(InitializedNotification()),
    output_notifications,
    exited_notifications,
    closed_notifications,
    st.builds(MissingChangedNotification, watch_id=u64),
)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Request, id=request_ids, method=texts, params=json_values),
    st.builds(Notification, method=texts, params=json_values),
    st.builds(Response, id=request_ids, result=json_values),
    st.builds(
        ErrorResponse,
        id=request_ids,
        error=st.builds(
            ErrorObject,
            code=st.integers(min_value=-(2**63), max_value=2**63 - 1),
            message=texts,
            data=json_values,
        ),
    ),
)
