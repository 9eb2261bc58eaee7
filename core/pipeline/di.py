"""Dataset inference as an operation: a stored MIA run's indicators -> scorer -> Welch test.

The suspects P are the dataset's clips labelled member, the reference U its non-members.
The MIA run read is the one asked for, else the latest of the same (dataset, target) in the
asked text mode; its indicators are recomputed from the evidence cache (the model is not
run again), or read from the run's stored table when that evidence is no longer cached. The stored
result holds the verdict, the p-value curve over the number of suspects, the null check,
the per-clip scores the t-test used, and every caveat an auditor must quote beside it:
DI assumes P and U are drawn from the same distribution, so a blind baseline that tells
them apart without the model makes any verdict suspect.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from core.pipeline.common import Cancelled, Progress, provenance
from core.pipeline.di_inputs import (  # noqa: F401  (re-exported: the inputs were defined here)
    DIInputs, cached_indicators, di_inputs, indicator_inputs, mia_run_inputs, mia_run_inputs_both,
)
from core.runtime.jobs import JobContext, job_kind
from core.runtime.settings import Settings
from core.runtime.store import Workspace
from core.stages import DIRunConfig

NULL_CURVE_MIN_NONMEMBERS = 16
"""Fewest non-members for the null curve (pseudo-suspects drawn from half of them)."""


def blind_confound(ws: Workspace, dataset: str) -> tuple[float | None, str | None, str | None]:
    """The latest blind AUC of ``dataset``, its verdict level and, unless fair, the caveat
    (:func:`core.blind.verdict.blind_verdict`)."""
    from core.pipeline.common import current_run

    return confound_of(current_run(ws, "blind", dataset))


def confound_of(blind_run: dict | None, references: tuple[str, ...] = ()) -> tuple[float | None, str | None, str | None]:
    """A blind run's AUC, verdict level and, unless fair, the caveat a DI verdict carries
    (saying so when the indicators are calibrated against ``references``)."""
    from core.blind.verdict import verdict_of_run

    v = verdict_of_run(blind_run["result"]) if blind_run is not None else None
    if v is None:
        return None, None, None
    caveat = v.caveat("a rejection", references)
    if v.confounded:
        caveat = (f"{caveat}: dataset inference assumes the suspects and the non-members are drawn from the same "
                  "distribution (match the dataset on the Blind Baseline page first)")
    return v.auc, v.level, caveat


def _curve_rows(curve) -> list[dict[str, float | int | None]]:
    d = curve.to_dict()
    return [
        {"n": n, "p_median": m, "p_lo": lo, "p_hi": hi, "rejection_rate": r}
        for n, m, lo, hi, r in zip(d["n"], d["p_median"], d["p_lo"], d["p_hi"], d["rejection_rate"])
    ]


def _null_curve(
    U: NDArray[np.float64], directions: NDArray[np.float64], config: DIRunConfig, scorer_config=None,
    u_groups: tuple[str, ...] | None = None,
) -> dict[str, Any] | None:
    """p-value curve with pseudo-suspects drawn from the non-members (refitted per resample)."""
    from core.di import pvalue_curve

    n_u = U.shape[0]
    if n_u < NULL_CURVE_MIN_NONMEMBERS:
        return None
    perm = np.random.default_rng(config.seed + 1).permutation(n_u)
    half = n_u // 2
    curve = pvalue_curve(
        U[perm[:half]], U[perm[half:]], directions=directions, scorer=config.scorer,
        n_resamples=min(config.n_resamples, 100), alpha=config.alpha, seed=config.seed, refit=True, config=scorer_config,
        groups=None if u_groups is None else (np.asarray(u_groups)[perm[:half]], np.asarray(u_groups)[perm[half:]]),
    )
    return {"points": _curve_rows(curve), "min_suspects": curve.min_suspects, "n_pseudo_suspects": half}


def compare_scorers(
    P: NDArray[np.float64],
    U: NDArray[np.float64],
    *,
    directions: NDArray[np.float64] | None,
    scorers: tuple[str, ...] | None = None,
    alpha: float = 0.01,
    seed: int = 0,
    n_resamples: int = 200,
    null_resamples: int = 200,
    config=None,
    groups=None,
) -> list[dict[str, Any]]:
    """Run the DI test, its p-value curve and its null check with each scorer.

    Parameters
    ----------
    P : ``[n_p, d]`` suspect indicators; U : ``[n_u, d]`` non-member indicators.
    directions : ``[d]`` of +-1 (higher = member after alignment) or None.
    scorers : names to run; None = every registered scorer except ``auto`` (an alias).
    alpha, seed, n_resamples, null_resamples : as in :class:`DIRunConfig`.
    groups : per-clip group labels of P and of U (see :func:`core.di.dataset_inference`).

    Returns
    -------
    One dict per scorer: ``scorer``, ``p_value``, ``rejected``, ``min_suspects``,
    ``n_tested_suspects``, ``n_tested_nonmembers``, ``null_rejection_rate``,
    ``null_ci_low``, ``null_ci_high``, ``null_over_rejects``; ``error`` instead when the
    scorer cannot run on this data.
    """
    from core.di import dataset_inference, pvalue_curve, scorer_names

    names = scorers if scorers is not None else tuple(n for n in scorer_names() if n != "auto")
    rows = []
    for name in names:
        try:
            res = dataset_inference(P, U, directions=directions, scorer=name, alpha=alpha, seed=seed, null_resamples=null_resamples, config=config, groups=groups)
            curve = pvalue_curve(P, U, directions=directions, scorer=name, alpha=alpha, seed=seed, n_resamples=n_resamples, config=config, groups=groups)
        except ValueError as exc:
            rows.append({"scorer": name, "error": str(exc)})
            continue
        nc = res.null_check
        rows.append({
            "scorer": name,
            "p_value": float(res.p_value),
            "rejected": res.rejected,
            "min_suspects": curve.min_suspects,
            "n_tested_suspects": res.n_tested_suspects,
            "n_tested_nonmembers": res.n_tested_nonmembers,
            "null_rejection_rate": None if nc is None else nc.rate,
            "null_ci_low": None if nc is None else nc.interval[0],
            "null_ci_high": None if nc is None else nc.interval[1],
            "null_over_rejects": None if nc is None else nc.over_rejects,
        })
    return rows


def headline(result: dict[str, Any]) -> str:
    """One sentence: the outcome, its p-value and how many suspects it needs."""
    from core.stats import p_clause

    p, a = result["p_value"], result["alpha"]
    n = result["n_tested_suspects"]
    if result["rejected"]:
        need = result.get("min_suspects")
        tail = f"; about {need} suspects suffice (median p-value below alpha from there)" if need else ""
        return f"Evidence that the suspect set was used in training: {p_clause(p)} < alpha = {a:g} with {n} suspects tested{tail}."
    return (
        f"No evidence that the suspect set was used in training: {p_clause(p)} >= alpha = {a:g} with {n} suspects tested; "
        "this does not show that it was not used (the test may lack power)."
    )


def _options_key(options: Any) -> tuple[tuple[str, str], ...]:
    """Loader options (pairs, or the mapping a stored run's config holds) as a comparable key."""
    pairs = options.items() if isinstance(options, dict) else (options or ())
    return tuple(sorted((str(k), json.dumps(v, sort_keys=True)) for k, v in pairs))


def latest_mia(ws: Workspace, dataset: str, target: str, mode: str | None = None,
               references: tuple[str, ...] | None = None, access: str | None = None,
               options: Any = None, cross_fit: bool | None = None) -> dict | None:
    """The newest MIA run of (dataset, target) that scored the dataset as it is now (same
    clips and labels) and, when ``mode`` is given, with that text mode, when
    ``references`` is given, calibrated against exactly those reference models (``()``:
    uncalibrated), when ``access`` is given, at that access level, and when ``options``
    is given (pairs or a mapping), loaded with exactly those loader options, and when
    ``cross_fit`` is given, cross-fitted or not (:attr:`core.stages.MIAConfig.cross_fit`);
    None when none does."""
    from core.pipeline.common import current_run

    def where(cfg: dict) -> bool:
        return ((mode is None or cfg.get("mode", "generated") == mode)
                and (references is None or tuple(cfg.get("references") or ()) == tuple(references))
                and (access is None or cfg.get("access", "white-box") == access)
                and (options is None or _options_key(cfg.get("target_options")) == _options_key(options))
                and (cross_fit is None or bool(cfg.get("cross_fit", False)) == cross_fit))

    return current_run(ws, "mia", dataset, target, where=where)


def _mia_run_for(ws: Workspace, dataset: str, target: str, config: "DIRunConfig") -> dict | None:
    """The MIA run dataset inference reads: the one named in ``config.mia_run`` (checked
    to belong to this dataset and target), else :func:`latest_mia` in ``config.mia_mode``
    with ``config.references``."""
    if not config.mia_run:
        return latest_mia(ws, dataset, target, config.mia_mode, config.references, config.mia_access,
                          config.target_options or None, cross_fit=config.cross_fit)
    try:
        run = ws.load_run(config.mia_run)
    except KeyError:
        raise ValueError(f"no run {config.mia_run!r}") from None
    if run["kind"] != "mia" or run["dataset"] != dataset or run["target"] != target:
        raise ValueError(f"run {config.mia_run!r} is not an MIA run of {target} on {dataset}")
    return run


def audit_di(
    ws: Workspace,
    dataset: str,
    target,
    config: DIRunConfig = DIRunConfig(),
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
    targets=None,
) -> tuple[str, dict]:
    """Dataset inference of ``target`` on ``dataset``; stores and returns the run.

    Reads the MIA run named in ``config.mia_run``, else the newest one of (dataset,
    target) in ``config.mia_mode`` made on the dataset as it is now; runs
    :func:`core.pipeline.mia.audit_mia` first when there is none. The run read is recorded
    (``mia_run``, its mode), so a re-run upstream never silently changes this one.
    """
    from core.di import dataset_inference, pvalue_curve

    t0 = time.perf_counter()
    target_ref, target = target, getattr(target, "spec", target)  # a spec or its TargetRef; runs are found by spec
    mia_run = _mia_run_for(ws, dataset, target, config)
    if mia_run is None:
        from core.pipeline.common import check_labels

        check_labels(ws, dataset)
        from core.pipeline.mia import MIAConfig, audit_mia

        mia_id, _ = audit_mia(ws, dataset, target_ref, MIAConfig(mode=config.mia_mode, seed=config.seed, references=config.references,
                                                              access=config.mia_access, target_options=config.target_options,
                                                              cross_fit=config.cross_fit),
                              settings=settings, progress=progress, cancelled=cancelled, targets=targets)
        mia_run = ws.load_run(mia_id)
    step = lambda i, msg: progress(i, 4, msg) if progress else None  # noqa: E731
    if cancelled():
        raise InterruptedError("cancelled")
    step(0, "dataset inference: Welch test and null check")
    (cal_inp, uncal_inp), source = mia_run_inputs_both(ws, mia_run, settings=settings)
    inp = cal_inp if cal_inp is not None else uncal_inp
    references = tuple(mia_run["config"].get("references") or ()) if cal_inp is not None else ()
    scfg = inp.scorer_config()
    res = dataset_inference(
        inp.P, inp.U, directions=inp.directions, scorer=config.scorer, alpha=config.alpha,
        seed=config.seed, null_resamples=config.null_resamples, config=scfg, groups=inp.groups,
    )
    if cancelled():
        raise InterruptedError("cancelled")
    step(1, "dataset inference: p-value curve")
    curve = pvalue_curve(
        inp.P, inp.U, directions=inp.directions, scorer=config.scorer, alpha=config.alpha,
        seed=config.seed, n_resamples=config.n_resamples, refit=config.refit, config=scfg, groups=inp.groups,
    )
    paper = pvalue_curve(
        inp.P, inp.U, directions=inp.directions, scorer=config.scorer, alpha=config.alpha,
        seed=config.seed, n_resamples=config.n_resamples, refit=config.refit, config=scfg, equal_nonmembers=True,
        groups=inp.groups,
    )
    spread = _over_splits(inp, config, curve)
    step(2, "dataset inference: null curve")
    null_curve = _null_curve(inp.U, inp.directions, config, scfg, None if inp.groups is None else inp.groups[1])

    from core.pipeline.common import current_run

    blind_run = current_run(ws, "blind", dataset)
    refs = {"mia": mia_run["id"]} | ({"blind": blind_run["id"]} if blind_run is not None else {})
    blind_auc, blind_level, confound = confound_of(blind_run, references)
    extra = list(inp.notes)
    if source != "evidence cache" and mia_run["provenance"].get("model_fingerprint"):
        extra.append("the MIA run's evidence is no longer cached: its stored indicators were read, not recomputed")
    if curve.min_suspects is None:
        extra.append(
            f"even all {curve.n.max()} tested suspects do not keep the median p-value below alpha = {config.alpha:g}: "
            "more suspects (or a stronger indicator) are needed for a reliable verdict"
        )
    failed = list(mia_run["result"].get("failed_clips") or [])
    if failed:
        from core.pipeline.evidence import failed_clips_warning

        extra.append(failed_clips_warning(failed))
    wrong = (mia_run["result"].get("transcript_check") or {}).get("warning")
    first = tuple(w for w in (confound, wrong) if w)  # the caveats that can overturn the verdict come first
    res = dataclasses.replace(res, warnings=first + res.warnings + tuple(extra))
    out = res.to_dict()
    out["which"] = which_of(res, config, [inp.p_clips[i] for i in res.p_index], blind_level)
    nc = res.null_check
    out.update({
        "min_suspects": curve.min_suspects,
        "min_suspects_equal": paper.min_suspects,
        "min_suspects_equal_max": int(paper.n.max()),
        **({"needed_over_splits": spread} if spread is not None else {}),
        "evidence": inp.evidence,
        "grouping": inp.grouping,
        "null_rejection_rate": None if nc is None else nc.rate,
        "null_ci": None if nc is None else list(nc.interval),
        "curve": _curve_rows(curve),
        "curve_info": {k: v for k, v in curve.to_dict().items() if k not in ("n", "p_median", "p_lo", "p_hi", "rejection_rate")},
        "null_curve": null_curve,
        "headline": headline(out | {"min_suspects": curve.min_suspects}),
        "confounded": blind_level == "confounded",
        "blind_verdict": blind_level,
        "blind_auc": blind_auc,
        "mia_run": mia_run["id"],
        "mia_mode": mia_run["config"].get("mode", "generated"),
        "access": mia_run["config"].get("access", "white-box"),
        "mia_pia": bool(mia_run["config"].get("pia", False)),
        "failed_clips": failed,
        **{k: mia_run["result"][k] for k in ("language", "transcript_check", "excluded_clips") if k in mia_run["result"]},
        "mia_auc": mia_run["result"].get("auc"),
        "indicator_source": source,
        "indicators": list(inp.keys),
        "directions": inp.directions.astype(int).tolist(),
        "p_clips": [inp.p_clips[i] for i in res.p_index],
        "u_clips": [inp.u_clips[i] for i in res.u_index],
    })
    if config.compare:
        if cancelled():
            raise InterruptedError("cancelled")
        step(3, "dataset inference: comparing scorers")
        out["comparison"] = compare_scorers(
            inp.P, inp.U, directions=inp.directions, alpha=config.alpha, seed=config.seed,
            n_resamples=config.n_resamples, null_resamples=config.null_resamples, config=scfg, groups=inp.groups,
        )
    if cal_inp is not None:
        if cancelled():
            raise InterruptedError("cancelled")
        out["uncalibrated"] = uncalibrated_di(uncal_inp, config)
        from core.mia.calibration import suspects_gain

        out["calibration"] = {
            "references": list(references),
            "reference_fingerprints": dict(mia_run["provenance"].get("reference_fingerprints") or {}),
            "gain": {"suspects_factor": suspects_gain(curve.min_suspects, out["uncalibrated"]["min_suspects"]),
                     "mia_auc": _minus(mia_run["result"].get("auc"), (mia_run["result"].get("uncalibrated") or {}).get("auc"))},
        }
        if (mia_run["result"].get("calibration") or {}).get("cross_fit"):
            out["calibration"]["cross_fit"] = mia_run["result"]["calibration"]["cross_fit"]
        if "needed_over_splits" in out or "needed_over_splits" in out["uncalibrated"]:  # a side's number is one split's draw
            out["calibration"]["gain"]["suspects_factor_over_splits"] = suspects_gain(typical_needed(out),
                                                                                      typical_needed(out["uncalibrated"]))
    step(4, "dataset inference: done")
    prov = provenance(ws, dataset, target_fingerprint=mia_run["provenance"].get("model_fingerprint"), seed=config.seed, seconds=time.perf_counter() - t0)
    prov["mia_run"] = mia_run["id"]
    if references:
        prov["reference_fingerprints"] = dict(mia_run["provenance"].get("reference_fingerprints") or {})
    run_id = ws.save_run("di", dataset=dataset, target=target, config=config.to_dict(), result=stored_result(out), provenance=prov,
                         refs=refs, tables={"clips": di_table(out)})
    return run_id, out


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(a) - float(b)


def uncalibrated_di(inp: DIInputs, config: DIRunConfig) -> dict[str, Any]:
    """The same test on the uncalibrated indicators of a calibrated run, for the side by
    side: p-value, verdict, suspects needed (and over redrawn splits), null check, the
    p-value curve."""
    from core.di import dataset_inference, pvalue_curve

    scfg = inp.scorer_config()
    res = dataset_inference(inp.P, inp.U, directions=inp.directions, scorer=config.scorer, alpha=config.alpha, seed=config.seed,
                            null_resamples=config.null_resamples, config=scfg, groups=inp.groups)
    curve = pvalue_curve(inp.P, inp.U, directions=inp.directions, scorer=config.scorer, alpha=config.alpha, seed=config.seed,
                         n_resamples=config.n_resamples, refit=config.refit, config=scfg, groups=inp.groups)
    nc = res.null_check
    spread = _over_splits(inp, config, curve)
    return {"p_value": float(res.p_value), "rejected": bool(res.rejected), "min_suspects": curve.min_suspects,
            "n_tested_suspects": res.n_tested_suspects, "scorer": res.scorer,
            "null_rejection_rate": None if nc is None else nc.rate, "curve": _curve_rows(curve),
            **({"needed_over_splits": spread} if spread is not None else {})}


def _over_splits(inp: DIInputs, config: DIRunConfig, curve: Any) -> dict[str, Any] | None:
    """The spread of a test's "suspects needed" over redrawn fit/test splits
    (:func:`core.di.curve.needed_over_splits`), ``curve`` (the run's own, drawn with
    ``config.seed``) its first; None for a split-free scorer, and for a refit curve, whose
    band has that spread already."""
    from core.di import needed_over_splits

    if config.refit:
        return None
    return needed_over_splits(inp.P, inp.U, directions=inp.directions, scorer=config.scorer, alpha=config.alpha,
                              seed=config.seed, n_resamples=config.n_resamples, config=inp.scorer_config(), groups=inp.groups,
                              first=curve)


def typical_needed(result: dict[str, Any]) -> int | None:
    """The suspects needed a DI result would typically show: the median over redrawn splits
    when its scorer draws one, else its one number."""
    spread = result.get("needed_over_splits")
    return spread["median"] if spread else result.get("min_suspects")


CLIP_FIELDS = ("p_clips", "u_clips", "p_scores", "u_scores", "p_index", "u_index", "p_group", "u_group")
"""Per-clip fields of a DI result: stored as the run's ``clips`` table, not in its record."""


def stored_result(out: dict[str, Any]) -> dict[str, Any]:
    """A DI result without its per-clip fields (those go to :func:`di_table`)."""
    stored = {k: v for k, v in out.items() if k not in CLIP_FIELDS}
    if "which" in stored:
        stored["which"] = {k: v for k, v in stored["which"].items() if k != "clips"}
    return stored


def which_of(res, config: DIRunConfig, clips: list[str], blind_level: str | None) -> dict[str, Any]:
    """Which suspects were used and how many (:func:`core.di.which.which_and_how_much`):
    per tested suspect (``clips``, in the result's order) its conformal p-value, BH q-value
    and flag; the share bounds, the plan and the sentence, with the blind verdict beside
    them when it is not "fair" (a P/U shift inflates these numbers like everything else)."""
    from core.di.which import which_and_how_much

    w = which_and_how_much(res, q=config.fdr, seed=config.seed, plan_nonmembers=config.plan_nonmembers).to_dict()
    flags = w["flags"]
    w["clips"] = {"clip_hash": clips, "p": flags.pop("p"), "q": flags.pop("q_values"), "flagged": flags.pop("flagged")}
    flags.pop("index")
    w["flagged_clips"] = [h for h, f in zip(clips, w["clips"]["flagged"]) if f]
    if blind_level not in (None, "fair"):
        w["caveat"] = (f"the blind baseline reads '{blind_level}': a difference between suspects and non-members that is not "
                       "training inflates these numbers too")
    return w


def di_table(out: dict[str, Any]) -> pd.DataFrame:
    """The clips the t-test compared, suspects then non-members: ``side`` (P / U), their
    ``score``, ``fold`` (which fitted scorer scored them) and ``row`` (input row); the
    suspects' conformal ``p``, BH ``q`` and ``flagged`` (NaN / False for non-members)."""
    parts = []
    for side in ("p", "u"):
        parts.append(pd.DataFrame({
            "side": side.upper(),
            "score": np.array([np.nan if v is None else v for v in out[f"{side}_scores"]], dtype=np.float64),
            "fold": np.asarray(out[f"{side}_group"], dtype=np.int64),
            "row": np.asarray(out[f"{side}_index"], dtype=np.int64),
        }, index=pd.Index(out[f"{side}_clips"], name="clip_hash")))
    which = (out.get("which") or {}).get("clips")
    if which is not None:
        parts[0] = parts[0].assign(p=np.asarray(which["p"], dtype=np.float64), q=np.asarray(which["q"], dtype=np.float64),
                                   flagged=np.asarray(which["flagged"], dtype=bool))
        parts[1] = parts[1].assign(p=np.nan, q=np.nan, flagged=False)
    return pd.concat(parts)


def di_scores(ws: Workspace, run: dict) -> tuple[list[float | None], list[float | None]]:
    """The suspects' and the non-members' scores a DI run's t-test compared."""
    df = ws.run_table(run, "clips")
    side = {s: df.loc[df["side"] == s, "score"].astype(float) for s in ("P", "U")}
    return ([None if not np.isfinite(v) else float(v) for v in side["P"]],
            [None if not np.isfinite(v) else float(v) for v in side["U"]])


@job_kind("di")
def _di_job(ws: Workspace, params: dict, ctx: JobContext) -> str:
    """A dataset-inference run over a dataset's MIA run (params: dataset, target, config); returns the run id."""
    run_id, _ = audit_di(ws, params["dataset"], params["target"], DIRunConfig.from_dict(params.get("config", {})), progress=ctx.progress, cancelled=ctx.cancelled)
    return run_id
