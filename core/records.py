"""What each stage's run record holds, described once for every surface.

A stage's result is a dict stored with its run. :class:`RecordSpec` lists its fields, each
with the label every surface names it by and how it reads as text. The CLI's ``--json``
carries every field (:meth:`RecordSpec.to_json`); the fields marked ``detail`` are shown
the same way, from :meth:`RecordSpec.rows`, in the CLI's text, in the "Details" of the
stage's page and in the report's section. The headline of each surface (the AUC with its
interval, the verdict, the figures) stays written for that surface; a new field needs only
its producer and a line here to reach all four.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from core.registry import Registry


def plain(value: Any) -> str:
    """A value as one line: a float to 3 decimals, a list joined, a dict as compact JSON."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4) else f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def needed_text(value: int | None) -> str:
    """A "suspects needed" number as every surface says it: "not reached" for None."""
    return "not reached" if value is None else str(value)


def interval(value: Any) -> str:
    """A ``[lo, hi]`` pair."""
    lo, hi = value
    return f"[{lo:.3f}, {hi:.3f}]"


def clips_left_out(value: list[dict]) -> str:
    """Failed clips: how many, and the first reason."""
    if not value:
        return "none"
    first = value[0]
    return f"{len(value)}; first: {first.get('path') or str(first.get('clip_hash', ''))[:12]}: {first.get('reason', '')}"


def correlation(value: dict) -> str:
    """A run's correlation with its linked blind run's scores."""
    def r(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    return f"Pearson {r(value.get('pearson_r'))}, Spearman {r(value.get('spearman_rho'))} over {value.get('n')} clips"


def transcripts(value: dict) -> str:
    """The transcription check of an audio-language target's own decodes."""
    parts = [f"median WER {who} {value[k]:.2f}" for who, k in (("members", "median_wer_members"), ("non-members", "median_wer"))
             if value.get(k) is not None]
    if value.get("n"):
        parts.append(f"{value.get('degenerate', 0)} of {value['n']} hypotheses degenerate")
    return ("; ".join(parts) or "checked") + ("; looks wrong" if value.get("looks_wrong") else "")


def excluded(value: list[dict]) -> str:
    """Clips kept out of an audit: how many, of which label, and why."""
    if not value:
        return "none"
    by_reason: dict[str, list[dict]] = {}
    for c in value:
        by_reason.setdefault(str(c.get("reason", "")), []).append(c)
    return "; ".join(f"{len(cs)} ({sum(c.get('label') == 'non-member' for c in cs)} non-members): {r}" for r, cs in by_reason.items())


def over_splits(value: dict) -> str:
    """The spread of a DI run's "suspects needed" over other fit/test splits
    (:func:`core.di.curve.needed_over_splits`)."""
    n = needed_text
    return (f"median {n(value['median'])} [10%: {n(value['p10'])}, 90%: {n(value['p90'])}] over {value['splits']} "
            f"splits of the clips the scorer fits on and tests (this run's split: {n(value['needed'][0])})")


def advice(value: dict) -> str:
    """The advisor's answer an MIA run carries (:func:`core.pipeline.reference.latest_advice`)."""
    return f"{value['recommendation']} (base {value['base']}; run {value['run']}): {value['reason']}"


def held_out_best(value: dict) -> str:
    """The best single indicator as a held-out estimate (:func:`core.mia.aggregate.held_out_best`):
    its AUC, interval and permutation p-value, and what the training folds chose."""
    if value.get("auc") is None:
        return "n/a"
    picks = value.get("picks") or {}
    n = value.get("n_folds") or sum(picks.values())
    chosen = ", ".join(f"{k} ({v} of {n} folds)" for k, v in list(picks.items())[:3])
    if len(picks) > 3:
        chosen += f", {len(picks) - 3} more"
    ci = value.get("auc_ci") or [None, None]
    p = value.get("auc_p_value")
    return (f"AUC {value['auc']:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f}" if None not in ci else " (no interval")
            + ("" if p is None else f", permutation p = {p:.2g}") + f"); chosen on each training fold: {chosen}")


def cross_fit(value: dict) -> str:
    """A cross-fitted run's shadows (:func:`core.pipeline.mia.cross_fit_summary`)."""
    own = "; ".join(f"{spec}: {v['non_members']} non-member(s), {v['members']} member(s)" for spec, v in value["trained_on"].items())
    folds = value.get("folds", value["shadows"])  # stored before a set's seeds could share a fold
    sets = f" (on {folds} disjoint sets of clips)" if folds != value["shadows"] else ""
    return (f"each clip calibrated against {value['per_clip']} of the {value['shadows']} shadows{sets}, never one that trained "
            f"on it; the shadows' own clips audited ({own})")


@dataclass(frozen=True)
class Field:
    """One field of a run record: ``key`` in the result, the ``label`` every surface uses,
    ``text(value)`` as one line; ``detail`` fields are shown by every surface's details
    (the others are the surfaces' own headline, and the JSON's)."""

    key: str
    label: str
    text: Callable[[Any], str] = plain
    detail: bool = False


@dataclass(frozen=True)
class RecordSpec:
    """The fields of one stage's run record (see the module docstring)."""

    kind: str
    description: str
    fields: tuple[Field, ...]

    def keys(self) -> tuple[str, ...]:
        """The result's top-level keys the record names (a path ``a/b`` names ``a``)."""
        return tuple(dict.fromkeys(f.key.split("/")[0] for f in self.fields))

    def to_json(self, result: dict) -> dict:
        """Every field the result holds (what ``--json`` carries)."""
        return {k: result[k] for k in self.keys() if k in result}

    def rows(self, result: dict) -> list[tuple[str, str]]:
        """``(label, text)`` of every detail field the result holds (None and absent are left out)."""
        return [(f.label, f.text(v)) for f in self.fields if f.detail and (v := lookup(result, f.key)) is not None]


def lookup(result: dict, key: str) -> Any:
    """``result[key]``, a path ``a/b`` read through nested dicts (None when absent)."""
    value: Any = result
    for part in key.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


RECORDS: Registry[RecordSpec] = Registry("run record")


def record(kind: str, description: str, *fields: Field) -> RecordSpec:
    """Register the record of stage ``kind``."""
    return RECORDS.add(kind, RecordSpec(kind, description, tuple(fields)))


def record_of(kind: str) -> RecordSpec:
    return RECORDS.get(kind)


def _headline(*keys: str) -> tuple[Field, ...]:
    return tuple(Field(k, k) for k in keys)


EXCLUDED = Field("excluded_clips", "clips kept out of the audit", excluded, detail=True)
"""The clips a shadow reference trained on (:mod:`core.pipeline.reference`), left out before anything is computed."""

CROSS_FIT = Field("calibration/cross_fit", "cross-fitted shadows", cross_fit, detail=True)
"""A cross-fitted run's shadows: which calibrate each clip, and the audited clips each trained on."""

FAILED = Field("failed_clips", "clips left out (could not be scored)", clips_left_out, detail=True)

COMMON = (
    Field("computed", "clips whose evidence was computed (the others read from the cache)", detail=True),
    FAILED,
    Field("notes", "evidence notes", detail=True),
)

record(
    "mia", "per-sample membership inference",
    *_headline("auc", "auc_ci", "auc_p_value", "inference", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "tpr_at_fpr_text",
               "indicators", "best_indicator", "best_indicator_auc", "n_members", "n_nonmembers", "warnings",
               "blind_verdict", "uncalibrated", "calibration", "access", "language"),
    Field("auc_ci_method", "interval method", detail=True),
    Field("held_out_best", "best single indicator, held out", held_out_best, detail=True),
    Field("blind_auc", "linked blind baseline's AUC", detail=True),
    Field("blind_correlation", "correlation with the linked blind run's scores", correlation, detail=True),
    Field("transcript_check", "transcription check", transcripts, detail=True),
    EXCLUDED,
    CROSS_FIT,
    Field("advice", "reference advisor (target vs base on known non-members)", advice, detail=True),
    *COMMON,
)

record(
    "blind", "blind baseline: can metadata, text or acoustics alone tell members from non-members?",
    *_headline("groups", "auc", "auc_ci", "auc_p_value", "inference", "verdict", "top_features", "warnings"),
    Field("n_members", "members", detail=True),
    Field("n_nonmembers", "non-members", detail=True),
    Field("shift_detected", "distribution shift detected", detail=True),
    Field("notes", "notes", detail=True),
)

record(
    "di", "dataset inference: was the suspect set used?",
    *_headline("p_value", "alpha", "scorer", "rejected", "min_suspects", "min_suspects_equal", "null_rejection_rate",
               "blind_auc", "blind_verdict", "warnings", "verdict", "comparison", "curve", "mia_run", "mia_mode",
               "uncalibrated", "calibration", "access", "language", "transcript_check", "n_tested_suspects",
               "n_tested_nonmembers"),
    Field("n_suspects", "suspects", detail=True),
    Field("n_nonmembers", "known non-members", detail=True),
    Field("mia_auc", "AUC of the MIA run read", detail=True),
    Field("null_ci", "null check: 95% interval of its rejection rate", interval, detail=True),
    Field("needed_over_splits", "suspects needed over other splits", over_splits, detail=True),
    Field("which/sentence", "share of the suspects used", detail=True),
    Field("which/caveat", "caveat on the share and the flags", detail=True),
    Field("which/flags/n_flagged", "clips flagged (conformal p-values, Benjamini-Hochberg)", detail=True),
    Field("which/share/assumption", "what the share and the flags assume", detail=True),
    Field("which/plan_sentence", "planner", detail=True),
    EXCLUDED,
    CROSS_FIT,
    FAILED,
)

record(
    "disentangle", "modality disentanglement: the MIA with the audio replaced",
    *_headline("conditions", "details", "language", "transcript_check", "warnings"),
    Field("n", "clips", detail=True),
    Field("references", "references", detail=True),
    EXCLUDED,
    FAILED,
)
