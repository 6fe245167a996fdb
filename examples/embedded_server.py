"""The main job: run a process through an exec server embedded in this program.

Starts trio_exec's websocket exec server on 127.0.0.1 (a free port), connects a
``RemoteBackend`` to it as any remote client would, runs a command that writes to stdout
and stderr, prints each event as it arrives, and exits with the command's exit code.

    python examples/embedded_server.py [ARGV...]
"""

from __future__ import annotations

import sys

import trio

import trio_exec as tx

DEFAULT_COMMAND = [
    "sh",
    "-c",
    "echo hello from $(uname -n); echo a line on stderr >&2; sleep 0.2; echo done",
]


async def main(argv: list[str]) -> int:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(tx.serve_websocket, "127.0.0.1", 0)
        print(f"exec server listening on {url}")
        async with tx.connect(url) as backend, backend.open_process(argv) as proc:
            print(f"started {argv!r} as {proc.process_id!r}")
            async for event in proc.events:
                print(f"  {event!r}")
            exit_code = await proc.wait()
        nursery.cancel_scope.cancel()
    print(f"exit code {exit_code}")
    return exit_code


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1:] or DEFAULT_COMMAND))
