"""The stage commands' flags are built from the config fields: one default per setting."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from core.cli import add_config_flags, build_parser, config_from_args, flag_of
from core.config import Config, default_of, field_types, setting, user_settings
from core.stages import BlindRunConfig, DIRunConfig, DisentangleConfig, MIAConfig

COMMANDS = {
    "mia": (MIAConfig, ["--dataset", "d", "--target", "t"]),
    "blind": (BlindRunConfig, ["--dataset", "d"]),
    "di": (DIRunConfig, ["--dataset", "d", "--target", "t"]),
    "disentangle": (DisentangleConfig, ["--dataset", "d", "--target", "t"]),
}

FLAGS_BEFORE = {  # every flag these commands had when they were written by hand
    "mia": ["--mode", "--infill", "--seed", "--batch-size", "--n-boot", "--unsigned", "--grouping", "--n-perm",
            "--target-option", "--trust-remote-code", "--executor", "--ray-address"],
    "blind": ["--groups", "--seed", "--n-boot", "--grouping", "--n-perm"],
    "di": ["--scorer", "--alpha", "--seed", "--compare", "--mode", "--mia-run"],
    "disentangle": ["--conditions", "--mode", "--seed", "--n-boot", "--realizations", "--piper-voice", "--tta-generator",
                    "--tta-steps", "--clap-model", "--min-clap", "--max-wer", "--drop-inconsistent", "--unsigned",
                    "--grouping", "--n-perm", "--target-option", "--trust-remote-code", "--executor", "--ray-address"],
}


def _sub(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _settings(cls: type) -> list[tuple[type, dataclasses.Field]]:
    """(owner, field) of every user setting, nested configs expanded."""
    out = []
    for f in user_settings(cls):
        tp = field_types(cls)[f.name]
        out += _settings(tp) if dataclasses.is_dataclass(tp) else [(cls, f)]
    return out


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_defaults_are_the_config_defaults(command):
    cls, required = COMMANDS[command]
    args = build_parser().parse_args([command, *required])
    assert config_from_args(cls, args) == cls()
    actions = {a.dest: a for a in _sub(command)._actions}
    for _, f in _settings(cls):
        action, expected = actions[f.name], default_of(f)
        if isinstance(action, argparse._AppendAction):  # repeatable KEY=VALUE: nothing given is the empty default
            assert action.default is None and expected == (), f.name
        else:
            assert action.default == expected and type(action.default) is type(expected), f.name


@pytest.mark.parametrize("command", COMMANDS)
def test_every_user_setting_has_a_flag_and_no_flag_was_lost(command):
    cls, _ = COMMANDS[command]
    sub = _sub(command)
    flags = {o for a in sub._actions for o in a.option_strings}
    by_dest = {a.dest: a for a in sub._actions}
    for _, f in _settings(cls):
        assert flag_of(f) in by_dest[f.name].option_strings, f.name
    assert set(FLAGS_BEFORE[command]) <= flags
    # the one field without a flag of its own is set by the variant flags
    hidden = {f.name for c in (cls, *[field_types(cls)[g.name] for g in dataclasses.fields(cls)
                                      if dataclasses.is_dataclass(field_types(cls)[g.name])])
              for f in dataclasses.fields(c) if not f.metadata.get("cli", True)}
    assert hidden == ({"variant_options"} if cls is DisentangleConfig else set())


def test_flags_set_the_config_fields():
    p = build_parser()
    args = p.parse_args(["mia", "--dataset", "d", "--target", "t", "--mode", "given", "--infill", "3", "--timesteps", "10, 50,",
                         "--unsigned", "--trust-remote-code", "--target-option", "prompt=Hi", "--target-option", "batch_size=2",
                         "--n-splits", "5", "--grouping", "none"])
    cfg = config_from_args(MIAConfig, args)
    assert cfg == MIAConfig(mode="given", infill_m=3, timesteps=(10, 50), signed=False, trust_remote_code=True,
                            target_options=(("batch_size", 2), ("prompt", "Hi")), n_splits=5, grouping="none")
    args = p.parse_args(["blind", "--dataset", "d", "--groups", "metadata, acoustic", "--n-perm", "0"])
    assert config_from_args(BlindRunConfig, args) == BlindRunConfig(groups=("metadata", "acoustic"), n_perm=0)
    args = p.parse_args(["di", "--dataset", "d", "--target", "t", "--mode", "given", "--mia-run", "r1", "--refit", "--compare"])
    assert config_from_args(DIRunConfig, args) == DIRunConfig(mia_mode="given", mia_run="r1", refit=True, compare=True)
    args = p.parse_args(["disentangle", "--dataset", "d", "--target", "t", "--conditions", "original,noise", "--seed", "4",
                         "--realizations", "2", "--drop-inconsistent", "--unsigned"])
    cfg = config_from_args(DisentangleConfig, args, variant_options={"tts": {"piper_voice": "v.onnx"}})
    assert cfg == DisentangleConfig(conditions=("original", "noise"), mia=MIAConfig(seed=4, signed=False), max_realizations=2,
                                    drop_inconsistent=True, variant_options={"tts": {"piper_voice": "v.onnx"}})


def test_bad_flag_values_are_usage_errors(capsys):
    for argv in (["mia", "--dataset", "d", "--target", "t", "--timesteps", "10,x"],
                 ["mia", "--dataset", "d", "--target", "t", "--mode", "nope"],
                 ["blind", "--dataset", "d", "--grouping", "clip"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 2
    assert "10,x" in capsys.readouterr().err


def test_generic_rules_for_a_new_config():
    """A bool that defaults to True is turned off by --no-<name>; a field name's underscores
    become dashes; two fields with one name cannot both become flags."""

    @dataclass(frozen=True)
    class Knobs(Config):
        use_cache: bool = setting(True, help="read the cache")
        max_items: int | None = None
        ratio: float = 0.5

    parser = argparse.ArgumentParser()
    add_config_flags(parser, Knobs)
    assert config_from_args(Knobs, parser.parse_args([])) == Knobs()
    assert config_from_args(Knobs, parser.parse_args(["--no-use-cache", "--max-items", "3", "--ratio", "2"])) == Knobs(False, 3, 2.0)
    with pytest.raises(ValueError, match="Knobs.use_cache"):
        add_config_flags(parser, Knobs)


def test_no_help_text_shows_an_escaped_percent() -> None:
    """Every subcommand's --help renders: a help text written with ``%%`` (escaped once by
    hand and once by :func:`core.cli_flags.add_config_flags`) would print ``%%``."""
    import argparse

    from core.cli import build_parser

    def parsers(p: argparse.ArgumentParser):
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    seen = 0
    for p in parsers(build_parser()):
        text = p.format_help()
        assert "%%" not in text, p.prog
        seen += 1
    assert seen > 10
