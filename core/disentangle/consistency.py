"""Consistency of resynthesized clips, in the spirit of Synthio's filter: a resynthesis
that does not carry the same content is flagged (and optionally dropped) before it is
compared with the original.

For speech the check is the word error rate between the clip's transcript and what an
audio-language model transcribes from the resynthesis.
"""

from __future__ import annotations

import numpy as np

from core.data.text import normalize_words, word_error_rate  # noqa: F401  (the speech check's metric, re-exported)

DEFAULT_MAX_WER = 0.5


# -- sounds: CLAP similarity ---------------------------------------------------------------
DEFAULT_MIN_CLAP = 0.3


class ClapScorer:
    """Cosine similarity between a caption and audio under a local CLAP model
    (``transformers`` ``ClapModel`` + ``ClapProcessor`` in a folder, safetensors only); the
    audio side is :class:`core.targets.clap.ClapAudioEmbedder`'s.

    Synthio keeps a synthetic clip only when CLAP finds it close to its caption; here a
    resynthesized sound whose similarity to its caption is below a threshold is flagged.
    """

    def __init__(self, folder: str, *, device: str | None = None):
        from pathlib import Path

        from transformers import AutoTokenizer

        from core.targets.clap import ClapAudioEmbedder
        from core.targets.fingerprint import folder_fingerprint

        path = Path(folder).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no CLAP model in {path} (expected config.json, model.safetensors and the processor files)")
        self.audio = ClapAudioEmbedder(path, device=device)
        self.model, self.device, self.sr = self.audio.model, self.audio.device, self.audio.sr
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.fingerprint = folder_fingerprint(path)

    def similarity(self, audios: list[np.ndarray], sr: int, captions: list[str]) -> np.ndarray:
        """``cos(text_embed(caption_i), audio_embed(audio_i))`` for each pair, float64 ``[n]``
        (a clip longer than the model's window is scored on its central window)."""
        import torch

        text = self.tokenizer(list(captions), padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            t = self.model.get_text_features(**{k: v.to(self.device) for k, v in text.items()})
        t = torch.nn.functional.normalize(getattr(t, "pooler_output", t).float(), dim=-1).double().cpu().numpy()
        return np.sum(t * self.audio.embed(audios, sr), axis=-1)
