"""Adapter for caption -> audio-token causal language models (MusicGen / AudioGen style).

The model reads ``[caption characters, SEP, audio codes, EOS]`` and predicts the next token.
Evidence for a clip is the per-token statistics of its audio codes given its caption
(teacher forcing): for audio token ``i`` at sequence position ``p``, the model's
distribution at position ``p - 1`` over the full vocabulary. Lower negative log-likelihood
means "member" (Carlini et al. loss attack; audio generative MIA paper, Sec. on ARMs).

A checkpoint folder holds ``config.json`` + ``model.safetensors`` (a ``transformers``
``GPT2LMHeadModel``), the audio codebook (:class:`core.targets.codebook.Codebook`) and
``layout.json`` (caption vocabulary and sequence layout).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.config import Config
from core.targets.base import ClipInput, EvidenceConfig, Family
from core.targets.codebook import CharVocab, Codebook
from core.evidence import ClipEvidence, TokenStats
from core.targets.fingerprint import folder_fingerprint

LAYOUT_FILE = "layout.json"


@dataclass(frozen=True)
class SequenceLayout(Config):
    """Token id layout of a caption -> audio-token model.

    Ids ``[0, len(vocab))`` are caption characters and specials (``vocab.EOS`` doubles as
    SEP), ``[audio_offset, audio_offset + n_codes)`` are audio codes and
    ``audio_offset + n_codes`` ends the audio. At most ``max_audio_tokens`` codes per clip
    (later frames are dropped, and the evidence notes it).
    """

    vocab: CharVocab
    n_codes: int
    max_audio_tokens: int

    @property
    def sep(self) -> int:
        return CharVocab.EOS

    @property
    def audio_offset(self) -> int:
        return len(self.vocab)

    @property
    def audio_eos(self) -> int:
        return self.audio_offset + self.n_codes

    @property
    def vocab_size(self) -> int:
        return self.audio_eos + 1

    @property
    def max_length(self) -> int:
        return self.vocab.max_chars + 1 + self.max_audio_tokens + 1

    def sequence(self, caption: str, codes: np.ndarray) -> tuple[list[int], int, int, bool]:
        """Token ids of one clip.

        Returns
        -------
        ids : ``[caption..., SEP, audio..., EOS]``.
        start : position of the first audio token in ``ids``.
        n_audio : number of audio tokens.
        truncated : whether codes were dropped.
        """
        text = self.vocab.encode(caption)
        audio = [int(c) + self.audio_offset for c in codes[: self.max_audio_tokens]]
        ids = text + [self.sep] + audio + [self.audio_eos]
        return ids, len(text) + 1, len(audio), len(codes) > self.max_audio_tokens


def pad_batch(seqs: Sequence[Sequence[int]], *, pad_id: int = CharVocab.PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token sequences: ``input_ids`` and ``attention_mask``, both ``[B, L]`` int64."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def _token_stats_batch():
    from core.targets.token_stats import token_stats_batch

    return token_stats_batch


def _infilling_scores():
    from core.targets.infilling import infilling_scores

    return infilling_scores


class CausalAudioTarget:
    """A caption -> audio-token causal LM as an audit target (family ``"autoregressive"``).

    Parameters
    ----------
    spec : the name the user loaded it by.
    model : a ``transformers`` causal LM over :class:`SequenceLayout` ids.
    codebook : the audio tokenizer.
    layout : token id layout.
    fingerprint : weights + config hash.
    device : torch device string.
    """

    family: Family = "autoregressive"

    def __init__(
        self,
        spec: str,
        model: torch.nn.Module,
        codebook: Codebook,
        layout: SequenceLayout,
        fingerprint: str,
        *,
        device: str = "cpu",
        default_batch_size: int = 16,
    ) -> None:
        self.spec = spec
        self.model = model.eval().to(device)
        self.codebook = codebook
        self.layout = layout
        self.fingerprint = fingerprint
        self.device = device
        self.default_batch_size = default_batch_size

    def tokenize(self, clip: ClipInput) -> tuple[list[int], int, int, bool]:
        """See :meth:`SequenceLayout.sequence`; the audio is resampled to the codebook rate."""
        audio = clip.audio
        if clip.sr != self.codebook.mel.sr:
            import librosa

            audio = librosa.resample(np.asarray(audio, dtype=np.float32), orig_sr=clip.sr, target_sr=self.codebook.mel.sr)
        return self.layout.sequence(clip.text, self.codebook.encode(audio))

    @torch.no_grad()
    def audio_logits(
        self, clips: Sequence[ClipInput]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[list[int], int, int, bool]]]:
        """Teacher-forced logits at the audio-token positions of one batch.

        Returns
        -------
        logits : ``[B, N, V]`` float32, ``logits[b, i]`` predicts audio token ``i`` of clip ``b``.
        target_ids : ``[B, N]`` int64 (ids in the model vocabulary; padding 0).
        mask : ``[B, N]`` bool, true on real audio tokens.
        tokenized : per clip, the output of :meth:`tokenize`.
        """
        tok = [self.tokenize(c) for c in clips]
        ids, attn = pad_batch([t[0] for t in tok])
        ids, attn = ids.to(self.device), attn.to(self.device)
        out = self.model(input_ids=ids, attention_mask=attn).logits  # [B, L, V]
        n_max = max(max(t[2] for t in tok), 1)
        B = len(clips)
        pos = torch.zeros((B, n_max), dtype=torch.long, device=self.device)
        mask = torch.zeros((B, n_max), dtype=torch.bool, device=self.device)
        for b, (_, start, n, _) in enumerate(tok):
            pos[b, :n] = torch.arange(start, start + n, device=self.device)
            mask[b, :n] = True
        logits = torch.gather(out, 1, (pos - 1).clamp_min(0)[..., None].expand(B, n_max, out.shape[-1]))
        target = torch.gather(ids, 1, pos) * mask
        return logits.float(), target, mask, tok

    def evidence(
        self, clips: Sequence[ClipInput], config: EvidenceConfig, *, batch_size: int | None = None
    ) -> list[ClipEvidence]:
        """Per-token statistics of each clip's audio codes given its caption, in order.

        ``config.infill_m > 0`` adds the Infilling Score per audio token in both
        normalizations (``TokenStats.infill``, ``TokenStats.infill_ref``), from the same
        forward passes; the other fields of ``config`` do not apply.
        """
        token_stats_batch = _token_stats_batch()
        bs = batch_size or self.default_batch_size
        out: list[ClipEvidence] = []
        for i in range(0, len(clips), bs):
            chunk = list(clips[i : i + bs])
            logits, target, mask, tok = self.audio_logits(chunk)
            stats = token_stats_batch(logits, target, mask)
            for clip, st, (ids, start, n, truncated) in zip(chunk, stats, tok):
                if config.infill_m > 0:
                    own, ref = self._infill(ids, start, n, config.infill_m)
                    st = TokenStats(**{**st.to_arrays(), "infill": own, "infill_ref": ref})
                notes = (f"audio truncated to {n} tokens",) if truncated else ()
                out.append(ClipEvidence(clip.clip_hash, tokens=st, text=clip.text, notes=notes))
        return out

    @torch.no_grad()
    def _infill(self, ids: list[int], start: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Both Infilling Score variants of the audio tokens ``[n]`` (one score per token of
        ``ids``, position 0 undefined, sliced to the audio span)."""
        scores = _infilling_scores()(self.model, torch.tensor(ids, device=self.device), m)
        return scores.own[start : start + n], scores.ref[start : start + n]

    def unload(self) -> None:
        self.model.to("cpu")
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


def save_causal_audio(folder: Path, model: torch.nn.Module, codebook: Codebook, layout: SequenceLayout) -> None:
    """Write a checkpoint folder: safetensors weights, configs, codebook and layout."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    codebook.save(folder)
    (folder / LAYOUT_FILE).write_text(json.dumps(layout.to_dict(), indent=2))


def load_causal_audio(folder: Path, *, device: str | None = None, spec: str | None = None) -> CausalAudioTarget:
    """Load a checkpoint folder written by :func:`save_causal_audio` (safetensors only)."""
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True, trust_remote_code=False)
    layout = SequenceLayout.from_dict(json.loads((folder / LAYOUT_FILE).read_text()))
    return CausalAudioTarget(
        spec or str(folder),
        model,
        Codebook.load(folder),
        layout,
        folder_fingerprint(folder),
        device=device or "cpu",
    )


__all__ = ["CausalAudioTarget", "SequenceLayout", "load_causal_audio", "pad_batch", "save_causal_audio"]
