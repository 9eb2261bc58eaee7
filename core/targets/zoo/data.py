"""Reading the bundled demo datasets for training the reference targets."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf

from core.targets.base import ANALYSIS_SR, ClipInput
from core.targets.zoo.registry import assets_dir


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
