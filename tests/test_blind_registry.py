"""Every registered blind feature group obeys the same contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import core.blind as blind
from core.blind.registry import BlindInputs, GroupUnavailable, unregister_group

torch.set_num_threads(1)


def _inputs(n: int = 6) -> BlindInputs:
    rng = np.random.default_rng(0)
    meta = pd.DataFrame(
        {
            "duration": np.full(n, 0.5),
            "size_bytes": np.full(n, 16000),
            "sample_rate": [16000, 44100] * (n // 2),
            "subtype": ["PCM_16", "VORBIS"] * (n // 2),
            "format": ["WAV", "OGG"] * (n // 2),
            "channels": [1] * n,
            "text": [f"hello world {i}" for i in range(n)],
            "speaker": ["a"] * n,
        }
    )
    audio = [(0.1 * rng.standard_normal(8000)).astype(np.float32) for _ in range(n)]
    return BlindInputs(metadata=meta, audio=audio, device="cpu")


@pytest.mark.parametrize("name", blind.list_groups())
def test_group_contract(name):
    g = blind.get_group(name)
    assert g.name == name and g.description and g.kind in ("numeric", "text")
    d = g.to_dict()
    assert d["name"] == name and isinstance(d["available"], bool)
    ok, msg = g.availability()
    inputs = _inputs()
    if not ok:
        assert msg.startswith("unavailable: pip install")
        with pytest.raises(GroupUnavailable, match="pip install"):
            g(inputs)
        return
    table = g(inputs)
    assert len(table) == inputs.n_clips
    if g.kind == "numeric":
        assert isinstance(table, pd.DataFrame)
        assert table.columns.is_unique and all(isinstance(c, str) for c in table.columns)
        assert all(np.issubdtype(t, np.number) for t in table.dtypes)
    else:
        assert isinstance(table, pd.Series) and all(isinstance(v, str) for v in table)


def test_egemaps_reports_install_hint():
    g = blind.get_group("egemaps")
    import importlib.util

    if importlib.util.find_spec("opensmile") is None:
        assert g.availability() == (False, "unavailable: pip install opensmile")
        assert "egemaps" not in blind.list_groups(available_only=True)
        tables, notes = blind.build_tables(metadata=_inputs().metadata, audio=_inputs().audio, device="cpu")
        assert "egemaps" not in tables and any("pip install opensmile" in n for n in notes)


def test_duplicate_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        blind.register_group("metadata", description="again")(lambda inputs: None)
    with pytest.raises(KeyError, match="valid: .*acoustic.*metadata"):
        blind.get_group("nope")

    @blind.register_group("_tmp_test_group", description="temporary")
    def _tmp(inputs):
        return pd.DataFrame({"x": np.arange(inputs.n_clips, dtype=float)})

    try:
        assert "_tmp_test_group" in blind.list_groups()
        assert list(blind.get_group("_tmp_test_group")(_inputs())["x"]) == list(range(6))
    finally:
        unregister_group("_tmp_test_group")


def test_text_group_absent_without_text():
    inputs = _inputs()
    meta = inputs.metadata.assign(text="")
    tables, notes = blind.build_tables(["metadata", "text"], metadata=meta)
    assert "text" not in tables and any(n.startswith("text: absent") for n in notes)


def test_metadata_features_against_hand_computation():
    meta = pd.DataFrame(
        {
            "duration": [2.0, 4.0, 1.0],
            "size_bytes": [64000, 20000, 5000],
            "sample_rate": [16000, 44100, 8000],
            "subtype": ["PCM_16", "VORBIS", "PCM_24"],
            "format": ["WAV", "OGG", "FLAC"],
            "channels": [1, 2, 1],
            "text": ["Hello there, world", "", "it's  fine"],
        }
    )
    t = blind.metadata_features(meta)
    np.testing.assert_allclose(t["bytes_per_second"], [32000, 5000, 5000])
    np.testing.assert_array_equal(t["bit_depth"].to_numpy(), [16, np.nan, 24])
    np.testing.assert_array_equal(t["n_words"], [3, 0, 2])
    np.testing.assert_array_equal(t["n_chars"], [18, 0, 10])
    np.testing.assert_allclose(t["words_per_second"], [1.5, 0.0, 2.0])
    np.testing.assert_array_equal(t["format=OGG"], [0, 1, 0])
    np.testing.assert_array_equal(t["subtype=PCM_24"], [0, 0, 1])
    assert [blind.bit_depth(s) for s in ("PCM_S8", "PCM_U8", "FLOAT", "DOUBLE", "ULAW")] == [8, 8, 32, 64, 8]
    assert np.isnan(blind.bit_depth("MPEG_LAYER_III"))


def test_statistics_modules_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, core.blind, core.blind.diagnostics, core.blind.matching; "
        "sys.exit(1 if 'torch' in sys.modules or 'streamlit' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
