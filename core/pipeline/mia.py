"""Per-sample membership inference as an operation: evidence -> indicators -> CV AUC."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from core.blind.verdict import verdict_of_run
from core.pipeline.common import Cancelled, Progress, clip_grouping, provenance
from core.pipeline.evidence import extract_evidence, failed_clips_warning
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace
from core.stages import MIAConfig



def _blind_scores(ws: Workspace, dataset: str) -> tuple[dict | None, pd.Series | None]:
    from core.pipeline.common import current_run

    run = current_run(ws, "blind", dataset)  # never a run made on an earlier version of the dataset
    if run is None:
        return None, None
    scores = run["result"].get("scores")
    return run, (pd.Series(scores, dtype=float) if scores else None)


def clips_without_text(ws: Workspace, dataset: str) -> list[str]:
    """Paths of the analysed clips of ``dataset`` that have no transcript or caption."""
    clips = ws.analysis_clips(dataset)
    empty = clips["text"].fillna("").astype(str).str.strip() == ""
    return sorted(clips.loc[empty, "path"].astype(str))


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


def audit_mia(
    ws: Workspace,
    dataset: str,
    target_spec: str,
    config: MIAConfig = MIAConfig(),
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
) -> tuple[str, dict]:
    """Per-sample MIA of ``target_spec`` on ``dataset``; stores and returns the run."""
    from core.mia.aggregate import blind_correlation, indicator_table, run_mia
    from core.stats import PermutationConfig

    t0 = time.perf_counter()
    check_given_mode(ws, dataset, config.mode)
    clips, evidence, fp, computed, failed = extract_evidence(ws, dataset, target_spec, config, settings=settings, progress=progress, cancelled=cancelled)
    table = indicator_table(evidence)
    y = clips["y"].to_numpy()
    groups, grouping = clip_grouping(clips, config.grouping)
    res = run_mia(table, y, n_splits=config.n_splits, seed=config.seed, n_boot=config.n_boot,
                  groups=groups, grouping=grouping, permutations=PermutationConfig(n_perm=config.n_perm), signed=config.signed)
    out = res.to_dict()
    out["labels"] = dict(zip(clips["clip_hash"], (int(v) for v in y)))
    out["table"] = {c: [None if not np.isfinite(v) else float(v) for v in table[c].to_numpy()] for c in table.columns}
    out["clip_order"] = clips["clip_hash"].tolist()
    out["clip_groups"] = groups  # per clip in clip_order (None: ungrouped); DI splits by them
    out["decoded"] = {ev.clip_hash: ev.text for ev in evidence}
    out["notes"] = sorted({n for ev in evidence for n in ev.notes})
    out["computed"] = computed
    out["failed_clips"] = failed
    warnings = list(out.get("warnings", []))
    if failed:
        warnings.append(failed_clips_warning(failed))
    blind_run, blind = _blind_scores(ws, dataset)
    if blind is not None:
        common = [h for h in clips["clip_hash"] if h in blind.index]
        mia_scores = res.scores.reindex(common).to_numpy()
        out["blind_correlation"] = blind_correlation(mia_scores, blind.reindex(common).to_numpy())
        out["blind_auc"] = blind_run["result"]["auc"].get("all")
        out["blind_run"] = blind_run["id"]
        verdict = verdict_of_run(blind_run["result"])
        if verdict is not None:
            out["blind_verdict"] = verdict.to_dict()
            caveat = verdict.caveat("this MIA signal")
            if caveat:
                warnings.append(caveat)
    out["warnings"] = warnings
    prov = provenance(ws, dataset, target_fingerprint=fp, seed=config.seed, seconds=time.perf_counter() - t0)
    run_id = ws.save_run("mia", dataset=dataset, target=target_spec, config=config.to_dict(), result=out, provenance=prov)
    return run_id, out


@job_kind("mia")
def _mia_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """A per-sample MIA run of a target on a dataset (params: dataset, target, config); returns the run id."""
    run_id, _ = audit_mia(ws, params["dataset"], params["target"], MIAConfig.from_dict(params.get("config", {})), progress=ctx.progress, cancelled=ctx.cancelled)
    return run_id
