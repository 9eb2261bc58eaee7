"""MIA and dataset inference calibrated against reference models, through the real
pipeline: zoo targets on a demo subset, reference evidence through the same cache, the
calibrated columns checked against the two models' own uncalibrated runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import demo_workspace
from core.cli import build_parser, config_from_args
from core.mia.registry import direction
from core.pipeline import MIAConfig, audit_mia
from core.pipeline.di import DIRunConfig, audit_di, latest_mia
from core.stages import DisentangleConfig

TARGET, REFERENCE = "zoo:lalm-large", "zoo:lalm-small"
ALL = ("diff", "resid", "rmia")
SMALL_MIA = dict(n_boot=50, n_perm=10, n_splits=4, mode="given")
SMALL_DI = DIRunConfig(n_resamples=20, null_resamples=20, mia_mode="given")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    ws = demo_workspace(tmp_path_factory.mktemp("calibrated"), 12)
    cal_id, cal = audit_mia(ws, "speech", TARGET, MIAConfig(references=(REFERENCE,), calibrations=ALL, **SMALL_MIA))
    target_id, _ = audit_mia(ws, "speech", TARGET, MIAConfig(**SMALL_MIA))
    ref_id, _ = audit_mia(ws, "speech", REFERENCE, MIAConfig(**SMALL_MIA))
    return {"ws": ws, "cal_id": cal_id, "cal": cal, "target_id": target_id, "ref_id": ref_id}


def test_calibrated_columns_are_the_difference_of_the_two_models_runs(runs: dict) -> None:
    ws = runs["ws"]
    cal_run, target_run, ref_run = (ws.load_run(runs[k]) for k in ("cal_id", "target_id", "ref_id"))
    table = ws.run_table(cal_run, "indicators")
    t, r = ws.run_table(target_run, "indicators"), ws.run_table(ref_run, "indicators").reindex(table.index)
    assert ws.run_table(ref_run, "clips")["score"].notna().all()  # the reference's own run scored every clip
    y = ws.run_table(cal_run, "clips")["label"].to_numpy()
    for key in ("min_k@0.2", "ppl", "max_renyi[inf]@0.3"):
        by_hand = t[key].reindex(table.index).to_numpy() - r[key].to_numpy()
        np.testing.assert_allclose(table[f"diff:{key}"].to_numpy(), by_hand, rtol=1e-9)
        np.testing.assert_allclose(table[key].to_numpy(), t[key].reindex(table.index).to_numpy())
        assert cal_run["result"]["indicators"][f"diff:{key}"] == pytest.approx(roc_auc_score(y, direction(key) * by_hand), abs=1e-4)
    assert not any(":" in k for k in target_run["result"]["indicators"])


def test_calibrated_run_records_references_and_the_uncalibrated_result(runs: dict) -> None:
    ws, cal = runs["ws"], runs["cal"]
    run, target_run = ws.load_run(runs["cal_id"]), ws.load_run(runs["target_id"])
    ref_fp = ws.load_run(runs["ref_id"])["provenance"]["model_fingerprint"]
    assert run["provenance"]["reference_fingerprints"] == {REFERENCE: ref_fp}
    assert run["config"]["references"] == [REFERENCE]
    assert cal["calibration"]["references"] == [REFERENCE] and cal["calibration"]["calibrations"] == ["diff", "resid", "rmia"]
    assert set(cal["indicators"]) == {k for k in cal["indicators"] if ":" in k}  # the headline aggregate is calibrated
    # the uncalibrated side is the plain run of the target on the same clips, same seeds
    assert cal["uncalibrated"]["auc"] == pytest.approx(target_run["result"]["auc"])
    assert cal["calibration"]["gain"]["auc"] == pytest.approx(cal["auc"] - target_run["result"]["auc"])
    clips = ws.run_table(run, "clips")
    assert {"score", "score_uncalibrated"} <= set(clips.columns)
    assert latest_mia(ws, "speech", TARGET, "given", (REFERENCE,))["id"] == runs["cal_id"]
    assert latest_mia(ws, "speech", TARGET, "given", ())["id"] == runs["target_id"]


def test_the_auc_gain_has_a_paired_interval_widened_by_both_aggregates_refits(runs: dict) -> None:
    """DeLong's paired variance from the pair loop of tests/test_stats_paired_auc.py, plus what
    each aggregate's permutation null spreads beyond the exact null variance of a fixed
    score's AUC, (n + 1) / (12 n1 n0); the same words on the CLI and in the report."""
    from scipy.stats import norm

    from core.cli import _calibration_lines
    from core.viz.report import calibration_rows
    from tests.test_stats_paired_auc import delong_by_pairs

    ws, cal = runs["ws"], runs["cal"]
    run, target_run = ws.load_run(runs["cal_id"]), ws.load_run(runs["target_id"])
    clips = ws.run_table(run, "clips")
    y = clips["label"].to_numpy()
    diff, se_fixed = delong_by_pairs(y, clips["score"].to_numpy(), clips["score_uncalibrated"].to_numpy())
    n1, n0 = int(y.sum()), int((1 - y).sum())
    chance = (n1 + n0 + 1) / (12 * n1 * n0)
    sds = (cal["inference"]["null_sd"], target_run["result"]["inference"]["null_sd"])
    se = np.sqrt(se_fixed**2 + sum(max(0.0, sd**2 - chance) for sd in sds))
    gain = cal["calibration"]["gain"]
    assert gain["auc"] == pytest.approx(diff) and gain["auc_se"] == pytest.approx(se) and se > se_fixed
    assert gain["auc_ci"] == pytest.approx([diff - 1.959964 * se, diff + 1.959964 * se], abs=1e-6)
    assert gain["auc_p_value"] == pytest.approx(2 * norm.sf(abs(diff) / se))
    words = f"[{gain['auc_ci'][0]:+.3f}, {gain['auc_ci'][1]:+.3f}], p = {gain['auc_p_value']:.2g}"
    assert words in _calibration_lines(cal)[1] and calibration_rows(cal)[-1]["95% CI"] == words


def test_di_with_references_tests_calibrated_indicators_beside_uncalibrated(runs: dict) -> None:
    ws = runs["ws"]
    di_id, di = audit_di(ws, "speech", TARGET, DIRunConfig(**(SMALL_DI.to_dict() | {"references": (REFERENCE,)})))
    assert {k.split(":")[0] for k in di["indicators"]} == set(ALL)  # the MIA run's calibrations, recomputed from the cache
    plain_id, plain = audit_di(ws, "speech", TARGET, SMALL_DI)
    assert di["mia_run"] == runs["cal_id"] and plain["mia_run"] == runs["target_id"]
    assert all(":" in k for k in di["indicators"]) and not any(":" in k for k in plain["indicators"])
    assert di["uncalibrated"]["p_value"] == pytest.approx(plain["p_value"])
    assert di["uncalibrated"]["min_suspects"] == plain["min_suspects"]
    assert di["calibration"]["references"] == [REFERENCE]
    assert ws.load_run(di_id)["provenance"]["reference_fingerprints"] == ws.load_run(runs["cal_id"])["provenance"]["reference_fingerprints"]
    assert "uncalibrated" not in plain and "reference_fingerprints" not in ws.load_run(plain_id)["provenance"]
    # both sides drew a split (normalized_sum): each carries its spread over redrawn splits, the
    # uncalibrated one the plain run's, and the gain is also read on the medians
    from core.mia.calibration import suspects_gain, suspects_gain_text
    from core.viz.report import OVER_SPLITS, di_calibration_rows

    assert di["uncalibrated"]["needed_over_splits"] == plain["needed_over_splits"]
    medians = (di["needed_over_splits"]["median"], plain["needed_over_splits"]["median"])
    assert di["calibration"]["gain"]["suspects_factor_over_splits"] == suspects_gain(*medians)
    rows = di_calibration_rows(di)
    sp = di["needed_over_splits"]
    shown = lambda v: "not reached" if v is None else str(v)  # noqa: E731
    assert rows[0][OVER_SPLITS] == f"{shown(sp['median'])} [{shown(sp['p10'])}, {shown(sp['p90'])}]"
    assert rows[2][OVER_SPLITS] == suspects_gain_text(suspects_gain(*medians))


def test_reference_that_is_the_target_is_refused(runs: dict) -> None:
    with pytest.raises(ValueError, match="is the audited model itself"):
        audit_mia(runs["ws"], "speech", TARGET, MIAConfig(references=(TARGET,), **SMALL_MIA))
    with pytest.raises(ValueError, match="'lira' needs at least 2 references"):
        audit_mia(runs["ws"], "speech", TARGET, MIAConfig(references=(REFERENCE,), calibrations=("lira",), **SMALL_MIA))
    with pytest.raises(KeyError, match="unknown calibration 'nope'"):
        audit_mia(runs["ws"], "speech", TARGET, MIAConfig(references=(REFERENCE,), calibrations=("nope",), **SMALL_MIA))
    with pytest.raises(ValueError, match="named twice"):
        audit_mia(runs["ws"], "speech", TARGET, MIAConfig(references=(REFERENCE, REFERENCE), **SMALL_MIA))


@pytest.mark.parametrize("command, cls", [("mia", MIAConfig), ("di", DIRunConfig), ("disentangle", DisentangleConfig)])
def test_reference_flag_is_repeatable(command: str, cls: type, tmp_path: Path) -> None:
    args = build_parser().parse_args([command, "--dataset", "d", "--target", "zoo:lalm-large",
                                      "--reference", "zoo:lalm-small", "--reference", str(tmp_path)])
    cfg = config_from_args(cls, args)
    refs = cfg.mia.references if isinstance(cfg, DisentangleConfig) else cfg.references
    assert refs == ("zoo:lalm-small", str(tmp_path))
    none = config_from_args(cls, build_parser().parse_args([command, "--dataset", "d", "--target", "t"]))
    assert (none.mia.references if isinstance(none, DisentangleConfig) else none.references) == ()


def test_generated_mode_references_score_the_targets_own_text(runs: dict) -> None:
    """In the two-stage protocol the reference re-scores the text the target produced (not
    its own decode): checked against the reference model run directly on that text."""
    from core.mia.aggregate import indicator_table
    from core.pipeline.evidence import clip_inputs, stored_clips
    from core.runtime.settings import Settings
    from core.targets import load_target
    from core.targets.base import EvidenceConfig

    ws = runs["ws"]
    small = {k: v for k, v in SMALL_MIA.items() if k != "mode"}
    run_id, gen = audit_mia(ws, "speech", TARGET, MIAConfig(mode="generated", references=(REFERENCE,), calibrations=ALL, **small))
    assert gen["calibration"]["calibrations"] == list(ALL)
    run = ws.load_run(run_id)
    table, clips = ws.run_table(run, "indicators"), ws.run_table(run, "clips")
    first = ws.analysis_clips("speech").set_index("clip_hash").loc[list(clips.index[:3])].reset_index()
    first["text"] = clips["decoded"].iloc[:3].tolist()
    settings = Settings.from_env(ws.root)
    xs = clip_inputs(stored_clips(ws, first), settings.analysis_sr, settings.limits)
    direct = indicator_table(load_target(REFERENCE).evidence(xs, EvidenceConfig(mode="given")))
    for key in ("min_k@0.2", "ppl"):
        np.testing.assert_allclose((table[key] - table[f"diff:{key}"]).iloc[:3].to_numpy(), direct[key].to_numpy(), rtol=1e-5)
    _, di = audit_di(ws, "speech", TARGET, DIRunConfig(n_resamples=20, null_resamples=20, references=(REFERENCE,)))
    assert di["mia_run"] == run_id and di["indicator_source"] == "evidence cache"


def test_disentangle_and_report_with_references(runs: dict) -> None:
    """Each condition is calibrated against the reference hearing the same variant audio;
    the uncalibrated AUC is kept beside it; the report shows both and the fingerprints."""
    from core.pipeline import DisentangleConfig
    from core.pipeline.disentangle import audit_disentangle
    from core.viz.report import build_report

    ws = runs["ws"]
    mia = MIAConfig(references=(REFERENCE,), **SMALL_MIA)
    run_id, out = audit_disentangle(ws, "speech", TARGET, DisentangleConfig(conditions=("original", "silence"), mia=mia, max_realizations=1))
    plain_id, plain = audit_disentangle(ws, "speech", TARGET, DisentangleConfig(conditions=("original", "silence"),
                                                                                 mia=MIAConfig(**SMALL_MIA), max_realizations=1))
    original = out["details"]["original"]
    # the original condition is the MIA run itself: same calibrated and uncalibrated aggregates
    cal_run = audit_mia(ws, "speech", TARGET, mia)[1]
    assert original["auc"] == pytest.approx(cal_run["auc"])
    assert original["uncalibrated"]["auc"] == pytest.approx(plain["details"]["original"]["auc"])
    assert "uncalibrated" in out["details"]["silence"] and "uncalibrated" not in plain["details"]["silence"]
    assert ws.load_run(run_id)["provenance"]["reference_fingerprints"] == ws.load_run(runs["cal_id"])["provenance"]["reference_fingerprints"]
    html = build_report(ws, "speech", TARGET)
    assert "With and without the reference model(s)" in html
    assert "reference models (fingerprints)" in html and REFERENCE in html


def test_the_held_out_best_indicator_is_reported_beside_both_aggregates_with_its_own_gain(runs: dict) -> None:
    """Each side keeps its held-out best indicator (chosen on training folds); the gain is
    the difference of the two, tested as the aggregates' gain is, in the same words on the
    CLI and in the side-by-side the page and the report share; the record's detail row."""
    from core.cli import _calibration_lines
    from core.mia.calibration import gain_text
    from core.records import record_of
    from core.viz.report import HELD_OUT_COLUMN, calibration_rows

    ws, cal = runs["ws"], runs["cal"]
    target_run = ws.load_run(runs["target_id"])
    best, plain = cal["held_out_best"], target_run["result"]["held_out_best"]
    assert cal["uncalibrated"]["held_out_best"] == plain  # the uncalibrated side is the plain run's
    assert all(":" in k for k in best["picks"]) and not any(":" in k for k in plain["picks"])
    assert sum(best["picks"].values()) == best["n_folds"] == cal["inference"]["folds"]["n_folds"]
    gain = cal["calibration"]["gain"]["held_out_best"]
    assert gain["auc"] == pytest.approx(best["auc"] - plain["auc"])
    assert gain["auc_ci"][0] < gain["auc"] < gain["auc_ci"][1] and 0 < gain["auc_p_value"] <= 1
    words = gain_text(gain)
    assert any(words in line for line in _calibration_lines(cal))
    rows = calibration_rows(cal)
    assert rows[-1][HELD_OUT_COLUMN] == words and rows[0][HELD_OUT_COLUMN] == f"{best['auc']:.3f}"
    detail = dict(record_of("mia").rows(cal))["best single indicator, held out"]
    assert detail.startswith(f"AUC {best['auc']:.3f}") and "chosen on each training fold" in detail


def _side_by_side_page(result: dict) -> None:
    from core.ui.mia_view import calibration_comparison

    calibration_comparison(result)


def test_the_page_shows_the_side_by_side_with_the_held_out_best_column(runs: dict) -> None:
    from streamlit.testing.v1 import AppTest

    from core.viz.report import HELD_OUT_COLUMN, calibration_rows

    cal = runs["cal"]
    at = AppTest.from_function(_side_by_side_page, args=(cal,), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    table = at.dataframe[0].value
    assert HELD_OUT_COLUMN in table.columns
    assert table[HELD_OUT_COLUMN].tolist() == [r[HELD_OUT_COLUMN] for r in calibration_rows(cal)]
