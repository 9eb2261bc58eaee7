"""Audio-language adapter for chat-style large audio-language models (decoder-only LLM with
an audio encoder): Qwen2-Audio and Audio Flamingo 3.

The evidence follows the two-stage generation protocol of the LALM membership-inference
paper (section 2.1). The clip and a task prompt (``"Transcribe the audio."`` by default,
``prompt=`` at load time) are rendered through the checkpoint's own chat template; stage 1
decodes the assistant's answer greedily, stage 2 re-scores that answer teacher-forced in one
batched forward pass. Only the answer's tokens are scored (never the system/user prompt or
the audio placeholder tokens), and per-token statistics are computed on the model's device
from the answer positions' logits alone, so the ``[B, L, V]`` logits over the whole prompt
(hundreds of audio tokens times a 150k vocabulary) are never materialized. In ``given`` mode
the clip's own transcript (plus the end-of-turn token) is scored as the answer. Lower
negative log-likelihood reads as "member".

Batching: stage 1 pads prompts on the left (what ``generate`` expects, with position ids
taken from the attention mask); stage 2 pads on the right, so every row keeps the positions
it has alone and, the language model being causal, scored positions never see padding.
Each clip's audio is featurized on its own, so its features do not depend on the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from core.evidence import TokenStats
from core.targets.base import ClipInput, Family
from core.targets.loading import resample
from core.targets.two_stage import TwoStageTarget

DEFAULT_PROMPT = "Transcribe the audio."
DEFAULT_MAX_NEW_TOKENS = 128

CHAT_MODEL_TYPES: dict[str, str] = {
    "qwen2_audio": "Qwen2AudioForConditionalGeneration",
    "audioflamingo3": "AudioFlamingo3ForConditionalGeneration",
}
"""``config.json`` model_type -> transformers class this adapter drives."""

_TEXT_KEYS = {"input_ids", "attention_mask", "num_audio_tokens", "mm_token_type_ids", "token_type_ids"}


def _model_class(model_type: str):
    import transformers

    if model_type not in CHAT_MODEL_TYPES:
        valid = ", ".join(sorted(CHAT_MODEL_TYPES))
        raise ValueError(f"unsupported chat audio model type {model_type!r}; valid: {valid}")
    return getattr(transformers, CHAT_MODEL_TYPES[model_type])


class ChatLALMTarget(TwoStageTarget):
    """A chat audio-language checkpoint (Qwen2-Audio, Audio Flamingo 3) as an audit target.

    ``tokens`` of its evidence holds the statistics of the answer's tokens (end token
    included); ``text`` is the decoded answer or the given transcript. ``infill_m`` is not
    supported here; a note says so.

    Parameters
    ----------
    path : str or Path
        Checkpoint folder as ``save_pretrained`` writes it: ``config.json``,
        ``*.safetensors``, the processor files (tokenizer, feature extractor, chat template).
    spec : str, optional
        The spec shown in results; defaults to the folder path.
    device : str, optional
        ``None``/``"auto"`` picks CUDA when present.
    dtype : str or torch.dtype, optional
        ``None``/``"auto"``: bfloat16 on CUDA, float32 on CPU. Part of the fingerprint.
    batch_size : int, optional
        Clips per batch; defaults to 16 on CUDA (halved on out-of-memory) and 4 on CPU.
    prompt : str
        The user's task prompt sent with the audio, e.g. ``"Describe the audio."``.
        Part of the fingerprint, since it changes the evidence.
    system_prompt : str, optional
        A system message; ``None`` leaves the chat template's default.
    max_new_tokens : int
        Stage-1 decoding limit.
    generate_kwargs : dict, optional
        Extra ``GenerationConfig`` fields for stage 1 (e.g. ``{"repetition_penalty":
        1.1}``); greedy decoding is always enforced and the checkpoint's own sampling
        settings are not used. Part of the fingerprint.
    language : str, optional
        The spoken language, named in the task prompt ("... The speech is in French.");
        without it a run names the dataset's language when its manifests give one.
    trust_remote_code : bool
        Allow code shipped in the folder to run; off unless the user turns it on. Recorded
        in :attr:`load_config`.
    """

    family: Family = "audio-language"
    adapter = "chat_lalm"
    version = 1
    infill_unsupported = "chat audio-language targets"

    def __init__(
        self,
        path: str | Path,
        *,
        spec: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int | None = None,
        prompt: str = DEFAULT_PROMPT,
        system_prompt: str | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        generate_kwargs: dict[str, Any] | None = None,
        language: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoProcessor

        from core.targets.language import LanguageChoice, normalize_language

        config = self._open(path, spec=spec, device=device, dtype=dtype, batch_size=batch_size,
                            trust_remote_code=trust_remote_code)
        self.model_type = str(config.get("model_type", ""))
        cls = _model_class(self.model_type)
        self.prompt = str(prompt)
        self.language = LanguageChoice(normalize_language(language), "target option") if language else None
        self.language_fixed = bool(language)
        self.system_prompt = system_prompt
        self.max_new_tokens = int(max_new_tokens)
        self.generate_kwargs = dict(generate_kwargs or {})
        common = self._loader_kwargs()
        self.model = cls.from_pretrained(str(self.path), use_safetensors=True, dtype=self.dtype, **common)
        self.model.to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(str(self.path), **common)
        self.tokenizer = self.processor.tokenizer
        fe = self.processor.feature_extractor
        self.sampling_rate = int(fe.sampling_rate)
        # Qwen2-Audio pads/truncates to one feature-extractor window; AF3 splits long audio
        # into windows up to its processor's max_audio_len.
        if self.model_type == "audioflamingo3":
            self.max_samples = int(getattr(self.processor, "max_audio_len", 600) * self.sampling_rate)
        else:
            self.max_samples = int(getattr(fe, "n_samples", 0)) or None

        eos = self.model.generation_config.eos_token_id
        eos_list = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_list.append(int(self.tokenizer.eos_token_id))
        self.eos_ids: list[int] = list(dict.fromkeys(int(e) for e in eos_list))
        if not self.eos_ids:
            raise ValueError(
                f"{self.path}: neither the generation config nor the tokenizer names an end-of-sequence token"
            )
        # An assistant turn ends with the end-of-turn marker where the template has one;
        # scoring a given transcript must end the same way a generated answer does.
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        unk = self.tokenizer.unk_token_id
        has_im_end = im_end is not None and im_end != unk and im_end in self.eos_ids
        self.end_id = int(im_end) if has_im_end else self.eos_ids[0]
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.eos_ids[0])
        self.audio_token_id = int(self.model.config.audio_token_id)
        self.prompt_text = self._render_prompt()
        self._identify()

    language_hint = True
    """A run names the dataset's language in the task prompt when its manifests give one."""

    def _task_prompt(self) -> str:
        """The task prompt, naming the spoken language when it is known."""
        from core.targets.language import language_name

        if self.language is None:
            return self.prompt
        return f"{self.prompt} The speech is in {language_name(self.language.language)}."

    def set_language(self, choice) -> None:
        """Name ``choice``'s language in the prompt from now on (None: name none); a language
        given as an option is kept. The fingerprint follows."""
        if self.language_fixed:
            return
        self.language = choice
        self.prompt_text = self._render_prompt()
        self._identify()

    def _evidence_options(self) -> dict[str, Any]:
        return {
            "prompt": self._task_prompt(),
            "system_prompt": self.system_prompt,
            "max_new_tokens": self.max_new_tokens,
            "generate_kwargs": self.generate_kwargs,
        }

    # ------------------------------------------------------------------ inputs
    def _render_prompt(self) -> str:
        """The chat-templated prompt (one audio placeholder, the task prompt, the assistant
        header), as text; the processor expands the placeholder per clip."""
        messages: list[dict[str, Any]] = []
        if self.system_prompt is not None:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        messages.append(
            {
                "role": "user",
                "content": [{"type": "audio", "audio": "clip"}, {"type": "text", "text": self._task_prompt()}],
            }
        )
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text[0] if isinstance(text, list) else str(text)

    def _encode(self, clips: Sequence[ClipInput], notes: list[list[str]]) -> list[dict[str, Any]]:
        return [self._encode_clip(c, n) for c, n in zip(clips, notes)]

    def _encode_clip(self, clip: ClipInput, notes: list[str]) -> dict[str, Any]:
        """Prompt ids ``[L]`` (audio placeholders expanded) and the clip's audio tensors
        (leading axis: feature windows)."""
        audio = resample(clip.audio, orig_sr=int(clip.sr), target_sr=self.sampling_rate)
        if self.max_samples is not None and audio.shape[0] > self.max_samples:
            notes.append(
                f"audio truncated to the model's {self.max_samples / self.sampling_rate:g} s window "
                f"(clip is {audio.shape[0] / self.sampling_rate:.2f} s)"
            )
            audio = audio[: self.max_samples]
        enc = self.processor(
            text=[self.prompt_text], audio=[audio], sampling_rate=self.sampling_rate, return_tensors="pt"
        )
        feats = {k: v for k, v in enc.items() if k not in _TEXT_KEYS and isinstance(v, torch.Tensor)}
        return {"ids": enc["input_ids"][0].tolist(), "audio": feats}

    def _collate(
        self, rows: Sequence[Sequence[int]], encs: Sequence[dict[str, Any]], *, left: bool
    ) -> dict[str, torch.Tensor]:
        """Padded ``input_ids``/``attention_mask`` ``[B, L]`` plus the audio tensors
        concatenated in clip order (the order of the audio placeholders)."""
        B, L = len(rows), max(len(r) for r in rows)
        ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, L), dtype=torch.long)
        for b, r in enumerate(rows):
            sl = slice(L - len(r), L) if left else slice(0, len(r))
            ids[b, sl] = torch.tensor(list(r), dtype=torch.long)
            mask[b, sl] = 1
        out = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        for k in encs[0]["audio"]:
            v = torch.cat([e["audio"][k] for e in encs], dim=0).to(self.device)
            out[k] = v.to(self.dtype) if v.is_floating_point() else v
        return out

    def _text_labels(self, text: str, notes: list[str]) -> list[int]:
        """The transcript's ids as the assistant's answer, ending with the end-of-turn token."""
        # Literal control-token text in a transcript is text, not a control token.
        ids = list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids)
        if not ids or ids[-1] != self.end_id:
            ids.append(self.end_id)
        return ids

    # ------------------------------------------------------------------ stages
    def _generation_config(self):
        """Plain greedy decoding. Built from scratch rather than from the checkpoint's
        generation config: chat checkpoints ship sampling settings and repetition penalties,
        which would make the answer something other than the model's own argmax path."""
        from transformers import GenerationConfig

        return GenerationConfig(
            **{
                **self.generate_kwargs,
                "max_new_tokens": self.max_new_tokens,
                "do_sample": False,
                "num_beams": 1,
                "eos_token_id": self.eos_ids,
                "pad_token_id": self.pad_id,
                # An audio placeholder in the answer would claim audio features that do
                # not exist when the answer is re-scored.
                "suppress_tokens": sorted({self.audio_token_id, *self.generate_kwargs.get("suppress_tokens", [])}),
            }
        )

    def _generate(self, encs: Sequence[dict[str, Any]], notes: list[list[str]]) -> list[list[int]]:
        """Stage 1: greedy answers as token ids, up to and including the first end token."""
        from transformers.utils import logging as hf_logging

        inputs = self._collate([e["ids"] for e in encs], encs, left=True)
        prompt_len = inputs["input_ids"].shape[1]
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        # generate() fills any field left at its default from the model's own generation
        # config (do_sample=False is the default, so a checkpoint's do_sample=True would
        # win): swap the model's config out for the duration of the call.
        saved = self.model.generation_config
        self.model.generation_config = self._generation_config()
        try:
            with torch.inference_mode():
                seqs = self.model.generate(**inputs)
        finally:
            self.model.generation_config = saved
            hf_logging.set_verbosity(level)
        seqs = (seqs.sequences if hasattr(seqs, "sequences") else seqs)[:, prompt_len:].cpu().tolist()
        out: list[list[int]] = []
        for row, clip_notes in zip(seqs, notes):
            cut = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            if cut is not None:
                row = row[: cut + 1]
            else:
                clip_notes.append(f"answer reached the {self.max_new_tokens}-token limit without an end token")
            out.append(row)
        return out

    def _score(self, encs: Sequence[dict[str, Any]], labels: Sequence[Sequence[int]]) -> list[TokenStats]:
        """Stage 2: teacher-forced statistics of ``labels`` after each prompt (one pass)."""
        from core.targets.token_stats import token_stats_batch

        with torch.inference_mode():
            return token_stats_batch(*self.teacher_forced(encs, labels))

    def teacher_forced(self, encs: Sequence[dict[str, Any]], labels: Sequence[Sequence[int]]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One teacher-forced pass of ``labels`` (the answers' ids) after each clip's prompt
        (:meth:`_encode` rows); gradients flow when called outside ``inference_mode``.

        The language-model head runs only on the hidden states that predict answer tokens:
        position ``len(prompt_b) - 1 + i`` predicts answer token ``i`` of row ``b``.

        Returns
        -------
        logits : ``[B, N, V]`` the logits that predict each answer token.
        labels : ``[B, N]`` long, right-padded with the pad id.
        valid : ``[B, N]`` bool, each row's own answer tokens (end-of-turn included): the
            positions the evidence scores and a shadow reference trains on.
        """
        rows = [list(e["ids"]) + list(l) for e, l in zip(encs, labels)]
        inputs = self._collate(rows, encs, left=False)
        B, N = len(labels), max(1, max(len(l) for l in labels))
        lab = torch.full((B, N), self.pad_id, dtype=torch.long)
        valid = torch.zeros((B, N), dtype=torch.bool)
        pos = torch.zeros((B, N), dtype=torch.long)
        for b, (e, l) in enumerate(zip(encs, labels)):
            n = len(l)
            lab[b, :n] = torch.tensor(list(l), dtype=torch.long)
            valid[b, :n] = True
            pos[b, :n] = torch.arange(len(e["ids"]) - 1, len(e["ids"]) - 1 + n)
        hidden = self.model.model(**inputs, use_cache=False).last_hidden_state  # [B, L, H]
        pos_d = pos.to(hidden.device)
        picked = hidden.gather(1, pos_d.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # [B, N, H]
        logits = self.model.get_output_embeddings()(picked)  # [B, N, V]
        return logits, lab.to(logits.device), valid.to(logits.device)
