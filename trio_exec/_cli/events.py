"""The ``--json`` form of a process's events: one JSON object per line."""

from __future__ import annotations

import base64
from typing import Any, Final

from .._events import Closed, Event, Exited, Failed, Output

__all__ = ["JSON_FORMAT", "event_to_json"]

JSON_FORMAT: Final = """\
--json output: one JSON object per line on stdout, in the order of the events:
  {"event": "output", "seq": 1, "stream": "stdout", "text": "hi\\n"}
      output of the command ("stream": "stdout" or "stderr"; with --tty all of it
      is "stdout"). "text" holds the chunk when it is valid UTF-8; a chunk that is not
      (binary data, or a character cut between two chunks) has "base64" instead.
  {"event": "exited", "seq": 2, "exitCode": 3, "signal": null}
      the command exited; "signal" is the number of the signal that killed it, or null
      (also from a server that does not say: the reference); a signal death has
      exitCode 128+N.
  {"event": "closed", "seq": 3}
      the end of its output: the last event.
  {"event": "failed", "message": "..."}
      the session broke (e.g. the connection to the server was lost): the last event.
"seq" numbers the events of a process from 1. Errors of trio-exec itself go to stderr.
"""
"""The format of ``trio-exec run --json``, as ``--help`` shows it."""


def event_to_json(event: Event) -> dict[str, Any]:
    """The ``--json`` form of an event: one object with an ``event`` member (see
    :data:`JSON_FORMAT`)."""
    match event:
        case Output(seq=seq, stream=stream, data=data):
            line: dict[str, Any] = {"event": "output", "seq": seq, "stream": stream.value}
            try:
                line["text"] = data.decode("utf-8")
            except UnicodeDecodeError:
                line["base64"] = base64.b64encode(data).decode("ascii")
            return line
        case Exited(seq=seq, exit_code=code, signal=signum):
            return {"event": "exited", "seq": seq, "exitCode": code, "signal": signum}
        case Closed(seq=seq):
            return {"event": "closed", "seq": seq}
        case Failed(message=message):
            return {"event": "failed", "message": message}
