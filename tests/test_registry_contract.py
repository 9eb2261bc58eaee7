"""A contract every entry of every registry (``core.registry.Registry``) must meet.

The registries are found, not listed: the test imports every module under ``core/`` and
takes every registry made (``Registry.every()``), so a new registry without an entry in
``CONTRACTS`` fails ``test_every_registry_is_covered``. Parametrized over the registries'
contents, so a new entry is checked without editing this file:

- it says what it is: a ``description`` where the entry type has one, else the docstring of
  the registered function;
- its callables take their documented inputs positionally and everything else by keyword
  only (no ``*args``), as the code that calls each registry passes them;
- a variant is deterministic (same clip and realization -> same audio) and batch-invariant
  (a clip rendered alone equals it rendered among others);
- a target adapter (each local model type, speech seq2seq, each diffusers pipeline class,
  each zoo model) loads through the public entry point ``load_target`` from a tiny model
  saved to a temporary folder, with a fingerprint that is stable (same folder and options
  -> same) and changes when a loader option that changes the evidence changes.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import core
from core.data.layouts.base import LAYOUTS, Parsed, Tree
from core.di.registry import _REGISTRY as DI_SCORERS
from core.disentangle.registry import _VARIANTS, Variant
from core.mia.registry import _REGISTRY as INDICATORS
from core.recipes.zoo import TRAINERS
from core.registry import Registry
from core.targets import load_target
from core.targets.diffusers_audio import _KINDS as PIPELINE_CLASSES
from core.targets.local import MODEL_TYPES
from core.targets.zoo.registry import ZOO

P = inspect.Parameter

# Optional extras (pyproject's optional-dependencies): a module that needs one that is not
# installed is skipped; any other import error fails test_every_core_module_imports.
OPTIONAL_EXTRAS = {"kaleido", "ray", "piper", "opensmile"}
SKIPPED: dict[str, str] = {}
FAILED: dict[str, str] = {}


def _import_every_core_module() -> None:
    """Import every module under ``core/``, so every registry is made and filled."""
    for info in pkgutil.walk_packages(core.__path__, prefix="core.", onerror=lambda name: FAILED.setdefault(name, "walk")):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] in OPTIONAL_EXTRAS:
                SKIPPED[info.name] = f"needs the optional {exc.name}"
            else:
                FAILED[info.name] = repr(exc)
        except Exception as exc:  # reported by the test below, not at collection
            FAILED[info.name] = repr(exc)


_import_every_core_module()
REGISTRIES: dict[str, Registry] = {r.what: r for r in Registry.every()}

# registry (by its ``what``) -> (what describes an entry, the entry's callables with their positional inputs)
Callables = Callable[[Any], list[tuple[str, Callable, int]]]
CONTRACTS: dict[str, tuple[Callable[[Any], str], Callables]] = {
    # fn(stats, *, text=...) or fn(ev)
    "indicator family": (lambda e: e.description, lambda e: [("fn", e.fn, 1)]),
    # fn(target, references, *, sign)
    "calibration": (lambda e: e.description, lambda e: [("fn", e.fn, 2)]),
    # compute(inputs)
    "feature group": (lambda e: e.description, lambda e: [("compute", e.compute, 1)]),
    # fn(P, U, *, directions, seed, config[, groups])
    "DI scorer": (lambda e: e.description, lambda e: [("fn", e.fn, 2)]),
    # make(audio, text, *, sr, realization, clip_hash, **options); make_batch(audios, texts, *, ...); identify(options)
    "variant": (lambda e: e.description, lambda e: [("make", e.make, 2)]
                + ([("make_batch", e.make_batch, 2)] if e.make_batch else [])
                + ([("identify", e.identify, 1)] if e.identify else [])),
    # load(spec, *, device=None, **options); listing(); family(spec)
    "target loader": (lambda e: inspect.getdoc(e.load) or "",
                      lambda e: [("load", e.load, 1), ("listing", e.listing, 0), ("family", e.family, 1)]),
    # load(folder, device, options)
    "model type": (lambda e: inspect.getdoc(e.load) or "", lambda e: [("load", e.load, 3)]),
    # encode(pipe, captions, device)
    "diffusers pipeline class": (lambda e: inspect.getdoc(e.encode) or "", lambda e: [("encode", e.encode, 3)]),
    # load(model_dir, *, device=None)
    "zoo model": (lambda e: e.description, lambda e: [("load", e.load, 1)]),
    # train(out_dir, *, micro=False, progress=None)
    "zoo trainer": (lambda e: inspect.getdoc(e) or "", lambda e: [("train", e, 1)]),
    # fn(ws, params, ctx)
    "job kind": (lambda e: inspect.getdoc(e) or "", lambda e: [("fn", e, 3)]),
    # detect(tree); read(tree)
    "dataset layout": (lambda e: e.summary, lambda e: [("detect", e.detect, 1), ("read", e.read, 1)]),
    # each field's text(value)
    "run record": (lambda e: e.description, lambda e: [(f"text of {f.key}", f.text, 1) for f in e.fields]),
}

ENTRIES = [pytest.param(reg, name, id=f"{reg}:{name}") for reg in CONTRACTS if reg in REGISTRIES for name in REGISTRIES[reg]]


def test_every_registry_is_covered() -> None:
    """Every registry that importing ``core`` makes has a contract here (a new registry must
    add one), and every contract names a registry that exists and has entries."""
    made = [r.what for r in Registry.every()]
    assert len(made) == len(set(made)), f"two registries share a name: {sorted(w for w in made if made.count(w) > 1)}"
    missing = sorted(set(REGISTRIES) - set(CONTRACTS))
    assert not missing, f"registries without a contract: {missing}; add an entry to CONTRACTS in {Path(__file__).name}"
    assert sorted(CONTRACTS) == sorted(REGISTRIES), f"contracts for no registry: {sorted(set(CONTRACTS) - set(REGISTRIES))}"
    assert [name for name, registry in REGISTRIES.items() if len(registry) == 0] == []


def test_every_core_module_imports() -> None:
    """Registries are found by importing ``core``: a module that fails to import would hide
    its registries (only a missing optional extra may skip one)."""
    assert FAILED == {}


@pytest.mark.parametrize("reg, name", ENTRIES)
def test_entry_is_described(reg: str, name: str) -> None:
    describe, _ = CONTRACTS[reg]
    text = describe(REGISTRIES[reg].get(name)).strip()
    assert len(text) >= 10, f"{reg} {name!r} has no description"


@pytest.mark.parametrize("reg, name", ENTRIES)
def test_callables_take_options_by_keyword_only(reg: str, name: str) -> None:
    _, callables = CONTRACTS[reg]
    for label, fn, n_positional in callables(REGISTRIES[reg].get(name)):
        params = list(inspect.signature(fn).parameters.values())
        positional = [p.name for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
        assert not any(p.kind is P.VAR_POSITIONAL for p in params), f"{reg} {name}.{label} takes *args"
        assert len(positional) == n_positional, (
            f"{reg} {name}.{label}: positional {positional}, expected {n_positional}; make the rest keyword-only")


@pytest.mark.parametrize("name", list(INDICATORS))
def test_indicator_takes_what_its_evidence_passes(name: str) -> None:
    fam = INDICATORS.get(name)
    params = inspect.signature(fam.fn).parameters
    if fam.evidence == "tokens":  # called as fn(stats, text=text)
        assert "text" in params and params["text"].kind is P.KEYWORD_ONLY
    else:  # called as fn(ev)
        assert all(p.default is not P.empty for p in list(params.values())[1:])


@pytest.mark.parametrize("name", list(DI_SCORERS))
def test_di_scorer_keywords_match_its_registration(name: str) -> None:
    info = DI_SCORERS.get(name)
    params = inspect.signature(info.fn).parameters
    for kw in ("directions", "seed", "config"):
        assert params[kw].kind is P.KEYWORD_ONLY
    assert ("groups" in params) == info.uses_groups  # groups reach it only when it declares them


# -- variants -------------------------------------------------------------------------------
SR = 16000
# Cheap generator settings for the resynthesis variants (the defaults take seconds per clip).
VARIANT_OPTIONS: dict[str, dict] = {"tta": {"steps": 2}}
SLOW_VARIANTS = {"tta"}


def _chirp(seconds: float, f0: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * (f0 + 400 * t) * t) + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_VARIANTS else []) for n in _VARIANTS])
def test_variant_is_deterministic_and_batch_invariant(name: str) -> None:
    fam = _VARIANTS.get(name)
    for unknown in set(fam.options) ^ set(VARIANT_OPTIONS.get(name, {})):
        assert unknown in fam.options, f"VARIANT_OPTIONS names {unknown!r}, not an option of {name}"
    audios = [_chirp(s, f, i) for i, (s, f) in enumerate(((0.3, 200.0), (0.5, 700.0), (0.4, 1500.0)))]
    texts = ["a rising tone", "the same words again", "a third short clip"]
    hashes = [f"{i:064x}" for i in range(3)]
    for realization in sorted({0, fam.realizations - 1}):
        v = Variant.of(fam, realization, VARIANT_OPTIONS.get(name))
        alone = [v.render(a, t, SR, h) for a, t, h in zip(audios, texts, hashes)]
        again = v.render(audios[1], texts[1], SR, hashes[1])
        np.testing.assert_array_equal(alone[1], again)
        batch = v.render_many(audios, texts, SR, hashes)
        assert len(batch) == len(audios)
        for a, b, src in zip(alone, batch, audios):
            assert a.dtype == np.float32 and a.ndim == 1 and a.size > 0
            if fam.keeps_length:  # a rendering of the clip itself (not silence, noise or speech of its own)
                assert a.shape == src.shape
            # A generator batches in float32; its sampler and the phase reconstruction carry
            # rounding differences into the waveform (measured: at most 0.01 on a 0.5 peak at
            # 2 steps), while a different clip or seed differs by the whole signal.
            np.testing.assert_allclose(a, b, atol=2e-2 if fam.make_batch else 0)


# -- target adapters ------------------------------------------------------------------------
def _seq2seq(request, tmp: Path) -> Path:
    return request.getfixturevalue("whisper_folder")


def _chat(kind: str):
    def build(request, tmp: Path) -> Path:
        from test_targets_real_lalm import build as build_chat

        return build_chat(kind, tmp)
    return build


def _musicgen(request, tmp: Path) -> Path:
    from test_targets_musicgen import build as build_musicgen

    return build_musicgen(tmp)


def _ct2(request, tmp: Path) -> Path:
    from test_targets_ct2 import write_ct2_folder

    write_ct2_folder(tmp, "int8")
    return tmp


def _causal_audio(request, tmp: Path) -> Path:
    from dataclasses import replace

    from test_targets_ar import MICRO, _clips

    from core.recipes.zoo.ar import fit_ar
    from core.targets.codebook import Codebook

    clips = _clips(4, 9)
    fit_ar(clips, Codebook.fit([c.audio for c in clips], n_codes=MICRO.n_codes, seed=0), tmp, recipe=replace(MICRO, epochs=1))
    return tmp


def _mel_diffusion(request, tmp: Path) -> Path:
    from dataclasses import replace

    from test_targets_diffusion import MICRO, _clips

    from core.recipes.zoo.diffusion import fit_diffusion

    fit_diffusion(_clips(2, 9), tmp, recipe=replace(MICRO, epochs=1))
    return tmp


def _pipeline(kind: str):
    def build(request, tmp: Path) -> Path:
        import test_targets_diffusers as td

        return {"AudioLDMPipeline": td.build_audioldm, "MusicLDMPipeline": td.build_musicldm,
                "AudioLDM2Pipeline": td.build_audioldm2}[kind](tmp)
    return build


def _diffusers_options() -> dict:
    from test_targets_diffusers import N_FFT, N_FRAMES

    return {"n_frames": N_FRAMES, "n_fft": N_FFT}


# adapter -> (build a tiny model folder, base loader options, an option that changes the evidence)
# Options that change the evidence: the decoding budget or the prompt (what the text
# tokens are), the compute dtype (the logits), the mel range (the denoising input). None:
# the folder fixes every setting (the zoo's own layouts), and an option is refused.
ADAPTERS: dict[str, tuple[Callable[[Any, Path], Path], Callable[[], dict], dict | None]] = {
    "seq2seq": (_seq2seq, dict, {"max_new_tokens": 2}),
    "qwen2_audio": (_chat("qwen2_audio"), dict, {"prompt": "Repeat what you hear."}),
    "audioflamingo3": (_chat("audioflamingo3"), dict, {"prompt": "Repeat what you hear."}),
    "musicgen": (_musicgen, dict, {"dtype": "bfloat16"}),
    "ctranslate2-whisper": (_ct2, dict, {"max_new_tokens": 2}),
    "causal-audio": (_causal_audio, dict, None),
    "mel-diffusion": (_mel_diffusion, dict, None),
    "AudioLDMPipeline": (_pipeline("AudioLDMPipeline"), _diffusers_options, {"fmax": 4000}),
    "MusicLDMPipeline": (_pipeline("MusicLDMPipeline"), _diffusers_options, {"fmax": 4000}),
    "AudioLDM2Pipeline": (_pipeline("AudioLDM2Pipeline"), _diffusers_options, {"fmax": 4000}),
}
# zoo models whose loader takes options, and one that changes the evidence; the others refuse options
ZOO_OPTIONS: dict[str, dict] = {name: {"max_new_tokens": 2} for name in (
    "lalm-small", "lalm-large", "lalm-ref", "lalm-base", "lalm-ft", "lalm-shift-base", "lalm-shift-ft")}


def test_every_adapter_has_a_tiny_model() -> None:
    assert set(ADAPTERS) == set(MODEL_TYPES) | set(PIPELINE_CLASSES) | {"seq2seq"}


from test_targets_local import whisper_folder  # noqa: E402,F401  (the seq2seq adapter's tiny model, a fixture)


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_adapter_loads_with_a_fingerprint_that_follows_the_evidence(adapter: str, request, tmp_path: Path) -> None:
    build, base, changed = ADAPTERS[adapter]
    folder = str(build(request, tmp_path / adapter))
    opts = base()
    first = load_target(folder, device="cpu", **opts)
    assert load_target(folder, device="cpu", **opts).fingerprint == first.fingerprint
    if changed is None:  # settings fixed by its folder: an option is refused, never silently ignored
        with pytest.raises(ValueError, match="takes no --target-option"):
            load_target(folder, device="cpu", batch_size=2)
        return
    other = load_target(folder, device="cpu", **opts, **changed)
    assert other.fingerprint != first.fingerprint, f"{adapter}: {changed} changes the evidence but not the fingerprint"


@pytest.mark.slow  # trains each zoo model (its micro version)
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_builds_and_loads_with_a_stable_fingerprint(name: str, tmp_path: Path, monkeypatch) -> None:
    entry = ZOO.get(name)
    TRAINERS.get(name)(tmp_path / "zoo" / name, micro=True)
    monkeypatch.setenv("OVERHEARD_ASSETS", str(tmp_path))
    spec = f"zoo:{name}"
    first = load_target(spec, device="cpu")
    assert first.family == entry.family
    assert load_target(spec, device="cpu").fingerprint == first.fingerprint
    if name in ZOO_OPTIONS:
        assert load_target(spec, device="cpu", **ZOO_OPTIONS[name]).fingerprint != first.fingerprint
    else:  # settings fixed by its card: an option is refused, never silently ignored
        with pytest.raises(ValueError, match="takes no --target-option"):
            load_target(spec, device="cpu", batch_size=2)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_claims_no_empty_dataset_and_reads_it_without_error(name: str) -> None:
    """Auto-detection never picks a layout for nothing, and reading nothing gives nothing."""
    layout = LAYOUTS.get(name)
    assert layout.fallback or not layout.detect(Tree([]))
    parsed = layout.read(Tree([]))
    assert isinstance(parsed, Parsed) and parsed.items == []
