"""Recipes of the autoregressive text-to-audio reference targets ``zoo:ar-small``, ``zoo:ar-large``, ``zoo:ar-ref``.

A k-means audio codebook (:class:`core.targets.codebook.Codebook`, fitted on pool clips that
are never audited) turns clips into code sequences, and a tiny ``GPT2LMHeadModel`` learns
``[caption, SEP, codes, EOS]`` with the loss on the audio stream (codes and EOS) only.

* ``ar-small``: the ``demo-sounds`` members only, many epochs (strong per-clip memorization).
* ``ar-large``: the same members inside a pool several times larger (drawn with
  ``sound_pool(seed=2001)``, clips that collide with audited clips removed), few epochs
  (weak per-clip signal).
* ``ar-ref``: the reference of both: the ``ar-large`` recipe on as many pool clips of its
  own seed (``sound_pool(seed=2101)``), no ``demo-sounds`` clip.

A domain-shift fine-tuning pair, as a public base and someone's fine-tune of it:

* ``ar-shift-base``: a base that never heard the audited domain. Its 700 pool clips
  (``sound_pool(seed=2301, chain="phone-room")``) and the 150 clips its codebook is fitted on
  were recorded through another chain (a telephone band in a reverberant room, levelled by
  an automatic gain control: :func:`core.recipes.corpus.corpus.phone_room_chain`); 12 epochs.
* ``ar-shift-ft``: ``ar-shift-base``'s weights fine-tuned, its codebook and sequence layout
  kept, for 8 epochs at learning rate 1e-3 on 200 clean in-domain pool clips
  (``sound_pool(seed=2401)``, no caption of ``demo-sounds``) and the 100 members.

Training is deterministic (seeded, fixed thread count).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from core.config import Config
from core.targets.base import ANALYSIS_SR, ClipInput
from core.targets.causal_audio import LAYOUT_FILE, SequenceLayout, pad_batch, save_causal_audio
from core.targets.codebook import CharVocab, Codebook, MelConfig
from core.targets.fingerprint import file_sha256
from core.targets.zoo.catalogue import SOUNDS as DATASET
from core.targets.zoo.registry import reference_of
from core.recipes.zoo.registry import Progress, trainer
LARGE_POOL_SEED = 2001
REF_POOL_SEED = 2101
CODEBOOK_POOL_SEED = 3001
TRAIN_THREADS = 1  # thread oversubscription on a shared 2-core machine is slower than one thread


@dataclass(frozen=True)
class ARRecipe(Config):
    """Everything that determines an autoregressive reference model.

    ``pool_factor``: extra pool clips per member (0 = members only), drawn with
    ``pool_seed``. ``train_members``: whether the ``demo-sounds`` members are trained on
    (``False`` for a reference model). ``codebook_clips``: pool clips the codebook is fitted on.
    """

    n_layer: int = 2
    n_embd: int = 96
    n_head: int = 4
    n_codes: int = 128
    max_audio_tokens: int = 80
    max_chars: int = 160
    epochs: int = 60
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    pool_factor: int = 0
    pool_seed: int = LARGE_POOL_SEED
    train_members: bool = True
    codebook_clips: int = 150
    mel: MelConfig = MelConfig()


def _clip_key(audio: np.ndarray, text: str) -> tuple[str, int]:
    # captions repeat across clips but caption + exact length does not (durations are continuous)
    return text.strip().lower(), int(len(audio))


def audited_clips(*, root: Path | None = None) -> tuple[list[ClipInput], list[ClipInput]]:
    """The ``demo-sounds`` members and non-members."""
    from core.recipes.zoo.data import demo_clips

    return demo_clips(DATASET, "member", root=root), demo_clips(DATASET, "nonmember", root=root)


def pool_clips(n: int, *, seed: int, exclude: Sequence[ClipInput] = (), chain: str = "clean") -> list[ClipInput]:
    """``n`` generated pool clips (``sound_pool``, recorded through ``chain``), dropping any
    that equal an ``exclude`` clip."""
    import hashlib

    from core.recipes.corpus.corpus import sound_pool

    banned = {_clip_key(c.audio, c.text) for c in exclude}
    out: list[ClipInput] = []
    for c in sound_pool(n, seed=seed, sr=ANALYSIS_SR, chain=chain):
        audio = np.asarray(c.audio, dtype=np.float32)
        if _clip_key(audio, c.text) in banned:
            continue
        out.append(ClipInput(hashlib.sha256(audio.tobytes()).hexdigest(), audio, c.text, ANALYSIS_SR))
    return out


def _pool_name(seed: int, chain: str) -> str:
    return f"sound_pool(seed={seed}{'' if chain == 'clean' else f', chain={chain!r}'})"


def training_clips(
    members: Sequence[ClipInput], audited: Sequence[ClipInput], *, pool_factor: int, pool_seed: int,
    train_members: bool, chain: str = "clean", record_pool: bool | None = None,
) -> tuple[list[ClipInput], list[ClipInput], dict]:
    """The members trained on, the pool clips trained on and the card's description of both.

    The pool has ``pool_factor`` clips per member, none equal to an ``audited`` clip,
    recorded through ``chain``; the description records the pool exactly
    (:func:`core.recipes.zoo.data.training_record`) when ``record_pool`` (by default: for a
    model that trains on no member).
    """
    from core.recipes.zoo.data import training_record

    extra = pool_clips(pool_factor * len(members), seed=pool_seed, exclude=audited, chain=chain) if pool_factor else []
    trained = list(members) if train_members else []
    record = not train_members if record_pool is None else record_pool
    data = {
        "members": f"{DATASET} label=member ({len(trained)} clips)" if trained else "none",
        "pool": f"{_pool_name(pool_seed, chain)} {len(extra)} clips" if extra else "none",
        "n_train_clips": len(trained) + len(extra),
        **({"pool_clips": training_record(extra)} if extra and record else {}),
    }
    return trained, extra, data


def fit_ar(
    train_clips: Sequence[ClipInput],
    codebook: Codebook,
    out_dir: Path,
    *,
    recipe: ARRecipe,
    progress: Progress | None = None,
    init: Path | None = None,
) -> dict:
    """Train a caption -> audio-token GPT-2 on ``train_clips`` and save it to ``out_dir``.

    ``init``: a checkpoint folder of this layout to fine-tune (its weights are the starting
    point; ``codebook`` must be its codebook and the recipe its sequence layout), instead of
    a random initialization.

    Returns training facts (steps, final loss, parameter count, seconds).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        t0 = time.perf_counter()
        torch.manual_seed(recipe.seed)
        layout = SequenceLayout(CharVocab(max_chars=recipe.max_chars), codebook.n_codes, recipe.max_audio_tokens)
        seqs, labels = [], []
        for c in train_clips:
            ids, start, n, _ = layout.sequence(c.text, codebook.encode(c.audio))
            seqs.append(ids)
            labels.append([-100] * start + ids[start:])  # codes and EOS
        cfg = GPT2Config(
            vocab_size=layout.vocab_size,
            n_positions=layout.max_length,
            n_embd=recipe.n_embd,
            n_layer=recipe.n_layer,
            n_head=recipe.n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=CharVocab.BOS,
            eos_token_id=layout.audio_eos,
            pad_token_id=CharVocab.PAD,
        )
        if init is None:
            model = GPT2LMHeadModel(cfg)
        else:
            model = GPT2LMHeadModel.from_pretrained(str(init), use_safetensors=True)
            if json.loads((Path(init) / LAYOUT_FILE).read_text()) != layout.to_dict() or model.config.n_embd != recipe.n_embd:
                raise ValueError(f"{init} does not have the recipe's sequence layout and width")
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        n = len(seqs)
        steps_per_epoch = (n + recipe.batch_size - 1) // recipe.batch_size
        total = recipe.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / max(1, total // 20)) * max(0.05, 1 - s / total)
        )
        gen = torch.Generator().manual_seed(recipe.seed)
        model.train()
        step, last = 0, float("nan")
        for epoch in range(recipe.epochs):
            order = torch.randperm(n, generator=gen).tolist()
            for i in range(0, n, recipe.batch_size):
                idx = order[i : i + recipe.batch_size]
                ids, attn = pad_batch([seqs[j] for j in idx])
                lab, _ = pad_batch([labels[j] for j in idx], pad_id=-100)
                loss = model(input_ids=ids, attention_mask=attn, labels=lab).loss
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                last = loss.item()
            if progress:
                progress(epoch + 1, recipe.epochs, f"epoch {epoch + 1}/{recipe.epochs} loss {last:.3f}")
        model.eval()
        save_causal_audio(out_dir, model, codebook, layout)
        return {
            "steps": step,
            "final_train_loss": last,
            "n_parameters": int(sum(p.numel() for p in model.parameters())),
            "training_seconds": round(time.perf_counter() - t0, 2),
        }
    finally:
        torch.set_num_threads(threads)


def _folder_size(folder: Path) -> int:
    return int(sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()))


MICRO_MEMBERS = 12


def build(
    name: str,
    out_dir: Path,
    *,
    recipe: ARRecipe,
    micro: bool = False,
    progress: Progress | None = None,
    root: Path | None = None,
    chain: str = "clean",
    codebook_seed: int = CODEBOOK_POOL_SEED,
    init: Path | None = None,
) -> dict:
    """Train one autoregressive reference model on ``demo-sounds`` and write its card.

    ``chain``: the recording chain of its pool clips and of the clips its codebook is fitted
    on (:func:`core.recipes.corpus.corpus.sound_pool`; the latter drawn with ``codebook_seed``).
    ``init``: a built model to fine-tune instead (its weights the starting point, its
    codebook kept, as a fine-tune keeps its base's tokenizer); the card then records the
    pool clips exactly and the base's weights hash.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    members, nonmembers = audited_clips(root=root)
    audited = members + nonmembers
    if micro:
        members = members[:MICRO_MEMBERS]
        recipe = replace(recipe, n_layer=1, n_embd=32, n_head=2, n_codes=16, codebook_clips=12,
                         epochs=min(recipe.epochs, 8), pool_factor=min(recipe.pool_factor, 1))
    if init is None:
        cb_pool = pool_clips(recipe.codebook_clips, seed=codebook_seed, exclude=audited, chain=chain)
        codebook = Codebook.fit([c.audio for c in cb_pool], n_codes=recipe.n_codes, mel=recipe.mel, seed=recipe.seed)
        codebook_note = f"{_pool_name(codebook_seed, chain)} {len(cb_pool)} clips"
    else:
        codebook, codebook_note = Codebook.load(Path(init)), f"kept from {Path(init).name} (the base's codebook)"
    members, extra, data = training_clips(members, audited, pool_factor=recipe.pool_factor, pool_seed=recipe.pool_seed,
                                          train_members=recipe.train_members, chain=chain,
                                          record_pool=True if init is not None else None)
    facts = fit_ar(members + extra, codebook, out_dir, recipe=recipe, progress=progress, init=init)
    card = {
        "name": name,
        "family": "autoregressive",
        "dataset": DATASET,
        "micro": micro,
        "reference": reference_of(name),
        "members": [c.clip_hash for c in members],
        "n_members": len(members),
        "training_data": {**data, "codebook": codebook_note},
        **({"init_from": {"path": Path(init).name, "weights_sha256": file_sha256(Path(init) / "model.safetensors")}}
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


SMALL = ARRecipe(epochs=60, pool_factor=0)
LARGE = ARRecipe(epochs=6, pool_factor=6)
REF = ARRecipe(epochs=6, pool_factor=7, pool_seed=REF_POOL_SEED, train_members=False)  # ar-large's size


@trainer("ar-small")
def train_small(out_dir: Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Train ``ar-small``: the ``demo-sounds`` members only, many epochs."""
    return build("ar-small", out_dir, recipe=SMALL, micro=micro, progress=progress)


@trainer("ar-large")
def train_large(out_dir: Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Train ``ar-large``: the ``demo-sounds`` members inside a pool several times larger, few epochs."""
    return build("ar-large", out_dir, recipe=LARGE, micro=micro, progress=progress)


@trainer("ar-ref")
def train_ref(out_dir: Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Train ``ar-ref``: the ``ar-large`` recipe on as many pool clips of its own seed, no ``demo-sounds`` clip."""
    return build("ar-ref", out_dir, recipe=REF, micro=micro, progress=progress)


# -- a domain-shift fine-tuning pair --------------------------------------------------------
SHIFT_CHAIN = "phone-room"
SHIFT_POOL_SEED = 2301
SHIFT_CODEBOOK_SEED = 3101
IN_DOMAIN_POOL_SEED = 2401
SHIFT_BASE = ARRecipe(epochs=12, pool_factor=7, pool_seed=SHIFT_POOL_SEED, train_members=False)  # ar-ref's pool, twice its epochs
SHIFT_FT = ARRecipe(epochs=8, lr=1e-3, pool_factor=2, pool_seed=IN_DOMAIN_POOL_SEED)  # 200 in-domain clips beside the members


@trainer("ar-shift-base")
def train_shift_base(out_dir: Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Train ``ar-shift-base``: ``ar-ref``'s architecture and pool size, for 12 epochs, its codebook
    included, on sound-pool clips recorded through another chain (``phone-room``); it never
    hears a clip of the clean chain."""
    return build("ar-shift-base", out_dir, recipe=SHIFT_BASE, micro=micro, progress=progress, chain=SHIFT_CHAIN,
                 codebook_seed=SHIFT_CODEBOOK_SEED)


@trainer("ar-shift-ft")
def train_shift_ft(out_dir: Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Fine-tune ``ar-shift-base`` (read from the sibling folder ``ar-shift-base``; a micro build
    trains its own micro base first) on clean in-domain pool clips and the ``demo-sounds`` members."""
    from core.recipes.zoo.data import from_sibling_base

    return from_sibling_base(out_dir, "ar-shift-ft", "ar-shift-base", micro=micro, train_base=train_shift_base,
                             fine_tune=lambda base, m: build("ar-shift-ft", out_dir, recipe=SHIFT_FT, micro=m, progress=progress,
                                                             init=base))
