"""Config dataclasses: strict generic (de)serialisation (core.config) of the stage configs
(core.stages) and the lower configs, and the JSON that workspaces already hold."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import Config, ConfigError, ConfigTypeError, from_dict, setting, to_dict
from core.stages import BlindRunConfig, CrossDataConfig, DIRunConfig, DisentangleConfig, MIAConfig

STAGES = (BlindRunConfig, MIAConfig, DIRunConfig, DisentangleConfig, CrossDataConfig)


@dataclass(frozen=True)
class Inner(Config):
    k: int = 1


@dataclass(frozen=True)
class Outer(Config):
    where: Path = Path("/tmp/x")
    name: str | None = None
    pair: tuple[int, int] = (1, 2)
    many: tuple[float, ...] = ()
    options: tuple[tuple[str, object], ...] = ()
    inner: Inner = Inner()
    table: dict[str, int] = setting(default_factory=dict)


def test_to_dict_gives_json_ready_data_and_from_dict_inverts_it():
    cfg = Outer(where=Path("/a/b"), name="n", pair=(3, 4), many=(0.5, 2.0), options=(("a", 1), ("b", "x")),
                inner=Inner(7), table={"t": 2})
    d = cfg.to_dict()
    assert d == {"where": "/a/b", "name": "n", "pair": [3, 4], "many": [0.5, 2.0], "options": {"a": 1, "b": "x"},
                 "inner": {"k": 7}, "table": {"t": 2}}
    assert Outer.from_dict(json.loads(json.dumps(d))) == cfg
    assert from_dict(Outer, {}) == Outer() and to_dict(Outer()) == Outer().to_dict()


def test_option_fields_load_sorted_from_a_dict_or_pairs():
    a = Outer.from_dict({"options": {"z": 1, "a": True}})
    b = Outer.from_dict({"options": [["a", True], ["z", 1]]})
    assert a.options == b.options == (("a", True), ("z", 1))


def test_unknown_keys_are_named_with_the_valid_fields():
    with pytest.raises(ConfigError, match=r"unknown Outer setting\(s\): nmae, zz; valid: where, name, pair, many, options, inner, table"):
        Outer.from_dict({"nmae": "x", "zz": 1, "pair": [1, 2]})
    with pytest.raises(ConfigError, match=r"unknown Inner setting\(s\) \(in Outer.inner\): kk; valid: k"):
        Outer.from_dict({"inner": {"kk": 1}})


@pytest.mark.parametrize("d, field", [
    ({"pair": [1, 2, 3]}, "Outer.pair"),
    ({"pair": "12"}, "Outer.pair"),
    ({"many": [0.5, "x"]}, r"Outer.many\[1\]"),
    ({"inner": {"k": "7"}}, "Outer.inner.k"),
    ({"inner": 3}, "Outer.inner"),
    ({"name": 3}, "Outer.name"),
    ({"where": 3}, "Outer.where"),
    ({"options": "a=1"}, "Outer.options"),
    ({"table": {"t": 1.5}}, r"Outer.table\['t'\]"),
])
def test_wrong_types_name_the_field(d, field):
    with pytest.raises(ConfigError, match=field):
        Outer.from_dict(d)


def test_numbers_and_bools_are_not_interchangeable():
    with pytest.raises(ConfigTypeError, match="MIAConfig.trust_remote_code"):
        MIAConfig.from_dict({"trust_remote_code": 1})
    with pytest.raises(ConfigTypeError, match="MIAConfig.n_boot"):
        MIAConfig.from_dict({"n_boot": True})
    with pytest.raises(TypeError, match="MIAConfig.n_boot"):  # also a TypeError for callers that expect one
        MIAConfig.from_dict({"n_boot": "1000"})
    assert MIAConfig.from_dict({"n_boot": 50.0}).n_boot == 50  # JSON writers may emit 50.0
    assert isinstance(DisentangleConfig.from_dict({"max_wer": 1}).max_wer, float)  # an int is a float, stored as one


def test_a_required_field_missing_is_named():
    @dataclass(frozen=True)
    class Needs(Config):
        device: str
        batch_size: int = 4

    with pytest.raises(ConfigError, match="missing required setting.*device"):
        Needs.from_dict({"batch_size": 2})


@pytest.mark.parametrize("cls", STAGES)
def test_every_stage_config_round_trips_through_json(cls):
    cfg = cls()
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    if cls is not DisentangleConfig:  # its variant_options dict makes it unhashable
        assert hash(cfg) == hash(cls.from_dict(cfg.to_dict()))


def test_non_default_stage_configs_round_trip():
    mia = MIAConfig(mode="given", timesteps=(10, 50), target_options=(("batch_size", 4), ("prompt", "Say it.")),
                    trust_remote_code=True, grouping="speaker", n_perm=0, signed=False)
    dis = DisentangleConfig(conditions=("original", "tta"), mia=mia, max_realizations=2,
                            variant_options={"tta": {"generator": "zoo:diffusion-large", "steps": 10}}, clap_model="/m")
    for cfg in (mia, dis, BlindRunConfig(groups=("acoustic",), n_splits=5), DIRunConfig(scorer="control_split", mia_run="r1"),
                CrossDataConfig(status="nonmember", groups=("metadata",))):
        assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert dis.to_dict()["mia"]["target_options"] == {"batch_size": 4, "prompt": "Say it."}
    with pytest.raises(ConfigError, match="DisentangleConfig.mia.n_boot"):
        DisentangleConfig.from_dict({"mia": {"n_boot": "x"}})


# -- JSON that existing workspaces hold ----------------------------------------------------------
OLD_MIA = {  # an MIA run's config before grouping, n_perm and signed existed
    "mode": "generated", "infill_m": 4, "timesteps": [], "n_noise": 4, "n_splits": 10, "n_boot": 200, "seed": 3,
    "batch_size": 8, "target_options": {"prompt": "Transcribe.", "batch_size": 2}, "trust_remote_code": False,
}


def test_an_older_runs_config_dicts_still_load():
    mia = MIAConfig.from_dict(OLD_MIA)
    assert mia == MIAConfig(infill_m=4, n_boot=200, seed=3, target_options=(("batch_size", 2), ("prompt", "Transcribe.")))
    dis = DisentangleConfig.from_dict({
        "conditions": ["original", "silence", "tts"], "mia": OLD_MIA, "max_realizations": 2, "max_wer": 0.5,
        "drop_inconsistent": True, "variant_options": {"tts": {"piper_voice": "/v/en.onnx"}}, "clap_model": None, "min_clap": 0.3,
    })
    assert dis.mia == mia and dis.conditions == ("original", "silence", "tts") and dis.variant_options == {"tts": {"piper_voice": "/v/en.onnx"}}
    blind = BlindRunConfig.from_dict({"groups": ["metadata", "acoustic"], "n_splits": 10, "n_boot": 1000, "seed": 0, "batch_size": 32})
    assert blind == BlindRunConfig(groups=("metadata", "acoustic"))
    di = DIRunConfig.from_dict({"scorer": "auto", "alpha": 0.01, "seed": 0, "n_resamples": 200, "null_resamples": 200,
                                "refit": False, "compare": True, "mia_mode": "generated", "mia_run": None})
    assert di == DIRunConfig(compare=True)


def test_stored_keys_are_unchanged():
    """The dicts runs store (and evidence cache keys are built from) keep their keys and shapes
    (a key added since, such as ``cross_fit``, reads its default from a run stored before it)."""
    assert list(MIAConfig().to_dict()) == ["mode", "infill_m", "timesteps", "n_noise", "n_splits", "n_boot", "seed", "batch_size",
                                           "target_options", "trust_remote_code", "grouping", "n_perm", "signed", "references", "calibrations",
                                           "cross_fit", "access", "n_perturb", "n_generations", "gen_steps", "output_clap", "max_requests", "pia"]
    assert list(DisentangleConfig().to_dict()) == ["conditions", "mia", "max_realizations", "max_wer", "drop_inconsistent",
                                                   "variant_options", "clap_model", "min_clap"]
    assert list(BlindRunConfig().to_dict()) == ["groups", "n_splits", "n_boot", "seed", "batch_size", "grouping", "n_perm"]
    assert list(DIRunConfig().to_dict()) == ["scorer", "alpha", "seed", "n_resamples", "null_resamples", "refit", "compare",
                                             "mia_mode", "mia_run", "references", "cross_fit", "mia_access", "fdr", "plan_nonmembers", "target_options"]


def test_white_box_evidence_keys_are_unchanged_by_the_outputs_settings():
    """Cached white-box evidence stays valid: its cache key is the config as it was before the
    outputs access level existed; an outputs config keys on the outputs settings (and seed)."""
    from core.targets.base import EvidenceConfig

    cfg = MIAConfig(n_generations=9, n_perturb=5).evidence_config()
    assert cfg.cache_key() == {"mode": "generated", "infill_m": 0, "timesteps": [], "n_noise": 4, "seed": 0}
    out = MIAConfig(access="outputs", n_perturb=5).evidence_config()
    assert out.cache_key() == {"seed": 0, "access": "outputs", "n_perturb": 5, "n_generations": 4, "gen_steps": 25, "clap_model": "",
                               "outputs_version": 1}
    assert EvidenceConfig(access="outputs", n_perturb=2).cache_key() != out.cache_key()
    assert list(CrossDataConfig().to_dict()) == ["status", "groups", "n_splits", "seed", "batch_size", "n_perm", "n_boot"]


def test_access_text_names_what_was_read_for_the_targets_family() -> None:
    from core.config import access_text
    from core.stages import family_of

    outputs = {"access": "outputs", "n_perturb": 2, "n_generations": 5}
    assert access_text({"mode": "given"}) == "white-box, given text"
    assert access_text({"mode": "generated", "pia": True}) == "white-box, generated text, with PIA"
    speech = access_text(outputs, family_of("zoo:lalm-small"))
    assert "transcription of each clip and of 2 perturbations" in speech and "generations" not in speech
    sounds = access_text(outputs, family_of("zoo:diffusion-small"))
    assert "5 generations per caption" in sounds and "transcription" not in sounds
    assert access_text(outputs, family_of("http://127.0.0.1:9/v1")) == speech  # a remote API transcribes
    unknown = access_text(outputs, family_of("/gone/checkpoint"))  # a stored run's target that no longer loads
    assert "2 perturbations" in unknown and "5 generations" in unknown


def test_the_evidence_settings_of_an_mia_run_are_the_evidence_configs_own():
    """MIAConfig holds every evidence setting under the same name (or the one it maps), with
    the same default, so the evidence config is built, not copied field by field."""
    import dataclasses

    from core.targets.base import EvidenceConfig

    assert MIAConfig().evidence_config() == EvidenceConfig()
    changed = MIAConfig(mode="generated", infill_m=2, timesteps=(10, 20), n_noise=1, seed=5, access="outputs", n_perturb=2,
                        n_generations=3, gen_steps=7, output_clap="/c")
    ev = changed.evidence_config()
    assert {f.name: getattr(ev, f.name) for f in dataclasses.fields(EvidenceConfig)} == {
        "mode": "generated", "infill_m": 2, "timesteps": (10, 20), "n_noise": 1, "seed": 5, "access": "outputs", "n_perturb": 2,
        "n_generations": 3, "gen_steps": 7, "clap_model": "/c", "pia": False}
    assert MIAConfig(mode="given").evidence_config().mode == "given"
    assert MIAConfig(pia=True).evidence_config().pia is True
    with pytest.raises(ValueError, match="PIA .* 'white-box'"):
        MIAConfig(pia=True, access="outputs")


@pytest.mark.parametrize("cls", [MIAConfig, BlindRunConfig, CrossDataConfig])
@pytest.mark.parametrize("bad", [{"n_boot": 0}, {"n_splits": 1}, {"n_perm": -1}])
def test_resampling_settings_that_give_no_interval_are_refused_by_name(cls, bad):
    """No interval without a bootstrap resample, no folds below two: refused where the
    settings are made, before any clip is computed (not an IndexError at the end)."""
    with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
        cls(**bad)
