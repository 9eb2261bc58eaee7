"""The evidence layer: every clip's raw evidence from a target, through the cache.

One module owns "which clips are missing, load the target once, decode, score, cache" for
both executors: ``local`` (this process) and ``ray`` (actors that each load the target
once; :mod:`core.runtime.ray_exec` runs them). The operations (MIA, DI, disentanglement)
call :func:`extract_evidence` and never touch models, decoding or the cache themselves.
Models are held by the process-wide pool (:data:`core.runtime.pool.POOL`).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import pandas as pd

from core.pipeline.common import Cancelled, Progress
from core.runtime.pool import POOL, options_key
from core.runtime.settings import Limits, Settings
from core.runtime.store import Workspace


def get_target(spec, device: str | None = None, options: dict | None = None):
    """Load a target once per process (the worker and the CLI reuse it across calls).

    ``spec``: a spec string or its :class:`~core.targets.registry.TargetRef`.
    ``options`` are passed to the target's loader (e.g. ``prompt``, ``batch_size``,
    ``trust_remote_code``); they are part of the reuse key. The pool keeps one target
    resident: loading another unloads the previous one.
    """
    from core.targets import load_target

    options = dict(options or {})
    return POOL.get("target", (getattr(spec, "spec", spec), device, options_key(options)),
                    lambda: load_target(spec, device=None if device in (None, "auto") else device, **options))


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


def score_clips(target, items: list[tuple[str, bytes, str]], ev_cfg, *, sr: int, limits, variant=None,
                batch_size: int = 8, on_inputs=None) -> list:
    """Decode ``items`` (:func:`clip_inputs`) and score them with ``target``: the model step
    of the local executor and of every Ray actor."""
    xs = clip_inputs(items, sr, limits, variant)
    if on_inputs is not None:
        on_inputs(xs)
    if ev_cfg.access == "outputs":
        from core.targets.outputs import output_evidence

        return output_evidence(target, xs, ev_cfg, batch_size=batch_size)
    return target.evidence(xs, ev_cfg, batch_size=batch_size)


def check_access(target_spec, access: str) -> None:
    """Refuse, before anything is loaded or sent, an access level the target does not offer.

    Raises
    ------
    ValueError
        one line naming the levels it offers (a remote API: ``outputs`` only).
    """
    from core.targets import resolve_target

    levels = resolve_target(target_spec).access
    if access not in levels:
        raise ValueError(f"{target_spec} offers only the {' and '.join(levels)} access level(s), not {access}: "
                         f"run it with --access {levels[0]}")


def _dataset_languages(ws: Workspace, dataset: str) -> dict:
    """Clips per spoken language the dataset's manifests name (empty when none, or for a
    dataset not in the workspace)."""
    try:
        return ws.dataset_meta(dataset).get("languages") or {}
    except KeyError:
        return {}


def _language_sample(clips: pd.DataFrame) -> pd.DataFrame:
    """The clips language identification is pooled over: up to ``DETECT_CLIPS`` spread over
    the dataset in content-hash order (the same on every executor and every rerun)."""
    from core.targets.language import spread

    hashes = sorted(clips["clip_hash"])
    return clips.set_index("clip_hash").loc[[hashes[i] for i in spread(len(hashes))]].reset_index()


def choose_language(ws: Workspace, dataset: str, target, clips: pd.DataFrame, settings: Settings):
    """Set the language a multilingual speech target decodes ``dataset`` in, and return the
    :class:`~core.targets.language.LanguageChoice` (None for a target without languages).
    A target that takes a language as a hint (``language_hint``: a remote API, a chat
    audio-language model) gets the dataset's language when its manifests name one.

    In order: the ``language`` target option; the language the dataset's manifests name
    (its most common one); Whisper's language identification pooled over up to
    :data:`~core.targets.language.DETECT_CLIPS` of the dataset's original clips (never a
    variant's audio), cached in the workspace by model and clips so a rerun detects nothing.
    """
    import hashlib
    import json

    from core.runtime.store import atomic_write
    from core.targets.language import LanguageChoice, dataset_language

    multilingual = getattr(target, "multilingual", False)
    if not (multilingual or getattr(target, "language_hint", False)):
        return None
    if target.language_fixed:
        return target.language
    choice = dataset_language(_dataset_languages(ws, dataset), target.language_options() if multilingual else None)
    if choice is None and not multilingual:
        target.set_language(None)  # a hint only: the model (an endpoint, a chat model) detects it itself
        return None
    if choice is None:
        rows = _language_sample(clips)
        key = hashlib.sha256(json.dumps([target.model_fingerprint, rows["clip_hash"].tolist()]).encode()).hexdigest()[:32]
        path = ws.cache_dir / "language" / f"{key}.json"
        if path.is_file():
            choice = LanguageChoice.from_dict(json.loads(path.read_text()))
        else:
            choice = target.detect_language(clip_inputs(stored_clips(ws, rows), settings.analysis_sr, settings.limits))
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(choice.to_dict()).encode())
    target.set_language(choice)
    return target.language


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
    from core.targets.base import TargetUnavailable

    try:
        return list(score(items))
    except (InterruptedError, KeyboardInterrupt, TargetUnavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - retried clip by clip below
        if len(items) == 1:
            return [_reason(exc)]
    out: list = []
    for item in items:
        try:
            out.extend(score([item]))
        except (InterruptedError, KeyboardInterrupt, TargetUnavailable):
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
    info: dict | None = None,
):
    """Evidence for every analysed clip of ``dataset`` through the cache.

    ``info`` (optional) receives what the run should record about how the evidence was
    made: ``language`` (:meth:`LanguageChoice.to_dict`) for a multilingual speech model.

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
    from core.targets import resolve_target

    settings = settings or Settings.from_env(ws.root)
    ref = resolve_target(target_spec)
    clips = ws.analysis_clips(dataset) if clips is None else clips
    ev_cfg = config.evidence_config()
    check_access(ref, ev_cfg.access)
    keys = clips["clip_hash"].tolist()
    if variant is not None:
        keys = [variant.key(h) for h in keys]
    report = (lambda d, t: progress(d, t, f"evidence {ref.spec}")) if progress else None
    failures: dict[int, str] = {}
    if settings.executor == "ray":
        evidence, fp, computed = _extract_on_ray(ws, dataset, clips, keys, ref.spec, config, ev_cfg, settings,
                                                 variant=variant, progress=report, cancelled=cancelled, failures=failures,
                                                 info=info)
    elif settings.executor != "local":
        raise ValueError(f"unknown executor {settings.executor!r}; valid: local, ray")
    else:
        from core.pipeline.target_memo import NeedsModel, StaleRecord, forget, known_target

        run = dict(ws=ws, dataset=dataset, ref=ref, config=config, ev_cfg=ev_cfg, settings=settings, clips=clips, keys=keys,
                   variant=variant, progress=report, cancelled=cancelled, on_inputs=on_inputs, info=info, failures=failures)
        options = config.loader_options()
        known = known_target(ws, ref, settings.device, options)
        result = None
        if known is not None:  # the record answers first; the model loads only if a clip needs it
            try:
                result = _extract_local(known, **run)
            except NeedsModel:
                pass
            except StaleRecord:
                forget(ws, ref, settings.device, options)
        if result is None:
            failures.clear()
            result = _extract_local(get_target(ref, settings.device, options), **run)
        evidence, fp, computed = result
    return _split_failures(clips, evidence, fp, computed, failures)


def _extract_local(target, *, ws: Workspace, dataset: str, ref, config, ev_cfg, settings: Settings, clips: pd.DataFrame,
                   keys: list[str], variant, progress, cancelled: Cancelled, on_inputs, info: dict | None,
                   failures: dict[int, str]):
    """:func:`extract_evidence` in this process. ``target`` is the loaded model, or a
    :class:`~core.pipeline.target_memo.KnownTarget` standing in for it: the model is then
    loaded only when a clip's evidence is missing, and must have the recorded fingerprint
    (else :class:`~core.pipeline.target_memo.StaleRecord`). What a loaded model says about
    itself is recorded for the next run."""
    from core.pipeline.target_memo import NeedsModel, StaleRecord, remember
    from core.runtime.cache import EvidenceCache, cached_evidence
    from core.targets.base import evidence_reads

    options = config.loader_options()
    choice = choose_language(ws, dataset, target, clips, settings)
    known = getattr(target, "known", False)
    fp = target.fingerprint
    if fp is None:
        raise NeedsModel(f"{ref.spec}: no recorded fingerprint for this run's language")
    reads = target.reads(ev_cfg.access) if known else evidence_reads(target, ev_cfg.access)
    cfg_key, legacy = evidence_identity(ev_cfg, reads, variant)
    model: list = [] if known else [target]

    def loaded():
        if not model:
            real = get_target(ref, settings.device, options)
            choose_language(ws, dataset, real, clips, settings)
            if real.fingerprint != fp or evidence_reads(real, ev_cfg.access) != tuple(reads):
                raise StaleRecord(f"{ref.spec}: the loaded model is not the recorded one")
            model.append(real)
            _remember(real)
            if callable(getattr(real, "begin_run", None)):
                real.begin_run()  # per-run state of a pooled target (an API target's request budget)
        return model[0]

    def _remember(real) -> None:
        remember(ws, ref, settings.device, options, real,
                 {a: list(evidence_reads(real, a)) for a in ref.access})

    if not known:
        _remember(target)
        if callable(getattr(target, "begin_run", None)):
            target.begin_run()
    ok = [0]

    def score(items: list[tuple[str, bytes, str]]):
        return score_clips(loaded(), items, ev_cfg, sr=settings.analysis_sr, limits=settings.limits, variant=variant,
                           batch_size=config.batch_size, on_inputs=on_inputs)

    def compute(idx: list[int]):
        loaded()  # a stale record stops the run here, before any clip is scored
        out = score_isolated(stored_clips(ws, clips.iloc[idx]), score)
        ok[0] += sum(not isinstance(e, str) for e in out)
        bad = [e for e in out if isinstance(e, str)]
        if bad and ok[0] == 0 and len(failures) + len(bad) >= min(MAX_FAILURES_BEFORE_ANY_SUCCESS, len(keys)):
            raise EvidenceFailed(f"{ref.spec}: every clip tried failed ({_reason_tally(list(failures.values()) + bad)})")
        return out

    evidence, computed = cached_evidence(
        EvidenceCache(ws.cache_dir), fp, keys, cfg_key, settings.analysis_sr, compute,
        batch_size=config.batch_size, progress=progress, cancelled=cancelled, failures=failures, legacy=legacy,
    )
    if info is not None:
        info["evidence_key"] = cfg_key
        if choice is not None:
            info["language"] = choice.to_dict()
    return evidence, fp, computed


def evidence_identity(ev_cfg, reads: tuple[str, ...], variant=None) -> tuple[dict, list[dict]]:
    """The evidence cache key of a run (``ev_cfg`` restricted to the settings the target
    ``reads``, plus the variant's name) and the keys earlier versions wrote for the same
    evidence (:meth:`EvidenceConfig.legacy_keys`): the one owner of evidence identity."""
    key, legacy = ev_cfg.cache_key(reads), ev_cfg.legacy_keys(reads)
    if variant is not None:
        key, legacy = dict(key, variant=variant.name), [dict(k, variant=variant.name) for k in legacy]
    return key, legacy


def _reason_tally(reasons: list[str]) -> str:
    """Distinct failure reasons, most frequent first, each with its count."""
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


def _extract_on_ray(ws: Workspace, dataset: str, clips: pd.DataFrame, keys: list[str], target_spec: str,
                    config, ev_cfg, settings: Settings, *, variant, progress, cancelled, failures: dict[int, str],
                    info: dict | None = None):
    """:func:`extract_evidence` with the model work on Ray actors (``core.runtime.ray_exec``).

    One actor starts first to learn the model fingerprint (so a warm re-run reads the
    cache without loading more replicas); the rest start only when clips are missing.
    """
    from core.runtime.cache import EvidenceCache, cached_evidence
    from core.runtime.ray_exec import RayExecutor
    from core.evidence import ClipEvidence

    from core.targets.language import dataset_language

    ex = RayExecutor(address=settings.ray_address)
    # a multilingual model's language: the dataset's, else every actor detects it over the
    # same clips (the fingerprint, which holds the language, proves they agree)
    chosen = dataset_language(_dataset_languages(ws, dataset))
    start = dict(spec=target_spec, device=settings.device, options=config.loader_options(), ev_config=ev_cfg,
                 analysis_sr=settings.analysis_sr, limits=settings.limits, variant=variant,
                 batch_size=config.batch_size, language=chosen.to_dict() if chosen else None,
                 language_items=None if chosen else stored_clips(ws, _language_sample(clips)))
    actors = ex.actors(1, EvidenceWorker, **start)
    try:
        fp = ex.fingerprint(actors)
        language = ex.ask(actors[0], "language")
        if language is not None and info is not None:
            info["language"] = language
        cfg_key, legacy = evidence_identity(ev_cfg, tuple(ex.ask(actors[0], "evidence_reads")), variant)
        if info is not None:
            info["evidence_key"] = cfg_key

        def run(batches: list[list[int]]):
            more = ex.actors(len(batches) - 1, EvidenceWorker, have=len(actors), **start) if len(batches) > 1 else []
            if more:
                actors.extend(more)
                ex.fingerprint(actors)
            for idx, blobs in ex.run(actors, ((idx, stored_clips(ws, clips.iloc[idx])) for idx in batches)):
                yield idx, [b if isinstance(b, str) else ClipEvidence.from_bytes(b) for b in blobs]

        evidence, computed = cached_evidence(
            EvidenceCache(ws.cache_dir), fp, keys, cfg_key, settings.analysis_sr, None,
            batch_size=config.batch_size, progress=progress, cancelled=cancelled, run=run, failures=failures, legacy=legacy,
        )
    finally:
        ex.stop(actors)
    return evidence, fp, computed


class EvidenceWorker:
    """What one Ray actor does: load the target once, score batches of clip bytes
    (started by :class:`core.runtime.ray_exec.RayExecutor`)."""

    def __init__(self, spec: str, device: str | None, options: dict, ev_config, analysis_sr: int,
                 limits: Limits, variant=None, batch_size: int = 8, threads: int | None = None,
                 language: dict | None = None, language_items: list | None = None):
        import torch

        from core.targets.language import LanguageChoice

        if threads:
            torch.set_num_threads(threads)
        self.target = get_target(spec, device, options)
        if getattr(self.target, "multilingual", False) and not self.target.language_fixed:
            if language is not None:
                self.target.set_language(LanguageChoice.from_dict(language))
            else:
                self.target.set_language(self.target.detect_language(clip_inputs(language_items or [], analysis_sr, limits)))
        self.ev_config = ev_config
        self.sr = analysis_sr
        self.limits = limits
        self.variant = variant
        self.batch_size = batch_size

    def fingerprint(self) -> str:
        return self.target.fingerprint

    def evidence_reads(self) -> tuple[str, ...]:
        """The settings the loaded target's evidence depends on (its cache identity)."""
        from core.targets.base import evidence_reads

        return evidence_reads(self.target, self.ev_config.access)

    def language(self) -> dict | None:
        """The language a multilingual speech target decodes in (None: no languages)."""
        lang = getattr(self.target, "language", None)
        return lang.to_dict() if getattr(self.target, "multilingual", False) and lang is not None else None

    def score(self, batch) -> tuple[list[int], list[bytes | str]]:
        idx, items = batch

        def score(part):
            return score_clips(self.target, part, self.ev_config, sr=self.sr, limits=self.limits, variant=self.variant,
                               batch_size=self.batch_size)

        # a clip that fails alone comes back as its reason (a string), as on the local executor
        return idx, [ev if isinstance(ev, str) else ev.to_bytes() for ev in score_isolated(items, score)]
