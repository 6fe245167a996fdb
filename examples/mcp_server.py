"""A tiny MCP server on stdio, built with the official ``mcp`` SDK (``MCPServer``, formerly
``FastMCP``). ``examples/mcp_remote.py`` and the tests launch it through trio_exec.

Tools:

* ``add(a, b)``: the sum of two integers;
* ``shout(text)``: ``text`` in capitals, with an exclamation mark.

It writes one line to stderr when it starts, which the client side logs.

    python examples/mcp_server.py      # then speak MCP (JSON-RPC lines) on stdin

It needs the ``mcp`` SDK: the ``examples`` extra installs it, ``python -m pip install
'.[examples]'`` in a checkout (the ``test`` extra has it too).
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("trio-exec-demo", version="1.0.0")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Return ``text`` in capitals, with an exclamation mark."""
    return text.upper() + "!"


if __name__ == "__main__":
    print("mcp_server: serving on stdio", file=sys.stderr, flush=True)
    server.run("stdio")
