"""Reading the bundled demo datasets for training the reference targets."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import soundfile as sf

from core.targets.base import ANALYSIS_SR, ClipInput
from core.runtime.settings import assets_dir


def demo_clips(dataset: str, label: str, *, root: Path | None = None) -> list[ClipInput]:
    """Clips of one label of a bundled demo dataset, in metadata order.

    ``clip_hash`` is the sha256 of the file bytes, the same content hash ingestion uses,
    so a model card's member list can be checked against any workspace.
    """
    base = (root or assets_dir() / "demo") / dataset
    out: list[ClipInput] = []
    with open(base / "metadata.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["label"] != label:
                continue
            path = base / row["path"]
            data = path.read_bytes()
            audio, sr = sf.read(path, dtype="float32", always_2d=True)
            audio = audio.mean(axis=1)
            if sr != ANALYSIS_SR:
                import librosa

                audio = librosa.resample(audio, orig_sr=sr, target_sr=ANALYSIS_SR).astype(np.float32)
            out.append(ClipInput(hashlib.sha256(data).hexdigest(), audio, row.get("text", "") or "", ANALYSIS_SR))
    return out


HASH_PREFIX = 16
"""Hex digits kept per hash in a card's training record: collision-free at these sizes, and
it keeps a card of a thousand-clip pool small."""


def norm_text(text: str) -> str:
    """A transcript or caption as compared for exclusion: lower case, single spaces."""
    return " ".join(text.lower().split())


def text_key(text: str) -> str:
    """Short sha256 of :func:`norm_text`, as listed in a card's training record."""
    return hashlib.sha256(norm_text(text).encode("utf-8")).hexdigest()[:HASH_PREFIX]


def training_record(clips: Sequence[ClipInput]) -> dict:
    """What a card records about the non-audited clips a model trained on.

    Enough to check from the card alone that no demo clip was trained on: the sorted
    :func:`text_key` of every transcript or caption, and the sorted prefixes of the content
    hash each clip would have as a corpus file (:func:`core.recipes.corpus.corpus.file_sha256`,
    the hash ingestion and :func:`demo_clips` give a file).

    Returns
    -------
    dict
        ``{"n": int, "text_sha256_16": list[str], "content_sha256_16": list[str]}``.
    """
    from core.recipes.corpus.corpus import file_sha256

    return {
        "n": len(clips),
        "text_sha256_16": sorted(text_key(c.text) for c in clips),
        "content_sha256_16": sorted(file_sha256(np.asarray(c.audio, dtype=np.float32), c.sr)[:HASH_PREFIX] for c in clips),
    }


def from_sibling_base(out_dir: str | Path, name: str, base_name: str, *, micro: bool,
                      train_base: Callable[..., Any], fine_tune: Callable[[Path, bool], dict]) -> dict:
    """A zoo fine-tune of the base built beside it: ``fine_tune(base folder, micro)`` with the
    sibling folder ``base_name`` of ``out_dir`` (refused in one line when it was not built), or,
    for a micro build, with a micro base ``train_base`` builds first in a scratch folder."""
    import tempfile

    if micro:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / base_name
            train_base(base, micro=True)
            return fine_tune(base, True)
    base = Path(out_dir).parent / base_name
    if not (base / "card.json").exists():
        raise FileNotFoundError(f"{name} starts from {base_name}: build it first ({base} has no card.json)")
    return fine_tune(base, False)
