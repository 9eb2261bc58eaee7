"""The built-in blind feature groups and :func:`build_tables`.

Groups (LALM MIA paper, Phase 1 multi-modal blind baseline): ``metadata`` (structural
statistics), ``text`` (TF-IDF of unigrams and bigrams, fitted inside each CV fold),
``acoustic`` (utterance-level low-level descriptors) and optionally ``egemaps``
(openSMILE's eGeMAPS functionals, when the ``opensmile`` package is installed).
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from core.blind.registry import BlindInputs, get_group, list_groups, register_group

__all__ = ["bit_depth", "build_tables", "metadata_features", "text_column"]

_FIXED_DEPTH = {"FLOAT": 32.0, "DOUBLE": 64.0, "ALAW": 8.0, "ULAW": 8.0}
_WORD = re.compile(r"\w+(?:'\w+)?")


def bit_depth(subtype: object) -> float:
    """Bits per sample of a libsndfile subtype (``PCM_16`` -> 16); NaN for lossy codecs."""
    if not isinstance(subtype, str):
        return float("nan")
    s = subtype.upper()
    if s in _FIXED_DEPTH:
        return _FIXED_DEPTH[s]
    m = re.fullmatch(r"PCM_(?:S|U)?(\d+)", s)
    return float(m.group(1)) if m else float("nan")


def _texts(metadata: pd.DataFrame, texts: Sequence[str] | None) -> list[str]:
    return BlindInputs(metadata=metadata, texts=texts).text_list()


def metadata_features(
    metadata: pd.DataFrame, *, texts: Sequence[str] | None = None
) -> pd.DataFrame:
    """Structural statistics per clip.

    Parameters
    ----------
    metadata : pandas.DataFrame [shape=(n_clips, ...)]
        Columns ``duration`` (s), ``size_bytes``, ``sample_rate``, ``subtype``, ``format``,
        ``channels``; missing columns give NaN features.
    texts : sequence of str, optional
        Transcripts; defaults to ``metadata["text"]``.

    Returns
    -------
    pandas.DataFrame [shape=(n_clips, n_features)]
        ``duration_s``, ``size_bytes``, ``bytes_per_second``, ``sample_rate_hz``,
        ``bit_depth`` (NaN for lossy), ``channels``, ``n_words``, ``n_chars``,
        ``words_per_second`` and one-hot ``format=...`` / ``subtype=...`` columns.
    """
    n = len(metadata)

    def col(name: str) -> NDArray[np.float64]:
        if name not in metadata.columns:
            return np.full(n, np.nan)
        return pd.to_numeric(metadata[name], errors="coerce").to_numpy(dtype=np.float64)

    dur = col("duration")
    size = col("size_bytes")
    txt = _texts(metadata, texts)
    words = np.array([len(_WORD.findall(t)) for t in txt], dtype=np.float64)
    chars = np.array([len(t.strip()) for t in txt], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        bps = np.where(dur > 0, size / dur, np.nan)
        wps = np.where(dur > 0, words / dur, np.nan)
    out = pd.DataFrame(
        {
            "duration_s": dur,
            "size_bytes": size,
            "bytes_per_second": bps,
            "sample_rate_hz": col("sample_rate"),
            "bit_depth": [bit_depth(s) for s in metadata.get("subtype", pd.Series([None] * n))],
            "channels": col("channels"),
            "n_words": words,
            "n_chars": chars,
            "words_per_second": wps,
        },
        index=metadata.index,
    )
    for key in ("format", "subtype"):
        if key in metadata.columns:
            vals = metadata[key].fillna("unknown").astype(str).str.upper()
            for v in sorted(vals.unique()):
                out[f"{key}={v}"] = (vals == v).to_numpy(dtype=np.float64)
    return out


def text_column(
    metadata: pd.DataFrame, *, texts: Sequence[str] | None = None
) -> pd.Series | None:
    """Transcripts as a string Series (name ``text``), or None when no clip has text."""
    txt = _texts(metadata, texts)
    if not any(t.strip() for t in txt):
        return None
    return pd.Series(txt, index=metadata.index, name="text", dtype=object)


@register_group(
    "metadata",
    description="duration, file size, bytes/s, sample rate, bit depth, channels, codec, "
    "word and character counts, speaking rate",
    needs=("metadata", "text"),
)
def _metadata_group(inputs: BlindInputs) -> pd.DataFrame:
    return metadata_features(inputs.metadata, texts=inputs.texts)


@register_group(
    "text",
    description="TF-IDF of transcript unigrams and bigrams (vocabulary fitted inside each fold)",
    kind="text",
    needs=("metadata", "text"),
)
def _text_group(inputs: BlindInputs) -> pd.Series | None:
    return text_column(inputs.metadata, texts=inputs.texts)


@register_group(
    "acoustic",
    description="MFCC mean/std, spectral centroid/bandwidth/roll-off/flatness/contrast, RMS, "
    "zero-crossing rate, YIN pitch, effective bandwidth, noise floor, silence, clipping, DC",
    needs=("audio",),
)
def _acoustic_group(inputs: BlindInputs) -> pd.DataFrame:
    from core.blind.acoustic import AcousticConfig, acoustic_table

    if inputs.audio is None:
        raise ValueError("the acoustic group needs audio")
    cfg = inputs.options.get("acoustic_config") or AcousticConfig(sr=inputs.sr)
    table = acoustic_table(
        inputs.audio, sr=inputs.sr, device=inputs.device, config=cfg,
        batch_size=int(inputs.options.get("batch_size", 64)), batched=inputs.audio_batched,
    )
    if len(table) != inputs.n_clips:
        raise ValueError(f"audio yielded {len(table)} clips for {inputs.n_clips} metadata rows")
    table.index = inputs.metadata.index
    return table


@register_group(
    "egemaps",
    description="openSMILE eGeMAPSv02 functionals (88 features)",
    needs=("audio",),
    requires="opensmile",
    install_hint="pip install opensmile",
)
def _egemaps_group(inputs: BlindInputs) -> pd.DataFrame:
    import opensmile

    if inputs.audio is None:
        raise ValueError("the egemaps group needs audio")
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    clips: Iterable = inputs.audio
    if inputs.audio_batched:
        clips = (c for batch in inputs.audio for c in batch)
    rows = [smile.process_signal(np.asarray(c, dtype=np.float32), inputs.sr).iloc[0] for c in clips]
    table = pd.DataFrame(rows).reset_index(drop=True)
    table.index = inputs.metadata.index
    return table


def build_tables(
    groups: Sequence[str] | None = None,
    *,
    metadata: pd.DataFrame,
    audio: Iterable[NDArray[np.floating]] | None = None,
    texts: Sequence[str] | None = None,
    sr: int = 16000,
    audio_batched: bool = False,
    device: str | None = None,
    options: dict | None = None,
) -> tuple[dict[str, pd.DataFrame | pd.Series], list[str]]:
    """Feature tables of the requested groups, for :func:`core.blind.run_blind`.

    Parameters
    ----------
    groups : names, or None for every available group whose inputs are present.
    metadata, audio, texts, sr, audio_batched, device : see :class:`BlindInputs`.
    options : per-group options (``acoustic_config``, ``batch_size``).

    Returns
    -------
    tables : dict name -> DataFrame [n_clips, F] or text Series [n_clips]
    notes : why groups were skipped (unavailable, no audio, no text).
    """
    inputs = BlindInputs(
        metadata=metadata, audio=audio, texts=texts, sr=sr, audio_batched=audio_batched,
        device=device, options=dict(options or {}),
    )
    explicit = groups is not None
    names = list(groups) if explicit else list_groups()
    chosen = [get_group(n) for n in names]
    audio_users = [g.name for g in chosen if "audio" in g.needs and g.available]
    if len(audio_users) > 1 and audio is not None and iter(audio) is audio:
        raise ValueError(
            f"groups {audio_users} all read the audio, which is a one-shot iterator; "
            "pass a sequence or run them separately"
        )
    tables: dict[str, pd.DataFrame | pd.Series] = {}
    notes: list[str] = []
    for g in chosen:
        ok, msg = g.availability()
        if not ok:
            if explicit:
                g(inputs)  # raises GroupUnavailable with the install hint
            notes.append(f"{g.name}: {msg}")
            continue
        if "audio" in g.needs and audio is None:
            if explicit:
                raise ValueError(f"feature group {g.name!r} needs audio")
            notes.append(f"{g.name}: skipped (no audio given)")
            continue
        table = g(inputs)
        if table is None:
            notes.append(f"{g.name}: absent (no clip has {('text' if g.kind == 'text' else 'data')})")
            continue
        tables[g.name] = table
    return tables, notes
