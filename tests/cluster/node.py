"""A one-node Kubernetes cluster on this machine, and the pod the conformance suite runs in.

:func:`run_cluster` starts, each as a child of its own session stopped by its PID when the
block ends (SIGTERM, then SIGKILL of its group after :data:`STOP_TIMEOUT`), in reverse order:

1. ``etcd`` on two free loopback ports, its data in a fresh directory;
2. a private ``dockerd`` (no iptables, no bridge; its socket and exec root in that
   directory, its data root in the cache so the images are kept);
3. ``kube-apiserver`` on a free loopback secure port (self-signed, the 1.20 apiserver has
   no insecure serving worth the name) with a static token of ``system:masters`` and
   AlwaysAllow authorisation; the ServiceAccount admission plugin is off, since no
   controller manager creates the default service account;
4. ``kubelet`` with dockershim on that dockerd, no CNI (the pod uses the host's network),
   no QoS cgroups, its OOM score left alone, the local pause image as the pods' sandbox;
5. one pod bound to the node by ``nodeName`` (no scheduler), which runs the pause program
   and nothing else, so that ``kubectl exec -i`` can run the server in it.

The pod's image holds the pause program and a skeleton root; the host's ``/usr``, this
interpreter's installation, the checkout (with the venv the tests run from), ``/tmp`` and
the cgroup2 hierarchy (writable, for the server's per-session cgroups) are hostPath volumes
at the same paths, and the pod shares the host's PID namespace: a
test's argv (``sys.executable``, a helper script, a ``tmp_path``) and its process checks
(``ps``, ``/proc``, ``killpg``) mean inside what they mean here. What ``kubectl exec``
runs there is the checkout's own ``trio-exec``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from .build import BuildError

__all__ = [
    "COMMAND_TIMEOUT",
    "NODE_NAME",
    "POD_NAME",
    "POD_WORKDIR",
    "STARTUP_TIMEOUT",
    "STOP_TIMEOUT",
    "Cluster",
    "run_cluster",
]

STARTUP_TIMEOUT: Final = 180.0
"""Seconds each component has to become ready (etcd healthy, dockerd answering, the
apiserver ready, the node Ready, the pod Ready); a few seconds each here."""

STOP_TIMEOUT: Final = 20.0
"""Seconds between SIGTERM and SIGKILL when a component is stopped."""

COMMAND_TIMEOUT: Final = 60.0
"""Seconds one ``kubectl`` or ``docker`` command of the setup may take."""

NODE_NAME: Final = "localhost"
"""The node's name (``--hostname-override``), which is also the address the apiserver
reaches the kubelet at: the 1.20 kubelet refuses a loopback ``--node-ip`` (it then reports
no address at all, and ``kubectl exec`` fails with ``no preferred addresses found``), and
the kubelet listens on loopback alone."""

POD_NAME: Final = "trio-exec"
"""The pod the server runs in, in the ``default`` namespace."""

POD_WORKDIR: Final = "/srv/trio-exec"
"""The working directory of the pod's container: the default cwd of ``kubectl exec``."""

POD_ENV: Final = {"TRIO_EXEC_POD": POD_NAME}
"""Environment the pod sets, so a test can tell the pod's environment from ours."""

_POLL: Final = 0.2
_LOG_TAIL: Final = 4000
_IMAGE_NAME: Final = "trio-exec-cluster"
_SKELETON: Final = ("dev", "proc", "sys", "tmp", "etc", "usr", "root", "run", "var/tmp")
_HOST_FILES: Final = ("etc/passwd", "etc/group", "etc/nsswitch.conf")
_MERGED_USR: Final = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_PAUSE: Final = "/pause"


@attrs.frozen(kw_only=True)
class Cluster:
    """A running one-node cluster and its pod."""

    kubectl: tuple[str, ...]
    """``kubectl --kubeconfig …``: the client command prefix for this cluster."""
    pod: str
    """The pod's name."""
    start_seconds: float
    """How long starting the components and the pod took."""

    def exec_argv(self, *argv: str) -> list[str]:
        """``kubectl exec -i POD -- ARGV…``: runs ``argv`` in the pod, its stdin and stdout
        ours (``-i``; no ``-t``, which would mangle the byte stream)."""
        return [*self.kubectl, "exec", "-i", self.pod, "--", *argv]

    def server_argv(self, *options: str) -> list[str]:
        """Our exec server on the stdin / stdout of ``kubectl exec -i``."""
        return self.exec_argv("trio-exec", "serve", "--listen", "stdio", *options)


def _run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    stdin: bytes | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> str:
    shown = " ".join(str(arg) for arg in argv)
    try:
        completed = subprocess.run(
            [str(arg) for arg in argv],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"`{shown}` took more than {timeout:.0f} s") from exc
    if completed.returncode != 0:
        raise BuildError(
            f"`{shown}` exited with code {completed.returncode}:\n"
            f"{completed.stdout.decode(errors='replace')[-_LOG_TAIL:]}\n"
            f"{completed.stderr.decode(errors='replace')[-_LOG_TAIL:]}"
        )
    return completed.stdout.decode(errors="replace")


def _succeeds(argv: Sequence[str]) -> bool:
    try:
        probe = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-_LOG_TAIL:]
    except OSError as exc:
        return f"(no log: {exc})"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``process`` by its PID; SIGKILL its group after :data:`STOP_TIMEOUT`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def _daemon(
    name: str, argv: Sequence[str | os.PathLike[str]], log: Path, ready: Callable[[], bool]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``) until the block ends, once ``ready()`` holds."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(arg) for arg in argv],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready():
            if process.poll() is not None:
                raise BuildError(f"{name} exited with code {process.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise BuildError(
                    f"{name} was not ready within {STARTUP_TIMEOUT:.0f} s:\n{_tail(log)}"
                )
            time.sleep(_POLL)
        yield process
    finally:
        _stop(process)


def _etcd_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=COMMAND_TIMEOUT) as response:
            health: dict[str, Any] = json.load(response)
    except OSError:
        return False
    return health.get("health") == "true"


def _image_tar(bin_dir: Path) -> bytes:
    """The pod image's root: the pause program, a skeleton, and the host's account files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in (*_SKELETON, POD_WORKDIR.lstrip("/")):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in _MERGED_USR:
            host = Path("/") / name
            if host.is_symlink():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(host)
                tar.addfile(info)
        for name in _HOST_FILES:
            if (Path("/") / name).is_file():
                tar.add(Path("/") / name, arcname=name)
        tar.add(bin_dir / "pause", arcname=_PAUSE.lstrip("/"))
    return buffer.getvalue()


def _ensure_image(docker: Sequence[str], bin_dir: Path) -> str:
    """The pod image (also the pause image) in the daemon, imported now if missing."""
    content = _image_tar(bin_dir)
    tag = f"{_IMAGE_NAME}:{hashlib.sha256(content).hexdigest()[:16]}"
    if not _succeeds([*docker, "image", "inspect", tag]):
        _run([*docker, "import", "--change", f'CMD ["{_PAUSE}"]', "-", tag], stdin=content)
    return tag


def _host_paths(checkout: Path) -> list[tuple[Path, bool]]:
    """The host paths bound into the pod at the same path, each with whether it is
    read-only: ``/usr`` (and any of ``/bin``, ``/lib``… not merged into it), this
    interpreter's installation and environment, the checkout's files (not its hidden
    directories, whose caches hold dockerd's data root); writable: the temporary directory
    and the cgroup2 hierarchy."""
    wanted = [Path("/usr"), Path(sys.prefix), Path(sys.base_prefix)]
    wanted += [Path("/") / name for name in _MERGED_USR]
    wanted += [entry for entry in checkout.iterdir() if not entry.name.startswith(".")]
    real = sorted(
        {path.resolve() for path in wanted if path.exists() and not path.is_symlink()},
        key=lambda path: (len(path.parts), str(path)),
    )
    read_only: list[Path] = []
    for path in real:
        if not any(path.is_relative_to(outer) for outer in read_only):
            read_only.append(path)
    writable = [Path(tempfile.gettempdir()).resolve(), *_cgroup2_mounts()]
    return [(path, True) for path in read_only] + [(path, False) for path in writable]


def _cgroup2_mounts() -> list[Path]:
    """Where this machine shows its cgroup2 hierarchy from its root. Bound writable into
    the pod, it lets the server there give each session a cgroup, as root can here; the
    container runtime's own view of it is read-only, and a privileged container, which
    would make it writable, cannot start on this machine (runc: ``unable to apply caps:
    operation not permitted``)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        parts = fields.split()
        if tail.split()[:1] == ["cgroup2"] and len(parts) > 4 and parts[3] == "/":
            found.append(Path(parts[4]))
    return found


def _pod_manifest(image: str, checkout: Path) -> dict[str, Any]:
    paths = _host_paths(checkout)
    search = [str(Path(sys.prefix) / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]
    env = {"PATH": os.pathsep.join(search), **POD_ENV}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD_NAME, "namespace": "default"},
        "spec": {
            "nodeName": NODE_NAME,
            "hostNetwork": True,
            "hostPID": True,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "server",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": [_PAUSE],
                    "workingDir": POD_WORKDIR,
                    "env": [{"name": name, "value": value} for name, value in env.items()],
                    "volumeMounts": [
                        {"name": f"host-{i}", "mountPath": str(path), "readOnly": ro}
                        for i, (path, ro) in enumerate(paths)
                    ],
                }
            ],
            "volumes": [
                {
                    "name": f"host-{i}",
                    "hostPath": {
                        "path": str(path),
                        "type": "Directory" if path.is_dir() else "File",
                    },
                }
                for i, (path, _) in enumerate(paths)
            ],
        },
    }


def _kubeconfig(port: int, token: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": f"https://127.0.0.1:{port}",
                        "insecure-skip-tls-verify": True,
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }
    )


def _unmount_under(root: Path) -> None:
    """Unmount what the kubelet left mounted under ``root`` (deepest first), so removing
    ``root`` cannot reach into a mounted directory."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    inside = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{root}/")]
    for target in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(f"another cluster holds {path}; one runs at a time") from None
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _cleanup_containers(docker: Sequence[str]) -> None:
    listed = subprocess.run(
        [*docker, "ps", "-aq"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    if listed.stdout.split():
        subprocess.run(
            [*docker, "rm", "-f", *listed.stdout.split()],
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )


@contextlib.contextmanager
def run_cluster(bin_dir: Path, cache: Path, checkout: Path) -> Iterator[Cluster]:
    """Run the cluster and its pod for the block (see the module docstring); every
    component is stopped by its PID when the block ends, failure or not."""
    started = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    # Short: containerd's sockets live under the exec root and a socket path has 108 bytes.
    state = Path(tempfile.mkdtemp(prefix="txk-", dir="/tmp"))
    try:
        with _locked(cache / "cluster.lock"), contextlib.ExitStack() as stack:
            yield _start(stack, bin_dir, cache, checkout, state, started)
    finally:
        _unmount_under(state)
        shutil.rmtree(state, ignore_errors=True)
        for leftover in (
            *Path("/var/log/pods").glob(f"default_{POD_NAME}_*"),
            *Path("/var/log/containers").glob(f"{POD_NAME}_default_*"),
        ):
            if leftover.is_symlink() or leftover.is_file():
                leftover.unlink()
            else:
                shutil.rmtree(leftover, ignore_errors=True)


def _start(
    stack: contextlib.ExitStack,
    bin_dir: Path,
    cache: Path,
    checkout: Path,
    state: Path,
    started: float,
) -> Cluster:
    etcd_url = f"http://127.0.0.1:{_free_port()}"
    peer_url = f"http://127.0.0.1:{_free_port()}"
    stack.enter_context(
        _daemon(
            "etcd",
            [
                "etcd",
                "--name=trio-exec",
                f"--data-dir={state / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=trio-exec={peer_url}",
            ],
            state / "etcd.log",
            lambda: _etcd_healthy(etcd_url),
        )
    )

    docker_socket = f"unix://{state / 'docker.sock'}"
    docker = ("docker", "-H", docker_socket)
    stack.enter_context(
        _daemon(
            "dockerd",
            [
                shutil.which("dockerd", path="/usr/sbin:/usr/bin:/sbin") or "dockerd",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--ip-masq=false",
                f"--data-root={cache / 'docker'}",
                f"--exec-root={state / 'x'}",
                "-H",
                docker_socket,
                f"--pidfile={state / 'docker.pid'}",
            ],
            state / "dockerd.log",
            lambda: _succeeds([*docker, "version"]),
        )
    )
    # The pod's containers go before the daemon does (the callbacks run last in, first out).
    stack.callback(_cleanup_containers, docker)
    image = _ensure_image(docker, bin_dir)

    token = secrets.token_hex(16)
    (state / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')
    key = state / "service-account.key"
    _run(["openssl", "genrsa", "-out", key, "2048"])
    api_port = _free_port()
    kubeconfig = state / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(api_port, token))
    kubectl = ("kubectl", f"--kubeconfig={kubeconfig}")
    stack.enter_context(
        _daemon(
            "kube-apiserver",
            [
                bin_dir / "kube-apiserver",
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--insecure-port=0",
                f"--cert-dir={state / 'apiserver'}",
                f"--token-auth-file={state / 'tokens.csv'}",
                "--authorization-mode=AlwaysAllow",
                f"--service-account-key-file={key}",
                f"--service-account-signing-key-file={key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
                "--kubelet-preferred-address-types=Hostname",
                "--allow-privileged=true",
            ],
            state / "apiserver.log",
            lambda: _succeeds([*kubectl, "get", "--raw", "/readyz"]),
        )
    )

    kubelet_root = state / "kubelet"
    stack.enter_context(
        _daemon(
            "kubelet",
            [
                bin_dir / "kubelet",
                f"--kubeconfig={kubeconfig}",
                "--container-runtime=docker",
                f"--docker-endpoint={docker_socket}",
                f"--container-runtime-endpoint=unix://{state / 'dockershim.sock'}",
                f"--experimental-dockershim-root-directory={state / 'dockershim'}",
                f"--root-dir={kubelet_root}",
                f"--cert-dir={kubelet_root / 'pki'}",
                f"--pod-infra-container-image={image}",
                f"--hostname-override={NODE_NAME}",
                "--address=127.0.0.1",
                f"--port={_free_port()}",
                "--read-only-port=0",
                "--healthz-port=0",
                "--fail-swap-on=false",
                "--cgroup-driver=cgroupfs",
                "--cgroups-per-qos=false",
                "--enforce-node-allocatable=",
                "--oom-score-adj=0",
                "--image-gc-high-threshold=100",
                "--image-gc-low-threshold=99",
            ],
            state / "kubelet.log",
            lambda: _succeeds(
                [
                    *kubectl,
                    "wait",
                    "--for=condition=Ready",
                    f"node/{NODE_NAME}",
                    "--timeout=1s",
                ]
            ),
        )
    )
    manifest = json.dumps(_pod_manifest(image, checkout)).encode()
    _run([*kubectl, "create", "-f", "-"], stdin=manifest)
    stack.callback(
        subprocess.run,
        [*kubectl, "delete", "pod", POD_NAME, "--grace-period=0", "--force", "--wait=false"],
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    ready = [
        *kubectl,
        "wait",
        "--for=condition=Ready",
        f"pod/{POD_NAME}",
        f"--timeout={int(STARTUP_TIMEOUT)}s",
    ]
    try:
        _run(ready, timeout=STARTUP_TIMEOUT + COMMAND_TIMEOUT)
    except BuildError as exc:
        described = subprocess.run(
            [*kubectl, "describe", "pod", POD_NAME], capture_output=True, text=True, check=False
        ).stdout
        raise BuildError(f"{exc}\n{described}\n{_tail(state / 'kubelet.log')}") from None
    return Cluster(kubectl=kubectl, pod=POD_NAME, start_seconds=time.monotonic() - started)
