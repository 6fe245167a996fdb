"""The architecture page (docs/architecture.rst) matches the source.

Its "Layers" section names every module of the package (a subpackage as one entry) under a
``Layer N`` heading. These tests check that the page names each module once, names no
module that does not exist, and that every import goes from a layer to the same layer or
a lower-numbered one.
"""

from __future__ import annotations

import re
from typing import Final

from .test_layout import LAZY_CYCLE_EDGES, PACKAGE_DIR, import_graph

PAGE: Final = PACKAGE_DIR.parent / "docs" / "architecture.rst"

_HEADING: Final = re.compile(r"^Layer (\d+): ")
_ENTRY: Final = re.compile(r"^``(trio_exec/[^`]*)``$")


def _unit(module: str) -> str:
    """The entry a module belongs to: its subpackage of ``trio_exec``, or itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _entry_unit(path: str) -> str:
    name = path.removesuffix("/").removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


def documented_layers() -> dict[str, int]:
    """Each entry of the page's layers, with its layer number."""
    layers: dict[str, int] = {}
    layer: int | None = None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        heading = _HEADING.match(line)
        if heading:
            layer = int(heading.group(1))
            continue
        entry = _ENTRY.match(line)
        if entry and layer is not None:
            unit = _entry_unit(entry.group(1))
            assert unit not in layers, f"{unit} is listed twice"
            layers[unit] = layer
    return layers


def test_the_page_lists_every_module_once() -> None:
    graph, _ = import_graph()
    actual = {_unit(module) for module in graph}
    documented = set(documented_layers())
    assert documented - actual == set(), "listed on the page but not in the package"
    assert actual - documented == set(), "in the package but not on the page"


def test_imports_go_to_the_same_layer_or_a_lower_one() -> None:
    graph, lazy = import_graph()
    layers = documented_layers()
    edges = {(source, target) for source, targets in graph.items() for target in targets}
    upward = sorted(
        (source, target)
        for source, target in edges | lazy
        if (source, target) not in LAZY_CYCLE_EDGES
        and _unit(source) != _unit(target)
        and layers[_unit(source)] < layers[_unit(target)]
    )
    assert upward == []


def test_the_page_is_in_the_docs_toctree() -> None:
    index = (PAGE.parent / "index.rst").read_text(encoding="utf-8")
    assert re.search(r"^\s+architecture$", index, re.MULTILINE)
