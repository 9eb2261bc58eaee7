"""The inputs of dataset inference: a stored MIA run's indicators as suspect and
non-member matrices (:class:`DIInputs`), recomputed from the evidence cache when the
run's evidence is still there (the model is not run again), else read from the run's
stored table; a calibrated run gives its calibrated and its uncalibrated inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from core.runtime.settings import Settings
from core.runtime.store import Workspace


@dataclass(frozen=True)
class DIInputs:
    """Suspect and non-member indicator matrices taken from an MIA run.

    Attributes
    ----------
    P : ``[n_p, d]`` indicators of the member-labelled clips (suspects).
    U : ``[n_u, d]`` indicators of the non-member clips.
    directions : ``[d]`` +1 where higher = member, -1 where lower = member.
    keys : ``d`` indicator keys (columns kept).
    p_clips, u_clips : clip hashes of the rows of P and U.
    notes : what was dropped or filled in.
    evidence : the indicators' evidence kind, when they share one.
    groups : per-row group labels of P and of U (the MIA run's grouping), or None.
    grouping : what the groups are (``speaker``, ``source``) or ``none``.
    """

    P: NDArray[np.float64]
    U: NDArray[np.float64]
    directions: NDArray[np.float64]
    keys: tuple[str, ...]
    p_clips: tuple[str, ...]
    u_clips: tuple[str, ...]
    notes: tuple[str, ...]
    evidence: str | None = None
    groups: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    grouping: str = "none"

    def scorer_config(self):
        """Scorer options for these indicators (``auto`` then follows their evidence kind)."""
        from core.di import ScorerConfig

        return ScorerConfig(evidence=self.evidence, keys=self.keys)


def di_inputs(mia_result: dict[str, Any]) -> DIInputs:
    """Split an MIA result's indicator table (as JSON, the form a run stored before
    per-clip tables) into suspects and non-members; see :func:`indicator_inputs`.

    Parameters
    ----------
    mia_result : the ``result`` of an ``mia`` run: ``table`` (key -> values in
        ``clip_order``), ``labels`` (clip hash -> 1 member / 0 non-member), ``clip_order``,
        optionally ``clip_groups`` (per clip in ``clip_order``).

    Returns
    -------
    DIInputs
    """
    order = list(mia_result["clip_order"])
    for key, values in mia_result["table"].items():
        if len(values) != len(order):
            raise ValueError(f"indicator {key!r} has {len(values)} values for {len(order)} clips")
    table = pd.DataFrame({k: np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
                          for k, vals in mia_result["table"].items()}, index=pd.Index(order, name="clip_hash"))
    labels = np.array([int(mia_result["labels"][h]) for h in order])
    stored = mia_result.get("clip_groups")
    groups = [str(v) for v in stored] if stored is not None and len(stored) == len(order) else None
    return indicator_inputs(table, labels, groups, str(mia_result.get("config", {}).get("grouping", "group")))


def indicator_inputs(table: pd.DataFrame, labels: NDArray[np.int64], groups: list[str] | None = None,
                     grouping: str = "group") -> DIInputs:
    """Split an indicator table into suspects (label 1) and non-members (label 0).

    Columns with no finite value are dropped. Remaining non-finite cells are filled from
    the pooled (P and U together, labels unused) finite values of their column: NaN by the
    median, +-Inf by the maximum / minimum. Label-free filling keeps P and U exchangeable
    under the null hypothesis, which the test needs.

    Parameters
    ----------
    table : ``[n, d]`` indicators indexed by clip hash (columns: indicator keys).
    labels : ``[n]`` 1 member / 0 non-member, in the rows' order.
    groups : ``[n]`` the MIA run's cross-validation groups, or None (ungrouped).
    grouping : what the groups are (``speaker``, ``source``).

    Returns
    -------
    DIInputs
    """
    from core.mia.registry import direction, family_of, get_family

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(table):
        raise ValueError(f"{len(labels)} labels for {len(table)} clips")
    keys, cols, notes = [], [], []
    dropped = []
    for key in table.columns:
        col = table[key].to_numpy(dtype=np.float64)
        finite = np.isfinite(col)
        if not finite.any():
            dropped.append(str(key))
            continue
        if not finite.all():
            good = col[finite]
            col = col.copy()
            col[np.isnan(col)] = np.median(good)
            col[np.isposinf(col)] = good.max()
            col[np.isneginf(col)] = good.min()
            notes.append(f"{key}: {int((~finite).sum())} non-finite value(s) filled from the pooled clips")
        keys.append(str(key))
        cols.append(col)
    if dropped:
        notes.insert(0, f"dropped {len(dropped)} indicator(s) with no finite value: {', '.join(dropped)}")
    if not keys:
        raise ValueError("the MIA run has no indicator with a finite value")
    X = np.column_stack(cols)
    hashes = np.array(list(table.index), dtype=object)
    kinds = {get_family(family_of(k)).evidence for k in keys}
    split, name = None, "none"
    if groups is not None:
        g = np.array([str(v) for v in groups], dtype=object)
        split, name = (tuple(g[labels == 1]), tuple(g[labels == 0])), grouping
    return DIInputs(
        P=X[labels == 1],
        U=X[labels == 0],
        directions=np.array([direction(k) for k in keys], dtype=np.float64),
        keys=tuple(keys),
        p_clips=tuple(hashes[labels == 1]),
        u_clips=tuple(hashes[labels == 0]),
        notes=tuple(notes),
        evidence=kinds.pop() if len(kinds) == 1 else None,
        groups=split,
        grouping=name,
    )


def cached_indicators(ws: Workspace, mia_run: dict, clip_order: list[str], *, settings: Settings | None = None) -> pd.DataFrame | None:
    """The MIA run's indicators recomputed from the evidence cache, for the run's own
    evidence configuration (its text mode, infilling, timesteps) and model fingerprint;
    None when any clip's evidence is not cached (cleared since, or a run without a model).
    A run calibrated against reference models also gets its calibrated columns, from the
    references' cached evidence (their fingerprints are in the run's provenance).

    Indicators are cheap functions of the cached evidence, so dataset inference uses the
    current indicator code rather than the numbers the MIA run stored; no model is loaded.
    """
    from core.mia.aggregate import indicator_table
    from core.pipeline.mia import MIAConfig
    from core.runtime.cache import EvidenceCache, evidence_key

    fp = mia_run["provenance"].get("model_fingerprint")
    if not fp:
        return None
    try:
        cfg = MIAConfig.from_dict(mia_run["config"])
    except (TypeError, ValueError):
        return None
    settings = settings or Settings.from_env(ws.root)
    # the key the run's evidence was cached under (a run made before evidence keys were
    # recorded: the full config's key, which every earlier version wrote)
    cache = EvidenceCache(ws.cache_dir)
    cfg_key = mia_run["provenance"].get("evidence_key") or cfg.evidence_config().cache_key()

    def evidence_of(model_fp: str, keys: list[str], key_cfg: dict) -> list | None:
        evidence = [cache.get(model_fp, evidence_key(model_fp, k, key_cfg, settings.analysis_sr)) for k in keys]
        return None if not evidence or any(ev is None for ev in evidence) else evidence

    target_evidence = evidence_of(fp, clip_order, cfg_key)
    if target_evidence is None:
        return None
    table = indicator_table(target_evidence).reindex(clip_order)
    if not cfg.references:
        return table
    from core.pipeline.mia import ScoredText, target_texts_of

    ref_fps = mia_run["provenance"].get("reference_fingerprints") or {}
    ref_keys = mia_run["provenance"].get("reference_evidence_keys") or {}
    keys, ref_cfg = clip_order, cfg.evidence_config().cache_key()
    from core.targets.registry import family_of

    family = mia_run["provenance"].get("target_family") or family_of(mia_run["target"])  # recorded since target refs
    texts = target_texts_of(family, cfg, target_evidence)
    if texts is not None:  # the references scored the target's own output (see reference_indicators)
        scored = ScoredText(tuple(texts.items()), ())
        keys, ref_cfg = [scored.key(h) for h in clip_order], dict(ref_cfg, mode="given", variant=scored.name)
    refs = [evidence_of(ref_fps[spec], keys, ref_keys.get(spec) or ref_cfg) if spec in ref_fps else None for spec in cfg.references]
    if any(r is None for r in refs):
        return None
    ref_tables = [indicator_table(r).set_axis(pd.Index(clip_order, name="clip_hash")) for r in refs if r is not None]
    from core.mia.calibration import calibrated_table, resolve_calibrations

    names = resolve_calibrations(cfg.calibrations, len(ref_tables))
    return pd.concat([table, calibrated_table(table, ref_tables, names=names)], axis=1)


def mia_run_inputs(ws: Workspace, mia_run: dict, *, settings: Settings | None = None,
                   calibrated: bool = True) -> tuple[DIInputs, str]:
    """DI inputs of an MIA run: labels and groups from its ``clips`` table, indicators
    recomputed from the evidence cache (:func:`cached_indicators`), else read from its
    stored ``indicators`` table. Returns the inputs and where the indicators came from
    (``evidence cache`` or ``stored MIA table``).

    A run calibrated against reference models gives its calibrated indicators, or with
    ``calibrated=False`` its uncalibrated ones (the side-by-side comparison)."""
    both, source = mia_run_inputs_both(ws, mia_run, settings=settings)
    cal, uncal = both
    return (cal if calibrated and cal is not None else uncal), source


def mia_run_inputs_both(ws: Workspace, mia_run: dict, *, settings: Settings | None = None
                        ) -> tuple[tuple[DIInputs | None, DIInputs], str]:
    """(calibrated inputs or None without references, uncalibrated inputs) of an MIA run,
    and where the indicators came from; see :func:`mia_run_inputs`."""
    from core.mia.calibration import split_columns
    from core.pipeline.mia import mia_scores

    clips = mia_scores(ws, mia_run)
    order = list(clips.index)
    table = cached_indicators(ws, mia_run, order, settings=settings)
    source = "evidence cache"
    if table is None:
        table, source = ws.run_table(mia_run, "indicators").reindex(order), "stored MIA table"
    groups = clips["group"].tolist() if "group" in clips and clips["group"].notna().all() else None
    grouping = str(mia_run["result"].get("config", {}).get("grouping", "group"))
    labels = clips["label"].to_numpy(dtype=np.int64)
    uncal, cal = split_columns(table)
    cal_inputs = indicator_inputs(cal, labels, groups, grouping) if cal.shape[1] else None
    return (cal_inputs, indicator_inputs(uncal, labels, groups, grouping)), source
