"""Cross-dataset blind AUC matrix as an operation (the LALM MIA paper's Figure 2).

For every pair of datasets in the workspace, a blind classifier tries to tell apart their
subsets with the *same* membership status (A's members vs B's members, or A's
non-members vs B's non-members). Membership is identical on both sides, so an AUC above
0.5 measures domain shift between the collections: if two "independent" corpora are this
easy to tell apart, a member/non-member split drawn from two corpora is confounded.

Shared clips. Two datasets can hold byte-identical clips (the demo's ``demo-speech`` and
``demo-speech-shifted`` share every member file; a matched subset shares all its clips
with its source). A clip that is in both sets cannot distinguish them, and keeping both
copies with opposite labels lets cross-validation score a clip against its own twin of
the other label, which biases the AUC below 0.5. So each shared clip (same content hash)
is kept once, on a side drawn at random (seeded): identical sets then give random labels
and an AUC near 0.5, and a partial overlap dilutes the shift in proportion, which is what
the overlap means. Each cell records how many clips were shared.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time

import numpy as np

from core.config import DEFAULT_N_SPLITS
from core.data.ingest import dataset_fingerprint
from core.pipeline.common import Cancelled, Progress, package_versions
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace
from core.stages import STATUSES, CrossDataConfig  # noqa: F401  (STATUSES: re-exported)

__all__ = ["CrossDataConfig", "cross_dataset_matrix", "latest_crossdata"]

def _rows(tables: dict, idx: np.ndarray) -> dict:
    return {g: t.iloc[idx].reset_index(drop=True) for g, t in tables.items()}


def _pair_seed(seed: int, a: str, b: str) -> int:
    digest = hashlib.sha256(f"{seed}:{a}:{b}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _split_shared(ha: list[str], hb: list[str], seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Row indices kept on each side: every clip hash in both lists stays on one side only."""
    shared = sorted(set(ha) & set(hb))
    to_a = dict(zip(shared, np.random.default_rng(seed).random(len(shared)) < 0.5))
    keep_a = np.array([i for i, h in enumerate(ha) if h not in to_a or to_a[h]], dtype=np.int64)
    keep_b = np.array([i for i, h in enumerate(hb) if h not in to_a or not to_a[h]], dtype=np.int64)
    return keep_a, keep_b, len(shared)


def _permutations(cfg: CrossDataConfig):
    from core.stats import PermutationConfig

    return PermutationConfig(n_perm=cfg.n_perm)


def _pair_auc(ta: dict, tb: dict, cfg: CrossDataConfig):
    """The cell's :class:`core.stats.CVAUC` (AUC, permutation p-value, interval)."""
    from core.blind import pair_inference

    return pair_inference(ta, tb, n_splits=cfg.n_splits, seed=cfg.seed, permutations=_permutations(cfg), n_boot=cfg.n_boot)


def _own_auc(tables: dict, y: np.ndarray, cfg: CrossDataConfig):
    from core.blind import BlindConfig, own_inference

    return own_inference(tables, y, cfg=BlindConfig(n_splits=cfg.n_splits, seed=cfg.seed), permutations=_permutations(cfg), n_boot=cfg.n_boot)


def cross_dataset_matrix(
    ws: Workspace,
    datasets: list[str] | None = None,
    *,
    status: str = "member",
    groups: tuple[str, ...] = ("metadata", "acoustic"),
    n_splits: int = DEFAULT_N_SPLITS,
    seed: int = 0,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
) -> tuple[str, dict]:
    """Blind AUC between the same-status subsets of every pair of datasets; stores a
    "crossdata" run.

    Parameters
    ----------
    datasets : dataset names (at least 2), or None for every ready dataset.
    status : "member" or "nonmember".
    groups : blind feature groups (acoustic features come from the per-clip cache).

    Returns
    -------
    run_id, result : the result has ``datasets``, ``status``, ``auc`` (matrix
        [n_datasets, n_datasets], None where not computable; the diagonal is each
        dataset's own member-vs-non-member AUC), ``shared`` (clips in both subsets, per
        cell), ``n`` (clips of ``status`` per dataset), ``cells`` (one record per pair)
        and ``notes``.
    """
    from core.pipeline.blind import blind_tables

    cfg = CrossDataConfig(status=status, groups=tuple(groups), n_splits=n_splits, seed=seed)
    t0 = time.perf_counter()
    settings = settings or Settings.from_env(ws.root)
    if datasets is None:
        df = ws.datasets()
        datasets = df[df["status"] == "ready"]["name"].tolist()
    flag = int(status == "member")
    notes: list[str] = []
    names = []
    for d in dict.fromkeys(datasets):
        n_status = int((ws.analysis_clips(d)["y"] == flag).sum())
        if n_status < 2:
            notes.append(f"{d}: left out, it has {n_status} {status} clips")
        else:
            names.append(d)
    if len(names) < 2:
        raise ValueError(f"the cross-dataset matrix needs at least 2 datasets with {status} clips, got {names}")

    tables: dict[str, dict] = {}
    hashes: dict[str, list[str]] = {}
    labels: dict[str, np.ndarray] = {}
    n_pairs = len(names) * (len(names) - 1) // 2
    total = len(names) + len(names) + n_pairs  # features, own AUCs, pairs
    done = 0
    for d in names:
        if cancelled():
            raise InterruptedError("cancelled")
        clips = ws.analysis_clips(d)
        t, grp_notes = blind_tables(ws, clips, cfg.groups, settings=settings, batch_size=cfg.batch_size, cancelled=cancelled)
        missing = [g for g in cfg.groups if g not in t]
        if missing:
            raise ValueError(f"dataset {d!r} has no {', '.join(missing)} features ({'; '.join(grp_notes)}); choose other groups")
        tables[d] = t
        hashes[d] = clips["clip_hash"].tolist()
        labels[d] = clips["y"].to_numpy().astype(np.int64)
        done += 1
        if progress:
            progress(done, total, f"features of {d}")

    sub: dict[str, dict] = {}
    sub_hashes: dict[str, list[str]] = {}
    n: dict[str, int] = {}
    k = len(names)
    auc: list[list[float | None]] = [[None] * k for _ in range(k)]
    p: list[list[float | None]] = [[None] * k for _ in range(k)]
    ci: list[list[list[float] | None]] = [[None] * k for _ in range(k)]
    shared = [[0] * k for _ in range(k)]
    for i, d in enumerate(names):
        idx = np.flatnonzero(labels[d] == flag)
        sub[d] = _rows(tables[d], idx)
        sub_hashes[d] = [hashes[d][j] for j in idx]
        n[d] = int(idx.size)
        y = labels[d]
        if min((y == 1).sum(), (y == 0).sum()) >= 2:
            cv = _own_auc({g: t.reset_index(drop=True) for g, t in tables[d].items()}, y, cfg)
            auc[i][i], p[i][i], ci[i][i] = cv.auc, cv.p_value, list(cv.ci)
        else:
            notes.append(f"{d}: fewer than 2 members or non-members, no own blind AUC")
        done += 1
        if progress:
            progress(done, total, f"{d}: members vs non-members")

    cells: list[dict] = []
    for i, a in enumerate(names):
        for j in range(i + 1, k):
            if cancelled():
                raise InterruptedError("cancelled")
            b = names[j]
            keep_a, keep_b, n_shared = _split_shared(sub_hashes[a], sub_hashes[b], _pair_seed(cfg.seed, a, b))
            shared[i][j] = shared[j][i] = n_shared
            cell = {"a": a, "b": b, "n_a": int(keep_a.size), "n_b": int(keep_b.size), "n_shared": n_shared, "auc": None, "p_value": None, "ci": None}
            if min(keep_a.size, keep_b.size) < 2:
                notes.append(f"{a} vs {b}: fewer than 2 distinct {status} clips on one side; no AUC")
            else:
                cv = _pair_auc(_rows(sub[a], keep_a), _rows(sub[b], keep_b), cfg)
                auc[i][j] = auc[j][i] = cv.auc
                p[i][j] = p[j][i] = cv.p_value
                ci[i][j] = ci[j][i] = list(cv.ci)
                cell.update(auc=cv.auc, p_value=cv.p_value, ci=list(cv.ci), ci_method=cv.ci_method, n_perm=cv.n_perm)
            if n_shared:
                notes.append(
                    f"{a} and {b} share {n_shared} {status} clips (identical content); each shared clip "
                    "was kept once, on a side drawn at random, so shared clips count as indistinguishable"
                )
            cells.append(cell)
            done += 1
            if progress:
                progress(done, total, f"{a} vs {b}")

    result = {
        "datasets": names,
        "status": status,
        "groups": list(cfg.groups),
        "auc": auc,
        "p_value": p,
        "ci": ci,
        "shared": shared,
        "n": n,
        "cells": cells,
        "notes": notes,
        "shared_policy": "each clip present in both subsets is kept once, on a side drawn at random (seeded)",
    }
    fps = {d: dataset_fingerprint(ws, d) for d in names}
    prov = {
        "dataset": "+".join(names),
        "datasets": fps,
        "dataset_fingerprint": hashlib.sha256(json.dumps(fps, sort_keys=True).encode()).hexdigest(),
        "clip_hashes": sorted({h for d in names for h in hashes[d]}),
        "model_fingerprint": None,
        "seed": cfg.seed,
        "versions": package_versions(),
        "platform": platform.platform(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": time.perf_counter() - t0,
    }
    run_id = ws.save_run("crossdata", dataset="+".join(names), target=None, config=cfg.to_dict(), result=result, provenance=prov)
    return run_id, result


def latest_crossdata(ws: Workspace, status: str | None = None) -> dict | None:
    """The newest stored "crossdata" run (of ``status`` when given), or None."""
    runs = ws.runs("crossdata")
    for run_id in runs["id"]:
        run = ws.load_run(run_id)
        if status is None or run["config"].get("status") == status:
            return run
    return None


@job_kind("crossdata")
def _crossdata_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """The cross-dataset blind matrix (params: datasets or None for all, config); returns the run id."""
    cfg = CrossDataConfig.from_dict(params.get("config", {}))
    run_id, _ = cross_dataset_matrix(
        ws, params.get("datasets"), status=cfg.status, groups=cfg.groups, n_splits=cfg.n_splits,
        seed=cfg.seed, progress=ctx.progress, cancelled=ctx.cancelled,
    )
    return run_id
