"""Sphinx configuration of the trio_exec documentation.

Sphinx's autodoc, napoleon and viewcode, sphinx-argparse (the CLI page is generated from
the parser of ``trio-exec``), myst-parser (the front page is the README) and the furo
theme, all from the ``docs`` extra; no network (intersphinx is off). Build with::

    sphinx-build -W --keep-going -b html docs docs/_build/html

(``nox -s docs`` builds it and then checks the site in a headless browser:
``docs/check_site.py``.)

Local additions, all registered in :func:`setup`:

* The API pages (``docs/api/``) list names by topic. Any public name (in the ``__all__``
  of a documented module) that none of them lists is appended to the API index under
  "Other public names", so a new name is documented from the day it is exported.
* A re-exported constant or type alias (``trio_exec.DEFAULT_GRACE``, ``trio_exec.Event``)
  gets the doc comment written where it is defined, not the docstring of ``float``.
* Napoleon reads the first line of an attribute docstring as ``type: description``. Ours
  are prose whose first line often has a colon ("The address to connect to (default:
  ...)"), and types come from the annotations, so attribute docstrings are kept as written.
* Classes that users obtain and never build (:data:`OBTAINED_NOT_BUILT`) are shown without
  their constructor's signature, which takes private types.
* ``.. trio-exec-limits::`` generates the tables of named limits from the source.
* Every ``$ trio-exec ...`` command shown in a code block, on any page (the README
  included), must parse with the real argument parser: a stale example is a build error.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import inspect
import io
import operator
import pkgutil
import re
import shlex
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging as sphinx_logging
from sphinx.util.docutils import SphinxDirective

import trio_exec

_logger = sphinx_logging.getLogger(__name__)

project = "trio_exec"
author = "the trio_exec developers"
project_copyright = "the trio_exec developers"
release = version = trio_exec.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
    "myst_parser",
]
exclude_patterns = ["_build"]
root_doc = "index"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

smartquotes_action = "qe"
"""Curly quotes and ellipses, but ``--`` stays two hyphens: the CLI's options are written
that way in prose and in the parser's help."""

html_theme = "furo"
html_title = f"trio_exec {release}"
html_static_path = ["_static"]
html_css_files = ["trio_exec.css"]

PUBLIC_MODULES = (
    "trio_exec",
    "trio_exec.testing",
    "trio_exec.testing.strategies",
    "trio_exec.testing.pytest_plugin",
    "trio_exec.testing.reference",
)
"""The modules whose every ``__all__`` name the API page documents."""

_AUTODOC = re.compile(
    r"^\.\. auto(?:function|class|exception|data|attribute|decorator)::\s+(\S+)[^\n]*\n"
    r"(?:[ \t]+\S[^\n]*\n|[ \t]*\n(?=[ \t]+\S))*",
    re.MULTILINE,
)
_UNLISTED_MARKER = ".. other-public-names-go-here\n"


def _exported(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    return list(getattr(module, "__all__", ()))


def _directive_for(module_name: str, name: str) -> str:
    obj = getattr(importlib.import_module(module_name), name)
    if isinstance(obj, type):
        kind = "exception" if issubclass(obj, BaseException) else "class"
        return f".. auto{kind}:: {module_name}.{name}\n   :members:\n\n"
    if callable(obj):
        return f".. autofunction:: {module_name}.{name}\n\n"
    return f".. autodata:: {module_name}.{name}\n\n"


API_DIR = "api"
"""The folder of the API pages; its ``index`` gets the names that no page lists."""


def _complete_api_page(app: Any, docname: str, source: list[str]) -> None:
    """Append to the API index the public names that no API page lists."""
    if docname != f"{API_DIR}/index":
        return
    text = source[0]
    pages = sorted((Path(app.srcdir) / API_DIR).glob("*.rst"))
    for page in pages:  # the index is rebuilt when a page that lists names changes
        app.env.note_dependency(str(page))
    listed = {match[1] for page in pages for match in _AUTODOC.finditer(page.read_text("utf-8"))}
    missing = [
        (module_name, name)
        for module_name in PUBLIC_MODULES
        for name in _exported(module_name)
        if f"{module_name}.{name}" not in listed
    ]
    extra = ""
    if missing:
        extra = (
            ".. currentmodule:: trio_exec\n\n"
            "Other public names\n------------------\n\n"
            "Exported, but not yet placed on a page of its topic.\n\n"
            + "".join(_directive_for(module_name, name) for module_name, name in missing)
        )
    source[0] = text.replace(_UNLISTED_MARKER, extra)


def _reexported_from(module_name: str, name: str) -> str | None:
    """The module that ``module_name`` imports ``name`` from (``from ._x import name``)."""
    with open(_source_path(module_name), encoding="utf-8") as file:
        tree = ast.parse(file.read())
    package = module_name if _source_path(module_name).endswith("__init__.py") else ""
    package = package or module_name.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(alias.name == name for alias in node.names):
            if node.level == 0:
                return node.module
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            return f"{base}.{node.module}" if node.module else base
    return None


def _defined_doc(module_name: str, name: str) -> list[str] | None:
    """The doc comment of ``module_name.name``, looked up where it is defined.

    A re-exported constant or type alias has its doc comment in the private module that
    defines it, which autodoc does not look at: it falls back to the docstring of the
    value's type (``int``, ``UnionType``...).
    """
    seen: set[str] = set()
    while module_name.startswith("trio_exec") and module_name not in seen:
        seen.add(module_name)
        try:
            docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        except PycodeError:
            return None
        if ("", name) in docs:
            return list(docs[("", name)])
        origin = _reexported_from(module_name, name)
        if origin is None:
            return None
        module_name = origin
    return None


_kept_docstrings: dict[int, list[str]] = {}


def _keep_attribute_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Before napoleon: find the doc comment of re-exported data; remember the docstring."""
    if what == "data":
        module_name, _, attr = name.rpartition(".")
        doc = _defined_doc(module_name, attr)
        if doc is not None:
            lines[:] = doc
    _kept_docstrings[id(lines)] = list(lines)


def _restore_attribute_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """After napoleon: attribute docstrings are prose, not ``type: description``."""
    kept = _kept_docstrings.pop(id(lines), None)
    if kept is not None and what in ("attribute", "data", "property"):
        lines[:] = kept


LIMIT_PACKAGES = ("trio_exec", "trio_exec.testing")
"""Packages whose modules' named numeric constants the limits tables list."""

NOT_LIMITS = frozenset(
    {
        "PARSE_ERROR",
        "INVALID_REQUEST",
        "METHOD_NOT_FOUND",
        "INVALID_PARAMS",
        "INTERNAL_ERROR",
        "SESSION_ALREADY_ATTACHED",
        "UNKNOWN_REQUEST_ID",
        "FAILURE_EXIT_CODE",
        "WEBSOCKET_GOING_AWAY",
    }
)
"""Numeric constants that are codes, not limits."""

EXIT_CODE_NAME = re.compile(r"EXIT_[A-Z0-9_]+|[A-Z0-9_]*_EXIT_(?:CODE|STATUS)")
"""Names of exit codes and statuses (``FAILURE_EXIT_CODE``, ``EXIT_USAGE``), which are codes
too; ``COMMAND_EXIT_TIMEOUT`` and ``PTY_EXIT_SETTLE`` are limits."""

_OPERATORS: dict[type[ast.operator], Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}


def _number(node: ast.expr) -> float | int | None:
    """The value of a constant numeric expression (``64 * 1024``), else None."""
    if isinstance(node, ast.Constant):
        value = node.value
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _number(node.operand)
        return None if value is None else -value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _number(node.left), _number(node.right)
        if left is None or right is None:
            return None
        return _OPERATORS[type(node.op)](left, right)  # type: ignore[no-any-return]
    return None


def _size(value: float | int) -> str:
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if value >= factor and value % factor == 0:
            return f"{value // factor} {unit}"
    return f"{value} bytes"


def _source_path(module_name: str) -> str:
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot find the source of {module_name}")
    return spec.origin


def _limits(module_name: str) -> list[tuple[str, str, str]]:
    """(name, value, first paragraph of its docstring) of each numeric constant."""
    with open(_source_path(module_name), encoding="utf-8") as file:
        source = file.read()
    body = ast.parse(source).body
    rows = []
    for index, node in enumerate(body):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value_node = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value_node = node.target, node.value
        else:
            continue
        if not isinstance(target, ast.Name) or not re.fullmatch(r"[A-Z][A-Z0-9_]*", target.id):
            continue
        value = _number(value_node)
        if value is None or target.id in NOT_LIMITS or EXIT_CODE_NAME.fullmatch(target.id):
            continue
        text = ast.get_source_segment(source, value_node) or repr(value)
        if "BYTES" in target.id or "CHARS" in target.id:
            unit = _size(value) if "BYTES" in target.id else f"{value} characters"
            text = f"``{text}`` ({unit})" if text != str(value) else f"{unit}"
        else:
            text = f"``{text}``"
        doc = ""
        following = body[index + 1] if index + 1 < len(body) else None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            doc = " ".join(inspect.cleandoc(following.value.value).split("\n\n")[0].split())
        rows.append((target.id, text, doc))
    return rows


def _limit_modules() -> list[str]:
    """Every module of :data:`LIMIT_PACKAGES`, those of their subpackages included."""
    names: list[str] = []
    for package_name in LIMIT_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if not info.ispkg and info.name not in names:
                names.append(info.name)
    return names


class LimitsTables(SphinxDirective):
    """``.. trio-exec-limits::``: a table of the named limits of every module, from source.

    Every module-level constant with an upper-case name and a numeric value is listed
    (except the codes: :data:`NOT_LIMITS`, :data:`EXIT_CODE_NAME`), with the first paragraph
    of its docstring, so the table cannot fall behind the code.
    """

    def run(self) -> list[nodes.Node]:
        lines: list[str] = []
        for module_name in _limit_modules():
            self.env.note_dependency(_source_path(module_name))  # rebuilt when it changes
            rows = _limits(module_name)
            if not rows:
                continue
            summary = (importlib.import_module(module_name).__doc__ or "").strip().splitlines()
            lines += [f".. rubric:: ``{module_name}``", ""]
            if summary:
                lines += [summary[0], ""]
            lines += [
                ".. list-table::",
                "   :header-rows: 1",
                "   :widths: 28 18 54",
                "",
                "   * - name",
                "     - value",
                "     - what",
            ]
            for name, value, doc in rows:
                lines += [f"   * - ``{name}``", f"     - {value}", f"     - {doc or '..'}"]
            lines.append("")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, "<limits>"), self.content_offset, container)
        return list(container.children)


_SHELL_OPERATORS = frozenset({"|", "||", "&&", ";", "&"})


def _shown_commands(text: str) -> list[list[str]]:
    """The arguments of each ``trio-exec`` command typed at a ``$`` prompt in ``text``."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        if not line.startswith("$ "):
            continue
        try:
            words = shlex.split(line[2:], comments=True)
        except ValueError:
            continue  # not a shell line (an unbalanced quote): nothing to check
        segment: list[str] = []
        for word in [*words, ";"]:
            if word not in _SHELL_OPERATORS:
                segment.append(word)
                continue
            if segment[:1] == ["trio-exec"]:
                commands.append(segment[1:])
            segment = []
    return commands


def _parse_error(args: list[str]) -> str | None:
    """Why the parser of ``trio-exec`` rejects ``args``, or None if it takes them."""
    from trio_exec._cli import make_parser

    errors = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
        try:
            make_parser().parse_args(args)
        except SystemExit as exit:
            if exit.code not in (0, None):
                return errors.getvalue().strip().splitlines()[-1]
    return None


def _check_shown_commands(app: Any, doctree: nodes.document) -> None:
    """Warn about every ``$ trio-exec ...`` example that the real parser rejects."""
    for block in doctree.findall(nodes.literal_block):
        for args in _shown_commands(block.astext()):
            error = _parse_error(args)
            if error is not None:
                command = shlex.join(["trio-exec", *args])
                _logger.warning("the example %r does not parse: %s", command, error, location=block)


def _always_reread_cli_page(
    app: Any, env: Any, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """The CLI page renders the parser of ``trio_exec._cli``, which Sphinx does not know
    it depends on: read it again on every build."""
    return ["cli"]


OBTAINED_NOT_BUILT = frozenset(
    {
        "trio_exec.ExecProcess",
        "trio_exec.LocalProcess",
        "trio_exec.RemoteBackend",
        "trio_exec.RemoteProcess",
        "trio_exec.ChildHandle",
    }
)
"""Classes users get from the API and never construct: their constructors take private
types, so the API page shows them without a signature."""


def _hide_private_constructor(
    app: Any,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    if what in ("class", "exception") and name in OBTAINED_NOT_BUILT:
        return "", None
    return None


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("trio-exec-limits", LimitsTables)
    app.connect("source-read", _complete_api_page)
    app.connect("doctree-read", _check_shown_commands)
    app.connect("env-get-outdated", _always_reread_cli_page)
    app.connect("autodoc-process-signature", _hide_private_constructor)
    app.connect("autodoc-process-docstring", _keep_attribute_docstring, priority=100)
    app.connect("autodoc-process-docstring", _restore_attribute_docstring, priority=900)
    return {"parallel_read_safe": True}
