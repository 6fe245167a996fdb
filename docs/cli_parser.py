"""The parser that the CLI page (``cli.rst``) renders: ``trio-exec``'s own, from
``trio_exec._cli.make_parser``, with its preformatted help text made reStructuredText.

sphinx-argparse reads descriptions and epilogs as reStructuredText. A parser whose
formatter prints them as written (``RawDescriptionHelpFormatter``,
``RawTextHelpFormatter``) lays out tables and examples by indentation, which
reStructuredText would join into one paragraph: here every indented block becomes a
literal block (``.. code-block:: text``), so the page shows it line for line, as
``--help`` does.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from trio_exec._cli import make_parser

__all__ = ["RAW_FORMATTERS", "all_parsers", "parser", "preformatted_as_rst"]

RAW_FORMATTERS = (argparse.RawDescriptionHelpFormatter, argparse.RawTextHelpFormatter)
"""The formatters that print descriptions and epilogs as written."""


def preformatted_as_rst(text: str) -> str:
    """``text`` laid out for a terminal, as reStructuredText: each indented block is a
    literal block, the rest stays prose."""
    out: list[str] = []
    in_block = False
    for line in text.splitlines():
        indented = line[:1].isspace() and bool(line.strip())
        if indented and not in_block:
            while out and not out[-1].strip():
                out.pop()
            out += ["", ".. code-block:: text", ""]
            in_block = True
        elif not indented and line.strip() and in_block:
            out.append("")
            in_block = False
        out.append(line)
    return "\n".join(out)


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and its subcommands' parsers, recursively."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from all_parsers(child)


def parser() -> argparse.ArgumentParser:
    """``trio-exec``'s parser, its preformatted descriptions and epilogs as
    reStructuredText."""
    top = make_parser()
    for each in all_parsers(top):
        formatter = each.formatter_class
        if isinstance(formatter, type) and issubclass(formatter, RAW_FORMATTERS):
            if each.description:
                each.description = preformatted_as_rst(each.description)
            if each.epilog:
                each.epilog = preformatted_as_rst(each.epilog)
    return top
