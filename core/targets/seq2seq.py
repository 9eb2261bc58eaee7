"""Audio-language adapter for encoder-decoder speech models (Whisper and its kin).

The evidence follows the two-stage generation protocol of the LALM membership-inference
paper (section 2.1): in ``generated`` mode the model first decodes its own hypothesis
greedily (stage 1), then the hypothesis is re-scored teacher-forced in one batched forward
pass (stage 2); per-token statistics are taken from those logits on the model's device, so
the full ``[B, N, V]`` logits never leave it. In ``given`` mode the clip's own transcript is
scored instead of a hypothesis. Lower negative log-likelihood reads as "member".

A checkpoint folder holds the model (safetensors weights), its feature extractor and its
tokenizer, the layout ``save_pretrained`` writes; the built-in ``zoo:lalm-*`` targets and
real Whisper checkpoints load through the same code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from core.evidence import TokenStats
from core.targets.base import ClipInput, Family
from core.targets.two_stage import TwoStageTarget


class Seq2SeqTarget(TwoStageTarget):
    """A speech-to-text encoder-decoder checkpoint as an audit target.

    ``tokens`` of its evidence holds the statistics of the scored tokens (content tokens
    and end-of-text); ``text`` is the decoded hypothesis or the given transcript. Audio
    longer than the model's window is truncated to it, with a note. ``infill_m`` is not
    supported for encoder-decoder targets: ``TokenStats.infill`` stays None and a note
    says so.

    Parameters
    ----------
    path : str or Path
        Checkpoint folder (``config.json``, ``*.safetensors``, feature extractor and
        tokenizer files). Weights load from safetensors only.
    spec : str, optional
        The spec shown in results; defaults to the folder path.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` or ``"auto"`` picks CUDA when present.
    dtype : str or torch.dtype, optional
        Weight dtype; float32 on CPU and bfloat16 on CUDA by default. It is part of the
        fingerprint, because it changes the evidence.
    batch_size : int, optional
        Clips per batch when ``evidence`` is called without ``batch_size``; 16 on CUDA
        (halved on out-of-memory), 4 on CPU by default.
    max_new_tokens : int, optional
        Stage-1 decoding limit; defaults to ``max_target_positions - 8`` (room for
        Whisper's task prefix).
    generate_kwargs : dict, optional
        Extra arguments for ``model.generate``. Greedy decoding is always enforced.
    language : str, optional
        A multilingual Whisper's transcription language (``"fr"``, ``"French"``,
        ``"fr-FR"``). Without it the run chooses one (the dataset's, else detected over
        its clips: :mod:`core.targets.language`) before decoding; an English-only model
        takes only ``"en"``.
    task : str
        ``"transcribe"`` (default) or ``"translate"``, for multilingual Whisper.
    trust_remote_code : bool
        Allow code shipped in the folder to run; off unless the user turns it on.
    """

    family: Family = "audio-language"
    adapter = "seq2seq"
    version = 1
    infill_unsupported = "encoder-decoder targets"

    def __init__(
        self,
        path: str | Path,
        *,
        spec: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int | None = None,
        max_new_tokens: int | None = None,
        generate_kwargs: dict[str, Any] | None = None,
        language: str | None = None,
        task: str = "transcribe",
        trust_remote_code: bool = False,
    ) -> None:
        self._open(path, spec=spec, device=device, dtype=dtype, batch_size=batch_size,
                   trust_remote_code=trust_remote_code)
        self.generate_kwargs = dict(generate_kwargs or {})
        self.model, self.feature_extractor, self.tokenizer = self._load_parts()
        self.model.to(self.device).eval()
        self._init_language(language or self.generate_kwargs.pop("language", None),
                            self.generate_kwargs.pop("task", None) or task)

        cfg = self.model.config
        self.decoder_start_id = int(cfg.decoder_start_token_id)
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_id = int(eos[0] if isinstance(eos, (list, tuple)) else eos)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.eos_id)
        # Task/language/timestamp prefixes are bookkeeping, not content; end-of-text is kept
        # because whether the model expects the utterance to stop there is evidence too.
        keep = {self.eos_id, self.tokenizer.unk_token_id}
        self._unscored = sorted(set(self.tokenizer.all_special_ids) - keep)
        self.max_target_positions = int(getattr(cfg, "max_target_positions", 448))
        self.max_new_tokens = int(max_new_tokens or max(1, self.max_target_positions - 8))
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.window_samples = int(getattr(self.feature_extractor, "n_samples", 0)) or None
        # A byte-level BPE (Whisper's) writes a word's leading space into its token ("Ġthe"),
        # and Whisper's own hypotheses begin with one; a given transcript is encoded the same
        # way, so its first word is the token the model would emit, not a rarer space-less one.
        first = self.tokenizer.convert_ids_to_tokens(self.tokenizer(" the", add_special_tokens=False).input_ids[:1])
        self.leading_space = bool(first) and str(first[0]).startswith("\u0120")
        self._identify()

    def _load_parts(self) -> tuple[Any, Any, Any]:
        """The model (weights in ``self.dtype``), its feature extractor and its tokenizer,
        from the ``save_pretrained`` layout; another checkpoint format overrides it."""
        from transformers import AutoFeatureExtractor, AutoModelForSpeechSeq2Seq, AutoTokenizer

        common = self._loader_kwargs()
        model = AutoModelForSpeechSeq2Seq.from_pretrained(str(self.path), use_safetensors=True, dtype=self.dtype, **common)
        feature_extractor = AutoFeatureExtractor.from_pretrained(str(self.path), **common)
        return model, feature_extractor, AutoTokenizer.from_pretrained(str(self.path), **common)

    def _evidence_options(self) -> dict[str, Any]:
        # generation settings (the language and task included) change what ``generated``
        # mode decodes: part of the identity; so does the leading space of a given transcript
        # (named only where it applies, so other models keep their fingerprints)
        return {"max_new_tokens": self.max_new_tokens, "generate_kwargs": self._generation_kwargs()} | (
            {"given_leading_space": True} if self.leading_space else {})

    # ------------------------------------------------------------------ language
    def _init_language(self, language: str | None, task: str) -> None:
        """Read the languages the model knows and apply the ``language``/``task`` options.

        A multilingual Whisper (its generation config lists languages) always decodes with
        a task and one language; an English-only or language-less model takes no language
        but ``"en"`` (accepted and ignored: it is what it transcribes anyway)."""
        from core.targets.language import LanguageChoice, normalize_language

        gen = self.model.generation_config
        self.language_fixed = False
        self.lang_to_id: dict[str, int] = {}
        for token, tid in (getattr(gen, "lang_to_id", None) or {}).items():
            self.lang_to_id[str(token).strip("<|>")] = int(tid)
        self.task_to_id = dict(getattr(gen, "task_to_id", None) or {})
        self.multilingual = bool(getattr(gen, "is_multilingual", False)) and bool(self.lang_to_id)
        self.language: LanguageChoice | None = None
        if not self.multilingual:
            if language is not None and normalize_language(language) != "en":
                raise ValueError(f"{self.spec} is not a multilingual model: it takes no language option (got {language!r})")
            self.task = "transcribe"
            return
        if task not in self.task_to_id:
            raise ValueError(f"unknown task {task!r}; valid: {', '.join(sorted(self.task_to_id))}")
        self.task = task
        if language is not None:
            self.language = LanguageChoice(normalize_language(language, self.lang_to_id), "target option")
        self.language_fixed = language is not None

    @property
    def needs_language(self) -> bool:
        """True for a multilingual model whose language the run must still choose."""
        return self.multilingual and self.language is None

    def language_options(self) -> list[str]:
        """The language codes this model can be told to transcribe (empty: none needed)."""
        return sorted(self.lang_to_id) if self.multilingual else []

    def _identify(self) -> None:
        super()._identify()
        if self.language is None or self.language_fixed:
            # what identifies the weights before any language is chosen (caches of the
            # language identification key on it)
            self.model_fingerprint = self.fingerprint

    def set_language(self, choice, *, force: bool = False) -> None:
        """Decode in ``choice`` (a :class:`~core.targets.language.LanguageChoice`) from now
        on; the fingerprint follows. A language given as a target option is kept unless
        ``force`` (a server answering a request that names its language)."""
        from core.targets.language import LanguageChoice, normalize_language

        if not self.multilingual:
            if choice is not None and normalize_language(choice.language) != "en":
                raise ValueError(f"{self.spec} is not a multilingual model: it cannot transcribe {choice.language!r}")
            return
        if self.language_fixed and not force:
            return
        code = normalize_language(choice.language, self.lang_to_id)
        self.language = LanguageChoice(code, choice.source, dict(choice.votes))
        self._identify()

    def _generation_kwargs(self) -> dict[str, Any]:
        if not self.multilingual or self.language is None:
            return dict(self.generate_kwargs)
        return {**self.generate_kwargs, "language": self.language.language, "task": self.task}

    def language_logprobs(self, clips: Sequence[ClipInput]) -> np.ndarray:
        """``[n_clips, n_languages]`` log-probabilities of each language token (in the order
        of :meth:`language_options`) right after the start of transcript: Whisper's own
        language identification, one decoder step."""
        codes = self.language_options()
        if not codes:
            raise ValueError(f"{self.spec} identifies no languages")
        ids = torch.tensor([self.lang_to_id[c] for c in codes], dtype=torch.long)
        out = []
        for start in range(0, len(clips), self.batch_size):
            batch = list(clips[start:start + self.batch_size])
            feats = self._encode(batch, [[] for _ in batch])
            dec = torch.full((len(batch), 1), self.decoder_start_id, dtype=torch.long, device=self.device)
            with torch.inference_mode():
                logits = self.model(input_features=feats, decoder_input_ids=dec, use_cache=False).logits[:, -1, :]
            out.append(torch.log_softmax(logits.float()[:, ids.to(logits.device)], dim=-1).cpu().numpy())
        return np.concatenate(out, axis=0)

    def detect_language(self, clips: Sequence[ClipInput]):
        """The language of ``clips`` by a majority of per-clip identifications
        (:func:`core.targets.language.pooled_vote`), as a ``detected`` choice."""
        from core.targets.language import LanguageChoice, pooled_vote

        code, votes = pooled_vote(self.language_logprobs(clips), self.language_options())
        return LanguageChoice(code, "detected", votes)

    def _forced_prefix(self) -> list[int]:
        """``<|lang|><|task|><|notimestamps|>``: what a multilingual decode begins with."""
        if self.language is None:
            raise ValueError(f"{self.spec}: choose a language before scoring a given transcript (language=...)")
        no_ts = self.tokenizer.convert_tokens_to_ids("<|notimestamps|>")
        return [self.lang_to_id[self.language.language], int(self.task_to_id[self.task]), int(no_ts)]

    def _ensure_language(self, clips: Sequence[ClipInput]) -> None:
        """A multilingual model called without a chosen language (the library used
        directly, not through a run) detects it over the clips of this first call."""
        from core.targets.language import spread

        if self.needs_language and clips:
            self.set_language(self.detect_language([clips[i] for i in spread(len(clips))]))

    def evidence(self, clips, config, *, batch_size=None):
        self._ensure_language(clips)
        return super().evidence(clips, config, batch_size=batch_size)

    def transcribe(self, clips, *, batch_size=None):
        self._ensure_language(clips)
        return super().transcribe(clips, batch_size=batch_size)

    # ------------------------------------------------------------------ inputs
    def _encode(self, clips: Sequence[ClipInput], notes: list[list[str]]) -> torch.Tensor:
        """Log-mel features ``[B, n_mels, frames]``.

        Each clip is featurized alone so that its features (Whisper normalizes by the
        clip's own maximum) do not depend on what else is in the batch.
        """
        feats: list[np.ndarray] = []
        for clip, clip_notes in zip(clips, notes):
            audio = np.asarray(clip.audio, dtype=np.float32).reshape(-1)
            if int(clip.sr) != self.sampling_rate:
                import librosa

                audio = librosa.resample(audio, orig_sr=int(clip.sr), target_sr=self.sampling_rate)
                audio = audio.astype(np.float32)
            if self.window_samples is not None and audio.shape[0] > self.window_samples:
                clip_notes.append(
                    f"audio truncated to the model's {self.window_samples / self.sampling_rate:g} s window "
                    f"(clip is {audio.shape[0] / self.sampling_rate:.2f} s)"
                )
                audio = audio[: self.window_samples]
            f = self.feature_extractor(audio, sampling_rate=self.sampling_rate, return_tensors="np")
            feats.append(np.asarray(f["input_features"][0], dtype=np.float32))
        return torch.from_numpy(np.stack(feats)).to(self.device, self.dtype)

    def _text_labels(self, text: str, notes: list[str]) -> list[int]:
        """Token ids to score for a given transcript: its encoding without the decoder
        start token, always ending in end-of-text."""
        if self.leading_space:
            text = " " + text.lstrip()  # as the model's own hypotheses begin (see __init__)
        if self.multilingual:
            # the prefix a forced-language decode starts with, so the transcript is scored
            # in the same context as a generated hypothesis (unscored: special tokens)
            ids = self._forced_prefix() + list(self.tokenizer(text, add_special_tokens=False).input_ids)
        else:
            ids = list(self.tokenizer(text).input_ids)
        if ids and ids[0] == self.decoder_start_id:
            ids = ids[1:]
        if not ids or ids[-1] != self.eos_id:
            ids.append(self.eos_id)
        limit = self.max_target_positions - 1
        if len(ids) > limit:
            notes.append(f"transcript truncated to {limit} tokens (it has {len(ids)})")
            ids = ids[: limit - 1] + [self.eos_id]
        return ids

    def _generate(self, feats: torch.Tensor, notes: list[list[str]]) -> list[list[int]]:
        """Stage 1: greedy hypotheses, as label ids (decoder start removed, up to and
        including the first end-of-text)."""
        from transformers.utils import logging as hf_logging

        kwargs = {
            **self._generation_kwargs(),
            "num_beams": 1,
            "do_sample": False,
            "max_new_tokens": self.max_new_tokens,
            "return_dict_in_generate": True,
        }
        # Whisper's generate warns on every call about options it sets itself.
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            with torch.inference_mode():
                out = self.model.generate(feats, **kwargs)
        finally:
            hf_logging.set_verbosity(level)
        seqs = out.sequences if hasattr(out, "sequences") else out
        seqs = seqs.detach().cpu().tolist()
        # a forced-language decode may come back without its prompt: the hypothesis is
        # re-scored after the same <|lang|><|task|><|notimestamps|> it was decoded after
        prefix = self._forced_prefix() if self.multilingual else []
        labels: list[list[int]] = []
        for row, clip_notes in zip(seqs, notes):
            if row and row[0] == self.decoder_start_id:
                row = row[1:]
            if prefix and row[: len(prefix)] != prefix:
                row = prefix + row
            if self.eos_id in row:
                row = row[: row.index(self.eos_id) + 1]
            else:
                while row and row[-1] == self.pad_id:
                    row = row[:-1]
                if len(row) >= self.max_new_tokens:
                    clip_notes.append(f"hypothesis reached the {self.max_new_tokens}-token limit without end-of-text")
                else:
                    # Stopped early, so it ended on end-of-text that generate did not return.
                    row = row + [self.eos_id]
            labels.append(row)
        return labels

    # ------------------------------------------------------------------ scoring
    def teacher_forced(self, labels: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The decoder's teacher-forced inputs for ``labels`` (one id list per clip, as
        :meth:`_text_labels` or :meth:`_generate` return them), on the CPU.

        Returns
        -------
        labels : ``[B, N]`` long, right-padded with the pad id.
        decoder_input_ids : ``[B, N]`` the decoder start token then ``labels`` shifted right.
        decoder_attention_mask : ``[B, N]`` bool, True over each row's own positions.
        scored : ``[B, N]`` bool, the positions whose statistics are evidence (content
            tokens and end-of-text; never padding or a task/language prefix). Training a
            shadow reference takes its loss on the same positions.
        """
        B = len(labels)
        N = max(1, max(len(l) for l in labels))
        lab = torch.full((B, N), self.pad_id, dtype=torch.long)
        valid = torch.zeros((B, N), dtype=torch.bool)
        for b, l in enumerate(labels):
            lab[b, : len(l)] = torch.tensor(list(l), dtype=torch.long)
            valid[b, : len(l)] = True
        dec_in = torch.cat([torch.full((B, 1), self.decoder_start_id, dtype=torch.long), lab[:, :-1]], dim=1)
        dec_in = torch.where(torch.cat([torch.ones(B, 1, dtype=torch.bool), valid[:, :-1]], dim=1), dec_in, self.pad_id)
        # Row b's decoder input covers its labels' positions exactly; right padding is
        # masked and, the decoder being causal, never seen by a scored position.
        dec_mask = valid.clone()
        dec_mask[:, 0] = True
        scored = valid & ~torch.isin(lab, torch.tensor(self._unscored, dtype=torch.long))
        return lab, dec_in, dec_mask, scored

    def _score(self, feats: torch.Tensor, labels: Sequence[Sequence[int]]) -> list[TokenStats]:
        """Stage 2: teacher-forced per-token statistics of ``labels`` (one batched pass)."""
        from core.targets.token_stats import token_stats_batch

        lab, dec_in, dec_mask, scored = self.teacher_forced(labels)
        with torch.inference_mode():
            logits = self.model(
                input_features=feats,
                decoder_input_ids=dec_in.to(self.device),
                decoder_attention_mask=dec_mask.to(self.device, torch.long),
                use_cache=False,
            ).logits
            return token_stats_batch(logits, lab.to(self.device), scored.to(self.device))


def is_seq2seq_folder(spec: str) -> bool:
    """True for a local folder holding an encoder-decoder speech checkpoint."""
    folder = Path(spec)
    cfg, pre = folder / "config.json", folder / "preprocessor_config.json"
    if spec.startswith("zoo:") or not (cfg.is_file() and pre.is_file()):
        return False
    try:
        conf = json.loads(cfg.read_text(encoding="utf-8"))
        prep = json.loads(pre.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(conf.get("is_encoder_decoder")) and "feature_extractor_type" in prep


def load_seq2seq(spec: str, *, device: str | None = None, **options: Any) -> Seq2SeqTarget:
    """Load a local speech-to-text checkpoint folder as a :class:`Seq2SeqTarget`
    (``core.targets.local`` dispatches folders here by their ``config.json``)."""
    return Seq2SeqTarget(spec, spec=spec, device=device, **options)
