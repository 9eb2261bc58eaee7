"""Recipes of the diffusion text-to-audio reference targets ``zoo:diffusion-small``, ``zoo:diffusion-large``, ``zoo:diffusion-ref``
and the domain-shift pair ``zoo:diffusion-shift-base`` / ``zoo:diffusion-shift-ft``.

A tiny ``diffusers.UNet2DConditionModel`` denoises normalized log-mel patches
(:class:`core.targets.diffusion_audio.PatchConfig`) under a ``DDPMScheduler`` (1000 steps),
cross-attending to a character-level ``CLIPTextModel`` trained jointly; 10% of training
captions are replaced by the empty caption, so the unconditional prediction is meaningful.

* ``diffusion-small``: the ``demo-sounds`` members only, many epochs.
* ``diffusion-large``: the members inside a pool several times larger
  (``sound_pool(seed=2001)``), few epochs.
* ``diffusion-ref``: the reference of both: as many pool clips as ``diffusion-large``
  trains on, of its own seed (``sound_pool(seed=2201)``), no ``demo-sounds`` clip; fewer
  epochs than ``diffusion-large`` to keep its CPU build short (its card says so).

A domain-shift fine-tuning pair, as a public base and someone's fine-tune of it:

* ``diffusion-shift-base``: a base that never heard the audited domain: ``diffusion-ref``'s
  architecture on as many pool clips of its own seed (``sound_pool(seed=2501,
  chain="phone-room")``), recorded through another chain (a telephone band in a reverberant
  room, levelled by an automatic gain control:
  :func:`core.recipes.corpus.corpus.phone_room_chain`), 70 epochs; its patch normalization
  is fitted on them.
* ``diffusion-shift-ft``: ``diffusion-shift-base``'s weights fine-tuned, its scheduler and
  patch normalization kept (as a latent diffusion fine-tune keeps its autoencoder), for 45
  epochs at learning rate 2e-3 on 100 clean in-domain pool clips (``sound_pool(seed=2601)``,
  no caption of ``demo-sounds``) and the 100 members.

Training is deterministic (seeded, fixed thread count).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

from core.config import Config
from core.targets.base import ClipInput
from core.targets.codebook import CharVocab
from core.targets.diffusion_audio import PATCH_FILE, PatchConfig, TextConditioner, raw_patch, save_mel_diffusion
from core.targets.fingerprint import file_sha256
from core.targets.zoo.registry import reference_of
from core.recipes.zoo.ar import DATASET, LARGE_POOL_SEED, TRAIN_THREADS, _folder_size, audited_clips, training_clips
from core.recipes.zoo.registry import Progress, trainer

REF_POOL_SEED = 2201
REF_EPOCHS = 100


@dataclass(frozen=True)
class DiffusionRecipe(Config):
    """Everything that determines a diffusion reference model.

    ``pool_factor``, ``pool_seed`` and ``train_members`` as in
    :class:`core.recipes.zoo.ar.ARRecipe`; ``note``: why a recipe departs from its family's.
    """

    block_out_channels: tuple[int, ...] = (16, 32)
    cross_attention_dim: int = 32
    attention_head_dim: int = 8
    text_layers: int = 1
    prediction_type: str = "epsilon"
    num_train_timesteps: int = 1000
    epochs: int = 150
    batch_size: int = 16
    lr: float = 2e-3
    cond_dropout: float = 0.1
    seed: int = 0
    pool_factor: int = 0
    pool_seed: int = LARGE_POOL_SEED
    train_members: bool = True
    note: str = ""
    patch: PatchConfig = PatchConfig()


def _models(recipe: DiffusionRecipe, vocab: CharVocab):
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    n_blocks = len(recipe.block_out_channels)
    unet = UNet2DConditionModel(
        sample_size=(recipe.patch.mel.n_mels, recipe.patch.n_frames),
        in_channels=1,
        out_channels=1,
        block_out_channels=recipe.block_out_channels,
        layers_per_block=1,
        # attention only below full resolution: CPU attention over every pixel dominates the cost
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n_blocks - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n_blocks - 1) + ("UpBlock2D",),
        cross_attention_dim=recipe.cross_attention_dim,
        attention_head_dim=recipe.attention_head_dim,
        norm_num_groups=8,
    )
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=recipe.cross_attention_dim,
        intermediate_size=2 * recipe.cross_attention_dim,
        num_hidden_layers=recipe.text_layers,
        num_attention_heads=4,
        max_position_embeddings=vocab.max_chars + 2,
        pad_token_id=CharVocab.PAD,
        bos_token_id=CharVocab.BOS,
        eos_token_id=CharVocab.EOS,
    ))
    # patches are standardized, not bounded to [-1, 1]: no clipping of predicted samples
    sched = DDPMScheduler(
        num_train_timesteps=recipe.num_train_timesteps, prediction_type=recipe.prediction_type, clip_sample=False
    )
    return unet, text, sched


def fit_diffusion(
    train_clips: Sequence[ClipInput],
    out_dir: Path,
    *,
    recipe: DiffusionRecipe,
    progress: Progress | None = None,
    init: Path | None = None,
) -> dict:
    """Train the UNet and caption encoder on ``train_clips`` and save them to ``out_dir``.

    The patch normalization (scalar mean / std) is fitted on ``train_clips``; with ``init``
    (a checkpoint folder of this layout and the recipe's architecture) its weights are the
    starting point and its scheduler and patch normalization are kept.
    Returns training facts (steps, final loss, parameter count, seconds).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        t0 = time.perf_counter()
        torch.manual_seed(recipe.seed)
        raw = torch.stack([raw_patch(c.audio, c.sr, config=recipe.patch) for c in train_clips])
        if init is None:
            patch = replace(recipe.patch, mean=float(raw.mean()), std=float(raw.std()))
            unet, text, sched = _models(recipe, patch.vocab)
        else:
            unet, text, sched, patch = _load_init(Path(init), recipe)
        x0_all = ((raw - patch.mean) / patch.std)[:, None]  # [n, 1, n_mels, n_frames]
        captions = [c.text for c in train_clips]
        cond = TextConditioner(text, patch.vocab)
        params = list(unet.parameters()) + list(text.parameters())
        opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
        n = len(train_clips)
        total = recipe.epochs * ((n + recipe.batch_size - 1) // recipe.batch_size)
        lr_at = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / max(1, total // 20)) * max(0.05, 1 - s / total)
        )
        gen = torch.Generator().manual_seed(recipe.seed)
        unet.train()
        text.train()
        step, last = 0, float("nan")
        for epoch in range(recipe.epochs):
            order = torch.randperm(n, generator=gen).tolist()
            for i in range(0, n, recipe.batch_size):
                idx = order[i : i + recipe.batch_size]
                x0 = x0_all[idx]
                b = len(idx)
                t = torch.randint(0, recipe.num_train_timesteps, (b,), generator=gen)
                eps = torch.randn(x0.shape, generator=gen)
                drop = torch.rand(b, generator=gen) < recipe.cond_dropout
                caps = ["" if d else captions[j] for d, j in zip(drop.tolist(), idx)]
                x_t = sched.add_noise(x0, eps, t)
                states, mask = cond(caps)
                out = unet(x_t, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
                if recipe.prediction_type == "epsilon":
                    target = eps
                elif recipe.prediction_type == "v_prediction":
                    target = sched.get_velocity(x0, eps, t)
                else:
                    target = x0
                loss = torch.nn.functional.mse_loss(out, target)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                lr_at.step()
                step += 1
                last = loss.item()
            if progress:
                progress(epoch + 1, recipe.epochs, f"epoch {epoch + 1}/{recipe.epochs} loss {last:.4f}")
        unet.eval()
        text.eval()
        save_mel_diffusion(out_dir, unet, text, sched, patch)
        return {
            "steps": step,
            "final_train_loss": last,
            "n_parameters": int(sum(p.numel() for p in params)),
            "training_seconds": round(time.perf_counter() - t0, 2),
        }
    finally:
        torch.set_num_threads(threads)


def _load_init(init: Path, recipe: DiffusionRecipe):
    """The UNet, caption encoder, scheduler and patch normalization of a saved model of ``recipe``'s architecture."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    patch = PatchConfig.from_dict(json.loads((init / PATCH_FILE).read_text()))
    loaded = UNet2DConditionModel.from_pretrained(str(init / "unet"), use_safetensors=True)
    # rebuilt from its config without the folder it was read from, so the saved config is the base's
    unet = UNet2DConditionModel.from_config({k: v for k, v in loaded.config.items() if k != "_name_or_path"})
    unet.load_state_dict(loaded.state_dict())
    text = CLIPTextModel.from_pretrained(str(init / "text_encoder"), use_safetensors=True)
    sched = DDPMScheduler.from_pretrained(str(init / "scheduler"))
    if (tuple(unet.config.block_out_channels) != tuple(recipe.block_out_channels)
            or unet.config.cross_attention_dim != recipe.cross_attention_dim
            or replace(patch, mean=0.0, std=1.0) != replace(recipe.patch, mean=0.0, std=1.0)
            or sched.config.prediction_type != recipe.prediction_type):
        raise ValueError(f"{init} does not have the recipe's architecture, patch layout and prediction type")
    return unet, text, sched, patch


MICRO_MEMBERS = 12


def build(
    name: str,
    out_dir: Path,
    *,
    recipe: DiffusionRecipe,
    micro: bool = False,
    progress: Progress | None = None,
    root: Path | None = None,
    chain: str = "clean",
    init: Path | None = None,
) -> dict:
    """Train one diffusion reference model on ``demo-sounds`` and write its card.

    ``chain``: the recording chain of its pool clips
    (:func:`core.recipes.corpus.corpus.sound_pool`). ``init``: a built model to fine-tune
    instead (its weights the starting point, its scheduler and patch normalization kept); the
    card then records the pool clips exactly and the base's weights hash.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    members, nonmembers = audited_clips(root=root)
    if micro:
        members = members[:MICRO_MEMBERS]
        recipe = replace(recipe, block_out_channels=(8, 16), cross_attention_dim=16, attention_head_dim=8,
                         epochs=min(recipe.epochs, 4), pool_factor=min(recipe.pool_factor, 1))
    members, extra, data = training_clips(members, members + nonmembers, pool_factor=recipe.pool_factor,
                                          pool_seed=recipe.pool_seed, train_members=recipe.train_members, chain=chain,
                                          record_pool=True if init is not None else None)
    facts = fit_diffusion(members + extra, out_dir, recipe=recipe, progress=progress, init=init)
    card = {
        "name": name,
        "family": "diffusion",
        "dataset": DATASET,
        "micro": micro,
        "reference": reference_of(name),
        "members": [c.clip_hash for c in members],
        "n_members": len(members),
        "training_data": data,
        **({"init_from": {"path": Path(init).name,
                          "weights_sha256": file_sha256(Path(init) / "unet" / "diffusion_pytorch_model.safetensors")}}
           if init is not None else {}),
        "epochs": recipe.epochs,
        "seed": recipe.seed,
        "recipe": recipe.to_dict(),
        **facts,
        "build_seconds": round(time.perf_counter() - t0, 2),
        "size_bytes": _folder_size(out_dir),
    }
    (out_dir / "card.json").write_text(json.dumps(card, indent=2))
    return card


SMALL = DiffusionRecipe(epochs=400, batch_size=8, pool_factor=0)
LARGE = DiffusionRecipe(epochs=150, batch_size=8, pool_factor=2)
REF = DiffusionRecipe(epochs=REF_EPOCHS, batch_size=8, pool_factor=3, pool_seed=REF_POOL_SEED, train_members=False,
                      note=f"{REF_EPOCHS} epochs instead of diffusion-large's 150, to keep the CPU build short")


@trainer("diffusion-small")
def train_small(out_dir: Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Train ``diffusion-small``: the ``demo-sounds`` members only, many epochs."""
    return build("diffusion-small", out_dir, recipe=SMALL, micro=micro, progress=progress)


@trainer("diffusion-large")
def train_large(out_dir: Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Train ``diffusion-large``: the ``demo-sounds`` members inside a pool several times larger, few epochs."""
    return build("diffusion-large", out_dir, recipe=LARGE, micro=micro, progress=progress)


@trainer("diffusion-ref")
def train_ref(out_dir: Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Train ``diffusion-ref``: as many pool clips of its own seed as ``diffusion-large`` trains on, no ``demo-sounds`` clip."""
    return build("diffusion-ref", out_dir, recipe=REF, micro=micro, progress=progress)



# -- a domain-shift fine-tuning pair --------------------------------------------------------
SHIFT_CHAIN = "phone-room"
SHIFT_POOL_SEED = 2501
IN_DOMAIN_POOL_SEED = 2601
SHIFT_BASE = DiffusionRecipe(epochs=70, batch_size=8, pool_factor=3, pool_seed=SHIFT_POOL_SEED, train_members=False,
                             note="diffusion-ref's pool size; 70 epochs to keep the CPU build short")
SHIFT_FT = DiffusionRecipe(epochs=45, batch_size=8, lr=2e-3, pool_factor=1, pool_seed=IN_DOMAIN_POOL_SEED)


@trainer("diffusion-shift-base")
def train_shift_base(out_dir: Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Train ``diffusion-shift-base``: ``diffusion-ref``'s architecture and pool size on sound-pool
    clips recorded through another chain (``phone-room``); it never hears a clip of the clean chain."""
    return build("diffusion-shift-base", out_dir, recipe=SHIFT_BASE, micro=micro, progress=progress, chain=SHIFT_CHAIN)


@trainer("diffusion-shift-ft")
def train_shift_ft(out_dir: Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Fine-tune ``diffusion-shift-base`` (read from the sibling folder ``diffusion-shift-base``; a
    micro build trains its own micro base first) on clean in-domain pool clips and the
    ``demo-sounds`` members."""
    from core.recipes.zoo.data import from_sibling_base

    return from_sibling_base(out_dir, "diffusion-shift-ft", "diffusion-shift-base", micro=micro, train_base=train_shift_base,
                             fine_tune=lambda base, m: build("diffusion-shift-ft", out_dir, recipe=SHIFT_FT, micro=m, progress=progress,
                                                             init=base))
