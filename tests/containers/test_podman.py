"""The exec server in a rootful Podman container, through ``podman exec -i``: a smoke test
in the same image setup as Docker's (see :func:`tests.containers.engine.run_podman`)."""

from __future__ import annotations

import trio

import trio_exec as tx
from trio_exec import connect_command

from ..conformance.helpers import TIMEOUT
from .engine import Engine
from .images import IMAGE_ENV, WORKDIR


async def test_a_process_runs_through_podman_exec(podman_engine: Engine) -> None:
    with podman_engine.container() as container:
        before = {process.pid for process in container.processes()}
        with trio.fail_after(TIMEOUT):
            async with connect_command(container.server_argv()) as backend:
                script = 'read line; echo "$line from $(pwd) $TRIO_EXEC_IMAGE"; exit 3'
                result = await tx.run_process(
                    ["sh", "-c", script], backend=backend, input=b"hello\n", check=False
                )
        assert result.exit_code == 3
        assert result.stdout == f"hello from {WORKDIR} {IMAGE_ENV['TRIO_EXEC_IMAGE']}\n".encode()
        assert {process.pid for process in container.processes()} <= before
