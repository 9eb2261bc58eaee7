"""Modality disentanglement as an operation (LALM paper, Phase 3, Table 2).

For each condition (original, silence, noise, resynthesis) and each of its realizations,
the audited clips' audio is replaced and the per-sample MIA re-run with the same target,
indicators and cross-validation. The indicator tables of a condition's realizations are
averaged per clip before aggregation, so each condition gets one AUC with its interval.
"""

from __future__ import annotations

import time
import numpy as np
import pandas as pd

from core.pipeline.common import Cancelled, Progress, Resolved, provenance
from core.pipeline.evidence import extract_evidence, failed_clips_warning
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace
from core.stages import DEFAULT_CONDITIONS, DisentangleConfig, MIAConfig  # noqa: F401  (re-exported)

def audit_disentangle(
    ws: Workspace,
    dataset: str,
    target,
    config: DisentangleConfig = DisentangleConfig(),
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
    targets: Resolved | None = None,
) -> tuple[str, dict]:
    """MIA AUC per condition; stores and returns the run. ``target``: a spec or its
    :class:`~core.targets.registry.TargetRef`; ``targets`` as in :func:`audit_mia`."""
    from core.disentangle import Variant, get_variant
    from core.disentangle.consistency import word_error_rate
    from core.mia.aggregate import indicator_table, run_mia
    from core.mia.calibration import split_columns
    from core.pipeline.mia import audited_clips, check_pia, reference_indicators, statistics_progress, target_texts_of
    from core.pipeline.common import check_labels, clip_grouping
    from core.stats import PermutationConfig

    t0 = time.perf_counter()
    targets = targets if targets is not None else Resolved()
    target = targets.ref(target)
    check_pia(target.spec, target.family, config.mia.pia)
    settings = settings or Settings.from_env(ws.root)
    check_labels(ws, dataset)
    clips, excluded = audited_clips(ws, dataset, config.mia.references, targets, cross_fit=config.mia.cross_fit)
    clips = ws.analysis_clips(dataset) if clips is None else clips
    y = clips["y"].to_numpy()
    groups, grouping = clip_grouping(clips, config.mia.grouping)
    plan = [(c, r) for c in config.conditions for r in range(min(get_variant(c).realizations, config.max_realizations))]
    families = {c: get_variant(c) for c in config.conditions}
    # options resolved once per condition (a voice's hash, a generator's fingerprint);
    # bad ones (a missing voice, an unknown generator) fail here, before any work
    resolved = {c: Variant.of(families[c], 0, config.variant_options.get(c)).options for c in config.conditions}
    missing_text = int((clips["text"].fillna("").str.strip() == "").sum())
    # The audited model's own transcription checks resynthesized speech, when it transcribes.
    transcribes = config.mia.decodes_text(target.family)
    clap = _clap(config.clap_model, settings) if config.clap_model and any(f.check == "caption" for f in families.values()) else None
    conditions: dict[str, dict] = {}
    failed_clips: dict[str, dict] = {}  # clip hash -> why it could not be scored (first condition it failed in)
    decoded: dict[str, dict[str, str]] = {}
    fp = None
    reference_fps: dict[str, str] = {}
    ev_info: dict = {}  # the language a multilingual model decoded in (chosen on the original audio)
    for cond in config.conditions:
        fam = families[cond]
        if fam.needs_text and missing_text:
            conditions[cond] = {"skipped": f"{missing_text} clip(s) have no transcript or caption to resynthesize"}
            continue
        tables = []
        wers: list[np.ndarray] = []
        sims: list[np.ndarray] = []
        for r in range(min(fam.realizations, config.max_realizations)):
            step = plan.index((cond, r))

            n_real = min(fam.realizations, config.max_realizations)
            label = (f"evidence: condition {cond}" + (f", realization {r + 1} of {n_real}" if n_real > 1 else "")
                     + f" (pass {step + 1} of {len(plan)}: every clip once per condition and realization)")

            def prog(done: int, total: int, msg: str, _s=step, _label=label) -> None:
                if progress:
                    progress(_s * total + done, len(plan) * total, _label)

            variant = None if fam.original else Variant(fam, r, resolved[cond])
            scored = _ClapCache(ws, clap, variant) if (clap is not None and fam.check == "caption") else None
            scored_clips, evidence, fp, _, failed = extract_evidence(
                ws, dataset, target, config.mia, settings=settings, clips=clips, variant=variant,
                progress=prog, cancelled=cancelled, on_inputs=scored.add if scored else None, info=ev_info)
            for f in failed:
                failed_clips.setdefault(f["clip_hash"], dict(f, condition=cond))
            if scored is not None:
                sim = dict(zip(scored_clips["clip_hash"], scored.scores(scored_clips, settings)))
                sims.append(np.array([sim.get(h, np.nan) for h in clips["clip_hash"]]))
            table = indicator_table(evidence)
            # the references hear the same variant audio (variants are deterministic per clip and realization)
            ref = reference_indicators(ws, dataset, scored_clips, table, fp, config.mia, settings=settings, variant=variant,
                                       progress=prog, cancelled=cancelled, target_texts=target_texts_of(target.family, config.mia, evidence),
                                       targets=targets)
            if ref is not None:
                for f in ref.failed:
                    failed_clips.setdefault(f["clip_hash"], dict(f, condition=cond))
                table = pd.concat([table.loc[ref.clips["clip_hash"].tolist()], ref.calibrated], axis=1)
                reference_fps = ref.fingerprints
            # rows of the clips that failed stay NaN, and those clips are left out below
            tables.append(table.reindex(clips["clip_hash"]).reset_index(drop=True))
            if r == 0:
                decoded[cond] = {ev.clip_hash: ev.text for ev in evidence}
            if fam.check == "transcript" and transcribes:
                # Synthio-style consistency: does the audited model hear the same words?
                w = {ev.clip_hash: word_error_rate(t or "", ev.text) for t, ev in zip(scored_clips["text"], evidence)}
                wers.append(np.array([w.get(h, np.nan) for h in clips["clip_hash"]]))
        table = sum(tables) / len(tables) if len(tables) > 1 else tables[0]
        keep = ~clips["clip_hash"].isin(failed_clips).to_numpy()
        table = table.loc[:, table[keep].notna().any()]
        consistency = None
        flagged = None
        if wers:  # a resynthesis the audited model does not hear as the same words
            flagged = np.max(np.stack(wers), axis=0) > config.max_wer
            consistency = {"metric": "wer", "mean_wer": float(np.nanmean(np.stack(wers))), "max_wer": config.max_wer}
        elif sims:  # Synthio-style for sounds: CLAP does not find every realization close to its caption
            flagged = np.min(np.stack(sims), axis=0) < config.min_clap
            reference = _ClapCache(ws, clap, None).scores(clips, settings)
            consistency = {"metric": "clap", "mean_clap": float(np.nanmean(np.stack(sims))),
                           "original_mean_clap": float(np.mean(reference)), "min_clap": config.min_clap}
        if flagged is not None:
            consistency.update(flagged=int(flagged.sum()), dropped=int(flagged.sum()) if config.drop_inconsistent else 0)
            if config.drop_inconsistent:
                keep &= ~flagged
        if keep.sum() < 4 or len(set(y[keep])) < 2:
            conditions[cond] = {"skipped": f"only {int(keep.sum())} consistent resynthesized clips left", "consistency": consistency}
            continue
        # the same inference as the MIA run: grouped folds, permutation p-value, signed weights
        def aggregate(t: pd.DataFrame, _keep=keep, _cond=cond) -> dict:
            return run_mia(t[_keep].reset_index(drop=True), y[_keep], n_splits=config.mia.n_splits, seed=config.mia.seed,
                           n_boot=config.mia.n_boot, groups=None if groups is None else [g for g, k in zip(groups, _keep) if k],
                           grouping=grouping, permutations=PermutationConfig(n_perm=config.mia.n_perm), signed=config.mia.signed,
                           progress=statistics_progress(progress, f"condition {_cond}, ")).to_dict()

        uncalibrated, calibrated = split_columns(table)
        d = aggregate(calibrated if calibrated.shape[1] else uncalibrated)
        uncal = aggregate(uncalibrated) if calibrated.shape[1] else None
        conditions[cond] = {
            "consistency": consistency,
            "auc": d["auc"], "auc_ci": d["auc_ci"], "auc_p_value": d["auc_p_value"], "auc_ci_method": d["auc_ci_method"],
            "inference": d["inference"], "tpr_at_1pct_fpr": d["tpr_at_1pct_fpr"],
            "best_indicator": d["best_indicator"], "best_indicator_auc": d["best_indicator_auc"],
            "realizations": len(tables), "description": fam.description, "warnings": d["warnings"],
        }
        if uncal is not None:
            conditions[cond]["uncalibrated"] = {k: uncal[k] for k in ("auc", "auc_ci", "auc_p_value", "tpr_at_1pct_fpr")}
    out = {
        "conditions": {c: v.get("auc") for c, v in conditions.items()},
        "details": conditions,
        "n": int(len(clips)),
        "grouping": grouping,
        "n_members": int(y.sum()),
        "n_nonmembers": int((y == 0).sum()),
        "decoded": decoded,
        "decoded_is_output": bool(transcribes),  # else the text is what the model was conditioned on
        "clip_order": clips["clip_hash"].tolist(),
        "failed_clips": list(failed_clips.values()),
        "warnings": [failed_clips_warning(list(failed_clips.values()))] if failed_clips else [],
    }
    if ev_info.get("language"):
        out["language"] = ev_info["language"]
    if excluded is not None:
        out["excluded_clips"] = excluded
    original = next((c for c in decoded if families[c].original), None)
    if transcribes and original is not None:
        from core.data.transcripts import transcript_check_of

        check = transcript_check_of(decoded[original], clips, language=(ev_info.get("language") or {}).get("text", ""))
        out["transcript_check"] = check.to_dict()
        if check.looks_wrong:
            out["warnings"].insert(0, check.warning())
    if reference_fps:
        out["references"] = list(reference_fps)
    prov = provenance(ws, dataset, target_fingerprint=fp, seed=config.mia.seed, seconds=time.perf_counter() - t0)
    if reference_fps:
        prov["reference_fingerprints"] = reference_fps
    from core.pipeline.common import current_run

    blind_run = current_run(ws, "blind", dataset)  # the blind verdict shown beside these AUCs
    refs = {"blind": blind_run["id"]} if blind_run is not None else {}
    order = out["clip_order"]
    decoded_table = pd.DataFrame({c: [d.get(h) for h in order] for c, d in decoded.items()}, index=pd.Index(order, name="clip_hash"), dtype=object)
    stored = {k: v for k, v in out.items() if k not in ("decoded", "clip_order")}  # per clip: in the run's "decoded" table
    run_id = ws.save_run("disentangle", dataset=dataset, target=target.spec, config=config.to_dict(), result=stored, provenance=prov,
                         refs=refs, tables={"decoded": decoded_table})
    return run_id, out


def render_variant(ws: Workspace, clip_hash: str, text: str, condition: str, realization: int = 0, *,
                   options: dict | None = None, settings: Settings | None = None) -> np.ndarray:
    """The audio of one clip under one condition (for listening in the dashboard);
    ``options`` are the run's options for that condition (voice, generator)."""
    from core.data.audio import load_analysis
    from core.disentangle import Variant, get_variant

    settings = settings or Settings.from_env(ws.root)
    audio = load_analysis(ws.read_audio(clip_hash), settings.analysis_sr, limits=settings.limits)
    return Variant.of(get_variant(condition), realization, options).render(audio, text, settings.analysis_sr, clip_hash)


def _clap(folder: str, settings: Settings):
    """One CLAP model per process (the worker reuses it across runs), held by the model pool."""
    from core.disentangle.consistency import ClapScorer
    from core.runtime.pool import POOL

    return POOL.get("clap", (folder, settings.device), lambda: ClapScorer(folder, device=settings.device))


class _ClapCache:
    """CLAP similarity of each clip's (variant) audio to its caption, cached per clip like
    evidence (feature cache ``clap-<model fingerprint>``, keyed by the variant's clip key).

    ``add`` scores batches rendered during evidence extraction; ``scores`` fills in the
    rest (cache hits of the evidence, or batches rendered on Ray) by rendering again.
    """

    def __init__(self, ws: Workspace, scorer, variant):
        from core.runtime.cache import FeatureCache

        self.ws, self.scorer, self.variant = ws, scorer, variant
        self.cache = FeatureCache(ws.cache_dir, f"clap-{scorer.fingerprint}")

    def _key(self, clip_hash: str) -> str:
        return self.variant.key(clip_hash) if self.variant is not None else clip_hash

    def add(self, inputs) -> None:
        sims = self.scorer.similarity([c.audio for c in inputs], inputs[0].sr, [c.text for c in inputs])
        for c, v in zip(inputs, sims):
            self.cache.put(self._key(c.clip_hash), np.array([v]))

    def scores(self, clips: pd.DataFrame, settings: Settings, batch: int = 8) -> np.ndarray:
        from core.pipeline.evidence import clip_inputs, stored_clips

        hashes = clips["clip_hash"].tolist()
        out = [self.cache.get(self._key(h)) for h in hashes]
        todo = [i for i, v in enumerate(out) if v is None]
        for s in range(0, len(todo), batch):
            idx = todo[s : s + batch]
            self.add(clip_inputs(stored_clips(self.ws, clips.iloc[idx]), settings.analysis_sr, settings.limits, self.variant))
            for i in idx:
                out[i] = self.cache.get(self._key(hashes[i]))
        return np.array([float(v[0]) for v in out])


@job_kind("disentangle")
def _disentangle_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """A disentanglement run: the MIA under each variant (params: dataset, target, config); returns the run id."""
    run_id, _ = audit_disentangle(ws, params["dataset"], params["target"], DisentangleConfig.from_dict(params.get("config", {})), progress=ctx.progress, cancelled=ctx.cancelled)
    return run_id
