"""What a shadow reference of each target family trains on: one :class:`Objective` per family.

:func:`core.recipes.shadow.train_shadow` runs the same loop for every family (AdamW, the
cosine schedule, clipping, the seeded batch order, the resumable state, the card); an
objective supplies what differs:

- which loaded targets and checkpoint folders it fine-tunes (:meth:`Objective.accepts`,
  :meth:`Objective.accepts_folder`) and how the base is loaded for it;
- the trained weights, as one module (:meth:`Objective.module`);
- the clips' inputs, computed once before the first epoch (:meth:`Objective.prepare`);
- the loss of one batch and how many units it averages over (:meth:`Objective.batch_loss`);
- how the result is saved so that the folder loads back as a target of the base's family
  (:meth:`Objective.save`).

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
  keeps being trained; the zoo's training loss, :func:`core.recipes.zoo.diffusion.fit_diffusion`).

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

    def architecture(self, target: Any) -> str:
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

    def architecture(self, target: Any) -> str:
        return f"{type(target.model).__name__} (full fine-tuning of the base)"

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
        model = target.model
        kwargs = {"safe_serialization": True} if "safe_serialization" in inspect.signature(model.save_pretrained).parameters else {}
        model.save_pretrained(str(out), **kwargs)
        target.feature_extractor.save_pretrained(str(out))
        target.tokenizer.save_pretrained(str(out))
        for stale in out.glob("*.bin"):
            stale.unlink()


class CausalAudioObjective(Objective):
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

    def architecture(self, target: Any) -> str:
        return f"{type(target.model).__name__} (full fine-tuning of the base; its codebook and sequence layout kept)"

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

    def architecture(self, target: Any) -> str:
        return (f"{type(target.unet).__name__} + {type(target.conditioner.text_model).__name__} (full fine-tuning of both; "
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


OBJECTIVES: tuple[Objective, ...] = (Seq2SeqObjective(), CausalAudioObjective(), MelDiffusionObjective())
"""Every family a shadow can be built for, in the order the refusal names them."""


def objective_of(target: Any) -> Objective | None:
    """The objective that fine-tunes the loaded ``target`` (None: no shadow of it can be built)."""
    return next((o for o in OBJECTIVES if o.accepts(target)), None)


def objective_for(family: str) -> Objective | None:
    """The objective of a target family (None: no shadow of that family can be built)."""
    return next((o for o in OBJECTIVES if o.family == family), None)
