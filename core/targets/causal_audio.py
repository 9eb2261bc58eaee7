"""Adapter for caption -> audio-token causal language models (MusicGen / AudioGen style).

The model reads ``[caption characters, SEP, audio codes, EOS]`` and predicts the next token.
Evidence for a clip is the per-token statistics of its audio codes given its caption
(teacher forcing): for audio token ``i`` at sequence position ``p``, the model's
distribution at position ``p - 1`` over the full vocabulary. Lower negative log-likelihood
means "member" (Carlini et al. loss attack; audio generative MIA paper, Sec. on ARMs).

A checkpoint folder holds ``config.json`` + ``model.safetensors`` (a ``transformers``
``GPT2LMHeadModel``), the audio codebook (:class:`core.targets.codebook.Codebook`) and
``layout.json`` (caption vocabulary and sequence layout).

At the ``outputs`` access level the target only generates (:meth:`CausalAudioTarget.generate`):
seeded ancestral sampling of audio codes after the caption, the codes' centroids read back as
log-mel frames and inverted to a waveform (:func:`core.targets.synthesis.mel_to_audio`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.config import DEFAULT_GEN_STEPS, Config
from core.targets.base import ClipInput, EvidenceConfig, Family
from core.targets.codebook import CharVocab, Codebook
from core.evidence import ClipEvidence, TokenStats
from core.targets.fingerprint import folder_fingerprint

LAYOUT_FILE = "layout.json"
DEFAULT_TEMPERATURE = 1.0


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
    temperature : sampling temperature of :meth:`generate`.
    """

    family: Family = "autoregressive"
    adapter = "causal_audio"
    evidence_reads = ("infill_m",)
    """The evidence depends on the Infilling Score setting alone (never a mode or a seed)."""

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
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        self.spec = spec
        self.temperature = temperature
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

    @torch.no_grad()
    def sample_codes(self, caption: str, *, seeds: Sequence[int], max_frames: int,
                     temperature: float | None = None) -> list[np.ndarray]:
        """Audio codes sampled after ``caption``, one sequence per seed (ancestral sampling).

        The model reads ``[caption..., SEP]`` and then its own samples, at most ``max_frames``
        (and ``layout.max_audio_tokens``) codes per sequence; a sequence ends early when it
        samples the audio EOS. Each step draws from ``softmax(logits / temperature)``
        restricted to the audio codes and the audio EOS (caption ids are never audio), with
        :func:`torch.multinomial` on a CPU ``torch.Generator`` seeded by the sequence's seed:
        a sequence depends only on its caption and its seed, not on the other seeds drawn
        beside it (up to float rounding of batched matrix products). On CUDA the model runs
        under bf16 autocast.

        Returns
        -------
        list of int64 ``[n_codes_i]`` code ids (``0 <= id < layout.n_codes``), in seed order.
        """
        lay = self.layout
        temp = self.temperature if temperature is None else float(temperature)
        if not temp > 0:
            raise ValueError(f"temperature must be positive, not {temp}")
        n_steps = max(0, min(int(max_frames), lay.max_audio_tokens))
        b = len(seeds)
        gens = [torch.Generator().manual_seed(int(s) % 2**63) for s in seeds]
        prefix = lay.vocab.encode(caption) + [lay.sep]
        ids = torch.tensor([prefix] * b, dtype=torch.long, device=self.device)
        codes = torch.full((b, n_steps), -1, dtype=torch.long)
        done = torch.zeros(b, dtype=torch.bool)
        from core.targets.infilling import cache_keyword

        cache_kw = cache_keyword(self.model)
        past = None
        cuda = self.device.startswith("cuda")
        for step in range(n_steps):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                out = self.model(input_ids=ids, use_cache=True, **{cache_kw: past})
            past = getattr(out, cache_kw)
            logits = out.logits[:, -1, lay.audio_offset : lay.audio_eos + 1].float().cpu()
            probs = torch.softmax(logits / temp, dim=-1)
            nxt = torch.stack([torch.multinomial(probs[i], 1, generator=gens[i])[0] for i in range(b)])
            done |= nxt == lay.n_codes
            codes[:, step] = torch.where(done, -1, nxt)
            if bool(done.all()):
                break
            ids = (nxt + lay.audio_offset)[:, None].to(self.device)
        return [row[row >= 0].numpy() for row in codes]

    def codes_to_log_mel(self, codes: np.ndarray) -> np.ndarray:
        """Log-mel frames of code ids: each code's centroid de-normalized
        (``centroid * std + mean``), float32 ``[n_mels, n_codes]`` (natural log of power +
        floor, at the codebook's hop)."""
        cb = self.codebook
        z = cb.centroids[torch.as_tensor(np.asarray(codes, dtype=np.int64))]
        return (z * cb.std + cb.mean).T.numpy().astype(np.float32)

    def generate(self, captions: Sequence[str], *, n_samples: Sequence[int], sr: int, seeds: Sequence[int],
                 steps: int = DEFAULT_GEN_STEPS, temperature: float | None = None) -> list[np.ndarray]:
        """One generation per caption (the :class:`core.targets.base.AudioGenerator` protocol).

        Codes are sampled after the caption (:meth:`sample_codes`, as many frames as
        ``n_samples[i]`` needs at the codebook's frame rate), read back as log-mel frames
        (:meth:`codes_to_log_mel`) and inverted by Griffin-Lim seeded with ``seeds[i]``
        (:func:`core.targets.synthesis.mel_to_audio`, peak 0.5) at the codebook's rate, then
        resampled to ``sr`` and fitted to ``n_samples[i]``: what follows an early audio EOS,
        or the ``layout.max_audio_tokens`` frames the model can write, is silence. The
        generations of one caption are sampled together. ``steps`` does not apply (one step
        per frame).

        Returns
        -------
        list of float32 ``[n_samples[i]]`` mono arrays at ``sr``.
        """
        from core.targets.synthesis import check_requests, log_mel_to_clip

        check_requests(captions, n_samples, seeds)
        mel = self.codebook.mel
        groups: dict[str, list[int]] = {}
        for i, caption in enumerate(captions):
            groups.setdefault(caption, []).append(i)
        out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(captions)
        for caption, idx in groups.items():
            native = [int(round(n_samples[i] * mel.sr / sr)) for i in idx]
            frames = max(1 + n // mel.hop_length for n in native)
            sampled = self.sample_codes(caption, seeds=[seeds[i] for i in idx], max_frames=frames, temperature=temperature)
            for i, n, codes in zip(idx, native, sampled):
                n_gen = min(n, len(codes) * mel.hop_length)
                if n_gen == 0:
                    out[i] = np.zeros(int(n_samples[i]), np.float32)
                    continue
                out[i] = log_mel_to_clip(self.codes_to_log_mel(codes), mel, n_native=n_gen, n_samples=int(n_samples[i]), sr=sr,
                                         seed=int(seeds[i]))
        return out

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


__all__ = ["DEFAULT_TEMPERATURE", "CausalAudioTarget", "SequenceLayout", "load_causal_audio", "pad_batch", "save_causal_audio"]
