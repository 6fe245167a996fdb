"""Building the cluster's binaries from Debian's packages alone (``python -m tests.cluster.build``).

No Kubernetes distribution can be downloaded here, but Debian's ``kubernetes`` source package
(1.20.2, its Go dependencies vendored) builds with Debian's Go. In order:

1. the Debian packages: ``golang-go`` and the rest of the source package's build
   dependencies (``apt-get build-dep``, after adding a ``deb-src`` entry for
   :data:`DEBIAN_MIRROR` to apt's sources), ``etcd-server``, ``docker.io`` and
   ``kubernetes-client`` (``kubectl``);
2. the source (``apt-get source``), with one constant patched: the OOM score adjustment
   dockershim gives a pod's sandbox container is -998, and this machine refuses a negative
   one (``write /proc/self/oom_score_adj: permission denied``), so it becomes 0;
3. ``kube-apiserver`` and ``kubelet`` only (``make WHAT=…``, as Debian's rules build
   ``kubectl``), and a static pause program for the pods' sandbox containers, all at the
   lowest CPU and I/O priority.

The binaries are kept in :func:`cache_root` with a stamp naming what they were built from,
so a second run finds them and builds nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

__all__ = [
    "APT_TIMEOUT",
    "BINARIES",
    "BUILD_TIMEOUT",
    "CACHE_ENV_VAR",
    "DEBIAN_MIRROR",
    "DEBIAN_SUITE",
    "SOURCE_PACKAGE",
    "BuildError",
    "build",
    "cache_root",
    "main",
]

CACHE_ENV_VAR: Final = "TRIO_EXEC_CLUSTER_CACHE"
"""Environment variable naming the cluster's cache directory (default ``.cache/cluster`` in
the working directory): the source, Go's build cache, the binaries, dockerd's data root."""

APT_TIMEOUT: Final = 900.0
"""Seconds each ``apt-get`` step may take."""

BUILD_TIMEOUT: Final = 3600.0
"""Seconds the ``go build`` of the two Kubernetes binaries may take (about 8 minutes on two
idle cores; much longer at the lowest priority on a busy machine)."""

DEBIAN_MIRROR: Final = "http://deb.debian.org/debian"
"""The mirror of the ``deb-src`` entry."""

DEBIAN_SUITE: Final = "bookworm"
"""The Debian release whose ``kubernetes`` source is built (1.20.5+really1.20.2)."""

SOURCE_PACKAGE: Final = "kubernetes"
"""Debian's source package of Kubernetes."""

BINARIES: Final = ("kube-apiserver", "kubelet")
"""The Kubernetes commands built: a pod bound to its node by ``nodeName`` needs neither the
scheduler nor the controller manager."""

_SOURCES_FILE: Final = Path("/etc/apt/sources.list.d/trio-exec-cluster-src.sources")
_SOURCES: Final = (
    "Types: deb-src\n"
    f"URIs: {DEBIAN_MIRROR}\n"
    f"Suites: {DEBIAN_SUITE}\n"
    "Components: main\n"
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
)
_PACKAGES: Final = {
    "etcd": "etcd-server",
    "dockerd": "docker.io",
    "docker": "docker.io",
    "kubectl": "kubernetes-client",
    "openssl": "openssl",
    "dpkg-source": "dpkg-dev",
}
_LOW_PRIORITY: Final = ("nice", "-n", "19", "ionice", "-c3")
# The one constant this machine cannot live with (see the module docstring).
_OOM_FILE: Final = "pkg/kubelet/dockershim/docker_sandbox.go"
_OOM_BEFORE: Final = "defaultSandboxOOMAdj int = -998"
_OOM_AFTER: Final = "defaultSandboxOOMAdj int = 0"
_VERSION: Final = "v1.20.2"
_PAUSE_SOURCE: Final = """\
// The sandbox container of a pod: it holds the pod's namespaces and waits to be stopped.
package main

import (
\t"os"
\t"os/signal"
\t"syscall"
)

func main() {
\tstop := make(chan os.Signal, 1)
\tsignal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
\t<-stop
}
"""
_STAMP: Final = "BUILT"


class BuildError(Exception):
    """A step of the build failed; the message names the command and shows its output."""


def cache_root() -> Path:
    """The cluster's cache directory (:data:`CACHE_ENV_VAR`, else ``.cache/cluster``)."""
    configured = os.environ.get(CACHE_ENV_VAR)
    return Path(configured).absolute() if configured else Path.cwd() / ".cache" / "cluster"


def _run(
    argv: Sequence[str | os.PathLike[str]],
    timeout: float,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    shown = " ".join(str(arg) for arg in argv)
    print(f"+ {shown}", flush=True)
    try:
        completed = subprocess.run(
            [str(arg) for arg in argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"`{shown}` took more than {timeout:.0f} s") from exc
    if completed.returncode != 0:
        raise BuildError(
            f"`{shown}` exited with code {completed.returncode}:\n"
            f"{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}"
        )
    return completed.stdout


def _which(command: str) -> str | None:
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")


def _apt(*args: str) -> None:
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "-o", f"DPkg::Lock::Timeout={int(APT_TIMEOUT)}", *args], APT_TIMEOUT, env=env)


def _ensure_packages() -> None:
    """The commands the cluster runs, installed with apt-get when missing."""
    missing = sorted({package for command, package in _PACKAGES.items() if not _which(command)})
    if missing:
        if os.geteuid() != 0:
            raise BuildError(f"{', '.join(missing)} missing; installing them needs root")
        _apt("update", "-q")
        _apt("install", "-y", "-q", *missing)


def _ensure_source(cache: Path) -> Path:
    """The patched source tree of :data:`SOURCE_PACKAGE` (fetched and unpacked if need be)."""
    tree = cache / "src" / "k8s"  # short: the GOPATH link and every compiled path use it
    if (tree / _OOM_FILE).is_file():
        return tree
    if os.geteuid() != 0:
        raise BuildError("adding a deb-src entry and build dependencies needs root")
    if not _SOURCES_FILE.is_file() or _SOURCES_FILE.read_text() != _SOURCES:
        _SOURCES_FILE.write_text(_SOURCES)
    _apt("update", "-q")
    _apt("build-dep", "-y", "-q", SOURCE_PACKAGE)
    download = cache / "src" / "download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    _run(["apt-get", "source", "-q", "--download-only", SOURCE_PACKAGE], APT_TIMEOUT, cwd=download)
    (dsc,) = download.glob("*.dsc")
    partial = cache / "src" / "partial"
    shutil.rmtree(partial, ignore_errors=True)
    _run(["dpkg-source", "-x", dsc, partial], APT_TIMEOUT)
    patched = partial / _OOM_FILE
    text = patched.read_text()
    if text.count(_OOM_BEFORE) != 1:
        raise BuildError(f"{_OOM_FILE} does not declare `{_OOM_BEFORE}` once")
    patched.write_text(text.replace(_OOM_BEFORE, _OOM_AFTER))
    shutil.rmtree(download)
    partial.rename(tree)
    return tree


def _stamp(tree: Path) -> str:
    version = (tree / "debian" / "changelog").read_text().partition("\n")[0]
    return f"{version}\n{_OOM_AFTER}\n{' '.join(BINARIES)} pause\n"


def build(cache: Path) -> tuple[Path, float]:
    """The directory of the built binaries (built now unless the cache has them), and the
    seconds this took."""
    started = time.monotonic()
    bin_dir = cache / "bin"
    stamp = bin_dir / _STAMP
    _ensure_packages()
    if stamp.is_file() and all((bin_dir / name).is_file() for name in (*BINARIES, "pause")):
        return bin_dir, time.monotonic() - started
    tree = _ensure_source(cache)
    if not _which("go"):
        _apt("build-dep", "-y", "-q", SOURCE_PACKAGE)
    # As Debian's rules do: the Makefile (which generates the OpenAPI definitions first)
    # in GOPATH mode, the repository linked into a GOPATH; its output in _output/bin.
    link = tree / ".go" / "src" / "k8s.io" / "kubernetes"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to("../../..")
    major, minor = _VERSION.split(".")[:2]
    env = {
        "CGO_ENABLED": "0",
        "GOPATH": str(tree / ".go"),
        "GOFLAGS": "",
        "KUBE_GIT_VERSION": _VERSION,
        "KUBE_GIT_MAJOR": major.removeprefix("v"),
        "KUBE_GIT_MINOR": minor,
        "KUBE_GIT_TREE_STATE": "clean",
    }
    what = " ".join(f"cmd/{name}" for name in BINARIES)
    _run([*_LOW_PRIORITY, "make", f"WHAT={what}"], BUILD_TIMEOUT, cwd=tree, env=env)
    bin_dir.mkdir(exist_ok=True)
    stamp.unlink(missing_ok=True)
    for name in BINARIES:
        shutil.copy2(tree / "_output" / "bin" / name, bin_dir / name)
    env = {"CGO_ENABLED": "0", "GO111MODULE": "off", "GOCACHE": str(cache / "gocache")}
    pause_dir = cache / "pause"
    pause_dir.mkdir(exist_ok=True)
    (pause_dir / "pause.go").write_text(_PAUSE_SOURCE)
    _run(
        [*_LOW_PRIORITY, "go", "build", "-ldflags", "-s -w", "-o", bin_dir / "pause", "pause.go"],
        BUILD_TIMEOUT,
        cwd=pause_dir,
        env=env,
    )
    stamp.write_text(_stamp(tree))
    return bin_dir, time.monotonic() - started


def main() -> int:
    """Build (or find) the binaries; print where they are and how long it took."""
    try:
        bin_dir, seconds = build(cache_root())
    except BuildError as exc:
        print(f"cluster build failed: {exc}", file=sys.stderr)
        return 1
    print(f"cluster binaries in {bin_dir} ({seconds:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
