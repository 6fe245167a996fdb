"""``trio_exec._cli.make_parser()``: the parser the CLI reference page is generated from
carries the exit-status table, the ``--json`` format and the ssh-like examples."""

from __future__ import annotations

import argparse

from trio_exec._cli import make_parser
from trio_exec._cli.events import JSON_FORMAT
from trio_exec._cli.status import EXIT_STATUS_TABLE


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_the_parser_documents_statuses_json_and_examples() -> None:
    parser = make_parser()
    assert parser.prog == "trio-exec"
    assert parser.epilog == EXIT_STATUS_TABLE
    commands = _subcommands(parser)
    assert set(commands) == {"run", "serve"}
    run_epilog = commands["run"].epilog or ""
    assert EXIT_STATUS_TABLE in run_epilog
    assert JSON_FORMAT in run_epilog
    assert "--via 'ssh build-host'" in run_epilog
    assert "kubectl exec -i" in run_epilog
    options = {option for action in commands["run"]._actions for option in action.option_strings}
    assert {"--tty", "--json", "--cwd", "--env", "--remote", "--via", "--token-file"} <= options
    assert "--log-level" in {
        option for action in commands["serve"]._actions for option in action.option_strings
    }
