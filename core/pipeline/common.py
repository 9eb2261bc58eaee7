"""Shared pieces of the operations: provenance, the demo loader, targets and evidence."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import pandas as pd

from core import __version__
from core.data.ingest import IngestReport, clips_fingerprint, ingest_path
from core.runtime.settings import GROUPINGS, Settings
from core.runtime.store import Workspace
from core.targets.zoo.registry import assets_dir

DEMO_DATASETS = ("demo-speech", "demo-speech-shifted", "demo-sounds")
_VERSIONED = ("numpy", "scipy", "scikit-learn", "torch", "transformers", "diffusers", "librosa", "soundfile", "pandas", "streamlit", "plotly")

Progress = Callable[[int, int, str], None]


def package_versions() -> dict[str, str]:
    out = {"overheard": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(ws: Workspace, dataset: str, *, target_fingerprint: str | None = None, seed: int | None = None, seconds: float | None = None) -> dict:
    """What another auditor needs to reproduce a run."""
    clips = ws.analysis_clips(dataset)
    return {
        "dataset": dataset,
        "dataset_fingerprint": clips_fingerprint(clips),
        "clip_hashes": clips["clip_hash"].tolist(),
        "model_fingerprint": target_fingerprint,
        "seed": seed,
        "versions": package_versions(),
        "platform": platform.platform(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": seconds,
    }


def current_run(ws: Workspace, kind: str, dataset: str, target: str | None = None, *, where: Callable[[dict], bool] | None = None) -> dict | None:
    """The newest run of ``kind`` on ``dataset`` (and ``target``) made on the dataset as it
    is now (same clips and labels: a replaced dataset's older runs never feed a new one),
    and whose configuration satisfies ``where(config)``. Only the chosen run is loaded."""
    from core.data.ingest import dataset_fingerprint

    sql = ("SELECT id, config FROM runs WHERE kind=? AND dataset=? AND json_extract(provenance, '$.dataset_fingerprint')=?"
           + (" AND target=?" if target is not None else "") + " ORDER BY created DESC")
    params = (kind, dataset, dataset_fingerprint(ws, dataset)) + ((target,) if target is not None else ())
    for run_id, config in ws.query(sql, params).itertuples(index=False):
        if where is None or where(json.loads(config or "{}")):
            return ws.load_run(run_id)
    return None


def load_demo(ws: Workspace, *, progress: Progress | None = None, names: tuple[str, ...] = DEMO_DATASETS) -> dict[str, IngestReport | None]:
    """Ingest the bundled demo datasets that the workspace does not have yet."""
    have = set(ws.datasets().query("status == 'ready'")["name"])
    out: dict[str, IngestReport | None] = {}
    for name in names:
        folder = assets_dir() / "demo" / name
        if name in have:
            out[name] = None
            continue
        if not folder.exists():
            raise FileNotFoundError(f"demo dataset folder {folder} is missing; run `overheard demo build-corpus`")
        out[name] = ingest_path(ws, folder, name, progress=progress)
    return out


def demo_root() -> Path:
    return assets_dir() / "demo"


def clip_grouping(clips: pd.DataFrame, grouping: str = "auto") -> tuple[list[str] | None, str]:
    """The per-clip groups that cross-validation keeps together, and their name.

    ``auto``: the speaker when at least two clips name different speakers, else the source
    when at least two sources are named, else none. ``speaker`` / ``source`` force one;
    ``none`` turns grouping off.
    """
    if grouping not in GROUPINGS:
        raise ValueError(f"unknown grouping {grouping!r}; valid: {', '.join(GROUPINGS)}")
    if grouping == "none":
        return None, "none"
    for col in (("speaker", "source") if grouping == "auto" else (grouping,)):
        if col in clips:
            vals = clips[col].fillna("").astype(str).str.strip()
            if vals[vals != ""].nunique() >= 2:
                return vals.tolist(), col
    return None, "none"


# -- targets and evidence -------------------------------------------------------------------

Cancelled = Callable[[], bool]


_TARGETS: dict[tuple, object] = {}


def get_target(spec: str, device: str | None = None, options: dict | None = None):
    """Load a target once per process (the worker and the CLI reuse it across calls).

    ``options`` are passed to the target's loader (e.g. ``prompt``, ``batch_size``,
    ``trust_remote_code``); they are part of the reuse key.
    """
    from core.targets import load_target

    options = dict(options or {})
    key = (spec, device, json.dumps(options, sort_keys=True, default=str))
    if key not in _TARGETS:
        for old in list(_TARGETS):
            _TARGETS.pop(old).unload()
        _TARGETS[key] = load_target(spec, device=None if device in (None, "auto") else device, **options)
    return _TARGETS[key]


def stored_clips(ws: Workspace, rows: pd.DataFrame) -> list[tuple[str, bytes, str]]:
    """``(clip_hash, stored bytes, text)`` of each row of an analysis-clips table."""
    return [(h, ws.read_audio(h), t or "") for h, t in zip(rows["clip_hash"], rows["text"])]


def clip_inputs(items: list[tuple[str, bytes, str]], sr: int, limits, variant=None) -> list:
    """Decode stored clips to the analysis rate and apply ``variant`` (rendered as a batch):
    the :class:`ClipInput` list a target scores. Used locally and on Ray workers alike."""
    from core.data.audio import load_analysis
    from core.targets.base import ClipInput

    hashes, texts = [h for h, _, _ in items], [t for _, _, t in items]
    audios = [load_analysis(data, sr, limits=limits) for _, data, _ in items]
    if variant is not None:
        audios = variant.render_many(audios, texts, sr, hashes)
    return [ClipInput(h, a, t, sr) for h, a, t in zip(hashes, audios, texts)]


MAX_FAILURES_BEFORE_ANY_SUCCESS = 8
"""Clips that may fail one by one before the run stops: when that many fail and none has
been scored, the cause is the target or the setup, not the clips."""


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def score_isolated(items: list[tuple[str, bytes, str]], score: Callable[[list], list]) -> list:
    """``score(items)`` for a batch; when the batch raises, each clip is scored alone, and a
    clip that fails alone gets the reason (a string) in place of its evidence, so one bad
    clip never sinks the others. Cancellation is never swallowed."""
    try:
        return list(score(items))
    except (InterruptedError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - retried clip by clip below
        if len(items) == 1:
            return [_reason(exc)]
    out: list = []
    for item in items:
        try:
            out.extend(score([item]))
        except (InterruptedError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as this clip's failure
            out.append(_reason(exc))
    return out


class EvidenceFailed(ValueError):
    """Every clip tried so far failed: the target or the setup is broken (with the reason)."""


def extract_evidence(
    ws: Workspace,
    dataset: str,
    target_spec: str,
    config,
    *,
    settings: Settings | None = None,
    clips: pd.DataFrame | None = None,
    variant=None,
    progress: Progress | None = None,
    cancelled: Cancelled = lambda: False,
    on_inputs=None,
):
    """Evidence for every analysed clip of ``dataset`` through the cache.

    ``variant`` (optional, a :class:`core.disentangle.Variant`) replaces each clip's audio
    before scoring; its evidence is cached under the variant's own key. ``on_inputs``
    (optional) sees each computed batch's :class:`ClipInput` list (the rendered variant
    audio) on the local executor, e.g. to score its consistency without rendering twice.

    A clip that cannot be scored (a decoding error, a model failure on that clip alone)
    is left out and listed with its reason; the others are analysed. When the first
    ``MAX_FAILURES_BEFORE_ANY_SUCCESS`` clips all fail, :class:`EvidenceFailed` is raised.

    Returns (clips table of the scored clips, their evidence, target fingerprint, number
    computed, failed clips ``[{"clip_hash", "path", "reason"}]``).
    """
    from core.runtime.cache import EvidenceCache, cached_evidence

    settings = settings or Settings.from_env(ws.root)
    clips = ws.analysis_clips(dataset) if clips is None else clips
    ev_cfg = config.evidence_config()
    sr = settings.analysis_sr
    keys = clips["clip_hash"].tolist()
    cfg_key = ev_cfg.to_dict()
    if variant is not None:
        keys = [variant.key(h) for h in keys]
        cfg_key = dict(cfg_key, variant=variant.name)
    report = (lambda d, t: progress(d, t, f"evidence {target_spec}")) if progress else None
    failures: dict[int, str] = {}
    if settings.executor == "ray":
        evidence, fp, computed = _extract_on_ray(ws, clips, keys, cfg_key, target_spec, config, ev_cfg, settings,
                                                 variant=variant, progress=report, cancelled=cancelled, failures=failures)
    elif settings.executor != "local":
        raise ValueError(f"unknown executor {settings.executor!r}; valid: local, ray")
    else:
        target = get_target(target_spec, settings.device, config.loader_options())
        ok = [0]

        def score(items: list[tuple[str, bytes, str]]):
            xs = clip_inputs(items, sr, settings.limits, variant)
            if on_inputs is not None:
                on_inputs(xs)
            return target.evidence(xs, ev_cfg, batch_size=config.batch_size)

        def compute(idx: list[int]):
            out = score_isolated(stored_clips(ws, clips.iloc[idx]), score)
            ok[0] += sum(not isinstance(e, str) for e in out)
            bad = [e for e in out if isinstance(e, str)]
            if bad and ok[0] == 0 and len(failures) + len(bad) >= min(MAX_FAILURES_BEFORE_ANY_SUCCESS, len(keys)):
                raise EvidenceFailed(f"{target_spec}: every clip tried failed ({_reason_tally(list(failures.values()) + bad)})")
            return out

        fp = target.fingerprint
        evidence, computed = cached_evidence(
            EvidenceCache(ws.cache_dir), fp, keys, cfg_key, sr, compute,
            batch_size=config.batch_size, progress=report, cancelled=cancelled, failures=failures,
        )
    return _split_failures(clips, evidence, fp, computed, failures)


def _reason_tally(reasons: list[str]) -> str:
    """Distinct failure reasons, most frequent first, each with its count."""
    from collections import Counter

    return "; ".join(f"{n}x {r}" if n > 1 else r for r, n in Counter(reasons).most_common(3))


def failed_clips_warning(failed: list[dict]) -> str:
    """One line for a run's warnings: how many clips were left out, and the first reason."""
    first = failed[0]
    return (f"{len(failed)} clip(s) could not be scored and are left out of this run (listed under failed clips); "
            f"first: {first.get('path') or first['clip_hash'][:12]}: {first['reason']}")


def _split_failures(clips: pd.DataFrame, evidence: list, fp: str, computed: int, failures: dict[int, str]):
    failed = [{"clip_hash": clips["clip_hash"].iloc[i], "path": str(clips["path"].iloc[i]) if "path" in clips else "", "reason": r}
              for i, r in sorted(failures.items())]
    if not failures:
        return clips, evidence, fp, computed, failed
    keep = [i for i in range(len(clips)) if i not in failures]
    return clips.iloc[keep].reset_index(drop=True), [evidence[i] for i in keep], fp, computed, failed


def _extract_on_ray(ws: Workspace, clips: pd.DataFrame, keys: list[str], cfg_key: dict, target_spec: str, config,
                    ev_cfg, settings: Settings, *, variant, progress, cancelled, failures: dict[int, str]):
    """:func:`extract_evidence` with the model work on Ray actors (``core.runtime.ray_exec``).

    One actor starts first to learn the model fingerprint (so a warm re-run reads the
    cache without loading more replicas); the rest start only when clips are missing.
    """
    from core.runtime.cache import EvidenceCache, cached_evidence
    from core.runtime.ray_exec import RayExecutor
    from core.evidence import ClipEvidence

    ex = RayExecutor(address=settings.ray_address)
    start = dict(device=settings.device, options=config.loader_options(), ev_config=ev_cfg,
                 analysis_sr=settings.analysis_sr, limits=settings.limits, variant=variant,
                 batch_size=config.batch_size)
    actors = ex.actors(1, target_spec, **start)
    try:
        fp = ex.fingerprint(actors)

        def run(batches: list[list[int]]):
            more = ex.actors(len(batches) - 1, target_spec, have=len(actors), **start) if len(batches) > 1 else []
            if more:
                actors.extend(more)
                ex.fingerprint(actors)
            for idx, blobs in ex.run(actors, ((idx, stored_clips(ws, clips.iloc[idx])) for idx in batches)):
                yield idx, [b if isinstance(b, str) else ClipEvidence.from_bytes(b) for b in blobs]

        evidence, computed = cached_evidence(
            EvidenceCache(ws.cache_dir), fp, keys, cfg_key, settings.analysis_sr, None,
            batch_size=config.batch_size, progress=progress, cancelled=cancelled, run=run, failures=failures,
        )
    finally:
        ex.stop(actors)
    return evidence, fp, computed


def cache_overview(ws: Workspace) -> pd.DataFrame:
    """The workspace's cache folders (:func:`core.runtime.cache.cache_entries`), each model
    fingerprint named by the targets whose runs used it."""
    from core.runtime.cache import cache_entries

    used: dict[str, set[str]] = {}
    runs = ws.query("SELECT DISTINCT target, json_extract(provenance, '$.model_fingerprint') AS fp FROM runs WHERE fp IS NOT NULL AND target != ''")
    for target, fp in runs.itertuples(index=False):
        used.setdefault(fp, set()).add(target)
    rows = [r | {"used_by": ", ".join(sorted(used.get(r["name"], ()))) if r["part"] == "evidence" else ""} for r in cache_entries(ws.cache_dir)]
    return pd.DataFrame(rows, columns=["part", "name", "used_by", "files", "bytes"])
