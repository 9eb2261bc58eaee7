"""Per-sample membership inference as an operation: evidence -> indicators -> CV AUC."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.pipeline.common import Cancelled, Progress, Resolved, check_labels, clip_grouping, provenance
from core.pipeline.evidence import extract_evidence, failed_clips_warning
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace
from core.stages import MIAConfig

if TYPE_CHECKING:
    from core.targets.registry import TargetRef



def clips_without_text(ws: Workspace, dataset: str) -> list[str]:
    """Paths of the analysed clips of ``dataset`` that have no transcript or caption."""
    clips = ws.analysis_clips(dataset)
    empty = clips["text"].fillna("").astype(str).str.strip() == ""
    return sorted(clips.loc[empty, "path"].astype(str))


def check_pia(spec: str, family: str | None, pia: bool) -> None:
    """Refuse PIA before any work for a target that is not a diffusion model (it has no noise
    estimates to read).

    Raises
    ------
    ValueError
    """
    if pia and family != "diffusion":
        kind = family or "unknown-family"
        raise ValueError(f"PIA reads a diffusion model's noise estimates, but {spec} is {'an' if kind[0] in 'aeiou' else 'a'} "
                         f"{kind} model; drop --pia (\"Also measure PIA\")")


def check_given_mode(ws: Workspace, dataset: str, mode: str) -> None:
    """Refuse ``mode="given"`` before any work when clips lack a transcript, naming them.

    Raises
    ------
    ValueError
    """
    if mode != "given":
        return
    missing = clips_without_text(ws, dataset)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"mode 'given' scores each clip's transcript, but {len(missing)} clip(s) of {dataset!r} have none: "
                         f"{shown}; add transcripts (metadata.csv text column or .txt sidecars) or use mode 'generated'")


def statistics_progress(progress: Progress | None, what: str = ""):
    """A statistics phase's ``(done, planned)`` reported as ``statistics: <what>label
    permutations done/planned`` through a run's progress (None without one): the phase
    after the evidence, which can take longer, is never silent."""
    if progress is None:
        return None
    return lambda done, total: progress(done, total, f"statistics: {what}label permutations (each refits every fold)")


def transcript_check(target: TargetRef, config: MIAConfig, clips: pd.DataFrame, evidence: list, language: dict | None):
    """:func:`core.data.transcripts.transcript_check_of` of an audio-language target's own
    transcriptions (``generated`` mode or the outputs level), else None."""
    from core.data.transcripts import transcript_check_of

    if not config.decodes_text(target.family):
        return None
    decoded = {ev.clip_hash: ev.text or "" for ev in evidence}
    return transcript_check_of(decoded, clips, language=(language or {}).get("text", ""))


def audit_mia(
    ws: Workspace,
    dataset: str,
    target_spec: str | TargetRef,
    config: MIAConfig = MIAConfig(),
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
    targets: Resolved | None = None,
) -> tuple[str, dict]:
    """Per-sample MIA of ``target_spec`` (a spec or its
    :class:`~core.targets.registry.TargetRef`) on ``dataset``; stores and returns the run.
    ``targets``: the specs (the references') already resolved at the edge; others are
    resolved here, once each."""
    from core.mia.aggregate import indicator_table, run_mia
    from core.stats import PermutationConfig

    t0 = time.perf_counter()
    targets = targets if targets is not None else Resolved()
    target = targets.ref(target_spec)
    check_pia(target.spec, target.family, config.pia)
    check_given_mode(ws, dataset, config.mode)
    check_labels(ws, dataset)
    audited, excluded = audited_clips(ws, dataset, config.references, targets, cross_fit=config.cross_fit)
    ev_info: dict = {}
    clips, evidence, fp, computed, failed = extract_evidence(ws, dataset, target, config, settings=settings, progress=progress,
                                                             cancelled=cancelled, info=ev_info, clips=audited)
    transcripts = transcript_check(target, config, clips, evidence, ev_info.get("language"))
    table = indicator_table(evidence)
    ref = reference_indicators(ws, dataset, clips, table, fp, config, settings=settings, progress=progress, cancelled=cancelled,
                               target_texts=target_texts_of(target.family, config, evidence), targets=targets)
    if ref is not None:
        kept = set(ref.clips["clip_hash"])
        clips, table = ref.clips, table.loc[ref.clips["clip_hash"].tolist()]
        evidence = [ev for ev in evidence if ev.clip_hash in kept]
        failed = failed + ref.failed
        computed += ref.computed
    y = clips["y"].to_numpy()
    groups, grouping = clip_grouping(clips, config.grouping)

    def aggregate(t: pd.DataFrame, what: str = ""):
        return run_mia(t, y, n_splits=config.n_splits, seed=config.seed, n_boot=config.n_boot, groups=groups,
                       grouping=grouping, permutations=PermutationConfig(n_perm=config.n_perm), signed=config.signed,
                       progress=statistics_progress(progress, what))

    res = uncal = aggregate(table, "uncalibrated " if ref is not None else "")
    if ref is not None:
        res = aggregate(ref.calibrated, "calibrated ")
        table = pd.concat([table, ref.calibrated], axis=1)
    out = res.to_dict()
    if ref is not None:
        from core.mia.calibration import auc_gain_test, calibration_gain

        def tested(calibrated: pd.Series, uncalibrated: pd.Series, calibrated_sd: float | None, uncalibrated_sd: float | None) -> dict:
            """The paired gain test of two cross-validated scores of these clips (empty without permutations)."""
            return auc_gain_test(y, calibrated.to_numpy(), uncalibrated.reindex(calibrated.index).to_numpy(),
                                 calibrated_null_sd=calibrated_sd, uncalibrated_null_sd=uncalibrated_sd) or {}

        out["uncalibrated"] = uncalibrated_summary(uncal.to_dict())
        out["scores_uncalibrated"] = {str(k): float(v) for k, v in uncal.scores.items()}
        gain = calibration_gain(out, out["uncalibrated"]) | tested(res.scores, uncal.scores, res.inference.get("null_sd"),
                                                                    uncal.inference.get("null_sd"))
        if res.held_out_best_scores is not None and uncal.held_out_best_scores is not None:
            c, u = res.held_out_best, uncal.held_out_best
            gain["held_out_best"] = ({"auc": calibration_gain(c, u)["auc"]}
                                     | tested(res.held_out_best_scores, uncal.held_out_best_scores, c.get("null_sd"), u.get("null_sd")))
        out["calibration"] = ref.describe() | {"gain": gain}
    out["access"] = config.access
    out["labels"] = dict(zip(clips["clip_hash"], (int(v) for v in y)))
    out["table"] = {c: [None if not np.isfinite(v) else float(v) for v in table[c].to_numpy()] for c in table.columns}
    out["clip_order"] = clips["clip_hash"].tolist()
    out["clip_groups"] = groups  # per clip in clip_order (None: ungrouped); DI splits by them
    out["decoded"] = {ev.clip_hash: ev.text for ev in evidence}
    out["notes"] = sorted({n for ev in evidence for n in ev.notes})
    out["computed"] = computed
    out["failed_clips"] = failed
    if excluded is not None:
        out["excluded_clips"] = excluded
    if config.references:
        from core.pipeline.reference import latest_advice

        advice = latest_advice(ws, dataset, target.spec)  # a stored answer: nothing is scored here
        if advice is not None:
            out["advice"] = advice
    warnings = list(out.get("warnings", []))
    if ev_info.get("language"):
        out["language"] = ev_info["language"]
    if transcripts is not None:
        out["transcript_check"] = transcripts.to_dict()
        if transcripts.looks_wrong:
            warnings.insert(0, transcripts.warning())
    if failed:
        warnings.append(failed_clips_warning(failed))
    from core.mia.links import blind_link
    from core.pipeline.common import current_run

    blind_run = current_run(ws, "blind", dataset)  # never a run made on an earlier version of the dataset
    refs = {"blind": blind_run["id"]} if blind_run is not None else {}
    link = blind_link(ws, {"refs": refs}, res.scores)
    if link.correlation is not None:
        out["blind_correlation"] = link.correlation
        out["blind_auc"] = blind_run["result"]["auc"].get("all")
        out["blind_run"] = blind_run["id"]
        if link.verdict is not None:
            out["blind_verdict"] = link.verdict.to_dict()
            caveat = link.verdict.caveat("this MIA signal", config.references)
            if caveat:
                warnings.append(caveat)
    out["warnings"] = warnings
    prov = provenance(ws, dataset, target_fingerprint=fp, seed=config.seed, seconds=time.perf_counter() - t0)
    prov["evidence_key"] = ev_info["evidence_key"]  # what DI reads the evidence back under
    prov["target_family"] = target.family
    if ref is not None:
        prov["reference_fingerprints"] = dict(ref.fingerprints)
        prov["reference_evidence_keys"] = dict(ref.evidence_keys)
    run_id = ws.save_run("mia", dataset=dataset, target=target.spec, config=config.to_dict(), result=stored_result(out),
                         provenance=prov, refs=refs, tables=mia_tables(out))
    return run_id, out


def audited_clips(ws: Workspace, dataset: str, references: tuple[str, ...], targets: Resolved | None = None, *,
                  cross_fit: bool = False) -> tuple[pd.DataFrame | None, list[dict] | None]:
    """The clips an audit with ``references`` may read, and those it must leave out: every
    clip a shadow reference among them trained on, or that was held out to choose its recipe
    (:func:`core.pipeline.reference.exclude_trained`; with ``cross_fit`` the shadows' own
    clips stay). ``(None, None)`` when no reference is a shadow (the audit reads the whole
    dataset).

    Raises
    ------
    ValueError
        too few clips of a label would be left to audit.
    """
    from core.pipeline.common import MIN_PER_LABEL
    from core.pipeline.reference import exclude_trained

    if not references:
        return None, None
    clips, excluded = exclude_trained(ws.analysis_clips(dataset), references, targets, cross_fit=cross_fit)
    if excluded is None:
        return None, None
    members, nonmembers = int((clips["y"] == 1).sum()), int((clips["y"] == 0).sum())
    if min(members, nonmembers) < MIN_PER_LABEL:
        raise ValueError(f"after leaving out the {len(excluded)} clip(s) a shadow reference trained on (or was chosen on), {members} member and "
                         f"{nonmembers} non-member clip(s) of {dataset!r} are left; an audit needs at least {MIN_PER_LABEL} of each")
    return clips, excluded


UNCALIBRATED_FIELDS = ("auc", "auc_ci", "auc_p_value", "auc_ci_method", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "tpr_at_fpr",
                       "tpr_at_fpr_text", "indicators", "best_indicator", "best_indicator_auc", "held_out_best", "n_members",
                       "n_nonmembers")
"""What a calibrated MIA run keeps of its uncalibrated aggregate, beside the calibrated one."""


def uncalibrated_summary(result: dict) -> dict:
    """The uncalibrated aggregate of a calibrated run: its numbers and its ROC."""
    return {k: result[k] for k in UNCALIBRATED_FIELDS if k in result} | {"roc": {"aggregate": result["roc"]["aggregate"]}}


@dataclass
class ReferenceIndicators:
    """What the reference models add to an MIA run.

    Attributes
    ----------
    clips : the clips every reference (and the target) scored.
    calibrated : ``[n_clips, n_keys]`` calibrated indicators (:func:`core.mia.calibration.calibrated_table`).
    fingerprints : reference spec -> model fingerprint.
    computed : clips whose reference evidence was computed (not read from the cache).
    failed : clips a reference could not score (left out of the run).
    cross_fit : a cross-fitted run's summary (:func:`cross_fit_summary`), else None.
    """

    clips: pd.DataFrame
    calibrated: pd.DataFrame
    fingerprints: dict[str, str]
    computed: int = 0
    failed: list[dict] = field(default_factory=list)
    evidence_keys: dict[str, dict] = field(default_factory=dict)
    cross_fit: dict | None = None

    def describe(self) -> dict:
        from core.mia.calibration import calibration_of_table

        return ({"references": list(self.fingerprints), "reference_fingerprints": dict(self.fingerprints),
                 "calibrations": calibration_of_table(self.calibrated)}
                | ({"cross_fit": self.cross_fit} if self.cross_fit is not None else {}))


def cross_fit_summary(clips: pd.DataFrame, sets: dict[str, frozenset[str]]) -> dict:
    """What a cross-fitted run records: the shadows, the folds they form (shadows on the same
    clips share one), how many shadows calibrate each clip, and per shadow how many audited
    clips it trained on (each calibrated against the other folds' shadows), by label."""
    folds = len(set(sets.values()))  # as many shadows on each (checked when the audit began)
    y = dict(zip(clips["clip_hash"], clips["y"]))
    own = {spec: [int(y[h]) for h in s if h in y] for spec, s in sets.items()}
    return {"shadows": len(sets), "folds": folds, "per_clip": len(sets) - len(sets) // folds,
            "trained_on": {spec: {"members": sum(v), "non_members": len(v) - sum(v)} for spec, v in own.items()}}


@dataclass(frozen=True)
class ScoredText:
    """Has a reference score the text the *target* produced (two-stage protocol): each
    clip's ``ClipInput.text`` is the target's output, scored in ``given`` mode, while the
    audio (and any variant's rendering of it, e.g. a resynthesis of the transcript) stays
    the clip's own. Used as ``extract_evidence(variant=...)``: its cache key covers the
    scored text, so the reference's evidence is cached per (clip, text)."""

    texts: tuple[tuple[str, str], ...]
    originals: tuple[tuple[str, str], ...]
    inner: Any = None

    @property
    def name(self) -> str:
        return (f"{self.inner.name}+" if self.inner is not None else "") + "target-text"

    def key(self, clip_hash: str) -> str:
        import hashlib

        base = self.inner.key(clip_hash) if self.inner is not None else clip_hash
        return hashlib.sha256(f"{base}|target-text|{dict(self.texts)[clip_hash]}".encode()).hexdigest()

    def render_many(self, audios: list, texts: list[str], sr: int, clip_hashes: list[str]) -> list:
        if self.inner is None:
            return audios
        originals = dict(self.originals)
        return self.inner.render_many(audios, [originals[h] for h in clip_hashes], sr, clip_hashes)


def reference_indicators(ws: Workspace, dataset: str, clips: pd.DataFrame, target_table: pd.DataFrame, target_fingerprint: str,
                         config: MIAConfig, *, settings: Settings | None = None, variant=None, progress: Progress | None = None,
                         cancelled: Cancelled = lambda: False, target_texts: dict[str, str] | None = None,
                         targets: Resolved | None = None) -> ReferenceIndicators | None:
    """Evidence of every reference model in ``config.references`` for ``clips`` (through
    the same cache and loading rules as the target; ``variant`` as in
    :func:`extract_evidence`), and the target's indicators ``target_table`` calibrated
    against them; None without references. Clips a reference cannot score are left out.

    ``target_texts`` (clip hash -> the text the target produced, for an audio-language
    target in ``generated`` mode): each reference scores that same text (:class:`ScoredText`),
    so target and reference are compared on one token sequence, as difficulty calibration
    requires; a reference decoding its own text would measure a different sequence.

    Raises
    ------
    ValueError
        A reference is the target itself (same fingerprint), or is named twice.
    """
    import dataclasses

    from core.mia.aggregate import indicator_table
    from core.mia.calibration import calibrated_table, resolve_calibrations

    if not config.references:
        return None
    targets = targets if targets is not None else Resolved()
    # an unknown name fails before any model runs; a cross-fitted run calibrates against one (collapsed) reference
    resolve_calibrations(config.calibrations, 1 if config.cross_fit else len(config.references))
    if len(set(config.references)) != len(config.references):
        raise ValueError(f"a reference is named twice: {', '.join(config.references)}")
    ref_config, ref_clips, ref_variant = config, clips, variant
    if target_texts is not None and config.mode == "generated":
        hashes = clips["clip_hash"].tolist()
        ref_clips = clips.assign(text=[target_texts.get(h, "") for h in hashes])
        ref_config = dataclasses.replace(config, mode="given")
        ref_variant = ScoredText(tuple((h, target_texts.get(h, "")) for h in hashes),
                                 tuple(zip(hashes, clips["text"].fillna("").astype(str))), variant)
    fps: dict[str, str] = {}
    tables: list[pd.DataFrame] = []
    computed, failed = 0, []
    keep = set(clips["clip_hash"])
    ev_keys: dict[str, dict] = {}
    for spec in config.references:
        info: dict = {}
        rc, rev, rfp, n, bad = extract_evidence(ws, dataset, targets.ref(spec), ref_config, settings=settings, clips=ref_clips,
                                                variant=ref_variant, progress=progress, cancelled=cancelled, info=info)
        ev_keys[spec] = info["evidence_key"]
        if rfp == target_fingerprint:
            raise ValueError(f"reference {spec} is the audited model itself (same fingerprint {rfp[:12]})")
        fps[spec] = rfp
        tables.append(indicator_table(rev))
        computed += n
        failed += [dict(f, reference=spec) for f in bad]
        keep &= set(rc["clip_hash"])
    kept = clips[clips["clip_hash"].isin(keep)].reset_index(drop=True)
    order = kept["clip_hash"].tolist()
    tables = [t.loc[order] for t in tables]
    summary = None
    if config.cross_fit:  # one reference per clip: the mean of the shadows that never trained on it
        from core.mia.calibration import cross_fit_assignment, cross_fitted_reference
        from core.pipeline.reference import shadow_training_sets

        sets = shadow_training_sets(config.references, targets)
        available = cross_fit_assignment(order, list(sets.values()))  # in the references' order
        tables = [cross_fitted_reference(tables, available)]
        summary = cross_fit_summary(kept, sets)
    names = resolve_calibrations(config.calibrations, len(tables))
    calibrated = calibrated_table(target_table.loc[order], tables, names=names)
    return ReferenceIndicators(kept, calibrated, fps, computed, failed, ev_keys, summary)


def target_texts_of(family: str | None, config: MIAConfig, evidence: list) -> dict[str, str] | None:
    """The texts an audio-language target (of ``family``) produced in ``generated`` mode
    (what its references must score), else None. At the outputs access level nothing is
    scored: each reference returns its own answers, compared with the same transcripts."""
    if config.access == "outputs" or not config.references or not config.decodes_text(family):
        return None
    return {ev.clip_hash: ev.text or "" for ev in evidence}


CLIP_FIELDS = ("labels", "scores", "scores_uncalibrated", "clip_groups", "decoded", "table", "clip_order")
"""Per-clip fields of an MIA result: stored as the run's tables, not in its record."""


def stored_result(out: dict) -> dict:
    """An MIA result without its per-clip fields (those go to :func:`mia_tables`)."""
    return {k: v for k, v in out.items() if k not in CLIP_FIELDS}


def mia_tables(out: dict) -> dict[str, pd.DataFrame]:
    """The per-clip tables of an MIA result, rows in its clip order: ``clips`` (label,
    out-of-fold score, CV group, decoded text) and ``indicators`` (one column per key)."""
    order = list(out["clip_order"])
    index = pd.Index(order, name="clip_hash")
    groups = out.get("clip_groups")
    clips = pd.DataFrame({
        "label": [int(out["labels"][h]) for h in order],
        "score": [out["scores"].get(h, np.nan) for h in order],
        "group": [str(g) for g in groups] if groups is not None else [None] * len(order),
        "decoded": [out["decoded"].get(h, "") for h in order],
    } | ({"score_uncalibrated": [out["scores_uncalibrated"].get(h, np.nan) for h in order]} if "scores_uncalibrated" in out else {}),
        index=index)
    indicators = pd.DataFrame({k: np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
                               for k, vals in out["table"].items()}, index=index)
    return {"clips": clips, "indicators": indicators}


def mia_scores(ws: Workspace, run: dict) -> pd.DataFrame:
    """The per-clip ``clips`` table of an MIA run (label, score, group, decoded), from its
    Parquet table or, for a run stored before tables, its record."""
    df = ws.run_table(run, "clips")
    if "decoded" not in df:
        df["decoded"] = ""
    return df


@job_kind("mia")
def _mia_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """A per-sample MIA run of a target on a dataset (params: dataset, target, config); returns the run id."""
    run_id, _ = audit_mia(ws, params["dataset"], params["target"], MIAConfig.from_dict(params.get("config", {})), progress=ctx.progress, cancelled=ctx.cancelled)
    return run_id
