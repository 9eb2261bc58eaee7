"""The common driver of the token targets: encode, generate or take the given text, score.

Encoder-decoder speech models (:mod:`core.targets.seq2seq`), chat audio-language models
(:mod:`core.targets.chat_lalm`) and MusicGen (:mod:`core.targets.musicgen`) produce the
same raw evidence, per-token statistics of a token sequence conditioned on the clip, by
the same protocol (LALM membership-inference paper, section 2.1):

1. encode the batch (audio features, chat prompts, codec tokens);
2. pick the tokens to score: in ``generated`` mode the model's own greedy answer (stage 1),
   in ``given`` mode the clip's own text; a target without text modes always scores the
   clip's own tokens;
3. score them teacher-forced in one batched pass (stage 2) and wrap each clip's
   statistics, text and notes as :class:`~core.evidence.ClipEvidence`.

:class:`TwoStageTarget` owns that loop, the loading rules every checkpoint folder goes
through (:mod:`core.targets.loading`), the halving of a batch that runs out of memory, and
the fingerprint; an adapter only implements the hooks of one model family.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from core.evidence import ClipEvidence, TokenStats
from core.targets.base import ClipInput, EvidenceConfig, Family, check_text_mode
from core.targets.fingerprint import checkpoint_files, fingerprint
from core.targets.loading import (
    LoadConfig,
    check_remote_code,
    check_safetensors,
    default_batch_size,
    dtype_name,
    free_memory,
    read_config,
    resolve_device,
    resolve_dtype,
    run_batches_halving,
)


class TwoStageTarget:
    """Base of the token-statistics targets; subclasses implement the hooks.

    Class attributes an adapter sets:

    adapter : the adapter's name in the fingerprint.
    version : bumped when the evidence the adapter produces changes for the same weights.
    text_modes : whether ``EvidenceConfig.mode`` applies (``generated``/``given``); when
        False the clip's own tokens are always scored and the mode is ignored.
    infill_unsupported : the targets named in the note left when ``infill_m > 0``.

    Hooks (``encoded`` is whatever :meth:`_encode` returns for the batch):

    - :meth:`_encode` ``(clips, notes) -> encoded``;
    - :meth:`_generate` ``(encoded, notes) -> labels`` (stage 1, ``text_modes`` only);
    - :meth:`_text_labels` ``(text, notes) -> ids`` (or :meth:`_given` ``(clips, encoded,
      notes) -> labels`` for tokens that are not the clip's text);
    - :meth:`_score` ``(encoded, labels) -> list[TokenStats]`` (stage 2);
    - :meth:`_evidence_options`, :meth:`_clip_notes`, :meth:`_decode` (defaults provided).

    ``notes`` holds one list per clip; hooks append what a reader of the evidence should
    know (truncations, limits reached).
    """

    family: Family
    adapter: ClassVar[str]
    version: ClassVar[int] = 1
    text_modes: ClassVar[bool] = True
    infill_unsupported: ClassVar[str]

    path: Path
    spec: str
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    trust_remote_code: bool = False  # set by _open from the caller's explicit choice
    load_config: LoadConfig
    fingerprint: str
    model: Any

    # ------------------------------------------------------------------ loading
    def _open(
        self,
        path: str | Path,
        *,
        spec: str | None,
        device: str | None,
        dtype: str | torch.dtype | None,
        batch_size: int | None,
        trust_remote_code: bool,
    ) -> dict[str, Any]:
        """Check the folder against the loading rules and set the options every adapter has.

        Returns the folder's ``config.json``.

        Raises
        ------
        FileNotFoundError
            No ``config.json``.
        ValueError
            Pickle-only or missing weights; custom code without ``trust_remote_code=True``.
        """
        self.path = Path(path)
        config = self._checked_config(trust_remote_code)
        self.spec = spec or str(self.path)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = int(batch_size or default_batch_size(self.device))
        self.trust_remote_code = bool(trust_remote_code)
        return config

    def _checked_config(self, trust_remote_code: bool) -> dict[str, Any]:
        """``config.json`` of a folder that passes the loading rules: safetensors weights
        only, custom code only with ``trust_remote_code``. A format with other files
        (CTranslate2) overrides it with its own checks."""
        config = read_config(self.path)
        check_safetensors(self.path)
        check_remote_code(config, trust_remote_code=trust_remote_code, folder=self.path)
        return config

    def _weight_files(self) -> list[Path]:
        """The files the fingerprint hashes: the folder's weights and configs."""
        return checkpoint_files(self.path)

    def _loader_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of every ``from_pretrained`` call."""
        return {"local_files_only": True, "trust_remote_code": self.trust_remote_code}

    def _identify(self) -> None:
        """Record how the target was loaded and its fingerprint; called at the end of
        ``__init__``, once every option is set.

        The fingerprint hashes the weight and config files with the adapter's name and
        version, the weight dtype and :meth:`_evidence_options`: everything that changes
        the evidence for the same clip and :class:`EvidenceConfig`.
        """
        self.load_config = LoadConfig(
            device=str(self.device),
            dtype=dtype_name(self.dtype),
            trust_remote_code=self.trust_remote_code,
            batch_size=self.batch_size,
        )
        extra = {"adapter": self.adapter, "version": self.version, "dtype": dtype_name(self.dtype)}
        self.fingerprint = fingerprint(self._weight_files(), {**extra, **self._evidence_options()})

    @property
    def evidence_reads(self) -> tuple[str, ...]:
        """The :class:`EvidenceConfig` settings the evidence depends on (its cache identity):
        the text mode where it applies, and ``infill_m`` (its note); never a seed."""
        return ("mode", "infill_m") if self.text_modes else ("infill_m",)

    # ------------------------------------------------------------------ hooks
    def _evidence_options(self) -> dict[str, Any]:
        """Loader options, beyond the dtype, that change the evidence."""
        return {}

    def _encode(self, clips: Sequence[ClipInput], notes: list[list[str]]) -> Any:
        """The batch's model inputs, each clip encoded on its own (batch-independent)."""
        raise NotImplementedError

    def _generate(self, encoded: Any, notes: list[list[str]]) -> list[list[int]]:
        """Stage 1: greedy answers as token ids, one list per clip."""
        raise NotImplementedError

    def _given(self, clips: Sequence[ClipInput], encoded: Any, notes: list[list[str]]) -> list[Any]:
        """The tokens of each clip's own text (or its own audio tokens), one per clip;
        by default :meth:`_text_labels` of each clip's text."""
        return [self._text_labels(c.text, n) for c, n in zip(clips, notes)]

    def _text_labels(self, text: str, notes: list[str]) -> list[int]:
        """The token ids scored for a given text, as the model's answer would end."""
        raise NotImplementedError

    def _score(self, encoded: Any, labels: Sequence[Any]) -> list[TokenStats]:
        """Stage 2: teacher-forced statistics of ``labels``, one :class:`TokenStats` per clip."""
        raise NotImplementedError

    def _decode(self, labels: Sequence[int]) -> str:
        """The text of a generated answer."""
        return self.tokenizer.decode(labels, skip_special_tokens=True)  # type: ignore[attr-defined]

    def _clip_notes(self, clip: ClipInput, labels: Any) -> list[str]:
        """Notes added to a clip's evidence after scoring."""
        return []

    # ------------------------------------------------------------------ driver
    def _evidence_batch(self, batch: list[ClipInput], mode: str, infill_m: int) -> list[ClipEvidence]:
        notes: list[list[str]] = [[] for _ in batch]
        encoded = self._encode(batch, notes)
        if self.text_modes and mode == "generated":
            labels = self._generate(encoded, notes)
            texts = [self._decode(lab) for lab in labels]
        else:
            labels = self._given(batch, encoded, notes)
            texts = [c.text for c in batch]
        stats = self._score(encoded, labels)
        out = []
        for clip, lab, st, text, clip_notes in zip(batch, labels, stats, texts, notes):
            clip_notes.extend(self._clip_notes(clip, lab))
            if infill_m > 0:
                clip_notes.append(f"infilling score not computed: not supported for {self.infill_unsupported}")
            out.append(ClipEvidence(clip_hash=clip.clip_hash, tokens=st, text=text, notes=tuple(clip_notes)))
        return out

    def evidence(
        self, clips: Sequence[ClipInput], config: EvidenceConfig, *, batch_size: int | None = None
    ) -> list[ClipEvidence]:
        """Per-token statistics of each clip's scored tokens, in clip order.

        Parameters
        ----------
        clips : sequence of ClipInput
            Mono audio at any sample rate (resampled to the model's); ``text`` is the
            transcript or caption.
        config : EvidenceConfig
            ``mode``: ``"generated"`` (two-stage) or ``"given"`` (``ClipInput.text``), for
            targets with ``text_modes``. ``infill_m`` is not supported; a note says so.
        batch_size : int, optional
            Clips per batch (default: the target's). A batch that runs out of CUDA or host
            memory is retried at half the size, and the smaller size kept for later calls.
            Results do not depend on it.

        Returns
        -------
        list of ClipEvidence
            ``tokens`` holds ``[N]`` statistics of the scored tokens; ``text`` is the
            decoded answer in ``generated`` mode, the clip's own text otherwise.

        Raises
        ------
        ValueError
            Unknown mode, or ``mode="given"`` with a clip whose text is empty (targets
            with ``text_modes``).
        """
        if self.text_modes:
            check_text_mode(config, clips)

        def shrink(bs: int) -> None:
            self.batch_size = bs

        out, _ = run_batches_halving(
            lambda b: self._evidence_batch(b, config.mode, config.infill_m),
            list(clips),
            batch_size=int(batch_size or self.batch_size),
            on_shrink=shrink,
        )
        return out

    def transcribe(self, clips: Sequence[ClipInput], *, batch_size: int | None = None) -> list[str]:
        """The model's greedy answer for each clip (the outputs access level: what an API of
        this model would return), batched and halved on out-of-memory like :meth:`evidence`.

        Raises
        ------
        ValueError
            for a target that does not answer in text (a text-to-audio model).
        """
        if self.family != "audio-language":
            raise ValueError(f"{self.spec} is a {self.family} model: it generates audio, not transcriptions")

        def answers(batch: list[ClipInput]) -> list[str]:
            notes: list[list[str]] = [[] for _ in batch]
            return [self._decode(lab) for lab in self._generate(self._encode(batch, notes), notes)]

        def shrink(bs: int) -> None:
            self.batch_size = bs

        out, _ = run_batches_halving(answers, list(clips), batch_size=int(batch_size or self.batch_size), on_shrink=shrink)
        return out

    def unload(self) -> None:
        """Drop the model and free its memory (CUDA cache included)."""
        self.model = None
        free_memory()
