"""What only a pod shows: the server runs in the pod's container, and a killed ``kubectl
exec`` client leaves nothing behind in it (run by ``nox -s cluster``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio

import trio_exec as tx

from ..conformance.helpers import TIMEOUT, group_alive
from ..server.helpers import wait_group_gone
from ..transports.helpers import GROUP_AND_SERVER, first_line_numbers, pid_alive
from .node import Cluster

POLL: float = 0.05
"""Seconds between two looks at a process of the pod that should be gone."""


def in_the_pod(pid: int) -> bool:
    """Whether process ``pid`` sees the pod's root (the image's ``/pause``), not ours."""
    return Path(f"/proc/{pid}/root/pause").is_file() and not Path("/pause").exists()


async def test_the_server_and_its_children_run_in_the_pod(kubectl_pod: Cluster) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            tx.connect_command(kubectl_pod.server_argv()) as backend,
            backend.open_process(GROUP_AND_SERVER) as proc,
        ):
            pgid, server = await first_line_numbers(proc)
            assert in_the_pod(server)
            assert in_the_pod(pgid)
            await proc.terminate()
        assert not group_alive(pgid)


async def test_a_killed_kubectl_client_leaves_nothing_in_the_pod(
    kubectl_pod: Cluster, tmp_path: Path
) -> None:
    # The shell writes its pid, then becomes kubectl: that pid is the client's.
    pid_file = tmp_path / "kubectl.pid"
    argv = ["sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pid_file), *kubectl_pod.server_argv()]
    with trio.fail_after(TIMEOUT):
        async with (
            tx.connect_command(argv) as backend,
            backend.open_process(GROUP_AND_SERVER) as proc,
        ):
            pgid, server = await first_line_numbers(proc)
            assert in_the_pod(server)
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            # The end of the exec stream is the server's end of input: it stops every
            # process it started, then exits.
            await wait_group_gone(pgid, TIMEOUT)
            while pid_alive(server):  # noqa: ASYNC110 - another process's state: poll it
                await trio.sleep(POLL)
