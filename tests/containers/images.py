"""The images of the container tests: a debootstrap base, and the project installed in it."""

from __future__ import annotations

import importlib.metadata
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ..helpers import locked, run
from .commands import COMMAND_TIMEOUT, command_path, digest, succeeds

__all__ = [
    "CHILD_PACKAGES",
    "DEBIAN_MIRROR",
    "DEBIAN_SUITE",
    "IMAGE_ENV",
    "IMAGE_TIMEOUT",
    "ROOTFS_TIMEOUT",
    "VENV",
    "WORKDIR",
    "ensure_base",
    "ensure_project",
    "ensure_rootfs",
]

ROOTFS_TIMEOUT: Final = 900.0
"""Seconds the ``debootstrap`` of the base root file system may take (about 50 s here)."""

IMAGE_TIMEOUT: Final = 300.0
"""Seconds each step of building an image (import, wheels, offline install) may take."""

DEBIAN_SUITE: Final = "bookworm"
"""The Debian release of the base image (its Python is 3.11)."""

DEBIAN_MIRROR: Final = "http://deb.debian.org/debian"
"""Where ``debootstrap`` fetches the packages: the mirror apt uses."""

VENV: Final = "/opt/trio-exec"
"""The venv inside the image that holds the project."""

WORKDIR: Final = "/srv/trio-exec"
"""The image's working directory: the default cwd of what ``docker exec`` runs."""

IMAGE_ENV: Final = {"TRIO_EXEC_IMAGE": "test"}
"""Environment the image sets, so a test can tell the container's environment from ours."""

_BASE_PACKAGES: Final = ("python3", "python3-venv", "procps")
_BASE_NAME: Final = "localhost/trio-exec-base"
_PROJECT_NAME: Final = "localhost/trio-exec-test"
# Fully qualified: Podman resolves a short name through registries, of which there are none.
_ROOTFS_FILE: Final = f"{DEBIAN_SUITE}-minbase-python3.tar"
# The files that make up the wheel: a change to any of them rebuilds the project image.
_PROJECT_FILES: Final = ("pyproject.toml", "README.md")
_PROJECT_PACKAGE: Final = "trio_exec"
_PROJECT_WHEEL_PREFIX: Final = "trio_exec-"

CHILD_PACKAGES: Final = ("mcp",)
"""Packages the tests' children import besides the project (the MCP example's server), put
into :data:`VENV` at the versions installed here."""


def ensure_rootfs(cache: Path) -> tuple[Path, bool]:
    """The base root file system as a tarball (debootstrap on first use), and whether it was
    built now."""
    tarball = cache / _ROOTFS_FILE
    if tarball.is_file():
        return tarball, False
    with locked(cache / f"{_ROOTFS_FILE}.lock", ROOTFS_TIMEOUT):
        if tarball.is_file():
            return tarball, False
        work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
        try:
            rootfs = work / "rootfs"
            run(
                [
                    command_path("debootstrap"),
                    "--variant=minbase",
                    f"--include={','.join(_BASE_PACKAGES)}",
                    DEBIAN_SUITE,
                    rootfs,
                    DEBIAN_MIRROR,
                ],
                "debootstrap of the base image",
                ROOTFS_TIMEOUT,
            )
            # apt's package cache is of no use in the image.
            for cached in (rootfs / "var/cache/apt/archives").glob("*.deb"):
                cached.unlink()
            partial = work / _ROOTFS_FILE
            run(["tar", "-C", rootfs, "-cf", partial, "."], "tar of the base image", IMAGE_TIMEOUT)
            partial.replace(tarball)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tarball, True


def _image_exists(docker: Sequence[str], tag: str) -> bool:
    return succeeds([*docker, "image", "inspect", "--format", "{{.Id}}", tag])


def ensure_base(docker: Sequence[str], tarball: Path) -> tuple[str, bool]:
    """The base image imported from ``tarball`` into the engine of the client ``docker``
    (imported now if it is missing), and whether it was imported now."""
    stat = tarball.stat()
    tag = f"{_BASE_NAME}:{digest([tarball.name, str(stat.st_size), str(stat.st_mtime_ns)])}"
    if _image_exists(docker, tag):
        return tag, False
    run([*docker, "import", tarball, tag], "docker import of the base image", IMAGE_TIMEOUT)
    return tag, True


def _project_digest(project: Path, base: str, pinned: Sequence[str]) -> str:
    parts: list[str | bytes] = [base, *pinned]
    files = [project / name for name in _PROJECT_FILES]
    files += sorted(
        path
        for path in (project / _PROJECT_PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    for path in files:
        parts += [str(path.relative_to(project)), path.read_bytes()]
    return digest(parts)


def _ensure_wheels(cache: Path, project: Path, version: str, pinned: Sequence[str]) -> Path:
    """The directory of the project's wheel and its dependencies' for Python ``version``
    (built and fetched on first use, kept in the cache for the checkout's state)."""
    root = cache / "wheels"
    wheels = root / _project_digest(project, version, pinned)
    with locked(cache / "wheels.lock", IMAGE_TIMEOUT):
        if wheels.is_dir():
            return wheels
        root.mkdir(exist_ok=True)
        for stale in root.iterdir():
            shutil.rmtree(stale, ignore_errors=True)  # an earlier checkout's
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        run(
            [*pip, "wheel", "--no-deps", "-q", "-w", partial, project],
            "building the project's wheel",
            IMAGE_TIMEOUT,
        )
        (wheel,) = partial.glob("*.whl")
        run(
            [
                *pip,
                "download",
                "-q",
                "--only-binary=:all:",
                "--python-version",
                version,
                "-d",
                partial,
                wheel,
                *pinned,
            ],
            f"fetching the dependencies' wheels for Python {version}",
            IMAGE_TIMEOUT,
        )
        partial.rename(wheels)
    return wheels


def ensure_project(
    docker: Sequence[str], cache: Path, base: str, project: Path, run_options: Sequence[str]
) -> tuple[str, bool]:
    """The project image of the checkout ``project`` on ``base`` (built now if the engine of
    the client ``docker`` has none for this state of the checkout), and whether it was built
    now; ``run_options`` go to every container the build runs."""
    pinned = [f"{name}=={importlib.metadata.version(name)}" for name in CHILD_PACKAGES]
    tag = f"{_PROJECT_NAME}:{_project_digest(project, base, pinned)}"
    if _image_exists(docker, tag):
        return tag, False
    version = run(
        [
            *docker,
            "run",
            "--rm",
            "--network",
            "none",
            *run_options,
            base,
            "python3",
            "-c",
            "import sys; print('%d.%d' % sys.version_info[:2])",
        ],
        "the base image's Python version",
        COMMAND_TIMEOUT,
    ).strip()
    wheels = _ensure_wheels(cache, project, version, pinned)
    wheel = next(wheels.glob(f"{_PROJECT_WHEEL_PREFIX}*.whl"))
    builder = f"trio-exec-build-{os.getpid()}-{secrets.token_hex(4)}"
    script = (
        f"python3 -m venv {VENV} && "
        f"{VENV}/bin/pip install -q --no-index --find-links /wheels "
        f"/wheels/{wheel.name} {' '.join(pinned)} && "
        f"ln -s {VENV}/bin/trio-exec /usr/local/bin/trio-exec && mkdir -p {WORKDIR}"
    )
    try:
        run(
            [
                *docker,
                "run",
                "--name",
                builder,
                "--network",
                "none",
                "-v",
                f"{wheels}:/wheels:ro",
                *run_options,
                base,
                "sh",
                "-c",
                script,
            ],
            "installing the project into the image, offline",
            IMAGE_TIMEOUT,
        )
        changes = [f"WORKDIR {WORKDIR}"]
        changes += [f"ENV {name}={value}" for name, value in IMAGE_ENV.items()]
        run(
            [*docker, "commit", *(f"--change={change}" for change in changes), builder, tag],
            "docker commit of the project image",
            IMAGE_TIMEOUT,
        )
    finally:
        succeeds([*docker, "rm", "--force", builder])
    _remove_other_tags(docker, _PROJECT_NAME, keep=tag)
    return tag, True


def _remove_other_tags(docker: Sequence[str], name: str, keep: str) -> None:
    """Remove the images of earlier checkouts, so the cache does not grow without bound."""
    listed = run(
        [*docker, "image", "ls", name, "--format", "{{.Repository}}:{{.Tag}}"],
        "docker image ls",
        COMMAND_TIMEOUT,
    )
    stale = [tag for tag in listed.split() if tag != keep]
    if stale:
        succeeds([*docker, "rmi", *stale])
