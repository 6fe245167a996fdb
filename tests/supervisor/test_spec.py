"""ChildSpec and readiness conditions: defaults, conversions and clear validation errors."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

import trio_exec._supervisor as sv
from trio_exec import DEFAULT_GRACE, OutputStream


def make(**fields: Any) -> sv.ChildSpec:
    return sv.ChildSpec(**{"name": "x", "argv": ["true"], **fields})


def test_defaults_are_the_documented_constants() -> None:
    spec = make()
    assert spec.argv == ("true",)
    assert spec.restart is sv.RestartPolicy.ON_FAILURE
    assert spec.success_codes == frozenset({0})
    assert spec.max_restarts == sv.DEFAULT_MAX_RESTARTS
    assert spec.restart_window == sv.DEFAULT_RESTART_WINDOW
    assert spec.backoff_initial == sv.DEFAULT_BACKOFF_INITIAL
    assert spec.backoff_factor == sv.DEFAULT_BACKOFF_FACTOR
    assert spec.backoff_max == sv.DEFAULT_BACKOFF_MAX
    assert spec.backoff_jitter == sv.DEFAULT_BACKOFF_JITTER
    assert spec.ready is None
    assert spec.ready_timeout == sv.DEFAULT_READY_TIMEOUT
    assert spec.grace == DEFAULT_GRACE
    assert spec.keep_lines == sv.DEFAULT_KEEP_LINES == 100
    assert spec.keep_runs == sv.DEFAULT_KEEP_RUNS


def test_conversions() -> None:
    spec = make(argv=["sh", "-c", "x"], restart="always", success_codes=[0, 3], env={"A": "1"})
    assert spec.argv == ("sh", "-c", "x")
    assert spec.restart is sv.RestartPolicy.ALWAYS
    assert spec.success_codes == frozenset({0, 3})
    assert spec.env == {"A": "1"}
    assert hash(spec) == hash(make(argv=["sh", "-c", "x"], restart="always", success_codes=[0, 3]))
    ready = sv.ReadyOnOutput(pattern="^ready$")
    assert ready.pattern == re.compile("^ready$")
    assert ready.streams == frozenset(OutputStream)


def test_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        sv.ChildSpec("x", ["true"])  # type: ignore[call-arg]
    spec = make()
    with pytest.raises(AttributeError):
        spec.name = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"name": ""}, ValueError, "name must be a non-empty str"),
        ({"argv": []}, ValueError, "argv must not be empty"),
        ({"argv": "true"}, TypeError, "not a single string"),
        ({"restart": "sometimes"}, ValueError, "restart must be one of 'never', 'on-failure'"),
        ({"max_restarts": -1}, ValueError, "max_restarts must be >= 0"),
        ({"max_restarts": 1.5}, TypeError, "max_restarts must be an int"),
        ({"restart_window": 0}, ValueError, "restart_window must be a finite number > 0"),
        ({"restart_window": math.nan}, ValueError, "restart_window"),
        ({"backoff_initial": -0.1}, ValueError, "backoff_initial must be a finite number >= 0"),
        ({"backoff_factor": 0.5}, ValueError, "backoff_factor must be a finite number >= 1"),
        ({"backoff_max": math.inf}, ValueError, "backoff_max must be a finite number"),
        ({"backoff_initial": 2.0, "backoff_max": 1.0}, ValueError, "must be >= backoff_initial"),
        ({"backoff_jitter": 1.5}, ValueError, "backoff_jitter must be within 0..1"),
        ({"ready_timeout": 0}, ValueError, "ready_timeout must be > 0"),
        ({"grace": -1}, ValueError, "grace must be a finite number >= 0"),
        ({"keep_lines": -1}, ValueError, "keep_lines must be >= 0"),
        ({"keep_runs": 0}, ValueError, "keep_runs must be >= 1"),
        ({"success_codes": []}, ValueError, "success_codes must be a non-empty set"),
        ({"env": {"A=B": "x"}}, ValueError, "invalid environment variable name"),
        ({"env": {"A": 1}}, TypeError, "env keys and values must be str"),
        ({"ready": "ready"}, TypeError, "ready must be a ReadyOnOutput, ReadyOnPort"),
    ],
)
def test_bad_spec(fields: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        make(**fields)


def test_infinite_ready_timeout_is_allowed() -> None:
    assert make(ready_timeout=math.inf).ready_timeout == math.inf


BAD_PATTERN: Any = re.compile(b"x")
BAD_TYPE: Any = b"x"


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: sv.ReadyOnOutput(pattern="("), ValueError, "not a valid regex"),
        (lambda: sv.ReadyOnOutput(pattern=BAD_PATTERN), TypeError, "str pattern"),
        (lambda: sv.ReadyOnOutput(pattern=BAD_TYPE), TypeError, "must be a str or a compiled"),
        (lambda: sv.ReadyOnOutput(pattern="x", streams=[]), ValueError, "non-empty set"),
        (lambda: sv.ReadyOnPort(port=0), ValueError, "port must be within 1..65535"),
        (lambda: sv.ReadyOnPort(port=True), TypeError, "port must be an int"),
        (lambda: sv.ReadyOnPort(port=80, interval=0), ValueError, "interval must be"),
        (lambda: sv.ReadyOnCheck(check=BAD_TYPE), TypeError, "check must be callable"),
        (lambda: sv.ReadyOnCheck(check=bool, interval=-1), ValueError, "interval must be"),
    ],
)
def test_bad_readiness(build: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        build()
