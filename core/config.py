"""Frozen config dataclasses: defaults written once, strict generic (de)serialisation.

A config is a frozen dataclass that derives from :class:`Config`. Its ``to_dict`` gives
JSON-ready data (tuples as lists, option fields ``tuple[tuple[str, X], ...]`` as dicts,
nested configs as dicts, paths as strings) and ``from_dict`` reads it back, driven by the
field types: a key that is not a field is an error naming the valid fields (a misspelled
or retired setting is never silently ignored), a value of the wrong type is an error
naming the field, and a missing key takes the field's default, so a dict stored before a
field was added still loads.

Field metadata written with :func:`setting` (help text, a flag name, choices) lets a
front end (the CLI) build its options from the fields, so their defaults are the config's
by construction. The module imports nothing from the project, so any layer can use it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

DEFAULT_N_SPLITS = 10
"""Cross-validation folds (stratified, grouped when groups are known) of blind and MIA."""

DEFAULT_N_BOOT = 1000
"""Resamples of a bootstrap interval."""

DEFAULT_N_PERM = 200
"""Label permutations of the whole CV procedure (p-value and refit-including interval)."""
DEFAULT_GEN_STEPS = 25
"""Sampling steps of a generation (outputs access of a diffusion target, the tta variant)."""

C = TypeVar("C", bound="Config")


ACCESS_LEVELS = ("white-box", "outputs")
"""What an audit reads of the target: its token statistics or denoising losses
(``white-box``), or only what it returns (``outputs``: a transcription, generated audio)."""



def access_text(config: Any, family: str | None = None) -> str:
    """How a stored MIA config (a dict) read its target, in a few words, for the pages, the
    CLI and the report: ``white-box, generated text`` (``..., with PIA`` when a diffusion
    run measured it) or ``outputs only (...)``; ``family``
    (the target's, when known) says which outputs were read."""
    if config.get("access", "white-box") == "outputs":
        heard = f"its transcription of each clip and of {config.get('n_perturb', 3)} perturbations"
        made = f"{config.get('n_generations', 4)} generations per caption"
        what = heard if family == "audio-language" else made if family in ("autoregressive", "diffusion") else f"{heard}, or {made}"
        return f"outputs only (what the model returns: {what})"
    return f"white-box, {config.get('mode', 'generated')} text" + (", with PIA" if config.get("pia") else "")


def language_text(result: Any) -> str:
    """The language a run's speech model decoded in, for the pages, the CLI and the report:
    ``decoded in English (en), detected over 32 clip(s): en 32``; "" when it chose none."""
    lang = (result or {}).get("language")
    return f"decoded in {lang['text']}" if lang else ""


def decoding_text(config: Any, result: Any, family: str | None = None) -> str:
    """:func:`access_text` and, where a language was chosen, :func:`language_text`."""
    return "; ".join(t for t in (access_text(config, family), language_text(result)) if t)


def di_mia_config(result: Any) -> dict:
    """How the MIA run a dataset-inference result read (``result``: the DI run's) read its
    target, as the config dict :func:`decoding_text` takes."""
    return {"access": result.get("access", "white-box"), "mode": result.get("mia_mode", "generated"),
            "pia": bool(result.get("mia_pia", False))}


def at_access(access: str, key: str = "access"):
    """``where`` predicate over stored configs: runs at the ``access`` level (a config stored
    before access levels existed is white-box). ``key``: ``mia_access`` for DI configs."""
    return lambda config: config.get(key, "white-box") == access


class ConfigError(ValueError):
    """A config dict that cannot be read: an unknown key, a missing required field, or a
    value of the wrong type (then also a :class:`TypeError`); the message names the field."""


class ConfigTypeError(ConfigError, TypeError):
    """A value whose type does not match its field."""


class Listing(str):
    """A help text that names a registry's entries, read when the help is shown: the
    registry's module is imported then, not when the parser is built (a misspelled name
    still answers before any heavy library loads). ``text`` holds ``{names}``; ``names``
    is an importable ``"module:function"`` returning them."""

    def __new__(cls, text: str, names: str) -> "Listing":
        obj = super().__new__(cls, text)
        obj._names = names
        return obj

    def extended(self, more: str) -> "Listing":
        """The same listing with ``more`` appended to its text."""
        return Listing(str(self) + more, self._names)

    def render(self) -> str:
        import importlib

        module, _, fn = self._names.partition(":")
        names = ", ".join(getattr(importlib.import_module(module), fn)())
        return str.format(str(self), names=names).replace("%", "%%")  # argparse formats the help with %

    def __mod__(self, params: Any) -> str:  # what argparse does to a help text
        return self.render() % params

    def strip(self, chars: str | None = None) -> str:
        return self.render().strip(chars)

    def __contains__(self, part: object) -> bool:
        return isinstance(part, str) and part in self.render()


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    help: str = "",
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    cli: bool = True,
    repeatable: bool = False,
) -> Any:
    """A dataclass field with what a front end needs to offer it as an option.

    Parameters
    ----------
    default, default_factory : as for :func:`dataclasses.field`.
    help : one line for ``--help`` and tooltips.
    flag : the option name without dashes when it is not the field name with ``-`` for
        ``_``; for a bool that defaults to True, the name of the flag that turns it off
        (default ``no-<field>``).
    choices : the valid values, when there are few.
    metavar : the placeholder shown in ``--help``.
    cli : False for a field that is not a user setting of its own (set by other options,
        or an internal detail).
    repeatable : a ``tuple[str, ...]`` field given one value per option
        (``--reference A --reference B``) rather than comma-separated.
    """
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar, "cli": cli, "repeatable": repeatable}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


class Config:
    """Base of the frozen config dataclasses: ``to_dict`` and a strict ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields, in field order (see :func:`to_dict`)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """The config ``d`` describes (see :func:`from_dict`).

        Raises
        ------
        ConfigError
        """
        return from_dict(cls, d)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Resolved type of each init field of the dataclass ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def is_options(tp: Any) -> bool:
    """Whether ``tp`` is an option field: ``tuple[tuple[str, X], ...]`` (stored as a dict)."""
    if get_origin(tp) is not tuple:
        return False
    args = get_args(tp)
    if len(args) != 2 or args[1] is not Ellipsis or get_origin(args[0]) is not tuple:
        return False
    pair = get_args(args[0])
    return len(pair) == 2 and pair[0] is str


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass: tuples -> lists, option fields -> dicts,
    nested dataclasses -> dicts, paths -> strings."""
    types_ = field_types(type(config))
    return {name: _dump(getattr(config, name), tp) for name, tp in types_.items()}


def _dump(value: Any, tp: Any = Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if is_options(tp) and isinstance(value, (tuple, list)):
        return {k: _dump(v) for k, v in value}
    if isinstance(value, (tuple, list)):
        inner = _sequence_item_types(tp, len(value))
        return [_dump(v, t) for v, t in zip(value, inner)]
    if isinstance(value, Mapping):
        vt = get_args(tp)[1] if get_origin(tp) is dict and len(get_args(tp)) == 2 else Any
        return {k: _dump(v, vt) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def _sequence_item_types(tp: Any, n: int) -> list[Any]:
    args = get_args(tp) if get_origin(tp) in (tuple, list) else ()
    if len(args) == 2 and args[1] is Ellipsis:
        return [args[0]] * n
    if get_origin(tp) is list and len(args) == 1:
        return [args[0]] * n
    return list(args) if len(args) == n else [Any] * n


def from_dict(cls: type[C], d: Mapping[str, Any], *, where: str = "") -> C:
    """The ``cls`` config that ``d`` describes; missing keys take the field defaults.

    Raises
    ------
    ConfigError
        ``d`` holds a key that is not a field of ``cls`` (all unknown keys named, the valid
        fields listed), a required field is missing, or a value has the wrong type (the
        field named, dotted for nested configs).
    """
    if not isinstance(d, Mapping):
        raise ConfigTypeError(f"{where or cls.__name__}: expected a dict of {cls.__name__} settings, got {type(d).__name__}")
    types_ = field_types(cls)
    unknown = sorted(set(d) - set(types_))
    if unknown:
        at = f" (in {where})" if where else ""
        raise ConfigError(f"unknown {cls.__name__} setting(s){at}: {', '.join(map(str, unknown))}; valid: {', '.join(types_)}")
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in d
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where or cls.__name__}: missing required setting(s): {', '.join(missing)}")
    prefix = f"{where}." if where else f"{cls.__name__}."
    kwargs = {name: _load(types_[name], value, prefix + name) for name, value in d.items()}
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _wrong(where: str, tp: Any, value: Any) -> ConfigTypeError:
    return ConfigTypeError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _load(tp: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _load(arm, value, where)
            except ConfigError:
                continue
        raise _wrong(where, tp, value)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ConfigError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where=where)
    if is_options(tp):
        item = get_args(args[0])[1]
        if isinstance(value, Mapping):
            pairs = list(value.items())
        elif isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
            pairs = [tuple(p) for p in value]
        else:
            raise _wrong(where, dict, value)
        out = [(_load(str, k, f"{where}[{k!r}]"), _load(item, v, f"{where}[{k!r}]")) for k, v in pairs]
        return tuple(sorted(out, key=lambda kv: kv[0]))
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, tp, value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis) and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        items = [_load(t, v, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, _sequence_item_types(tp, len(value))))]
        return list(items) if (origin or tp) is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _wrong(where, dict, value)
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {_load(kt, k, f"{where}[{k!r}]"): _load(vt, v, f"{where}[{k!r}]") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(where, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _wrong(where, tp, value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _wrong(where, tp, value)
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, (str, PurePath)):
            return tp(value)
        raise _wrong(where, tp, value)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _wrong(where, tp, value)
    return value


def user_settings(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` a front end offers (``setting(cli=False)`` left out); nested
    config fields are returned as they are, for the caller to expand."""
    return [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("cli", True)]


def default_of(f: dataclasses.Field) -> Any:
    """The default value of a dataclass field (``MISSING`` for a required one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def key_values(items: list[str] | tuple[str, ...] | None, what: str = "an option") -> tuple[tuple[str, object], ...]:
    """``KEY=VALUE`` pairs (a repeatable option, or lines a user typed), sorted by key;
    values read as JSON when they parse (numbers, booleans, quoted strings), else as
    strings. Raises ``ValueError`` naming ``what`` for an item without ``=`` or a key."""
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return tuple(sorted(out.items()))


__all__ = [
    "Config",
    "ConfigError",
    "ConfigTypeError",
    "DEFAULT_N_BOOT",
    "DEFAULT_N_PERM",
    "DEFAULT_N_SPLITS",
    "default_of",
    "field_types",
    "from_dict",
    "is_options",
    "key_values",
    "setting",
    "to_dict",
    "user_settings",
]

