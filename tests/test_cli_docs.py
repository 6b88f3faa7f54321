"""RunConfig's fields, the command line and the README's Commands block and config table cannot drift apart."""
import argparse
import re
from dataclasses import fields
from pathlib import Path

import pytest

from parity.cli import build_parser
from parity.cli.args import RUN_EPILOG
from parity.config import RunConfig, flag_name

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
OPTION = re.compile(r"(?<![\w-])--?[a-z][a-z0-9-]*")


def _commands() -> dict:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _options(parser) -> list[tuple[str, ...]]:
    """Each option's spellings (a boolean's --no-X form aside), without --help; a nested parser's (golden save) too."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out += [o for p in action.choices.values() for o in _options(p)]
        names = action.option_strings[:1] if isinstance(action, argparse.BooleanOptionalAction) else action.option_strings
        if names and "--help" not in names:
            out.append(tuple(names))
    return out


def _readme_commands() -> dict[str, set[str]]:
    """The options of each `parity COMMAND` entry in the README's Commands block (an entry runs until the next one)."""
    block = README.split("## Commands", 1)[1].split("```", 2)[1]
    entries: dict[str, set[str]] = {}
    command = None
    for line in block.splitlines():
        if line.startswith("parity "):
            command = line.split()[1]
        if command:
            entries.setdefault(command, set()).update(OPTION.findall(line))
    return entries


def _config_table() -> set[str]:
    """The RunConfig fields the README's config table names (``[tolerance.*]`` rows are the tolerances)."""
    section = README.split("## Config file, and the pytest gate", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in re.findall(r"^\| (.+?) \|", section, re.M):  # the first cell; the header's has no key
        for key in re.findall(r"`([^`]+)`", row):
            key = key.strip("[]")
            names.add("backend_tolerances" if key == 'tolerance."BACKEND"' else "tolerances" if key.startswith("tolerance.") else key)
    return names


def test_every_run_setting_is_a_flag_of_parity_run():
    run = {o for names in _options(_commands()["run"]) for o in names}
    flagged = [f for f in fields(RunConfig) if "flag" in f.metadata]
    assert {flag_name(f) for f in flagged} <= run
    assert {f.name for f in fields(RunConfig)} - {f.name for f in flagged} == {"tolerances", "backend_tolerances"}
    assert "--tol" in run  # how those two are set


def test_the_readme_commands_block_lists_every_command_and_option():
    readme, parsers = _readme_commands(), _commands()
    assert set(readme) == set(parsers)
    for name, parser in parsers.items():
        options = _options(parser)
        missing = [names[-1] for names in options if not set(names) & readme[name]]
        assert not missing, f"parity {name}: options of the CLI missing from the README's Commands block: {missing}"
        unknown = readme[name] - {o for names in options for o in names}
        assert not unknown, f"parity {name}: options in the README's Commands block that the CLI does not have: {sorted(unknown)}"


def test_the_readme_config_table_has_a_row_for_every_setting():
    table, settings = _config_table(), {f.name for f in fields(RunConfig)}
    assert not settings - table, f"RunConfig fields missing from the README's config table: {sorted(settings - table)}"
    assert not table - settings, f"README config-table keys that are not settings: {sorted(table - settings)}"


@pytest.mark.parametrize("line", [ln.strip() for ln in RUN_EPILOG.splitlines() if ln.strip().startswith("parity run")])
def test_the_run_help_examples_parse(line):
    build_parser().parse_args(line.split()[1:])
