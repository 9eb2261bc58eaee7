"""Autoregressive text-to-music adapter: MusicGen (``MusicgenForConditionalGeneration``).

The evidence is the model's per-token statistics of a clip's own codec tokens given its
caption, the token-level analogue of a language model's likelihood of a training text
(audio generative-model MIA paper). Lower negative log-likelihood reads as "member".

How a clip is scored:

1. The clip (mono, resampled to the codec's rate) is encoded by the checkpoint's EnCodec
   into ``K`` codebooks of ``T`` frames, ``codes[k, t]``. Stereo checkpoints, whose
   ``K`` codebooks interleave left and right, get the mono codes for both channels (what
   the model's own forward does with a mono input).
2. MusicGen predicts all codebooks of one step at once with codebook ``k`` delayed by ``k``
   steps (stereo: the pair ``2c, 2c + 1`` delayed by ``c``). The start token and the codes
   are laid out with the model's own ``build_delay_pattern_mask``: row ``k`` of the
   delayed sequence ``D`` (``[K, T + K]`` for mono) holds padding up to position ``k``,
   ``codes[k, t]`` at position ``k + 1 + t``, padding after. The decoder reads ``D[:, :-1]``
   and its codebook-``k`` head at position ``j`` predicts ``D[k, j + 1]``, so
   ``codes[k, t]`` is predicted at position ``k + t``.
3. Statistics are taken at exactly those un-delayed positions, for every valid
   ``(codebook, frame)`` pair and none of the delay padding, on the model's device.

Flattening order: codebook-major, ``index = k * T + t`` (all frames of codebook 0, then
codebook 1, ...), codebook order as the decoder numbers them. A note on each
:class:`ClipEvidence` records ``K`` and ``T`` so per-codebook views can be rebuilt.

Batching pads delayed sequences on the right (causal decoder: scored positions never see
the padding) and captions with the tokenizer's attention mask; each clip is encoded by
the codec alone, so its codes do not depend on the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch

from core.evidence import TokenStats
from core.targets.base import ClipInput, Family
from core.targets.loading import resample
from core.targets.two_stage import TwoStageTarget


class _Batch(NamedTuple):
    """A batch's codec tokens ``[K, T_b]`` per clip and its captions."""

    codes: list[torch.Tensor]
    captions: list[str]


class MusicgenTarget(TwoStageTarget):
    """A MusicGen checkpoint folder as an audit target.

    ``tokens`` of its evidence has ``K * T`` entries in codebook-major order; ``text`` is
    the caption. ``EvidenceConfig.mode`` is irrelevant here (the clip's own tokens are
    always scored); ``infill_m`` is not supported and leaves a note.

    Parameters
    ----------
    path : str or Path
        Checkpoint folder as ``save_pretrained`` writes it: ``config.json``,
        ``*.safetensors`` and the T5 tokenizer (the EnCodec feature extractor is not
        needed: a mono clip goes to the codec as is).
    spec : str, optional
        The spec shown in results; defaults to the folder path.
    device : str, optional
        ``None``/``"auto"`` picks CUDA when present.
    dtype : str or torch.dtype, optional
        ``None``/``"auto"``: bfloat16 on CUDA, float32 on CPU. The codec always runs in
        float32, so the tokens do not depend on it. Part of the fingerprint.
    batch_size : int, optional
        Clips per batch; 16 on CUDA (halved on out-of-memory), 4 on CPU by default.
    bandwidth : float, optional
        EnCodec bandwidth; ``None`` uses the codec's first (the one MusicGen was trained on).
    trust_remote_code : bool
        Allow code shipped in the folder to run; off unless the user turns it on.
    """

    family: Family = "autoregressive"
    adapter = "musicgen"
    version = 1
    text_modes = False
    infill_unsupported = "MusicGen targets"

    def __init__(
        self,
        path: str | Path,
        *,
        spec: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int | None = None,
        bandwidth: float | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoTokenizer, MusicgenForConditionalGeneration

        config = self._open(path, spec=spec, device=device, dtype=dtype, batch_size=batch_size,
                            trust_remote_code=trust_remote_code)
        if config.get("model_type") != "musicgen":
            raise ValueError(f"{self.path} is a {config.get('model_type')!r} checkpoint, not 'musicgen'")
        common = self._loader_kwargs()
        model = MusicgenForConditionalGeneration.from_pretrained(str(self.path), use_safetensors=True, **common)
        # The codec stays float32: bfloat16 would move quantizer decisions, changing the
        # very tokens being scored.
        model.text_encoder.to(self.device, self.dtype)
        model.decoder.to(self.device, self.dtype)
        if getattr(model, "enc_to_dec_proj", None) is not None:
            model.enc_to_dec_proj.to(self.device, self.dtype)
        model.audio_encoder.to(self.device, torch.float32)
        self.model = model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), **common)

        dec = self.model.decoder.config
        self.num_codebooks = int(dec.num_codebooks)
        self.audio_channels = int(getattr(dec, "audio_channels", 1))
        # Stereo checkpoints interleave left/right codebooks and delay each pair together.
        self.delays = torch.arange(self.num_codebooks) // (2 if self.audio_channels == 2 else 1)
        self.n_delay = int(self.delays.max()) + 1
        self.pad_id = int(dec.pad_token_id)
        start = getattr(dec, "decoder_start_token_id", None)
        self.start_id = int(start if start is not None else dec.bos_token_id)
        self.vocab_size = int(dec.vocab_size)
        self.sampling_rate = int(self.model.config.audio_encoder.sampling_rate)
        self.frame_rate = float(self.model.config.audio_encoder.frame_rate)
        self.bandwidth = bandwidth
        # The delayed sequence needs T + n_delay - 1 decoder positions.
        self.max_frames = int(dec.max_position_embeddings) - self.n_delay + 1
        self._identify()

    def _evidence_options(self) -> dict[str, Any]:
        return {"bandwidth": self.bandwidth}

    # ------------------------------------------------------------------ inputs
    def encode_audio(self, clip: ClipInput, notes: list[str] | None = None) -> torch.Tensor:
        """The clip's codec tokens ``[K, T]`` (int64, on the model's device), in the
        decoder's codebook order."""
        notes = notes if notes is not None else []
        audio = resample(clip.audio, orig_sr=int(clip.sr), target_sr=self.sampling_rate)
        # One unpadded mono clip: the EnCodec feature extractor would only reshape it (and a
        # stereo checkpoint's extractor would reject mono audio), so it is fed directly.
        values = torch.from_numpy(audio).to(self.device, torch.float32)[None, None]  # [1, 1, S]
        with torch.inference_mode():
            enc = self.model.audio_encoder.encode(values, bandwidth=self.bandwidth, return_dict=True)
        codes = enc.audio_codes  # [chunks, 1, K_enc, T]
        if codes.shape[0] != 1:
            codes = torch.cat(list(codes), dim=-1)
        codes = codes[0, 0]
        if self.audio_channels == 2 and codes.shape[0] == self.num_codebooks // 2:
            codes = codes.repeat_interleave(2, dim=0)
        if codes.shape[0] != self.num_codebooks:
            raise ValueError(
                f"the codec gave {codes.shape[0]} codebooks but the decoder expects {self.num_codebooks}; "
                "check the bandwidth option"
            )
        if codes.shape[1] > self.max_frames:
            notes.append(
                f"audio truncated to {self.max_frames} codec frames ({self.max_frames / self.frame_rate:.1f} s, the "
                f"decoder's context; clip has {codes.shape[1]})"
            )
            codes = codes[:, : self.max_frames]
        return codes.to(torch.long)

    def delayed(self, codes: torch.Tensor) -> torch.Tensor:
        """The delayed sequence ``D`` ``[K, T + n_delay]`` for codes ``[K, T]``, built by the
        model's ``build_delay_pattern_mask`` from the start token followed by the codes
        (``n_delay`` is ``K`` for mono checkpoints, ``K / 2`` for stereo ones)."""
        K, T = codes.shape
        L = T + self.n_delay
        x = torch.cat([torch.full((K, 1), self.start_id, dtype=torch.long, device=codes.device), codes], dim=1)
        _, pattern = self.model.decoder.build_delay_pattern_mask(x, pad_token_id=self.pad_id, max_length=L)
        return pattern.reshape(K, L)

    # ------------------------------------------------------------------ scoring
    def _encode(self, clips: Sequence[ClipInput], notes: list[list[str]]) -> _Batch:
        return _Batch([self.encode_audio(c, n) for c, n in zip(clips, notes)], [c.text for c in clips])

    def _given(self, clips: Sequence[ClipInput], encoded: _Batch, notes: list[list[str]]) -> list[torch.Tensor]:
        return encoded.codes

    def _score(self, encoded: _Batch, labels: Sequence[torch.Tensor]) -> list[TokenStats]:
        return self._score_codes(labels, encoded.captions)

    def _clip_notes(self, clip: ClipInput, labels: torch.Tensor) -> list[str]:
        notes = [f"codebooks={labels.shape[0]} frames={labels.shape[1]} order=codebook-major"]
        if not clip.text.strip():
            notes.append("empty caption: scored unconditionally")
        return notes

    def _score_codes(self, codes: Sequence[torch.Tensor], captions: Sequence[str]) -> list[TokenStats]:
        """Statistics of every ``(codebook, frame)`` token of each clip, codebook-major."""
        from core.targets.token_stats import token_stats_batch

        with torch.inference_mode():
            return token_stats_batch(*self.teacher_forced(codes, captions))

    def teacher_forced(self, codes: Sequence[torch.Tensor], captions: Sequence[str]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One teacher-forced pass over the delayed sequences of ``codes`` (``[K, T_b]`` per
        clip) given ``captions``; gradients flow when called outside ``inference_mode``.

        Returns
        -------
        logits : ``[B, K * T, V]`` the logits that predict each ``codes[k, t]`` (taken at the
            un-delayed position ``delay_k + t``), codebook-major, ``T`` the batch's longest.
        targets : ``[B, K * T]`` long, the codes (0 past a clip's end).
        valid : ``[B, K * T]`` bool, the clip's own ``(codebook, frame)`` pairs: the tokens the
            evidence scores (and a shadow reference trains on), never the delay padding.
        """
        B, K = len(codes), self.num_codebooks
        Ts = [int(c.shape[1]) for c in codes]
        Tmax = max(1, max(Ts))
        L = Tmax + self.n_delay
        D = torch.full((B, K, L), self.pad_id, dtype=torch.long, device=self.device)
        dec_mask = torch.zeros((B, L - 1), dtype=torch.long, device=self.device)
        tgt = torch.zeros((B, K, Tmax), dtype=torch.long, device=self.device)
        valid = torch.zeros((B, K, Tmax), dtype=torch.bool, device=self.device)
        for b, c in enumerate(codes):
            T = Ts[b]
            c = c.to(self.device)
            D[b, :, : T + self.n_delay] = self.delayed(c)
            dec_mask[b, : T + self.n_delay - 1] = 1
            tgt[b, :, :T] = c
            valid[b, :, :T] = True
        text = self.tokenizer(list(captions), padding=True, return_tensors="pt")
        logits = self.model(
            input_ids=text["input_ids"].to(self.device),
            attention_mask=text["attention_mask"].to(self.device),
            decoder_input_ids=D[:, :, :-1].reshape(B * K, L - 1),
            decoder_attention_mask=dec_mask,
            use_cache=False,
        ).logits  # [B*K, L-1, V]
        V = logits.shape[-1]
        logits = logits.reshape(B, K, L - 1, V)
        # codes[k, t] is predicted at delayed position delay_k + t.
        pos = self.delays.to(logits.device)[:, None] + torch.arange(Tmax, device=logits.device)[None, :]
        picked = logits.gather(2, pos[None, :, :, None].expand(B, K, Tmax, V))  # [B, K, Tmax, V]
        return picked.reshape(B, K * Tmax, V), tgt.reshape(B, K * Tmax), valid.reshape(B, K * Tmax)
