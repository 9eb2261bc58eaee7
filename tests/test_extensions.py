"""One of each extension, written in a scratch module and imported, reaches the CLI's help,
the pages' choices and the registry contract test with no other file edited: an indicator
family, a blind feature group that reads audio, a variant with an option, a dataset layout,
a DI scorer and a local model type."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
NAME = "scratch_extensions"

MODULE = '''
"""Scratch extensions: one of each kind."""
import numpy as np
import pandas as pd

from core.blind.registry import register_group
from core.data.layouts.base import Parsed, register_layout
from core.di.registry import ScoredSplit, register_scorer
from core.disentangle.registry import VariantOption, register_variant
from core.mia.registry import register_indicator
from core.targets.local import model_type


@register_indicator("scratch_last", higher_is_member=True, evidence="tokens", description="log-probability of the last token")
def scratch_last(stats, *, text=None):
    return {"scratch_last": float(stats.logprob[-1]) if len(stats) else float("nan")}


@register_group("scratch_peak", description="peak absolute amplitude", needs=("audio",))
def scratch_peak(inputs):
    clips = [a for batch in inputs.audio for a in batch] if inputs.audio_batched else list(inputs.audio)
    return pd.DataFrame({"peak": [float(np.abs(a).max()) if a.size else 0.0 for a in clips]})


@register_variant("scratch_gain", description="the clip at a lower gain",
                  options=(VariantOption("gain", "Gain of the quieter clip", kind="float", default=0.5),))
def scratch_gain(audio, text, *, sr, realization, clip_hash, gain=0.5, **_):
    return (np.asarray(audio, dtype=np.float32) * float(gain)).astype(np.float32)


@register_layout("scratch-layout", detect=lambda tree: False, summary="a layout no folder has")
def scratch_layout(tree):
    """Reads nothing."""
    return Parsed()


@register_scorer("scratch_mean", description="mean of the direction-aligned indicators, nothing fitted")
def scratch_mean(P, U, *, directions, seed, config):
    s = np.ones(P.shape[1]) if directions is None else directions
    return ScoredSplit(scorer="scratch_mean", p_scores=(P * s).mean(axis=1), u_scores=(U * s).mean(axis=1),
                       p_index=np.arange(P.shape[0]), u_index=np.arange(U.shape[0]),
                       p_group=np.zeros(P.shape[0], dtype=np.int64), u_group=np.zeros(U.shape[0], dtype=np.int64),
                       fit_p_index=(np.zeros(0, dtype=np.int64),), fit_u_index=(np.zeros(0, dtype=np.int64),))


@model_type("scratchnet", family="audio-language")
def scratch_load(path, device, options):
    """A model type whose folders say model_type scratchnet."""
    raise NotImplementedError("a scratch adapter")
'''

ENTRIES = {"indicator family": "scratch_last", "feature group": "scratch_peak", "variant": "scratch_gain",
           "dataset layout": "scratch-layout", "DI scorer": "scratch_mean", "model type": "scratchnet"}


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The scratch module imported (its entries registered), and every entry removed after."""
    for built_in in ("core.blind", "core.data.layouts", "core.di", "core.disentangle", "core.mia", "core.targets.local"):
        importlib.import_module(built_in)  # the built-in entries are registered before the snapshot
    (tmp_path / f"{NAME}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = {r.what: set(r) for r in Registry.every()}
    importlib.import_module(NAME)
    yield tmp_path
    for reg in Registry.every():
        for name in set(reg) - before.get(reg.what, set()):
            reg.remove(name)
    sys.modules.pop(NAME, None)


def _help(*argv: str) -> str:
    """A subcommand's help on one line (wide: argparse would wrap a name at its hyphen)."""
    import os

    from core.cli import build_parser

    os.environ["COLUMNS"] = "10000"

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    parser = sub.choices[argv[0]]
    try:
        return " ".join(parser.format_help().split())
    finally:
        os.environ.pop("COLUMNS", None)


def test_each_extension_reaches_the_cli_help(scratch):
    from core.mia.indicators import compute_indicators, token_indicator_keys
    from core.targets.local import supported_model_types

    assert "scratch_peak" in _help("blind")
    assert "scratch_gain" in _help("disentangle") and "scratch_gain.gain" in _help("disentangle")
    assert "scratch-layout" in _help("ingest")
    assert "scratch_mean" in _help("di")
    assert "scratchnet" in " ".join(supported_model_types())
    # the indicator is one of the table's columns, empty sequences included
    assert "scratch_last" in token_indicator_keys()
    from core.evidence import TokenStats

    empty = TokenStats(*(__import__("numpy").zeros(0) for _ in range(10)))
    assert "scratch_last" in compute_indicators(empty)


def _page(name: str, tmp_path: Path, monkeypatch) -> AppTest:
    from core.ui.common import _settings

    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    _settings.clear()
    at = AppTest.from_file(str(ROOT / "pages" / name), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_each_extension_reaches_the_pages_choices(scratch, tmp_path, monkeypatch):
    try:
        assert "scratch_peak" in _page("3_Blind_Baseline.py", tmp_path, monkeypatch).multiselect(key="blind-groups").options
        assert "scratch-layout" in _page("1_Dataset.py", tmp_path, monkeypatch).selectbox(key="upload_layout").options
        assert "scratch_mean" in _page("4_Dataset_Inference.py", tmp_path, monkeypatch).selectbox(key="di-scorer").options
        at = _page("5_Disentanglement.py", tmp_path, monkeypatch)
        conditions = next(m for m in at.multiselect if m.label == "Conditions")
        assert "scratch_gain" in conditions.options
        conditions.set_value(["scratch_gain"]).run()
        assert not at.exception
        gain = next(t for t in at.text_input if t.label == "Gain of the quieter clip")
        assert gain.value == "0.5"
    finally:
        from core.ui.common import _settings

        _settings.clear()


def test_each_extension_meets_the_registry_contract(scratch):
    """The contract test, run with the scratch module loaded first (as a plugin), checks
    every scratch entry like a built-in one."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", NAME, "-rA",
                           "tests/test_registry_contract.py", "-k", "scratch"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": f"{scratch}{__import__('os').pathsep}{ROOT}"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    passed = proc.stdout
    for registry, name in ENTRIES.items():
        assert f"{registry}:{name}" in passed, (registry, name, passed[-3000:])
