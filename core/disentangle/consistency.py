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
    (``transformers`` ``ClapModel`` + ``ClapProcessor`` in a folder, safetensors only).

    Synthio keeps a synthetic clip only when CLAP finds it close to its caption; here a
    resynthesized sound whose similarity to its caption is below a threshold is flagged.
    """

    def __init__(self, folder: str, *, device: str | None = None):
        from pathlib import Path

        from transformers import ClapModel, ClapProcessor

        from core.runtime.device import resolve_device
        from core.targets.fingerprint import folder_fingerprint

        path = Path(folder).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no CLAP model in {path} (expected config.json, model.safetensors and the processor files)")
        self.device = resolve_device(device)
        self.model = ClapModel.from_pretrained(str(path), use_safetensors=True, local_files_only=True).eval().to(self.device)
        self.processor = ClapProcessor.from_pretrained(str(path), local_files_only=True)
        self.sr = int(self.processor.feature_extractor.sampling_rate)
        self.fingerprint = folder_fingerprint(path)

    def similarity(self, audios: list[np.ndarray], sr: int, captions: list[str]) -> np.ndarray:
        """``cos(text_embed(caption_i), audio_embed(audio_i))`` for each pair, float64 ``[n]``
        (a clip longer than the model's window is scored on its central window)."""
        import librosa
        import torch

        audios = [librosa.resample(np.asarray(a, dtype=np.float32), orig_sr=sr, target_sr=self.sr) if sr != self.sr
                  else np.asarray(a, dtype=np.float32) for a in audios]
        # the processor picks random chunks of a clip longer than its window: take the
        # central window instead, so a score never changes between runs
        n_max = int(getattr(self.processor.feature_extractor, "nb_max_samples", 0) or 0)
        if n_max:
            audios = [a[(len(a) - n_max) // 2 : (len(a) - n_max) // 2 + n_max] if len(a) > n_max else a for a in audios]
        text = self.processor.tokenizer(list(captions), padding=True, truncation=True, return_tensors="pt")
        feats = self.processor.feature_extractor(audios, sampling_rate=self.sr, return_tensors="pt")
        with torch.inference_mode():
            t = self.model.get_text_features(**{k: v.to(self.device) for k, v in text.items()})
            a = self.model.get_audio_features(**{k: v.to(self.device) for k, v in feats.items()})
        t = getattr(t, "pooler_output", t)
        a = getattr(a, "pooler_output", a)
        t = torch.nn.functional.normalize(t.float(), dim=-1)
        a = torch.nn.functional.normalize(a.float(), dim=-1)
        return (t * a).sum(-1).double().cpu().numpy()
