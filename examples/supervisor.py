"""Keep two children running with trio_exec's supervisor, then shut down cleanly.

* ``server``: a tiny TCP server on a free loopback port; it counts as started only once
  the port accepts connections (``ReadyOnPort``).
* ``worker``: a flaky child that crashes on its first two runs. It is restarted with
  exponential backoff, and counts as started only once it prints ``steady``
  (``ReadyOnOutput``), so ``start`` returns after its third run.

Statuses are printed along the way; leaving the ``open_supervisor`` block stops both
children (SIGTERM to each process group, SIGKILL after the grace) in about a second.

    python examples/supervisor.py
"""

from __future__ import annotations

import socket
import sys
import tempfile

import trio

import trio_exec as tx

SERVER = """
import socket, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("server: listening", flush=True)
while True:
    conn, _ = sock.accept()
    conn.sendall(b"hello from the server\\n")
    conn.close()
"""

WORKER = """
n=$(cat runs 2>/dev/null || echo 0); n=$((n + 1)); echo $n > runs
echo "worker: run $n"
if [ $n -lt 3 ]; then echo "worker: crashing" >&2; exit 1; fi
echo "worker: steady"
exec sleep 60
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def show(supervisor: tx.Supervisor) -> None:
    for name, status in supervisor.statuses().items():
        codes = [run.exit_code for run in status.runs if run.ended_at is not None]
        last = status.lines[-1].text if status.lines else ""
        print(
            f"  {name:7} {status.state.name:8} starts={status.starts} "
            f"restarts={status.restarts} exit_codes={codes} last={last!r}"
        )


async def main() -> int:
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        async with tx.open_supervisor() as supervisor:
            await supervisor.start(
                tx.ChildSpec(
                    name="server",
                    argv=[sys.executable, "-c", SERVER, str(port)],
                    ready=tx.ReadyOnPort(port=port),
                    ready_timeout=10.0,
                    grace=1.0,
                )
            )
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            reply = await stream.receive_some()
            await stream.aclose()
            print(f"server ready on 127.0.0.1:{port}; it says {reply.decode().strip()!r}")

            worker = await supervisor.start(
                tx.ChildSpec(
                    name="worker",
                    argv=["sh", "-c", WORKER],
                    cwd=workdir,
                    restart=tx.RestartPolicy.ON_FAILURE,
                    max_restarts=5,
                    backoff_initial=0.1,
                    backoff_factor=2.0,
                    backoff_jitter=0.1,
                    ready=tx.ReadyOnOutput(pattern="^worker: steady$"),
                    grace=1.0,
                )
            )
            delays = [f"{run.backoff:.2f}" for run in worker.status().runs if run.backoff]
            print(f"worker ready after {worker.status().starts} starts; backoff delays {delays}")
            show(supervisor)
            print("shutting down")
        print("after shutdown:")
        show(supervisor)
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
