"""The value rules of typed fields (attrs validators), and the error a broken rule raises.

A broken rule raises ``_FieldError``; the converter renders it with the field's wire name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs

from .codes import _clip
from .uris import file_uri_to_path

__all__ = [
    "MAX_WINDOW_DIMENSION",
]

MAX_WINDOW_DIMENSION: Final = 0xFFFF
"""The largest terminal row or column count ``process/resize`` accepts (a ``u16``)."""


class _FieldError(ValueError):
    """A field value broke a model rule (``argv must not be empty``).

    The message names the field; the decoder renders it with the wire name.
    """

    def __init__(self, field: str, render: Callable[[str], str]) -> None:
        super().__init__(render(field))
        self.field = field
        self.render = render


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 0:
        raise _FieldError(
            attribute.name, lambda name: f"invalid number: {name} must be >= 0, not {value}"
        )


def _non_empty(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, str | tuple) and not value:
        raise _FieldError(attribute.name, lambda name: f"{name} must not be empty")


def _window_dimension(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= MAX_WINDOW_DIMENSION:
        raise _FieldError(
            attribute.name,
            lambda name: (
                f"invalid number: {name} must be in 1..{MAX_WINDOW_DIMENSION}, not {value}"
            ),
        )


def _file_uri(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        file_uri_to_path(value)
    except ValueError as exc:
        problem = str(exc)
        raise _FieldError(
            attribute.name, lambda name: f"{problem} (`{name}` is {_clip(repr(value))})"
        ) from None
