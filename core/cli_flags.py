"""The command line's options made from config dataclasses: one flag per user setting
(:func:`add_config_flags`) and the config read back from the parsed options
(:func:`config_from_args`), with the ``KEY=VALUE`` and comma-list readers they use."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Callable, TypeVar, get_args, get_origin

from core.config import Listing, default_of, field_types, is_options, key_values, user_settings

C = TypeVar("C")


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def _key_values(items: list[str] | None, flag: str) -> tuple[tuple[str, object], ...]:
    """``KEY=VALUE`` pairs of a repeatable option (:func:`core.config.key_values`)."""
    try:
        return key_values(items, f"--{flag}")
    except ValueError as exc:
        raise CLIError(str(exc)) from None


# -- flags from config fields --------------------------------------------------------------
def flag_of(f: dataclasses.Field) -> str:
    """The option of a config field: its metadata's ``flag``, else the field name with
    dashes; a bool that defaults to True is turned off by ``--no-<name>``."""
    name = f.metadata.get("flag") or f.name.replace("_", "-")
    if f.default is True and not f.metadata.get("flag"):
        name = "no-" + name
    return "--" + name


def _comma_list(item_type: type) -> Callable[[str], list]:
    def parse(text: str) -> list:
        try:
            return [item_type(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item_type.__name__} values, got {text!r}") from None

    parse.__name__ = f"comma-separated {item_type.__name__} list"
    return parse


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per user setting of the config dataclass ``cls`` (nested configs' fields
    flattened): the flag from the field name, the help from its metadata, the default the
    field's own. Bools are switches; tuples are comma-separated lists; an option field
    (``tuple[tuple[str, X], ...]``) is a repeatable ``KEY=VALUE``. The destination is the
    field name, so :func:`config_from_args` reads the values back.

    Raises
    ------
    ValueError
        two fields (after flattening) with the same name.
    """
    taken = {a.dest for a in parser._actions}
    for f in user_settings(cls):
        tp = field_types(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            add_config_flags(parser, tp)
            continue
        if f.name in taken:
            raise ValueError(f"{cls.__name__}.{f.name}: a flag with this destination exists already")
        default = default_of(f)
        shown = default if not isinstance(default, tuple) else ",".join(map(str, default))
        help_ = f.metadata.get("help") or ""
        if not (default is None or isinstance(default, bool) or default == () or is_options(tp)):
            help_ = help_.extended(f" (default: {shown})") if isinstance(help_, Listing) else f"{help_} (default: {shown})".strip()
        kw: dict = {"dest": f.name, "help": (help_ if isinstance(help_, Listing) else help_.replace("%", "%%")) or None}
        args = [a for a in get_args(tp) if a is not type(None)]
        if tp is bool:
            kw |= {"action": "store_false" if default else "store_true", "default": default}
        elif is_options(tp):
            kw |= {"action": "append", "default": None, "metavar": f.metadata.get("metavar") or "KEY=VALUE"}
        elif f.metadata.get("repeatable"):
            kw |= {"action": "append", "default": None, "metavar": f.metadata.get("metavar")}
        else:
            if get_origin(tp) is tuple:
                kw["type"] = _comma_list(args[0])
            elif len(args) == 1 and get_origin(tp) is not None:  # X | None
                kw["type"] = args[0]
            elif tp in (int, float):
                kw["type"] = tp
            kw |= {"default": default, "metavar": f.metadata.get("metavar"), "choices": f.metadata.get("choices")}
        parser.add_argument(flag_of(f), **{k: v for k, v in kw.items() if v is not None or k == "default"})


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides) -> C:
    """The ``cls`` config of parsed options made by :func:`add_config_flags`; ``overrides``
    (by field name, at any nesting depth) replace what the options say."""
    d: dict = {}
    for f in user_settings(cls):
        tp = field_types(cls)[f.name]
        if f.name in overrides:
            continue
        if dataclasses.is_dataclass(tp):
            d[f.name] = config_from_args(tp, args, **overrides)
        elif is_options(tp):
            d[f.name] = _key_values(getattr(args, f.name), flag_of(f)[2:])
        elif f.metadata.get("repeatable"):
            d[f.name] = tuple(getattr(args, f.name) or ())
        else:
            d[f.name] = getattr(args, f.name)
    own = {k: v for k, v in overrides.items() if k in field_types(cls)}
    return cls.from_dict(d | own)
