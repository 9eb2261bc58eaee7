"""The blind baseline as an operation: features (cached per clip) -> CV logistic regression."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Callable

import numpy as np
import pandas as pd

from core.pipeline.common import Cancelled, Progress, clip_grouping, provenance
from core.runtime.cache import FeatureCache
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace, atomic_write
from core.stages import DEFAULT_GROUPS, BlindRunConfig  # noqa: F401  (DEFAULT_GROUPS: re-exported)

def _cached_rows(
    ws: Workspace,
    clips: pd.DataFrame,
    cache: FeatureCache,
    compute: Callable[[list[int], list[np.ndarray]], np.ndarray],
    *,
    settings: Settings,
    batch_size: int,
    label: str,
    progress: Progress | None,
    cancelled: Cancelled,
    recompute_all: bool = False,
) -> list[np.ndarray]:
    """Per-clip feature vectors in ``clips`` order: cache hits read, misses computed by
    ``compute(row indices, analysis audio)`` in batches of streamed audio (a dataset's
    audio is never held whole in memory), each saved as it is made so a rerun resumes."""
    from core.data.audio import load_analysis

    hashes = clips["clip_hash"].tolist()
    rows: list[np.ndarray | None] = [None if recompute_all else cache.get(h) for h in hashes]
    misses = [i for i, r in enumerate(rows) if r is None]
    done = len(hashes) - len(misses)
    for start in range(0, len(misses), batch_size):
        if cancelled():
            raise InterruptedError("cancelled")
        idx = misses[start : start + batch_size]
        audio = [load_analysis(ws.read_audio(hashes[i]), settings.analysis_sr, limits=settings.limits) for i in idx]
        for i, vec in zip(idx, compute(idx, audio)):
            cache.put(hashes[i], vec)
            rows[i] = vec
        done += len(idx)
        if progress:
            progress(done, len(hashes), label)
    return rows  # type: ignore[return-value]


def acoustic_features_cached(
    ws: Workspace,
    clips: pd.DataFrame,
    *,
    settings: Settings,
    batch_size: int = 32,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
) -> pd.DataFrame:
    """Acoustic feature table for ``clips`` (rows in order), computing only cache misses."""
    from core.blind.acoustic import DEFAULT_CONFIG, acoustic_features

    cfg = DEFAULT_CONFIG
    names = cfg.feature_names()
    tag = hashlib.sha256(json.dumps({"cfg": repr(cfg), "sr": settings.analysis_sr}).encode()).hexdigest()[:12]
    device = None if settings.device == "auto" else settings.device
    rows = _cached_rows(ws, clips, FeatureCache(ws.cache_dir, f"acoustic-{tag}"),
                        lambda idx, audio: acoustic_features(audio, sr=settings.analysis_sr, device=device, config=cfg),
                        settings=settings, batch_size=batch_size, label="acoustic features", progress=progress, cancelled=cancelled)
    return pd.DataFrame(np.stack(rows) if rows else np.empty((0, len(names))), columns=names, index=pd.Index(clips["clip_hash"].tolist(), name="clip_hash"))


def blind_tables(
    ws: Workspace,
    clips: pd.DataFrame,
    groups: tuple[str, ...],
    *,
    settings: Settings,
    batch_size: int = 32,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
) -> tuple[dict, list[str]]:
    """Feature tables of ``groups`` for ``clips``; acoustic features come from the cache."""
    from core.blind import build_tables
    from core.blind.registry import get_group

    # groups that read audio stream it in cached batches; the others read the metadata
    audio_groups = [g for g in groups if "audio" in get_group(g).needs]
    cheap = [g for g in groups if g not in audio_groups]
    meta = clips.reset_index(drop=True)
    tables, notes = build_tables(cheap, metadata=meta, texts=meta["text"].fillna("").tolist()) if cheap else ({}, [])
    for g in audio_groups:
        if g == "acoustic":
            tables[g] = acoustic_features_cached(ws, clips, settings=settings, batch_size=batch_size, progress=progress, cancelled=cancelled).reset_index(drop=True)
            continue
        ok, msg = get_group(g).availability()
        if not ok:
            notes.append(f"{g}: {msg}")
            continue
        tables[g] = audio_group_cached(ws, clips, g, settings=settings, batch_size=batch_size, progress=progress, cancelled=cancelled).reset_index(drop=True)
    return {g: tables[g] for g in groups if g in tables}, notes


def audio_group_cached(
    ws: Workspace,
    clips: pd.DataFrame,
    group: str,
    *,
    settings: Settings,
    batch_size: int = 32,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
) -> pd.DataFrame:
    """Table of a registered audio feature group for ``clips`` (rows in order), computed
    in batches of streamed audio, cached per clip like the acoustic features. The group's
    column names are kept beside its cache, so a fully cached run needs no audio."""
    from core.blind import build_tables

    tag = hashlib.sha256(json.dumps({"group": group, "sr": settings.analysis_sr}).encode()).hexdigest()[:12]
    cache = FeatureCache(ws.cache_dir, f"{group}-{tag}")
    columns_file = cache.root / "columns.json"
    columns: list[str] | None = json.loads(columns_file.read_text()) if columns_file.exists() else None
    meta = clips.reset_index(drop=True)
    hashes = clips["clip_hash"].tolist()

    def compute(idx: list[int], audio: list[np.ndarray]) -> np.ndarray:
        nonlocal columns
        tables, notes = build_tables([group], metadata=meta.iloc[idx].reset_index(drop=True), audio=audio, sr=settings.analysis_sr,
                                     device=None if settings.device == "auto" else settings.device)
        if group not in tables:
            raise ValueError(f"feature group {group!r} gave no table ({'; '.join(notes) or 'no reason given'})")
        if columns is None:
            columns = [str(c) for c in tables[group].columns]
            atomic_write(columns_file, json.dumps(columns).encode())
        return tables[group].to_numpy(dtype=np.float64)

    rows = _cached_rows(ws, clips, cache, compute, settings=settings, batch_size=batch_size, label=f"{group} features",
                        progress=progress, cancelled=cancelled, recompute_all=columns is None)
    return pd.DataFrame(np.stack(rows) if rows else np.empty((0, len(columns or []))), columns=columns, index=pd.Index(hashes, name="clip_hash"))


def audit_blind(
    ws: Workspace,
    dataset: str,
    config: BlindRunConfig = BlindRunConfig(),
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
) -> tuple[str, dict]:
    """Blind baseline of ``dataset``; stores and returns the run (scores keyed by clip)."""
    from core.blind import run_blind

    t0 = time.perf_counter()
    settings = settings or Settings.from_env(ws.root)
    clips = ws.analysis_clips(dataset)
    tables, notes = blind_tables(ws, clips, config.groups, settings=settings, batch_size=config.batch_size, progress=progress, cancelled=cancelled)
    from core.stats import PermutationConfig

    groups, grouping = clip_grouping(clips, config.grouping)
    res = run_blind(tables, clips["y"].to_numpy(), n_splits=config.n_splits, seed=config.seed, n_boot=config.n_boot,
                    groups=groups, grouping=grouping, permutations=PermutationConfig(n_perm=config.n_perm), progress=progress)
    out = res.to_dict()
    hashes = clips["clip_hash"].tolist()
    out["scores"] = dict(zip(hashes, out["scores"]))
    out["scores_by_group"] = {g: dict(zip(hashes, s)) for g, s in out["scores_by_group"].items()}
    out["labels"] = dict(zip(hashes, out["labels"]))
    out["clip_order"] = hashes
    out["notes"] = notes
    prov = provenance(ws, dataset, seed=config.seed, seconds=time.perf_counter() - t0)
    stored = {k: v for k, v in out.items() if k not in CLIP_FIELDS}
    run_id = ws.save_run("blind", dataset=dataset, target=None, config=config.to_dict(), result=stored, provenance=prov,
                         refs={}, tables=blind_tables_of(out))
    return run_id, out


CLIP_FIELDS = ("scores", "scores_by_group", "labels", "clip_order")
"""Per-clip fields of a blind result: stored as the run's tables, not in its record."""


def blind_tables_of(out: dict) -> dict[str, pd.DataFrame]:
    """The per-clip tables of a blind result, rows in its clip order: ``clips`` (label,
    out-of-fold score of all groups) and ``group_scores`` (one column per feature group)."""
    order = list(out["clip_order"])
    index = pd.Index(order, name="clip_hash")
    clips = pd.DataFrame({"label": [int(out["labels"][h]) for h in order],
                          "score": [float(out["scores"][h]) for h in order]}, index=index)
    by_group = pd.DataFrame({g: [float(s[h]) for h in order] for g, s in out["scores_by_group"].items()}, index=index)
    return {"clips": clips, "group_scores": by_group}


def match_dataset(
    ws: Workspace,
    dataset: str,
    new_name: str,
    *,
    caliper: float = 0.2,
    config: BlindRunConfig = BlindRunConfig(),
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> tuple[str, dict]:
    """Propensity-matched subset of ``dataset`` saved as ``new_name``, with the blind
    baseline before and after matching."""
    from core.blind import match_and_recheck

    if new_name in ws.dataset_names():
        raise ValueError(f"dataset {new_name!r} already exists; choose another name")
    t0 = time.perf_counter()
    settings = settings or Settings.from_env(ws.root)
    clips = ws.analysis_clips(dataset)
    tables, _ = blind_tables(ws, clips, config.groups, settings=settings, batch_size=config.batch_size, progress=progress)
    rec = match_and_recheck(tables, clips["y"].to_numpy(), caliper=caliper, n_splits=config.n_splits, seed=config.seed, n_boot=config.n_boot)
    if rec.matching.n_pairs < 2:
        raise ValueError(
            f"only {rec.matching.n_pairs} member/non-member pairs lie within a caliper of {caliper} SD: "
            "the blind features separate the classes too well to match; widen the caliper or report the split as confounded"
        )
    out = rec.to_dict()
    for part in ("before", "after"):
        if out[part] is not None:
            for k in ("scores", "scores_by_group", "roc", "labels"):
                out[part].pop(k, None)
    keep = clips.iloc[rec.matching.indices]
    ds_id = ws.create_dataset(new_name, source=f"matched from {dataset} (caliper {caliper})")
    with ws.connect() as con:
        con.executemany(
            "INSERT INTO items VALUES (?,?,?,?,?,?,?,?)",
            [(ds_id, r["path"], h, r["label"], r["text"], r["speaker"], r["source"], r["split"]) for h, r in keep.set_index("clip_hash").iterrows()],
        )
    ws.set_dataset_status(new_name, "ready", meta={"matched_from": dataset, "caliper": caliper})
    out["dataset"] = new_name
    out["n_clips"] = int(len(keep))
    prov = provenance(ws, new_name, seed=config.seed, seconds=time.perf_counter() - t0)
    run_id = ws.save_run("match", dataset=new_name, target=None, config=config.to_dict() | {"caliper": caliper, "source": dataset}, result=out, provenance=prov)
    return run_id, out


@job_kind("blind")
def _blind_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """A blind-baseline run of one dataset (params: dataset, config); returns the run id."""
    run_id, _ = audit_blind(ws, params["dataset"], BlindRunConfig.from_dict(params.get("config", {})), progress=ctx.progress, cancelled=ctx.cancelled)
    return run_id


@job_kind("match")
def _match_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """A propensity-matched subset (params: dataset, new_name, caliper, config); returns the matching run id."""
    run_id, _ = match_dataset(ws, params["dataset"], params["new_name"], caliper=float(params["caliper"]),
                              config=BlindRunConfig.from_dict(params.get("config", {})), progress=ctx.progress)
    return run_id
