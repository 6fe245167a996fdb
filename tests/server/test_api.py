"""The public API of ``trio_exec._server`` is documented, and its limits are named."""

from __future__ import annotations

import inspect

import trio_exec._server as server


def test_every_public_name_is_documented() -> None:
    missing = []
    for name in server.__all__:
        value = getattr(server, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            if not inspect.getdoc(value):
                missing.append(name)
            for attr_name, member in vars(value).items() if inspect.isclass(value) else ():
                public = not attr_name.startswith("_") and inspect.isfunction(member)
                if public and not member.__doc__:
                    missing.append(f"{name}.{attr_name}")
    assert missing == []


def test_public_async_functions_document_cancellation() -> None:
    functions = [server.serve_websocket, server.serve_stdio, server.ExecServer.serve_connection]
    for function in functions:
        assert inspect.iscoroutinefunction(function)
        assert "**Cancellation:**" in (function.__doc__ or ""), function.__qualname__


def test_limits_are_final_constants_with_docstrings() -> None:
    source = inspect.getsource(server)
    constants = [name for name in server.__all__ if name.isupper()]
    assert constants
    for name in constants:
        head = f"\n{name}: Final = "
        assert head in source, name
        after = source.split(head, 1)[1].split("\n")
        assert any(line.startswith('"""') for line in after[:4]), name
