"""What a shadow reference of each target family trains on: one :class:`Objective` per family.

:func:`core.recipes.shadow.train_shadow` runs the same loop for every family (AdamW, the
cosine schedule, clipping, the seeded batch order, the resumable state, the card); an
objective supplies what differs:

- which loaded targets and checkpoint folders it fine-tunes (:meth:`Objective.accepts`,
  :meth:`Objective.accepts_folder`) and how the base is loaded for it;
- the trained weights, as one module (:meth:`Objective.module`);
- the clips' inputs, computed once before the first epoch (:meth:`Objective.prepare`);
- the loss of one batch and how many units it averages over (:meth:`Objective.batch_loss`);
- the parts kept frozen (:meth:`Objective.frozen`) and the layers LoRA adapts when the
  recipe asks for it (:meth:`Objective.lora_layers`);
- how the result is saved so that the folder loads back as a target of the base's family
  (:meth:`Objective.save`).

Several families have more than one objective (a zoo layout and a released checkpoint
layout); :func:`objective_of` picks one for a loaded target, :func:`objective_for_folder`
for a checkpoint folder, from its layout alone.

Each loss is what the family's audit reads, through the adapter's own preprocessing:

- speech seq2seq (:class:`~core.targets.seq2seq.Seq2SeqTarget`): the teacher-forced
  cross-entropy of the transcript after the decoder prompt, on the positions the adapter
  scores;
- autoregressive text-to-audio (:class:`~core.targets.causal_audio.CausalAudioTarget`, the
  zoo's ``ar-*``): the teacher-forced cross-entropy of the clip's audio codes and the
  end-of-audio token given ``[caption, SEP]``, the clip tokenized by the target's own codebook
  (the zoo's training loss, :func:`core.recipes.zoo.ar.fit_ar`);
- diffusion (:class:`~core.targets.diffusion_audio.MelDiffusionTarget`, the zoo's
  ``diffusion-*``): the denoising loss on the clip's normalized log-mel patch, noised by the
  target's scheduler at a timestep drawn uniformly from its training range with noise drawn
  from the build's seeded generator, conditioned on the caption (replaced by the empty caption
  for :data:`COND_DROPOUT` of the draws, so the unconditional prediction the audit also reads
  keeps being trained; the zoo's training loss, :func:`core.recipes.zoo.diffusion.fit_diffusion`);
- MusicGen (:class:`~core.targets.musicgen.MusicgenTarget`): the teacher-forced
  cross-entropy of the clip's EnCodec codes, every codebook, laid out in MusicGen's delay
  pattern and scored at the un-delayed positions the adapter reads, given the caption (the
  T5 text encoder and the codec frozen, as MusicGen is trained);
- chat audio-language models (:class:`~core.targets.chat_lalm.ChatLALMTarget`, Qwen2-Audio
  and Audio Flamingo 3 layouts): the teacher-forced cross-entropy of the clip's transcript as
  the assistant's answer (end-of-turn token included) after the chat prompt with the audio,
  on the answer positions the adapter scores;
- diffusers pipelines (:class:`~core.targets.diffusers_audio.DiffusersAudioTarget`:
  AudioLDM, MusicLDM, AudioLDM 2): the denoising loss on the clip's VAE latent (the
  adapter's own mel front end and posterior mean), noised on the variance-preserving path of
  the scheduler's ``alphas_cumprod`` at a uniform timestep, conditioned on the caption through
  the pipeline's own prompt encoder (the empty caption for :data:`COND_DROPOUT` of the
  draws); the UNet is trained, the VAE, vocoder and text encoders are frozen.

torch is imported by the methods, never with this module.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

if TYPE_CHECKING:
    import torch

COND_DROPOUT = 0.1
"""Share of a diffusion shadow's draws whose caption is replaced by the empty caption (the zoo's rate)."""


@dataclass
class Prepared:
    """A build's inputs, computed once: ``inputs`` as the objective keeps them, and how many
    clips were cut to fit the model (``truncated``)."""

    inputs: Any
    truncated: int = 0


class Objective:
    """One family's shadow objective (see the module docstring)."""

    name: str = ""
    """Short name of the objective (the checkpoint layout it fine-tunes)."""
    family: str = ""
    """The target family (:data:`core.targets.base.Family`) it fine-tunes."""
    bases: str = ""
    """What it can be built from, as the refusal of another base names it."""
    folder_kind: str = ""
    """The checkpoint folders it accepts, in a refusal ("not a ... checkpoint folder")."""
    text: str = "caption"
    """What each clip must carry to be trained on."""
    kind: str = ""
    """The shadow, in a refusal ("... shadow is fine-tuned on each clip's caption")."""
    per: str = "per token"
    """The loss's unit, as the progress line and the CLI say it."""
    describe: str | None = None
    """The card's ``objective`` (None: none written, as for the first family)."""
    load_options: ClassVar[dict[str, Any]] = {}
    """Loader options of the base (float32 weights where the loader would choose another dtype)."""
    versions: tuple[str, ...] = ("transformers",)
    """Model libraries whose versions the card records."""

    def accepts(self, target: Any) -> bool:
        raise NotImplementedError

    def accepts_folder(self, folder: Path) -> bool:
        raise NotImplementedError

    def module(self, target: Any) -> torch.nn.Module:
        """The trained weights (the target's model, unless the family trains more than one)."""
        module: torch.nn.Module = target.model
        return module

    def frozen(self, target: Any) -> list[torch.nn.Module]:
        """Parts of the model a forward pass goes through but the build never changes (their
        gradients are not computed); none by default."""
        return []

    def lora_layers(self, module: torch.nn.Module) -> list[str]:
        """Names (in ``module``) of the layers LoRA adapts: every linear layer (``nn.Linear``
        and transformers' ``Conv1D``) except output heads, whose weights are often tied to
        the input embeddings (adapting one would change both when merged)."""
        import torch
        from transformers.pytorch_utils import Conv1D

        heads: set[int] = set()
        for m in module.modules():
            get = getattr(m, "get_output_embeddings", None)
            out = get() if callable(get) else None
            if isinstance(out, torch.nn.Module):
                heads |= {id(x) for x in out.modules()}
        return [n for n, m in module.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D)) and id(m) not in heads]

    def card_extra(self, target: Any) -> dict[str, Any]:
        """What the card adds about how the clips were presented (a prompt, a front end)."""
        return {}

    def architecture(self, target: Any, how: str = "full fine-tuning") -> str:
        """The model class and what was trained; ``how`` names the fine-tuning (full, or LoRA
        with its settings)."""
        raise NotImplementedError

    def prepare(self, target: Any, clips: Sequence[Any], batch_size: int) -> Prepared:
        raise NotImplementedError

    def batch_loss(self, target: Any, prep: Prepared, idx: list[int], gen: torch.Generator, device: torch.device,
                   autocast: bool) -> tuple[torch.Tensor, int]:
        """(the batch's mean loss, the units it averages over: tokens or clips)."""
        raise NotImplementedError

    def save(self, target: Any, out: Path) -> None:
        raise NotImplementedError


def _autocast(enabled: bool):
    import torch

    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=enabled)


class Seq2SeqObjective(Objective):
    name = "speech-seq2seq"
    family = "audio-language"
    bases = ("speech seq2seq (Whisper-architecture) checkpoints: zoo:lalm-*, Hugging Face Whisper folders "
             "and CTranslate2 (faster-whisper) Whisper folders")
    folder_kind = "speech seq2seq"
    text = "transcript"
    kind = "a speech"
    load_options: ClassVar[dict[str, Any]] = {"dtype": "float32"}

    def accepts(self, target: Any) -> bool:
        from core.targets.seq2seq import Seq2SeqTarget

        return isinstance(target, Seq2SeqTarget)

    def accepts_folder(self, folder: Path) -> bool:
        from core.targets.ct2 import is_ct2_whisper_folder
        from core.targets.seq2seq import is_seq2seq_folder

        return is_seq2seq_folder(str(folder)) or is_ct2_whisper_folder(folder)

    def architecture(self, target: Any, how: str = "full fine-tuning") -> str:
        return f"{type(target.model).__name__} ({how} of the base)"

    def prepare(self, target: Any, clips: Sequence[Any], batch_size: int) -> Prepared:
        import torch

        notes: list[list[str]] = [[] for _ in clips]
        feats = torch.cat([target._encode(list(clips[s:s + batch_size]), notes[s:s + batch_size]).float().cpu()
                           for s in range(0, len(clips), batch_size)])
        labels = [target._text_labels(c.text, n) for c, n in zip(clips, notes)]
        return Prepared((feats, labels), sum(any("truncated" in x for x in n_) for n_ in notes))

    def batch_loss(self, target: Any, prep: Prepared, idx: list[int], gen: torch.Generator, device: torch.device,
                   autocast: bool) -> tuple[torch.Tensor, int]:
        import torch

        feats, labels = prep.inputs
        lab, dec_in, dec_mask, scored = target.teacher_forced([labels[i] for i in idx])
        with _autocast(autocast):
            logits = target.model(input_features=feats[idx].to(device), decoder_input_ids=dec_in.to(device),
                                  decoder_attention_mask=dec_mask.to(device, torch.long), use_cache=False).logits
        mask = scored.to(device)
        loss = torch.nn.functional.cross_entropy(logits.float()[mask], lab.to(device)[mask])
        return loss, int(mask.sum())

    def save(self, target: Any, out: Path) -> None:
        """The ``save_pretrained`` layout (safetensors weights, configs, feature extractor,
        tokenizer) that ``--reference DIR`` loads like any Whisper folder."""
        _save_pretrained(target.model, out)
        target.feature_extractor.save_pretrained(str(out))
        target.tokenizer.save_pretrained(str(out))


class CausalAudioObjective(Objective):
    name = "causal-audio"
    family = "autoregressive"
    bases = "autoregressive caption -> audio-token models in the zoo's layout (zoo:ar-* and their shadows)"
    folder_kind = "caption -> audio-token (zoo ar-* layout)"
    kind = "an autoregressive"
    per = "per audio token"
    describe = ("teacher-forced cross-entropy of the clip's audio codes and end-of-audio token given [caption, SEP], "
                "the clip tokenized by the base's codebook (the zoo's ar-* training loss), mean per token")

    def accepts(self, target: Any) -> bool:
        from core.targets.causal_audio import CausalAudioTarget

        return isinstance(target, CausalAudioTarget)

    def accepts_folder(self, folder: Path) -> bool:
        from core.targets.local import is_causal_audio_folder

        return is_causal_audio_folder(folder)

    def architecture(self, target: Any, how: str = "full fine-tuning") -> str:
        return f"{type(target.model).__name__} ({how} of the base; its codebook and sequence layout kept)"

    def prepare(self, target: Any, clips: Sequence[Any], batch_size: int) -> Prepared:
        seqs, labels, truncated = [], [], 0
        for c in clips:
            ids, start, _, cut = target.tokenize(c)
            seqs.append(ids)
            labels.append([-100] * start + ids[start:])  # the codes and the end-of-audio token
            truncated += bool(cut)
        return Prepared((seqs, labels), truncated)

    def batch_loss(self, target: Any, prep: Prepared, idx: list[int], gen: torch.Generator, device: torch.device,
                   autocast: bool) -> tuple[torch.Tensor, int]:
        import torch

        from core.targets.causal_audio import pad_batch

        seqs, labels = prep.inputs
        ids, attn = pad_batch([seqs[i] for i in idx])
        lab, _ = pad_batch([labels[i] for i in idx], pad_id=-100)
        with _autocast(autocast):
            logits = target.model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
        nxt = lab[:, 1:].to(device)  # position p predicts token p + 1
        mask = nxt != -100
        loss = torch.nn.functional.cross_entropy(logits.float()[:, :-1][mask], nxt[mask])
        return loss, int(mask.sum())

    def save(self, target: Any, out: Path) -> None:
        from core.targets.causal_audio import save_causal_audio

        save_causal_audio(out, target.model, target.codebook, target.layout)


class MelDiffusionObjective(Objective):
    name = "mel-diffusion"
    family = "diffusion"
    bases = "diffusion caption -> mel-patch UNets in the zoo's layout (zoo:diffusion-* and their shadows)"
    folder_kind = "mel-patch diffusion (zoo diffusion-* layout)"
    kind = "a diffusion"
    per = "(denoising MSE)"
    describe = ("denoising loss: mean squared error of the UNet's prediction (the scheduler's prediction type) on the clip's "
                "normalized log-mel patch noised at a timestep drawn uniformly from the scheduler's training range, noise and "
                f"timesteps from the build's seeded generator, conditioned on the caption (the empty caption for {COND_DROPOUT:.0%} "
                "of draws; the zoo's diffusion-* training loss), mean per clip")
    versions = ("transformers", "diffusers")

    def accepts(self, target: Any) -> bool:
        from core.targets.diffusion_audio import MelDiffusionTarget

        return isinstance(target, MelDiffusionTarget)

    def accepts_folder(self, folder: Path) -> bool:
        from core.targets.local import is_mel_diffusion_folder

        return is_mel_diffusion_folder(folder)

    def module(self, target: Any) -> torch.nn.Module:
        import torch

        # both trained, as the zoo trains them; one module so the state and the optimizer see one parameter list
        return torch.nn.ModuleDict({"unet": target.unet, "text_encoder": target.conditioner.text_model})

    def architecture(self, target: Any, how: str = "full fine-tuning") -> str:
        return (f"{type(target.unet).__name__} + {type(target.conditioner.text_model).__name__} ({how} of both; "
                "the scheduler and the patch normalization kept)")

    def prepare(self, target: Any, clips: Sequence[Any], batch_size: int) -> Prepared:
        patch = target.patch
        longest = patch.n_frames * patch.mel.hop_length / patch.mel.sr
        x0 = target.patches(list(clips)).float().cpu()
        return Prepared((x0, [c.text for c in clips]), sum(len(c.audio) / c.sr > longest for c in clips))

    def batch_loss(self, target: Any, prep: Prepared, idx: list[int], gen: torch.Generator, device: torch.device,
                   autocast: bool) -> tuple[torch.Tensor, int]:
        import torch

        x0_all, captions = prep.inputs
        sched = target.scheduler
        x0 = x0_all[idx]
        b = len(idx)
        t = torch.randint(0, int(sched.config.num_train_timesteps), (b,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        drop = torch.rand(b, generator=gen) < COND_DROPOUT
        x_t = sched.add_noise(x0, eps, t)
        kind = target.prediction_type
        goal = eps if kind == "epsilon" else sched.get_velocity(x0, eps, t) if kind == "v_prediction" else x0
        with _autocast(autocast):
            states, mask = target.conditioner(["" if d else captions[j] for d, j in zip(drop.tolist(), idx)])
            out = target.unet(x_t.to(device), t.to(device), encoder_hidden_states=states, encoder_attention_mask=mask).sample
        return torch.nn.functional.mse_loss(out.float(), goal.to(device)), b

    def save(self, target: Any, out: Path) -> None:
        from core.targets.diffusion_audio import save_mel_diffusion

        save_mel_diffusion(out, target.unet, target.conditioner.text_model, target.scheduler, target.patch)


def _save_pretrained(model: Any, out: Path) -> None:
    """``model.save_pretrained`` in safetensors, no pickle weights left beside them."""
    kwargs = {"safe_serialization": True} if "safe_serialization" in inspect.signature(model.save_pretrained).parameters else {}
    model.save_pretrained(str(out), **kwargs)
    for stale in out.glob("*.bin"):
        stale.unlink()


def _config(folder: Path) -> dict[str, Any]:
    """A folder's ``config.json`` ({} when it has none or it cannot be read)."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


class MusicgenObjective(Objective):
    name = "musicgen"
    family = "autoregressive"
    bases = "MusicGen checkpoint folders (Hugging Face MusicgenForConditionalGeneration layout)"
    folder_kind = "MusicGen"
    kind = "a MusicGen"
    per = "per audio token"
    describe = ("teacher-forced cross-entropy of the clip's EnCodec codes (every codebook, in MusicGen's delay pattern, "
                "scored at the un-delayed positions the audit reads) given the caption, mean per token; the T5 text "
                "encoder and the EnCodec codec frozen")
    load_options: ClassVar[dict[str, Any]] = {"dtype": "float32"}

    def accepts(self, target: Any) -> bool:
        from core.targets.musicgen import MusicgenTarget

        return isinstance(target, MusicgenTarget)

    def accepts_folder(self, folder: Path) -> bool:
        return _config(folder).get("model_type") == "musicgen"

    def module(self, target: Any) -> torch.nn.Module:
        import torch

        parts = {"decoder": target.model.decoder}
        if getattr(target.model, "enc_to_dec_proj", None) is not None:
            parts["enc_to_dec_proj"] = target.model.enc_to_dec_proj
        return torch.nn.ModuleDict(parts)

    def frozen(self, target: Any) -> list[torch.nn.Module]:
        return [target.model.text_encoder, target.model.audio_encoder]

    def architecture(self, target: Any, how: str = "full fine-tuning") -> str:
        return (f"{type(target.model).__name__} ({how} of the decoder and the text projection; the T5 text encoder "
                "and the EnCodec codec frozen)")

    def card_extra(self, target: Any) -> dict[str, Any]:
        return {"bandwidth": target.bandwidth}

    def prepare(self, target: Any, clips: Sequence[Any], batch_size: int) -> Prepared:
        notes: list[list[str]] = [[] for _ in clips]
        codes = [target.encode_audio(c, n).cpu() for c, n in zip(clips, notes)]
        return Prepared((codes, [c.text for c in clips]), sum(any("truncated" in x for x in n) for n in notes))

    def batch_loss(self, target: Any, prep: Prepared, idx: list[int], gen: torch.Generator, device: torch.device,
                   autocast: bool) -> tuple[torch.Tensor, int]:
        import torch

        codes, captions = prep.inputs
        with _autocast(autocast):
            logits, tgt, valid = target.teacher_forced([codes[i] for i in idx], [captions[i] for i in idx])
        loss = torch.nn.functional.cross_entropy(logits.float()[valid], tgt[valid])
        return loss, int(valid.sum())

    def save(self, target: Any, out: Path) -> None:
        """The ``save_pretrained`` layout (safetensors, configs, the tokenizer and the base's
        feature-extractor file) that loads back as a MusicGen target."""
        import shutil

        _save_pretrained(target.model, out)
        target.tokenizer.save_pretrained(str(out))
        extractor = Path(target.path) / "preprocessor_config.json"
        if extractor.is_file():
            shutil.copy2(extractor, out / extractor.name)


class ChatLALMObjective(Objective):
    name = "chat-lalm"
    family = "audio-language"
    bases = "chat audio-language checkpoint folders (Qwen2-Audio, Audio Flamingo 3)"
    folder_kind = "chat audio-language (Qwen2-Audio, Audio Flamingo 3)"
    text = "transcript"
    kind = "a chat audio-language"
    describe = ("teacher-forced cross-entropy of the clip's transcript as the assistant's answer (end-of-turn token "
                "included) after the chat prompt with the clip's audio, on the answer positions the audit scores, mean per token")
    load_options: ClassVar[dict[str, Any]] = {"dtype": "float32"}

    def accepts(self, target: Any) -> bool:
        from core.targets.chat_lalm import ChatLALMTarget

        return isinstance(target, ChatLALMTarget)

    def accepts_folder(self, folder: Path) -> bool:
        from core.targets.chat_lalm import CHAT_MODEL_TYPES

        return _config(folder).get("model_type") in CHAT_MODEL_TYPES

    def architecture(self, target: Any, how: str = "full fine-tuning") -> str:
        return f"{type(target.model).__name__} ({how} of the base; the processor and chat template kept)"

    def card_extra(self, target: Any) -> dict[str, Any]:
        return {"prompt": target._task_prompt(), "system_prompt": target.system_prompt}

    def prepare(self, target: Any, clips: Sequence[Any], batch_size: int) -> Prepared:
        notes: list[list[str]] = [[] for _ in clips]
        encs = [target._encode_clip(c, n) for c, n in zip(clips, notes)]
        labels = [target._text_labels(c.text, n) for c, n in zip(clips, notes)]
        return Prepared((encs, labels), sum(any("truncated" in x for x in n) for n in notes))

    def batch_loss(self, target: Any, prep: Prepared, idx: list[int], gen: torch.Generator, device: torch.device,
                   autocast: bool) -> tuple[torch.Tensor, int]:
        import torch

        encs, labels = prep.inputs
        with _autocast(autocast):
            logits, lab, valid = target.teacher_forced([encs[i] for i in idx], [labels[i] for i in idx])
        loss = torch.nn.functional.cross_entropy(logits.float()[valid], lab[valid])
        return loss, int(valid.sum())

    def save(self, target: Any, out: Path) -> None:
        """The ``save_pretrained`` layout (safetensors, configs, generation config, the
        processor with its chat template) that loads back as a chat audio-language target."""
        _save_pretrained(target.model, out)
        target.processor.save_pretrained(str(out))


class DiffusersObjective(Objective):
    name = "diffusers"
    family = "diffusion"
    bases = "diffusers text-to-audio pipeline folders (AudioLDM, MusicLDM, AudioLDM 2)"
    folder_kind = "diffusers AudioLDM / MusicLDM / AudioLDM 2 pipeline"
    kind = "a diffusion"
    per = "(denoising MSE)"
    describe = ("denoising loss: mean squared error of the UNet's prediction (the scheduler's prediction type) on the clip's "
                "VAE latent (the audit's mel front end, posterior mean) noised on the variance-preserving path of the "
                "scheduler's alphas_cumprod at a timestep drawn uniformly from its training range, noise and timesteps from "
                "the build's seeded generator, conditioned on the caption through the pipeline's prompt encoder (the empty "
                f"caption for {COND_DROPOUT:.0%} of draws), mean per clip; the UNet trained, the VAE, vocoder and text "
                "encoder(s) frozen")
    versions = ("transformers", "diffusers")

    @property
    def load_options(self) -> dict[str, Any]:  # type: ignore[override]
        import torch

        return {"dtype": torch.float32}

    def accepts(self, target: Any) -> bool:
        from core.targets.diffusers_audio import DiffusersAudioTarget

        return isinstance(target, DiffusersAudioTarget)

    def accepts_folder(self, folder: Path) -> bool:
        import json

        from core.targets.diffusers_audio import supported_pipelines

        try:
            index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(index, dict) and index.get("_class_name") in supported_pipelines()

    def module(self, target: Any) -> torch.nn.Module:
        module: torch.nn.Module = target.pipe.unet
        return module

    def frozen(self, target: Any) -> list[torch.nn.Module]:
        import torch

        return [m for name, m in target.pipe.components.items() if isinstance(m, torch.nn.Module) and name != "unet"]

    def architecture(self, target: Any, how: str = "full fine-tuning") -> str:
        return (f"{type(target.pipe).__name__}: {type(target.pipe.unet).__name__} ({how} of the UNet; the VAE, the vocoder "
                "and the text encoder(s) frozen, the scheduler kept)")

    def card_extra(self, target: Any) -> dict[str, Any]:
        return {"pipeline": type(target.pipe).__name__, "front_end": target.front_end.to_dict(),
                "frozen": sorted(n for n, m in target.pipe.components.items() if n != "unet" and hasattr(m, "parameters"))}

    def prepare(self, target: Any, clips: Sequence[Any], batch_size: int) -> Prepared:
        import torch

        fe = target.front_end
        longest = fe.n_frames * fe.mel.hop_length / fe.mel.sr
        x0 = torch.cat([target.latents(list(clips[s:s + batch_size])).float().cpu() for s in range(0, len(clips), batch_size)])

        def cpu(cond: dict) -> dict:
            return {k: None if v is None else v.detach().cpu() for k, v in cond.items()}

        # one caption at a time: a clip's conditioning never depends on its batch (as in the audit)
        conds = [cpu(target.conditioning([c.text])) for c in clips]
        return Prepared((x0, conds, cpu(target.conditioning([""]))), sum(len(c.audio) / c.sr > longest for c in clips))

    def batch_loss(self, target: Any, prep: Prepared, idx: list[int], gen: torch.Generator, device: torch.device,
                   autocast: bool) -> tuple[torch.Tensor, int]:
        import torch

        from core.targets.diffusers_audio import _cat_conditioning

        x0_all, conds, empty = prep.inputs
        x0 = x0_all[idx]
        b = len(idx)
        t = torch.randint(0, target.num_train_timesteps, (b,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        drop = torch.rand(b, generator=gen) < COND_DROPOUT
        a = target.pipe.scheduler.alphas_cumprod.float()[t].view(-1, *([1] * (x0.ndim - 1)))
        # the variance-preserving x_t the audit builds, whatever scheduler class the folder ships
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        kind = target.prediction_type
        goal = eps if kind == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0 if kind == "v_prediction" else x0
        cond = _cat_conditioning([empty if d else conds[j] for d, j in zip(drop.tolist(), idx)])
        cond = {k: None if v is None else v.to(device) for k, v in cond.items()}
        with _autocast(autocast):
            out = target.denoise(x_t.to(device), t.to(device), cond)
        return torch.nn.functional.mse_loss(out.float(), goal.to(device)), b

    def save(self, target: Any, out: Path) -> None:
        """The pipeline's ``save_pretrained`` layout (``model_index.json``, one safetensors
        folder per component), which loads back as a diffusers target."""
        target.pipe.save_pretrained(str(out), safe_serialization=True)
        for stale in out.rglob("*.bin"):
            stale.unlink()


OBJECTIVES: tuple[Objective, ...] = (Seq2SeqObjective(), ChatLALMObjective(), CausalAudioObjective(), MusicgenObjective(),
                                     MelDiffusionObjective(), DiffusersObjective())
"""Every objective, in the order the refusal names them (a family's objectives together)."""


def objective_of(target: Any) -> Objective | None:
    """The objective that fine-tunes the loaded ``target`` (None: no shadow of it can be built)."""
    return next((o for o in OBJECTIVES if o.accepts(target)), None)


def objectives_for(family: str) -> tuple[Objective, ...]:
    """The objectives of a target family (empty: no shadow of that family can be built)."""
    return tuple(o for o in OBJECTIVES if o.family == family)


def objective_for_folder(family: str, folder: str | Path | None) -> Objective | None:
    """The objective of ``family`` that fine-tunes the checkpoint ``folder``, read from its
    layout alone (no weights loaded); None when none does."""
    if folder is None or not Path(folder).is_dir():
        return None
    return next((o for o in objectives_for(family) if o.accepts_folder(Path(folder))), None)
