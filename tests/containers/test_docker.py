"""The exec server in a real Docker container, through ``docker exec -i``.

The conformance suite runs there too (the ``docker`` kind of ``backend``); these tests
cover what only a container shows: the engine fixture itself, and that a killed
``docker exec`` client leaves nothing running inside. Killing the client sends no signal
into the container; the server only sees its stdin reach EOF, and must end its session and
every process of it then.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

import trio_exec as tx
from trio_exec import connect_command

from ..conformance.helpers import TIMEOUT, wait_failed
from .commands import ensure_commands
from .container import Container, ContainerProcess
from .engine import Engine, run_dockerd
from .images import VENV, WORKDIR


async def processes_inside(container: Container) -> list[ContainerProcess]:
    """The container's processes now, zombies included."""
    listed = await trio.run_process(container.list_argv(), capture_stdout=True)
    return container.parse(listed.stdout.decode())


def test_the_fixture_runs_a_private_daemon_and_the_projects_image(docker_engine: Engine) -> None:
    assert docker_engine.pid is not None
    assert Path(f"/proc/{docker_engine.pid}").exists()
    assert "/var/run/docker.sock" not in " ".join(docker_engine.client)
    with docker_engine.container() as container:
        assert container.run("sh", "-c", "command -v trio-exec; pwd").split() == [
            "/usr/local/bin/trio-exec",
            WORKDIR,
        ]
        version = container.run(
            f"{VENV}/bin/python", "-c", "import trio_exec, sys; print(sys.version_info[:2])"
        )
        assert version.strip() == "(3, 11)"
        # No network but the loopback device.
        assert container.run("ls", "/sys/class/net").split() == ["lo"]


async def test_a_killed_docker_exec_client_leaves_nothing_inside(
    fresh_container: Container, tmp_path: Path
) -> None:
    before = {process.pid for process in await processes_inside(fresh_container)}
    pid_file = tmp_path / "client.pid"
    # The shell writes its pid, then becomes the `docker exec` client.
    argv = ["sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pid_file), *fresh_container.server_argv()]
    script = "sleep 60 & sleep 60 >/dev/null 2>&1 & echo $$; wait"
    with trio.fail_after(TIMEOUT):
        async with (
            connect_command(argv) as backend,
            backend.open_process(["sh", "-c", script]) as piped,
            backend.open_process(["sh", "-c", script], tty=True) as on_tty,
        ):
            groups = []
            for proc in (piped, on_tty):
                event = await proc.events.receive()
                assert isinstance(event, tx.Output), event
                groups.append(int(event.data))
            started = [p for p in await processes_inside(fresh_container) if p.pid not in before]
            assert {p.pgid for p in started} >= set(groups)
            assert any("trio-exec" in " ".join(p.argv) for p in started), started
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            await wait_failed(piped)
    left = started
    with trio.move_on_after(TIMEOUT):
        while left:
            await trio.sleep(0.05)  # another machine's state: poll it
            left = [p for p in await processes_inside(fresh_container) if p.pid not in before]
    assert not left, left


def test_the_daemon_is_stopped_by_its_pid_when_the_block_ends(tmp_path: Path) -> None:
    with run_dockerd(tmp_path / "data") as (client, daemon, log):
        socket = Path(client[-1].removeprefix("unix://"))
        assert socket.is_socket()
        assert Path(f"/proc/{daemon.pid}").exists()
    assert daemon.returncode is not None
    assert not Path(f"/proc/{daemon.pid}").exists()
    assert not socket.exists()
    assert not log.exists()  # its directory is gone too


def test_a_missing_command_that_cannot_be_installed_fails_the_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get
    with pytest.raises(pytest.fail.Exception, match="there is no apt-get to install them"):
        ensure_commands({"trio-exec-no-such-command": "trio-exec-no-such-package"})
