"""The public surface: ``__all__`` lists exactly what the packages offer, every public name
and member is documented, and the classes users neither subclass nor build are final."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types
from collections.abc import Iterator
from typing import Final

import pytest

import trio_exec
import trio_exec.testing

PACKAGES: Final = (trio_exec, trio_exec.testing)
"""The public packages, each with its ``__all__``."""

FINAL_CLASSES: Final = (
    trio_exec.RemoteBackend,
    trio_exec.RemoteProcess,
    trio_exec.Supervisor,
    trio_exec.ChildHandle,
    trio_exec.ExecServer,
    trio_exec.LocalBackend,
    trio_exec.LocalProcess,
    trio_exec.ProcessStream,
    trio_exec.LineReader,
)
"""Concrete classes that the library builds (or users build and use as they are): marked
``@typing.final``, so subclassing them is a type error and their internals can change."""

NOT_EXPORTS: Final = frozenset({"annotations"})
"""Public-looking names a package has that are not part of its API: ``from __future__
import annotations`` binds ``annotations``."""


def _ids(packages: tuple[types.ModuleType, ...]) -> list[str]:
    return [package.__name__ for package in packages]


def _exported(package: types.ModuleType) -> list[str]:
    names: list[str] = package.__all__
    return names


def _module_docstrings(package: types.ModuleType) -> dict[str, str]:
    """Every top-level ``NAME = value`` of the package's modules that a string follows
    (an attribute docstring, as Sphinx reads them), by name."""
    prefix = f"{package.__name__}."
    modules = [package.__name__]
    modules += [
        info.name
        for info in pkgutil.walk_packages(package.__path__, prefix)
        if not info.name.endswith(".__main__")  # importing it runs the command line
    ]
    found: dict[str, str] = {}
    for name in modules:
        module = importlib.import_module(name)
        source = inspect.getsource(module)
        body = ast.parse(source).body
        for node, following in zip(body, [*body[1:], None], strict=True):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                target = node.target.id
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                first = node.targets[0]
                if not isinstance(first, ast.Name):
                    continue
                target = first.id
            else:
                continue
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
                and following.value.value.strip()
            ):
                found.setdefault(target, following.value.value)
    return found


def _public_members(cls: type) -> Iterator[tuple[str, object]]:
    """The public methods and properties of ``cls`` that trio_exec defines (inherited from
    its trio_exec bases included, those of ``object``, ``Exception``, trio... excluded)."""
    seen: set[str] = set()
    for owner in cls.__mro__:
        if not owner.__module__.startswith("trio_exec"):
            continue
        for name, member in vars(owner).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            if isinstance(member, property) or inspect.isfunction(member):
                yield name, member


@pytest.mark.parametrize("package", PACKAGES, ids=_ids(PACKAGES))
def test_all_has_no_duplicates_and_every_name_exists(package: types.ModuleType) -> None:
    names = _exported(package)
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)
    missing = [name for name in names if not hasattr(package, name)]
    assert missing == []


@pytest.mark.parametrize("package", PACKAGES, ids=_ids(PACKAGES))
def test_every_public_name_of_the_package_is_in_all(package: types.ModuleType) -> None:
    """``dir()`` offers nothing public that ``__all__`` does not declare (submodules, such
    as ``trio_exec.testing``, aside)."""
    public = {
        name
        for name in dir(package)
        if not name.startswith("_")
        and name not in NOT_EXPORTS
        and not isinstance(getattr(package, name), types.ModuleType)
    }
    assert public - set(_exported(package)) == set()


@pytest.mark.parametrize("package", PACKAGES, ids=_ids(PACKAGES))
def test_every_exported_name_has_a_docstring(package: types.ModuleType) -> None:
    """Classes and functions by ``__doc__``; constants and type aliases by the attribute
    docstring that follows their assignment in the source."""
    attribute_docs = _module_docstrings(package)
    undocumented = []
    for name in _exported(package):
        value = getattr(package, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            documented = bool((value.__doc__ or "").strip())
        else:
            documented = name in attribute_docs
        if not documented:
            undocumented.append(name)
    assert undocumented == []


@pytest.mark.parametrize("package", PACKAGES, ids=_ids(PACKAGES))
def test_every_public_method_and_property_of_an_exported_class_has_a_docstring(
    package: types.ModuleType,
) -> None:
    undocumented = []
    for name in _exported(package):
        cls = getattr(package, name)
        if not inspect.isclass(cls):
            continue
        for member_name, member in _public_members(cls):
            if not (inspect.getdoc(member) or "").strip():
                undocumented.append(f"{name}.{member_name}")
    assert undocumented == []


@pytest.mark.parametrize("cls", FINAL_CLASSES, ids=[cls.__name__ for cls in FINAL_CLASSES])
def test_the_concrete_classes_are_final(cls: type) -> None:
    assert getattr(cls, "__final__", False) is True
