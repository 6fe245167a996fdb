"""Fixtures of the container tests: a fresh container per test, and rootful Podman."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .container import Container
from .engine import Engine, run_podman


@pytest.fixture
def fresh_container(docker_engine: Engine) -> Iterator[Container]:
    """A container of the project image for this test alone (nothing else runs in it)."""
    with docker_engine.container() as container:
        yield container


@pytest.fixture(scope="session")
def podman_engine() -> Iterator[Engine]:
    """Rootful Podman with the project image (installed and built if needed)."""
    with run_podman(Path(__file__).resolve().parents[2]) as engine:
        yield engine
