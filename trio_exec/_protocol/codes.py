"""The numbers and names of the wire: JSON-RPC error codes, extension and signal names.

Also the one rule for repeating a peer's text in an error message: it is clipped to
:data:`MAX_ECHOED_CHARS`.
"""

from __future__ import annotations

import enum
import signal as _signal
from collections.abc import Mapping
from typing import Final

from .._errors import (
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    MethodNotFoundError,
    ParseError,
    SessionAlreadyAttachedError,
)
from .._events import signal_name

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MAX_ECHOED_CHARS",
    "METHOD_NOT_FOUND",
    "NOT_FOUND",
    "PARSE_ERROR",
    "SESSION_ALREADY_ATTACHED",
    "UNKNOWN_REQUEST_ID",
    "Extension",
    "ProcessSignal",
]

# -- error codes (each is the CODE of its class in trio_exec._errors) -----------------------

PARSE_ERROR: Final = ParseError.CODE
"""JSON-RPC "parse error". Defined for completeness: like the reference server,
:func:`decode_message` answers unparsable frames with :data:`INVALID_REQUEST`."""
INVALID_REQUEST: Final = InvalidRequestError.CODE
"""Unparsable or malformed frame, request out of order (not initialized), unknown process."""
METHOD_NOT_FOUND: Final = MethodNotFoundError.CODE
"""The method is not implemented."""
INVALID_PARAMS: Final = InvalidParamsError.CODE
"""The params (or, client side, a result) did not decode: wrong types, empty argv, ..."""
INTERNAL_ERROR: Final = InternalError.CODE
"""Spawn failure (the message is the OS error text) or another server-side failure."""
SESSION_ALREADY_ATTACHED: Final = SessionAlreadyAttachedError.CODE
"""``initialize {resumeSessionId}`` named a session still attached to another connection."""

NOT_FOUND: Final = -32004
"""A filesystem method's path does not exist (the reference's ``not_found``)."""

UNKNOWN_REQUEST_ID: Final = -1
"""The id of the error response to a frame that could not be parsed (as the reference)."""

MAX_ECHOED_CHARS: Final = 200
"""The longest piece of a peer's input an error message repeats; longer ones are clipped."""


def _clip(text: str) -> str:
    """Shorten a peer's text for an error message (:data:`MAX_ECHOED_CHARS`)."""
    if len(text) <= MAX_ECHOED_CHARS:
        return text
    return f"{text[: MAX_ECHOED_CHARS - 3]}..."


# -- enums ---------------------------------------------------------------------------------


class Extension(enum.StrEnum):
    """The trio_exec protocol extensions a server advertises in ``initialize``."""

    CLOSE_STDIN = "closeStdin"
    """``process/closeStdin``: half-close the child's stdin."""
    RESIZE = "resize"
    """``process/resize``: PTY window size."""
    SIGNALS = "signals"
    """``process/signal`` takes every :class:`ProcessSignal`, not only ``interrupt``."""
    GRACEFUL_TERMINATE = "gracefulTerminate"
    """``process/terminate`` takes ``graceMs``: SIGTERM first, SIGKILL after the grace."""
    EXIT_SIGNAL = "exitSignal"
    """``process/exited`` carries ``signal`` when a signal ended the child."""
    READ_GAP = "readGap"
    """``process/read`` results carry ``firstRetainedSeq``."""
    LIST = "list"
    """``process/list``."""
    RESUME = "resume"
    """Sessions outlive a lost websocket connection for a detach time and are taken back with
    ``initialize {resumeSessionId}``; output retained at the loss is kept for the catch-up
    reads (see PROTOCOL.md, "Connection loss and resume")."""
    WINDOW_SIZE = "windowSize"
    """``process/start`` takes ``windowSize {rows, cols}``: a terminal child starts at that
    size instead of 24x80."""
    BINARY_OUTPUT = "binaryOutput"
    """Over a websocket, when the client lists it in ``initialize {extensions}`` too:
    ``process/output`` comes as binary frames, a JSON header then the raw bytes (see
    :func:`~trio_exec._protocol.encode_binary_output`), instead of base64 in JSON text."""


class ProcessSignal(enum.Enum):
    """A signal name of ``process/signal``. Only ``interrupt`` is core protocol."""

    INTERRUPT = "interrupt"
    """SIGINT (core protocol)."""
    TERMINATE = "terminate"
    """SIGTERM (extension ``signals``)."""
    KILL = "kill"
    """SIGKILL (extension ``signals``)."""
    HANGUP = "hangup"
    """SIGHUP (extension ``signals``)."""
    QUIT = "quit"
    """SIGQUIT (extension ``signals``)."""
    USER1 = "user1"
    """SIGUSR1 (extension ``signals``)."""
    USER2 = "user2"
    """SIGUSR2 (extension ``signals``)."""

    @property
    def signum(self) -> int:
        """The POSIX signal number."""
        return _SIGNUMS[self]

    @property
    def extension(self) -> Extension | None:
        """The extension a server must advertise for this signal, or None (core)."""
        return None if self is ProcessSignal.INTERRUPT else Extension.SIGNALS

    @classmethod
    def from_signum(cls, signum: int) -> ProcessSignal:
        """The wire name of a signal number; ValueError if the protocol cannot send it."""
        for member, number in _SIGNUMS.items():
            if number == signum:
                return member
        raise ValueError(f"signal {signal_name(signum)} cannot be sent through the protocol")


_SIGNUMS: Final[Mapping[ProcessSignal, int]] = {
    ProcessSignal.INTERRUPT: _signal.SIGINT,
    ProcessSignal.TERMINATE: _signal.SIGTERM,
    ProcessSignal.KILL: _signal.SIGKILL,
    ProcessSignal.HANGUP: _signal.SIGHUP,
    ProcessSignal.QUIT: _signal.SIGQUIT,
    ProcessSignal.USER1: _signal.SIGUSR1,
    ProcessSignal.USER2: _signal.SIGUSR2,
}
