"""slime's command line: parse argv into slime's `args` namespace and the pass-through flag lists.

Flags of the table (`flag_table.FLAGS`) are parsed here with slime's names and defaults. `--sglang-*` and
`--router-*` flags are collected for slime.sglang, Megatron's own flags for slime.megatron. Anything else
is an error that suggests the closest known flag (slime silently ignores typos). This module only parses:
derived defaults live in `resolve.py`, checks in `validation.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from slime.train.flag_table import FLAGS, FlagSpec
from slime.types import ConfigError

PASSTHROUGH_PREFIXES = ("--sglang-", "--router-")
ALIASES = {"--input-key": ("--prompt-key",)}
"""Other spellings slime's docs use for the same flag (the seeds' search-r1 example writes --prompt-key)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedArgs:
    """The result of parsing: slime's namespace plus the flags owned by other layers, verbatim."""

    args: argparse.Namespace
    sglang_argv: tuple[str, ...]
    """`--sglang-*` / `--router-*` flags with their values, for slime.sglang."""
    megatron_argv: tuple[str, ...]
    """Megatron's own flags with their values, for slime.megatron."""
    explicit: frozenset[str]
    """Attribute names the user set on the command line (to tell a default from a choice)."""


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from exc


def _add_flag(parser: argparse.ArgumentParser, spec: FlagSpec) -> None:
    kwargs: dict[str, Any] = {"dest": spec.attr, "help": spec.help}
    if spec.kind == "store_true":
        kwargs |= {"action": "store_true", "default": False}
    elif spec.kind == "store_false":
        kwargs |= {"action": "store_false", "default": True}
    elif spec.kind == "bool_optional":
        kwargs |= {"action": argparse.BooleanOptionalAction, "default": None}
    elif spec.kind == "append":
        kwargs |= {"action": "append", "default": []}
    else:
        converters: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "json": _json_value}
        kwargs |= {"type": converters[spec.kind], "default": spec.default}
        if spec.kind == "json" and isinstance(spec.default, str):
            kwargs["default"] = json.loads(spec.default)
        if spec.choices:
            kwargs["choices"] = list(spec.choices)
        if spec.nargs:
            kwargs["nargs"] = spec.nargs
            if isinstance(spec.default, tuple):
                kwargs["default"] = list(spec.default)
    aliases = ALIASES.get(spec.name, ())
    parser.add_argument(spec.name, *aliases, **kwargs)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors (a bad value, a missing argument) raise one `ConfigError` instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}. See `slime-train --help` for the flag's type and choices.")


def build_parser(extra_flags: Iterable[FlagSpec] = ()) -> argparse.ArgumentParser:
    """The argparse parser of every slime flag (plus `extra_flags`, e.g. a user's custom arguments)."""
    parser = _Parser(prog="slime-train", allow_abbrev=False, add_help=True)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in (*FLAGS, *extra_flags):
        group = groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        _add_flag(group, spec)  # type: ignore[arg-type]  # groups accept add_argument like parsers
    return parser


def _split_flags(tokens: Sequence[str]) -> list[list[str]]:
    """Group unknown tokens as [flag, value, value, ...] runs."""
    runs: list[list[str]] = []
    for token in tokens:
        if token.startswith("--"):
            runs.append([token])
        elif runs:
            runs[-1].append(token)
        else:
            raise ConfigError(f"unexpected positional argument {token!r}; slime-train takes only --flags.")
    return runs


def _unknown_flag_error(flag: str, known: Iterable[str]) -> ConfigError:
    name = flag.split("=", 1)[0]
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(
        f"unknown flag {name!r}.{hint} slime-train rejects unknown flags instead of ignoring them; "
        "see `slime-train --help` (Megatron flags need a Megatron-capable install, SGLang flags the --sglang- prefix)."
    )


def parse_args(
    argv: Sequence[str],
    *,
    is_megatron_flag: Callable[[str], bool] = lambda name: False,
    megatron_flag_names: Iterable[str] = (),
    extra_flags: Iterable[FlagSpec] = (),
) -> ParsedArgs:
    """Parse `argv`; route pass-through flags; refuse unknown ones with a suggestion.

    Args:
        argv: the command line without the program name.
        is_megatron_flag: tells whether a `--flag` belongs to Megatron's own parser (slime.megatron).
        megatron_flag_names: Megatron's flag names, only used to suggest corrections for typos.
        extra_flags: additional flags (the user-extensible arguments slime offers to custom entry scripts).

    Raises:
        ConfigError: an unknown flag (naming the closest known ones) or a bad value.
    """
    parser = build_parser(extra_flags)
    try:
        namespace, unknown = parser.parse_known_args(list(argv))
    except SystemExit as exc:  # argparse already printed its message; keep the exit code semantics
        raise ConfigError(f"invalid command line (argparse exit {exc.code}); see the message above.") from exc
    sglang_argv: list[str] = []
    megatron_argv: list[str] = []
    known = [a for action in parser._actions for a in action.option_strings] + list(megatron_flag_names)
    for run in _split_flags(unknown):
        name = run[0].split("=", 1)[0]
        if name.startswith(PASSTHROUGH_PREFIXES):
            sglang_argv += run
        elif is_megatron_flag(name):
            megatron_argv += run
        else:
            raise _unknown_flag_error(name, known)
    explicit = frozenset(_explicit_attrs(parser, argv))
    return ParsedArgs(namespace, tuple(sglang_argv), tuple(megatron_argv), explicit)


def _explicit_attrs(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    by_option = {opt: action.dest for action in parser._actions for opt in action.option_strings}
    return {by_option[t.split("=", 1)[0]] for t in argv if t.split("=", 1)[0] in by_option}
