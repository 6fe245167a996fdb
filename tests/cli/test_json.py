"""``trio-exec run --json``: one event per line, output as text where it is UTF-8 and as
base64 where it is not; with ``--tty`` in a real terminal, lines that do not staircase."""

from __future__ import annotations

import base64
import json

import trio

from ..conformance.helpers import TIMEOUT
from .helpers import cli_in_terminal, run_cli


async def test_text_where_utf8_base64_where_not(where: list[str]) -> None:
    script = r"printf 'caf\303\251\n'; printf '\377\376' >&2; exit 2"
    done = await run_cli("run", *where, "--json", "--", "sh", "-c", script)
    assert done.returncode == 2
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    outputs = [line for line in lines if line["event"] == "output"]
    stdout = "".join(line["text"] for line in outputs if line["stream"] == "stdout")
    assert stdout == "café\n"
    stderr = [line for line in outputs if line["stream"] == "stderr"]
    assert all("text" not in line for line in stderr)
    assert b"".join(base64.b64decode(line["base64"]) for line in stderr) == b"\xff\xfe"
    exited = [line for line in lines if line["event"] == "exited"]
    assert exited == [{"event": "exited", "seq": exited[0]["seq"], "exitCode": 2, "signal": None}]
    assert lines[-1] == {"event": "closed", "seq": len(lines)}
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))


async def test_json_lines_do_not_staircase_in_a_terminal() -> None:
    """In raw mode a newline does not return the carriage: each JSON line would start where
    the previous one ended. The terminal's output processing stays on for ``--json``."""
    args = ["run", "--tty", "--json", "--", "sh", "-c", "echo one; echo two"]
    with trio.fail_after(TIMEOUT):
        async with cli_in_terminal(args, 24, 80) as terminal:
            output = await terminal.read_to_end()
            assert await terminal.process.wait() == 0, output
    assert output.endswith(b"\r\n")
    assert b"\n" not in output.replace(b"\r\n", b"")
    events = [json.loads(line) for line in output.decode().split("\r\n") if line]
    text = "".join(event.get("text", "") for event in events)
    assert text == "one\r\ntwo\r\n"
    assert [event["event"] for event in events][-2:] == ["exited", "closed"]
