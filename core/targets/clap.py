"""CLAP audio-to-audio similarity of a generation and an original clip (``clap_sim``).

A CLAP model (Wu et al., 2023) embeds audio in a space trained against text, so two clips of
the same kind of sound lie close even when their waveforms differ. At the ``outputs`` access
level a generation from a clip's caption that lies close to the clip itself is what
replication looks like (higher: member; read by :mod:`core.mia.outputs`).

The model is a ``transformers`` ``ClapModel`` and its ``ClapFeatureExtractor`` in a local
folder (``save_pretrained`` output), loaded without network access and held by the model pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

BATCH = 16


class ClapAudioEmbedder:
    """Unit-norm CLAP audio embeddings from a local checkpoint folder.

    Raises
    ------
    ValueError
        ``folder`` is not a CLAP checkpoint (no ``config.json`` of ``model_type`` ``clap``).
    """

    def __init__(self, folder: str | Path, *, device: str | None = None) -> None:
        import json

        from transformers import ClapFeatureExtractor, ClapModel

        from core.runtime.device import resolve_device

        path = Path(folder).expanduser().resolve()
        config = path / "config.json"
        model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
        if model_type != "clap":
            raise ValueError(f"{folder} is not a CLAP checkpoint folder (need a config.json with model_type 'clap', "
                             f"found {'model_type ' + repr(model_type) if config.is_file() else 'no config.json'})")
        self.device = str(resolve_device(device))
        self.model = ClapModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True).eval().to(self.device)
        self.extractor = ClapFeatureExtractor.from_pretrained(str(path), local_files_only=True)
        self.sr = int(self.extractor.sampling_rate)

    def _window(self, audio: NDArray[np.floating], sr: int) -> NDArray[np.float32]:
        import librosa

        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if sr != self.sr:
            x = librosa.resample(x, orig_sr=sr, target_sr=self.sr).astype(np.float32)
        # the extractor draws a random chunk of a clip longer than its window: take the
        # central window instead, so a similarity never changes between runs
        n_max = int(getattr(self.extractor, "nb_max_samples", 0) or 0)
        if n_max and len(x) > n_max:
            start = (len(x) - n_max) // 2
            x = x[start : start + n_max]
        return x

    def embed(self, audios: Sequence[NDArray[np.floating]], sr: int) -> NDArray[np.float64]:
        """Unit-norm audio embeddings, ``[n, projection_dim]`` (clips resampled to the
        extractor's rate with librosa; a clip longer than its window read on its central window)."""
        import torch

        out = []
        for i in range(0, len(audios), BATCH):
            chunk = [self._window(a, sr) for a in audios[i : i + BATCH]]
            feats = self.extractor(chunk, sampling_rate=self.sr, return_tensors="pt")
            with torch.inference_mode():
                emb = self.model.get_audio_features(**{k: v.to(self.device) for k, v in feats.items()})
            emb = getattr(emb, "pooler_output", emb)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0))

    def unload(self) -> None:
        self.model.to("cpu")


def _embedder(folder: str) -> ClapAudioEmbedder:
    from core.runtime.pool import POOL

    key = str(Path(folder).expanduser().resolve())
    return POOL.get("clap-audio", key, lambda: ClapAudioEmbedder(key))


def clap_audio_similarity(folder: str, originals: Sequence[NDArray[np.floating]],
                          generated: Sequence[NDArray[np.floating]], sr: int) -> list[float]:
    """Cosine similarity of the CLAP audio embeddings of ``originals[i]`` and ``generated[i]``.

    Both clips of a pair are read over their common span, as :func:`core.data.similarity.audio_similarity`
    reads them (the generation's trailing silence left out); a pair whose span is empty
    gives NaN.

    Parameters
    ----------
    folder : local CLAP checkpoint folder (``ClapModel`` + ``ClapFeatureExtractor``).
    originals, generated : mono clips at ``sr``, pairwise.
    sr : their sample rate.

    Returns
    -------
    list of float in [-1, 1] (NaN for an empty span), one per pair.
    """
    from core.data.similarity import generated_span

    if len(originals) != len(generated):
        raise ValueError(f"{len(originals)} originals for {len(generated)} generations: they are compared pairwise")
    spans = [min(len(np.reshape(o, -1)), generated_span(g)) for o, g in zip(originals, generated)]
    keep = [i for i, n in enumerate(spans) if n > 0]
    out = [float("nan")] * len(spans)
    if not keep:
        return out
    model = _embedder(folder)
    a = model.embed([np.reshape(originals[i], -1)[: spans[i]] for i in keep], sr)
    b = model.embed([np.reshape(generated[i], -1)[: spans[i]] for i in keep], sr)
    for j, i in enumerate(keep):
        out[i] = float(a[j] @ b[j])
    return out


__all__ = ["ClapAudioEmbedder", "clap_audio_similarity"]
