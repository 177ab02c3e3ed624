"""A setting declared once. `setting()` gives a dataclass field its default, its help and the environment variable
that overrides the default; everything else is derived from that declaration: `env_values` (what the environment
sets), `add_flags` (a command's argparse flags, whose defaults are read from the environment, so a flag wins over
the environment), their `--help`, and the README's tables of flags (`flag_table`; tests/test_cli_env.py holds the
README to them).

Used by the worker's `Settings` (stream/config.py), `TrainConfig` and `TrainJob` (model/train.py) and `MINDConfig`
(model/mind.py).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, field, fields
from typing import Any


def setting(default: Any, help: str, *, env: str | None = "", flag: str = "", aliases: tuple[str, ...] = (),
            choices: Iterable[str] | None = None, parse: Callable[[str], Any] | None = None,
            required: bool = False) -> Any:
    """A dataclass field that is a setting.

    `env`: the variable that overrides the default; "" = MINDSTREAM_ and the flag's name in upper case
    (MINDSTREAM_MODELS_DIR for --models-dir), None = none (a flag only). `flag`: the flag's name when it is not
    the field's. A bool setting is a switch: its flag turns the default around (`--static-k` for dynamic_k=True),
    as does its variable set to 1. `parse`: how a flag's or variable's text becomes the value (default: the
    default's type). `required`: the flag must be given unless its variable is set.
    """
    return field(default=default, metadata={"help": help, "env": env, "flag": flag, "aliases": aliases,
                                            "choices": tuple(choices) if choices is not None else None,
                                            "parse": parse, "required": required})


def settings_of(cls: type) -> list[Field]:
    """The fields of `cls` declared with `setting()`, in declaration order."""
    return [f for f in fields(cls) if "help" in f.metadata]


def env_name(f: Field) -> str | None:
    """The variable that overrides the setting's default; None: none does."""
    env = f.metadata["env"]
    return f"MINDSTREAM_{(f.metadata['flag'] or f.name).lstrip('-').replace('-', '_').upper()}" if env == "" else env


def flag_name(f: Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def _is_switch(f: Field) -> bool:
    return isinstance(f.default, bool)


def _parse(f: Field) -> Callable[[str], Any]:
    return f.metadata["parse"] or type(f.default)


def _from_text(f: Field, raw: str, source: str) -> Any:
    try:
        return (not f.default if int(raw) else f.default) if _is_switch(f) else _parse(f)(raw)
    except ValueError:
        kind = "0 or 1" if _is_switch(f) else _parse(f).__name__
        raise ValueError(f"{source}={raw!r} is not {kind}") from None
    except argparse.ArgumentTypeError as e:  # a `parse` that names the values it takes, as argparse shows it
        raise ValueError(f"{source}: {e}") from None


def env_values(cls: type, names: Iterable[str] | None = None, environ: Mapping[str, str] | None = None) -> dict:
    """The settings of `cls` (or those of `names`) that their environment variables set; unset or empty ones are
    left out. A value its setting cannot take raises ValueError("NAME='raw' is not int"): one line."""
    environ = os.environ if environ is None else environ
    wanted = None if names is None else set(names)
    values = {}
    for f in settings_of(cls):
        name = env_name(f)
        if (wanted is None or f.name in wanted) and name and environ.get(name):
            values[f.name] = _from_text(f, environ[name], name)
    return values


def shown(value: Any) -> str:
    """A default as `--help` and the README show it: (256, 128) as 256,128, as the flag takes it."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_flags(parser: argparse.ArgumentParser, cls: type, names: Iterable[str] | None = None, *,
              use_env: bool = True, renamed: Mapping[str, str] | None = None) -> None:
    """One flag per setting of `cls` (or of `names`, in that order), its default read from its environment
    variable (unless `use_env` is False) and else the declared one; its help names both. `renamed`: settings
    whose flag this command names otherwise (`train --out` is the worker's `--models-dir`)."""
    by_name = {f.name: f for f in settings_of(cls)}
    chosen = [by_name[n] for n in names] if names is not None else list(by_name.values())
    env = env_values(cls, [f.name for f in chosen]) if use_env else {}
    renamed = renamed or {}
    for f in chosen:
        meta, variable = f.metadata, env_name(f) if use_env else None
        default = env.get(f.name, f.default)
        if _is_switch(f):
            kwargs: dict[str, Any] = {"action": "store_false" if f.default else "store_true"}
            suffix = f" (env {variable}=1)" if variable else ""
        else:
            kwargs = {"type": _parse(f), "choices": meta["choices"]}
            # %(default)s wherever argparse prints the value as the flag takes it: a command with
            # ArgumentDefaultsHelpFormatter (eval) then adds no second default
            value = shown(default).replace("%", "%%") if isinstance(default, tuple) else "%(default)s"
            suffix = f" (env {variable}; default {value})" if variable else f" (default {value})"
        if meta["required"]:
            kwargs["required"], suffix = f.name not in env, f" (env {variable})"
        names_ = [renamed[f.name]] if f.name in renamed else [flag_name(f), *meta["aliases"]]
        action = parser.add_argument(*names_, dest=f.name, default=default,
                                     help=meta["help"].replace("%", "%%") + suffix, **kwargs)
        # the declaration behind the flag and the variable it reads, for the README's tables (`flag_table`)
        action.setting, action.env = f, variable


def from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """An instance of `cls` from the flags `add_flags` gave `args` (settings without a flag keep their default)."""
    given = {f.name: getattr(args, f.name) for f in settings_of(cls) if hasattr(args, f.name)}
    return cls(**{**given, **values})


def flag_table(parser: argparse.ArgumentParser) -> str:
    """The Markdown table of a command's flags, one row per flag declared with `setting()`: what the README shows.
    A flag of `parser` that is not a setting raises LookupError: the table would not list it."""
    rows = ["| flag | env | default | meaning |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        f = getattr(action, "setting", None)
        if f is None:
            raise LookupError(f"{action.option_strings[0]} is not declared with setting()")
        variable = action.env
        if f.metadata["required"]:
            default = "(required)"
        elif _is_switch(f):
            default = "(off)"
        else:
            default = f"`{shown(f.default)}`" if shown(f.default) else "(empty)"
        env = f"`{variable}=1`" if variable and _is_switch(f) else f"`{variable}`" if variable else "(none)"
        flags = " / ".join(f"`{o}`" for o in action.option_strings)
        rows.append(f"| {flags} | {env} | {default} | {f.metadata['help'].replace('|', '&#124;')} |")
    return "\n".join(rows) + "\n"
