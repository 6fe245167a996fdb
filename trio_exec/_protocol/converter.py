"""The one cattrs converter between typed messages and JSON values.

It owns the wire form of every field: camelCase names (and the few renames), strict
scalar types (a string is never taken for a number, a number never for a bool),
canonical base64 for bytes, enums by value, optional fields left out when None; and it
renders a value that does not fit as a reference-like message with its JSON path.
"""

from __future__ import annotations

import binascii
import enum
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar, cast, get_args, get_origin

import attrs
import cattrs
import pybase64
from cattrs.cols import homogenous_tuple_structure_factory, mapping_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .._events import Output, ReadResult
from .codes import _clip
from .envelope import RpcDecodeError
from .messages import (
    EnvironmentInfo,
    ExitedNotification,
    InitializeParams,
    InitializeResult,
    StartParams,
    TerminateParams,
)
from .rules import _FieldError

__all__ = [
    "WIRE_INT_MAX",
    "WIRE_INT_MIN",
]

WIRE_INT_MIN: Final = -(2**63)
"""The smallest integer accepted in a typed field (a signed 64-bit integer)."""
WIRE_INT_MAX: Final = 2**64 - 1
"""The largest integer accepted in a typed field (an unsigned 64-bit integer, as ``seq``)."""


class _WireError(ValueError):
    """A JSON value of the wrong type or form; the message is complete."""


_RENAMES: Final[Mapping[tuple[type, str], str]] = {(Output, "data"): "chunk"}
"""Wire names that are not the camelCase of the attribute name."""

_OMITTED_WHEN_NONE: Final[frozenset[tuple[type, str]]] = frozenset(
    {
        (InitializeParams, "resume_session_id"),
        (InitializeParams, "extensions"),
        (InitializeResult, "environment_info"),
        (EnvironmentInfo, "shell"),
        (EnvironmentInfo, "cwd"),
        (EnvironmentInfo, "user_home_dir"),
        (EnvironmentInfo, "platform_os"),
        (EnvironmentInfo, "temporary_directories"),
        (EnvironmentInfo, "temp_dir"),
        (EnvironmentInfo, "capabilities"),
        (StartParams, "env_policy"),
        (StartParams, "window_size"),
        (TerminateParams, "grace_ms"),
        (ExitedNotification, "signal"),
        (ReadResult, "first_retained_seq"),
    }
)
"""Optional fields left out of the JSON when None (extensions, and a few core ones)."""

_CONSTANT_WIRE_FIELDS: Final[Mapping[type, Mapping[str, object]]] = {
    ReadResult: {"sandboxDenied": False},
}
"""Fields the wire has and the model lacks: sent with this value, ignored when read."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _wire_name(cls: type, name: str) -> str:
    return _RENAMES.get((cls, name)) or _camel(name)


def _describe(value: object) -> str:
    """Name a JSON value the way serde does in its messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        text = json.dumps(value)
        if len(text) > 40:
            text = text[:36] + '..."'
        return f"string {text}"
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def _structure_str(value: object, _: object) -> str:
    if type(value) is str:
        return value
    raise _WireError(f"invalid type: {_describe(value)}, expected a string")


def _structure_int(value: object, _: object) -> int:
    if type(value) is int:
        if WIRE_INT_MIN <= value <= WIRE_INT_MAX:
            return value
        raise _WireError(f"invalid value: integer `{value}` is out of range")
    raise _WireError(f"invalid type: {_describe(value)}, expected an integer")


def _structure_bool(value: object, _: object) -> bool:
    if type(value) is bool:
        return value
    raise _WireError(f"invalid type: {_describe(value)}, expected a boolean")


_NOT_BASE64: Final = re.compile(r"[^A-Za-z0-9+/=]")


def _structure_bytes(value: object, _: object) -> bytes:
    if type(value) is not str:
        raise _WireError(f"invalid type: {_describe(value)}, expected a base64 string")
    data = _canonical_base64(value)
    if data is None:
        raise _WireError(_base64_error(value))
    return data


def _canonical_base64(text: str) -> bytes | None:
    """The bytes of standard, padded, canonical base64 ``text``, or None if it is not that.

    Canonical: a whole number of quanta, the alphabet only, at most two padding symbols
    and only at the end, and zero padding bits (``aGk=`` for ``b"hi"``, never ``aGl=``).
    pybase64 validates and decodes in one SIMD pass (tens of GB/s, where binascii's strict
    mode manages a few hundred MB/s); the checks around it are the ones it leaves out.
    """
    if len(text) % 4:
        return None
    try:
        data = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: a character outside ASCII
        return None
    # Python's decoders accept non-zero padding bits ("aGl=" for b"hi"); the reference does not.
    if text.endswith("="):
        last = data[-1:] if text.endswith("==") else data[-2:]
        if pybase64.b64encode(last) != text[-4:].encode("ascii"):
            return None
    return data


def _base64_error(value: str) -> str:
    """What is wrong with ``value``, which :func:`_canonical_base64` refused."""
    # Strict mode still accepts padding past a whole quantum ("1CBA=", "AAAA===="): canonical
    # base64 is a whole number of quanta, with at most two padding symbols.
    if len(value) % 4 or value.endswith("==="):
        return _base64_problem(value)
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        return _base64_problem(value)
    return f"invalid base64: invalid last symbol {ord(value.rstrip('=')[-1])}"


def _base64_problem(value: str) -> str:
    bad = _NOT_BASE64.search(value)
    if bad is not None:
        return f"invalid base64: invalid symbol {ord(bad.group())}, offset {bad.start()}"
    padding = value.find("=")
    # Padding inside the data, or starting a quantum of its own, is a misplaced symbol.
    if padding >= 0 and ("=" in value.rstrip("=") or padding % 4 == 0):
        return f"invalid base64: invalid symbol 61, offset {padding}"
    return "invalid base64: invalid padding or length"


def _unstructure_bytes(value: bytes) -> str:
    return pybase64.b64encode(value).decode("ascii")


def _is_enum(cls: object) -> bool:
    return isinstance(cls, type) and issubclass(cls, enum.Enum)


def _enum_structure_factory(
    cls: type[enum.Enum], converter: object
) -> Callable[[object, object], enum.Enum]:
    members = {member.value: member for member in cls}
    expected = ", ".join(f"`{value}`" for value in members)

    def structure(value: object, _: object) -> enum.Enum:
        if type(value) is not str:
            raise _WireError(f"invalid type: {_describe(value)}, expected a string")
        try:
            return members[value]
        except KeyError:
            raise _WireError(
                f"unknown variant `{_clip(value)}`, expected one of {expected}"
            ) from None

    return structure


def _is_variadic_tuple(tp: object) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _strict_container_factory(
    wire_type: type, expected: str, make_inner: Callable[[Any, cattrs.Converter], Any]
) -> Callable[[Any, cattrs.Converter], Callable[[object, object], object]]:
    """A structure hook factory that takes only a JSON ``wire_type`` (``list``, ``dict``)
    before cattrs' own hook for the container: no other iterable or mapping passes."""

    def factory(tp: Any, converter: cattrs.Converter) -> Callable[[object, object], object]:
        inner = make_inner(tp, converter)

        def structure(value: object, _: object) -> object:
            if type(value) is not wire_type:
                raise _WireError(f"invalid type: {_describe(value)}, expected {expected}")
            return inner(value, tp)

        return structure

    return factory


_tuple_structure_factory = _strict_container_factory(
    list, "a sequence", homogenous_tuple_structure_factory
)


def _is_dict(tp: object) -> bool:
    return get_origin(tp) is dict


_dict_structure_factory = _strict_container_factory(dict, "a map", mapping_structure_factory)


def _attrs_structure_factory(
    cls: type, converter: cattrs.Converter
) -> Callable[[object, object], object]:
    renames: dict[str, Any] = {
        a.name: override(rename=_wire_name(cls, a.name)) for a in attrs.fields(cls)
    }
    inner: Callable[[Any, Any], object] = make_dict_structure_fn(cls, converter, **renames)
    expected = f"expected struct {cls.__name__}"

    def structure(value: object, _: object) -> object:
        if type(value) is not dict:
            raise _WireError(f"invalid type: {_describe(value)}, {expected}")
        return inner(value, cls)

    return structure


def _attrs_unstructure_factory(
    cls: type, converter: cattrs.Converter
) -> Callable[[Any], dict[str, Any]]:
    overrides: dict[str, Any] = {
        a.name: override(
            rename=_wire_name(cls, a.name),
            omit_if_default=(cls, a.name) in _OMITTED_WHEN_NONE,
        )
        for a in attrs.fields(cls)
    }
    inner: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(cls, converter, **overrides)
    constants = _CONSTANT_WIRE_FIELDS.get(cls)
    if constants is None:
        return inner

    def unstructure(value: Any) -> dict[str, Any]:
        result = inner(value)
        result.update(constants)
        return result

    return unstructure


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(bytes, _structure_bytes)
    converter.register_unstructure_hook(bytes, _unstructure_bytes)
    converter.register_structure_hook_factory(_is_enum, _enum_structure_factory)
    converter.register_structure_hook_factory(_is_variadic_tuple, _tuple_structure_factory)
    converter.register_structure_hook_factory(_is_dict, _dict_structure_factory)
    converter.register_structure_hook_factory(attrs.has, _attrs_structure_factory)
    converter.register_unstructure_hook_factory(attrs.has, _attrs_unstructure_factory)
    return converter


_converter: Final = _make_converter()
"""The one converter between typed messages and JSON values."""

_T = TypeVar("_T")


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _at(path: str) -> str:
    return f" at `{path}`" if path else ""


def _note(exc: BaseException) -> object:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, AttributeValidationNote | IterableValidationNote):
            return note
    return None


def _problems(exc: BaseException, path: str, cls: type | None = None) -> Iterator[str]:
    """Render a cattrs error tree as reference-like messages with JSON paths."""
    if isinstance(exc, ClassValidationError):
        for sub in exc.exceptions:
            note = _note(sub)
            if isinstance(note, AttributeValidationNote):
                wire = _wire_name(exc.cl, note.name)
                if isinstance(sub, KeyError):
                    yield f"missing field `{wire}`{_at(path)}"
                else:
                    yield from _problems(sub, _join(path, wire))
            else:
                yield from _problems(sub, path, exc.cl)
    elif isinstance(exc, IterableValidationError):
        for sub in exc.exceptions:
            note = _note(sub)
            index = note.index if isinstance(note, IterableValidationNote) else "?"
            key = str(index) if isinstance(index, int) else _clip(json.dumps(str(index)))
            yield from _problems(sub, f"{path}[{key}]" if path else f"[{key}]")
    elif isinstance(exc, _FieldError):
        name = exc.field if cls is None else _wire_name(cls, exc.field)
        yield exc.render(name) + _at(path)
    elif isinstance(exc, _WireError):
        yield f"{exc}{_at(path)}"
    else:
        yield f"invalid value: {_clip(str(exc))}{_at(path)}"


def _structure(raw: object, cls: type[_T], code: int) -> _T:
    if raw is None:
        if any(a.default is attrs.NOTHING for a in attrs.fields(cast(Any, cls))):
            raise RpcDecodeError(code, f"invalid type: null, expected struct {cls.__name__}")
        raw = {}
    try:
        return _converter.structure(raw, cls)
    except ClassValidationError as exc:
        message = "; ".join(_problems(exc, ""))
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, _WireError) else f"invalid value: {_clip(str(exc))}"
    raise RpcDecodeError(code, message)
