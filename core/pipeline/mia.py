"""Per-sample membership inference as an operation: evidence -> indicators -> CV AUC."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from core.pipeline.common import Cancelled, Progress, clip_grouping, provenance
from core.pipeline.evidence import extract_evidence, failed_clips_warning
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace
from core.stages import MIAConfig



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
    from core.mia.aggregate import indicator_table, run_mia
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
            caveat = link.verdict.caveat("this MIA signal")
            if caveat:
                warnings.append(caveat)
    out["warnings"] = warnings
    prov = provenance(ws, dataset, target_fingerprint=fp, seed=config.seed, seconds=time.perf_counter() - t0)
    run_id = ws.save_run("mia", dataset=dataset, target=target_spec, config=config.to_dict(), result=stored_result(out),
                         provenance=prov, refs=refs, tables=mia_tables(out))
    return run_id, out


CLIP_FIELDS = ("labels", "scores", "clip_groups", "decoded", "table", "clip_order")
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
    }, index=index)
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
