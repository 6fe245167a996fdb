"""Fixtures shared by the whole suite.

``backend`` is the conformance suite's backend: every test that takes it runs once per
kind in :data:`BACKEND_KINDS`:

* ``local``: a :class:`~trio_exec.LocalBackend`;
* ``remote``: our client against our websocket server (both from the plugin's
  :func:`~trio_exec.testing.pytest_plugin.open_backend`);
* ``remote-stdio``: :func:`trio_exec.connect_command` running ``python -m trio_exec serve
  --listen stdio`` (NDJSON over the child's stdin / stdout);
* ``remote-ssh``: the same server behind ``ssh`` to a real sshd on 127.0.0.1 (the
  session-scoped ``ssh_server`` fixture, which installs OpenSSH if it is missing);
* ``relay``: our client against an exec server whose backend is itself a
  :class:`~trio_exec.RemoteBackend` connected to our websocket server (one hop, see
  tests/relay/helpers.py), so the server adapts any backend, not a local one alone;
* ``docker``: ``trio-exec serve --listen stdio`` inside a container of a private Docker
  daemon, through ``docker exec -i`` (the session-scoped ``docker_container`` fixture, which
  installs Docker and builds the image if needed; see :mod:`tests.containers.engine`);
* ``kubectl``, only when :data:`~tests.cluster.CLUSTER_ENV_VAR` is set (``nox -s
  cluster``): ``trio-exec serve --listen stdio`` in a pod of a one-node Kubernetes cluster,
  through ``kubectl exec -i`` (the session-scoped ``kubectl_pod`` fixture; see
  tests/cluster/node.py).

Except for ``docker``, the server runs on this machine (the ``kubectl`` pod shares its PID
namespace and the paths the tests use), so the tests can look at process groups with
``ps``; a test that looks at the children's processes takes the ``processes`` fixture, the
process table of the side that runs them. So that the tests' argv and files mean the same
in the container, it has the session's temporary directory and the checkout bound at the
same paths, and this interpreter's path runs the image's Python. The hypothesis property
tests use ``kind`` (tests/property) instead.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Final

import pytest

import trio_exec as tx
from trio_exec._command import connect_command
from trio_exec.testing.pytest_plugin import BACKEND_KINDS as PLUGIN_BACKEND_KINDS
from trio_exec.testing.pytest_plugin import open_backend

from .cluster import CLUSTER_ENV_VAR
from .cluster.node import Cluster
from .cluster.session import cluster_for
from .conformance.helpers import HOST_PROCESSES, ProcessTable
from .containers.container import Container
from .containers.engine import Engine, run_docker, run_host_like
from .relay.helpers import open_relay
from .transports.helpers import STDIO_SERVER, ssh_argv
from .transports.sshd import SshServer, run_sshd

CONTAINER_KINDS: Final = ("docker",)
"""The kinds of ``backend`` whose children run in a container."""
CLUSTER_KINDS: Final = ("kubectl",) if os.environ.get(CLUSTER_ENV_VAR) else ()
"""The kinds of ``backend`` that need the one-node cluster (none outside ``nox -s cluster``)."""

BACKEND_KINDS: Final = (
    *PLUGIN_BACKEND_KINDS,
    "remote-stdio",
    "remote-ssh",
    "relay",
    *CONTAINER_KINDS,
    *CLUSTER_KINDS,
)
"""The parameters of ``backend``."""

BackendOpener = Callable[[], AbstractAsyncContextManager[tx.ExecBackend]]


def pytest_configure(config: pytest.Config) -> None:
    """Give the suite's children the default SIGINT, SIGQUIT and SIGHUP, however it was
    started.

    A background job of a non-interactive shell starts with SIGINT and SIGQUIT ignored,
    ``nohup`` ignores SIGHUP, and an ignored signal is inherited across exec: the tests
    that send them (or whose terminal hangs up its foreground group) would then see no
    effect. SIGHUP gets a handler that does nothing: this process still outlives a hang-up
    as ``nohup`` asked, and its children get the default back at exec.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _outlive_a_hang_up)


def _outlive_a_hang_up(signum: int, frame: object) -> None:
    """SIGHUP under ``nohup``: ignored, by a handler (see :func:`pytest_configure`)."""


@pytest.fixture(scope="session")
def ssh_server() -> Iterator[SshServer]:
    """A throwaway sshd on 127.0.0.1 for the session (installed with apt-get if missing)."""
    with run_sshd() as server:
        yield server


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """A private Docker daemon holding the project image (installed, started and built if
    needed; stopped by its PID after the session)."""
    with run_docker(Path(__file__).resolve().parents[1]) as engine:
        yield engine


@pytest.fixture(scope="session")
def docker_container(
    docker_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    """A container of the project image for the conformance suite, where the tests' paths
    mean what they mean here (see :func:`~tests.containers.engine.run_host_like`)."""
    with run_host_like(
        docker_engine,
        basetemp=tmp_path_factory.getbasetemp(),
        checkout=Path(__file__).resolve().parents[1],
        interpreter=Path(sys.executable),
    ) as container:
        yield container


@pytest.fixture(scope="session")
def kubectl_pod(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The one-node cluster's pod (see tests/cluster/node.py), for the session."""
    with cluster_for(request.config) as cluster:
        yield cluster


@pytest.fixture(params=BACKEND_KINDS)
def backend_opener(request: pytest.FixtureRequest) -> BackendOpener:
    """How to open the backend of this parameter (sync, so it may ask for ``ssh_server``
    only when a ``remote-ssh`` test runs)."""
    kind: str = request.param
    if kind in PLUGIN_BACKEND_KINDS:
        return lambda: open_backend(kind)
    if kind == "remote-stdio":
        return lambda: connect_command(STDIO_SERVER)
    if kind == "relay":
        return open_relay
    if kind in CONTAINER_KINDS:
        container: Container = request.getfixturevalue(f"{kind}_container")
        return lambda: connect_command(container.server_argv())
    if kind == "kubectl":
        pod: Cluster = request.getfixturevalue("kubectl_pod")
        return lambda: connect_command(pod.server_argv())
    assert kind == "remote-ssh", kind
    server: SshServer = request.getfixturevalue("ssh_server")
    return lambda: connect_command(ssh_argv(server.argv))


@pytest.fixture
def processes(request: pytest.FixtureRequest, backend_opener: BackendOpener) -> ProcessTable:
    """The process table of the side that runs the children of ``backend``: this machine's,
    or the container's."""
    kind: str = request.node.callspec.params["backend_opener"]
    if kind in CONTAINER_KINDS:
        container: Container = request.getfixturevalue(f"{kind}_container")
        return container
    return HOST_PROCESSES


@pytest.fixture
async def backend(backend_opener: BackendOpener) -> AsyncIterator[tx.ExecBackend]:
    """Each backend in turn: ``local``, ``remote``, ``remote-stdio``, ``remote-ssh``,
    ``relay``, ``docker``."""
    async with backend_opener() as opened:
        yield opened
