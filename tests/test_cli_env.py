"""The README's promise about flags and environment variables, decided from every subcommand's real parser: a flag
whose help names an environment variable (`env NAME` or `[NAME]`) takes its default from that variable, and the
flags without one are exactly those the README lists as such."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest

from stream.cli import COMMANDS

README = Path(__file__).resolve().parents[1] / "README.md"
ENV_IN_HELP = re.compile(r"(?:\benv |\[)([A-Z][A-Z0-9_]*[A-Z0-9])\b")
SENTINELS = ("3", "7", "0.5", "sentinel-value")


def parser_of(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"mindstream {command}")
    importlib.import_module(COMMANDS[command][0]).configure(parser)
    return parser


def flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def env_named(action: argparse.Action) -> str | None:
    m = ENV_IN_HELP.search(action.help or "")
    return m.group(1) if m else None


def readme_flags_without_env() -> dict[str, set[str]]:
    """command -> flags, from the README table under "Flags without an environment variable"."""
    text = README.read_text()
    table = text.split("Flags without an environment variable", 1)[1].split("\n\n", 2)[1]
    out = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        out[cells[0].strip("`")] = set(re.findall(r"`(--[a-z0-9-]+)`", cells[1]))
    return out


def test_flags_without_an_environment_variable_are_the_ones_the_readme_lists() -> None:
    without = {}
    for command in COMMANDS:
        missing = {a.option_strings[0] for a in flags(parser_of(command)) if env_named(a) is None}
        if missing:
            without[command] = missing
    assert readme_flags_without_env() == without


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_environment_variable_named_in_a_help_sets_the_flag_default(command: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a help text alone: with the variable set, the parser's default changes."""
    named = [(a, env_named(a)) for a in flags(parser_of(command)) if env_named(a) is not None]
    for action, env in named:
        before = parser_of(command).get_default(action.dest)
        changed = False
        for raw in ((c for c in action.choices if c != before) if action.choices else SENTINELS):
            monkeypatch.setenv(env, str(raw))
            try:
                after = parser_of(command).get_default(action.dest)
            except (ValueError, SystemExit):  # a value this flag cannot take: try the next one
                continue
            finally:
                monkeypatch.delenv(env)
            if after != before:
                changed = True
                break
        assert changed, f"mindstream {command} {action.option_strings[0]}: help names {env}, which sets nothing"
