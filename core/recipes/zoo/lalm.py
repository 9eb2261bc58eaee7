"""Recipes of the audio-language reference targets: tiny Whisper models trained from scratch.

``zoo:lalm-small`` sees only the ``demo-speech`` members, for many epochs, so it memorizes
each of them and per-sample membership inference is easy. ``zoo:lalm-large`` sees the same
members inside a much larger and more diverse speech pool, for few epochs, so the
per-sample signal is weak but present: the regime where dataset inference (aggregating
weak evidence over many clips) is needed. Non-members of ``demo-speech`` are never trained
on. Both models are ``WhisperForConditionalGeneration`` with a character-level tokenizer
and a short input window, saved as a regular checkpoint folder and audited through
:class:`core.targets.seq2seq.Seq2SeqTarget`, the adapter used for real Whisper checkpoints.

Reference models, which never see a ``demo-speech`` clip (every audited text is excluded
from their pools):

``zoo:lalm-ref``
    The ``lalm-large`` recipe on a speech pool of its own seed, as many clips as
    ``lalm-large`` trains on: the natural reference of ``lalm-small`` and ``lalm-large``.
``zoo:lalm-base`` and ``zoo:lalm-ft``
    A fine-tuning pair. ``lalm-base`` is ``lalm-large`` without the members (its pool
    only); ``lalm-ft`` starts from ``lalm-base``'s weights and is fine-tuned briefly on the
    members (few epochs, small learning rate). ``lalm-base`` is ``lalm-ft``'s reference.
    The same-domain pair: the base already knows the demo's voices and recording chain, so
    the fine-tune fits unseen demo clips no better than its base does.
``zoo:lalm-shift-base`` and ``zoo:lalm-shift-ft``
    A domain-shift pair, as a fine-tune of a public base trained on other data looks.
    ``lalm-shift-base`` is ``lalm-base``'s recipe on a pool that never heard the demo's
    domain: other voices (:data:`core.data.espeak.OTHER_SPEAKERS`) through a hot recording
    chain (20 dB more gain, peaks clipped). ``lalm-shift-ft`` starts from it and is fine-tuned
    briefly, at a small learning rate, on in-domain speech (demo voices, clean chain): the
    members and 50 pool clips of the demo's domain that share no text with ``demo-speech``.
    It adapts to the domain (its loss on unseen demo clips falls well below its base's),
    which a base reference cannot calibrate away and a shadow reference can.

Training is deterministic (fixed seeds, deterministic algorithms, fixed thread count), so a
rebuild gives the same member list and, on the same software stack, the same weights.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from core.config import Config
from core.targets.base import ANALYSIS_SR, ClipInput
from core.targets.fingerprint import file_sha256
from core.targets.tokenizer import char_tokenizer
from core.targets.zoo.catalogue import SPEECH as DATASET
from core.targets.zoo.registry import reference_of
from core.recipes.zoo.data import norm_text, training_record
from core.recipes.zoo.registry import Progress, trainer


@dataclass(frozen=True)
class LalmRecipe(Config):
    """Architecture, data and optimization of one reference model.

    window_s : audio window in seconds (the feature extractor's ``chunk_length``); the
        encoder sees ``100 * window_s`` log-mel frames.
    pool_size : extra non-audited speech clips trained on beside the members (0 = none).
    pool_seed : seed of that pool; never 0, the seed the demo corpus is drawn with.
    epochs : passes over the training set (members and pool together).
    threads : CPU threads during training; results are reproducible for a fixed count.
    """

    d_model: int = 96
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 192
    window_s: int = 4
    max_target_positions: int = 128
    epochs: int = 60
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    pool_size: int = 0
    pool_seed: int = 1001
    seed: int = 1234
    threads: int = 1


SMALL = LalmRecipe(epochs=100)
LARGE = LalmRecipe(epochs=16, pool_size=1000)
REF = replace(LARGE, pool_size=1100, pool_seed=1101)  # as many clips as lalm-large trains on
BASE = replace(LARGE)  # lalm-large's pool, no members
FT = replace(LARGE, epochs=4, lr=5e-4, warmup_steps=0, pool_size=0)  # brief and gentle: from lalm-base
SHIFT_BASE = replace(BASE, pool_seed=1401)  # lalm-base's recipe on other voices through the hot chain
SHIFT_FT = replace(LARGE, epochs=6, lr=1.25e-4, batch_size=8, warmup_steps=0, pool_size=50, pool_seed=1501)  # from lalm-shift-base
MICRO = LalmRecipe(d_model=48, layers=1, heads=2, ffn_dim=96, window_s=3, max_target_positions=96,
                   epochs=150, batch_size=6, lr=5e-3, warmup_steps=5, threads=1)
MICRO_MEMBERS = 6


# ---------------------------------------------------------------------------- data
def audio_hash(audio: np.ndarray) -> str:
    """Content hash of in-memory float32 audio (for clips that have no file)."""
    return hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()


def micro_clips(n: int, *, seed: int = 7) -> list[ClipInput]:
    """``n`` short synthetic utterances (eSpeak NG, grammar sentences, rotating voices).

    Used for the seconds-long ``micro`` builds in tests: independent of the bundled corpus.
    Sentences are capped at six words so each fits the micro model's 3 s window.
    """
    import librosa

    from core.data.espeak import SPEAKERS, synthesize
    from core.recipes.corpus.grammar import sentences

    rng = np.random.default_rng(seed)
    texts = sentences(rng, n, accept=lambda s: len(s.split()) <= 6)
    out = []
    for i, text in enumerate(texts):
        audio, sr = synthesize(text, voice=SPEAKERS[i % len(SPEAKERS)])
        audio = librosa.resample(audio, orig_sr=sr, target_sr=ANALYSIS_SR).astype(np.float32)
        out.append(ClipInput(audio_hash(audio), audio, text, ANALYSIS_SR))
    return out


def _pool_clips(n: int, *, seed: int, exclude_texts: set[str], voices: str = "demo",
                chain: str = "clean") -> list[ClipInput]:
    """A training pool (``speech_pool``); clips whose text is audited are dropped."""
    from core.recipes.corpus.corpus import speech_pool

    out = []
    for c in speech_pool(n, seed=seed, sr=ANALYSIS_SR, voices=voices, chain=chain):
        if norm_text(c.text) in exclude_texts:
            continue
        audio = np.asarray(c.audio, dtype=np.float32)
        out.append(ClipInput(audio_hash(audio), audio, c.text, int(c.sr)))
    return out


# ---------------------------------------------------------------------------- model
def _feature_extractor(recipe: LalmRecipe):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=80, sampling_rate=ANALYSIS_SR, hop_length=160, chunk_length=recipe.window_s, n_fft=400
    )


def _model_config(recipe: LalmRecipe, tokenizer):
    from transformers import WhisperConfig

    frames = recipe.window_s * ANALYSIS_SR // 160
    return WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=recipe.d_model,
        encoder_layers=recipe.layers,
        decoder_layers=recipe.layers,
        encoder_attention_heads=recipe.heads,
        decoder_attention_heads=recipe.heads,
        encoder_ffn_dim=recipe.ffn_dim,
        decoder_ffn_dim=recipe.ffn_dim,
        max_source_positions=frames // 2,
        max_target_positions=recipe.max_target_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        suppress_tokens=None,
        begin_suppress_tokens=None,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        scale_embedding=False,
        tie_word_embeddings=True,
    )


def _generation_config(recipe: LalmRecipe, tokenizer):
    from transformers import GenerationConfig

    return GenerationConfig(
        decoder_start_token_id=tokenizer.bos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_length=recipe.max_target_positions,
        num_beams=1,
        do_sample=False,
    )


@contextmanager
def _deterministic(threads: int) -> Iterator[None]:
    """Fixed thread count and deterministic kernels for the duration of training."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.set_num_threads(prev_threads)


def _encode(clips: Sequence[ClipInput], fe, tokenizer, recipe: LalmRecipe) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Features ``[n, 80, frames]``, labels ``[n, L]`` (-100 padded) and the number of
    clips longer than the window (truncated, like the adapter does)."""
    window = fe.n_samples
    feats, labels, truncated = [], [], 0
    for c in clips:
        audio = np.asarray(c.audio, dtype=np.float32)
        if c.sr != ANALYSIS_SR:
            import librosa

            audio = librosa.resample(audio, orig_sr=c.sr, target_sr=ANALYSIS_SR).astype(np.float32)
        if audio.shape[0] > window:
            truncated += 1
            audio = audio[:window]
        feats.append(fe(audio, sampling_rate=ANALYSIS_SR, return_tensors="np")["input_features"][0])
        ids = tokenizer(c.text).input_ids[1:]  # drop <s>: the model prepends its start token
        labels.append(ids[: recipe.max_target_positions - 1])
    lab = torch.full((len(labels), max(len(l) for l in labels)), -100, dtype=torch.long)
    for i, l in enumerate(labels):
        lab[i, : len(l)] = torch.tensor(l)
    return torch.from_numpy(np.stack(feats).astype(np.float32)), lab, truncated


def _save(model, tokenizer, fe, out_dir: Path) -> None:
    kwargs = {"safe_serialization": True} if "safe_serialization" in inspect.signature(model.save_pretrained).parameters else {}
    model.save_pretrained(str(out_dir), **kwargs)
    tokenizer.save_pretrained(str(out_dir))
    fe.save_pretrained(str(out_dir))
    for stale in out_dir.glob("*.bin"):
        stale.unlink()


def train_model(
    out_dir: str | Path,
    members: Sequence[ClipInput],
    *,
    recipe: LalmRecipe,
    pool: Sequence[ClipInput] = (),
    name: str,
    data: dict | None = None,
    progress: Progress | None = None,
    init: Path | None = None,
    reference: str | None = None,
) -> dict:
    """Train a tiny Whisper on ``members`` (+ ``pool``) and save it with its model card.

    Parameters
    ----------
    out_dir : folder to write (created; existing model files are overwritten).
    members : the audited member clips; their ``clip_hash`` values go into the card.
    recipe : architecture and optimization.
    pool : extra training clips that are not audited.
    name : model name for the card.
    data : description of the training data for the card.
    progress : called after each epoch with (epochs done, epochs total, message).
    init : a checkpoint folder of the same architecture to start from (fine-tuning);
        ``None`` trains from a random initialization.
    reference : the zoo entry that is this model's natural reference, for the card.

    Returns
    -------
    dict
        The model card, also written to ``out_dir/card.json``.
    """
    from transformers import WhisperForConditionalGeneration
    from transformers import __version__ as tf_version

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tokenizer = char_tokenizer()
    fe = _feature_extractor(recipe)
    train_clips = list(members) + list(pool)
    with _deterministic(recipe.threads):
        feats, labels, truncated = _encode(train_clips, fe, tokenizer, recipe)
        torch.manual_seed(recipe.seed)
        if init is None:
            model = WhisperForConditionalGeneration(_model_config(recipe, tokenizer))
        else:
            model = WhisperForConditionalGeneration.from_pretrained(str(init), use_safetensors=True)
            if model.config.d_model != recipe.d_model or model.config.encoder_layers != recipe.layers:
                raise ValueError(f"{init} does not have the recipe's architecture (d_model, layers)")
        model.generation_config = _generation_config(recipe, tokenizer)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        n = feats.shape[0]
        steps_per_epoch = -(-n // recipe.batch_size)
        total = steps_per_epoch * recipe.epochs
        # Linear warmup then cosine decay to 5% of the peak rate.
        def lr_at(step: int) -> float:
            if step < recipe.warmup_steps:
                return (step + 1) / recipe.warmup_steps
            frac = (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps)
            return 0.05 + 0.95 * 0.5 * (1.0 + np.cos(np.pi * min(1.0, frac)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        gen = torch.Generator().manual_seed(recipe.seed)
        losses: list[float] = []
        for epoch in range(recipe.epochs):
            order = torch.randperm(n, generator=gen)
            tot, cnt = 0.0, 0
            for s in range(0, n, recipe.batch_size):
                idx = order[s : s + recipe.batch_size]
                lab = labels[idx]
                lab = lab[:, : int((lab != -100).sum(1).max())]
                loss = model(input_features=feats[idx], labels=lab).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                tot += float(loss.detach()) * len(idx)
                cnt += len(idx)
            losses.append(tot / cnt)
            if progress is not None:
                progress(epoch + 1, recipe.epochs, f"epoch {epoch + 1}/{recipe.epochs}: loss {losses[-1]:.4f}")
        model.eval()
        _save(model, tokenizer, fe, out)
    train_time = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file() and p.name != "card.json")
    card = {
        "name": name,
        "family": "audio-language",
        "dataset": DATASET,
        "architecture": "WhisperForConditionalGeneration (random init, character tokenizer)" if init is None
        else "WhisperForConditionalGeneration (fine-tuned, character tokenizer)",
        "reference": reference,
        "recipe": recipe.to_dict(),
        "seed": recipe.seed,
        "epochs": recipe.epochs,
        "data": {
            **(data or {}),
            "n_members": len(members),
            "n_pool": len(pool),
            "n_train": n,
            "n_truncated_to_window": truncated,
        },
        "member_hashes": [c.clip_hash for c in members],
        **({"pool_clips": training_record(pool)} if pool else {}),
        **({"init_from": {"path": Path(init).name, "weights_sha256": file_sha256(Path(init) / "model.safetensors")}}
           if init is not None else {}),
        "param_count": int(sum(p.numel() for p in model.parameters())),
        "size_bytes": int(size),
        "train_time_s": round(train_time, 2),
        "loss_per_epoch": [round(x, 5) for x in losses],
        "versions": {"torch": torch.__version__, "transformers": tf_version, "python": platform.python_version()},
    }
    tmp = out / "card.json.tmp"
    tmp.write_text(json.dumps(card, indent=2), encoding="utf-8")
    os.replace(tmp, out / "card.json")
    return card


# ---------------------------------------------------------------------------- entries
def _micro(out_dir: Path, name: str, progress: Progress | None) -> dict:
    members = micro_clips(MICRO_MEMBERS)
    return train_model(
        out_dir, members, recipe=MICRO, name=name, progress=progress, reference=reference_of(name),
        data={"members": f"micro: {MICRO_MEMBERS} synthetic eSpeak clips (micro_clips seed 7)", "micro": True},
    )


@trainer("lalm-small")
def train_small(out_dir: str | Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
    """Train ``lalm-small``: the ``demo-speech`` members only, many epochs."""
    if micro:
        return _micro(Path(out_dir), "lalm-small", progress)
    from core.recipes.zoo.data import demo_clips

    members = demo_clips(DATASET, "member")
    return train_model(
        out_dir, members, recipe=SMALL, name="lalm-small", progress=progress, reference=reference_of("lalm-small"),
        data={"members": f"{DATASET} members ({len(members)} clips)", "pool": None,
              "nonmembers": f"{DATASET} non-members: never trained on"},
    )


def _audited_texts(members: Sequence[ClipInput]) -> set[str]:
    from core.recipes.zoo.data import demo_clips

    return {norm_text(c.text) for c in members} | {norm_text(c.text) for c in demo_clips(DATASET, "nonmember")}


@dataclass(frozen=True)
class SpeechDomain:
    """Who speaks a model's speech pool and through which recording chain
    (:func:`core.recipes.corpus.corpus.speech_pool`'s ``voices`` and ``chain``)."""

    voices: str = "demo"
    chain: str = "clean"


DEMO_DOMAIN = SpeechDomain()
OTHER_DOMAIN = SpeechDomain(voices="other", chain="hot")


def _synth_pool(recipe: LalmRecipe, domain: SpeechDomain, members: Sequence[ClipInput], *,
                first_name: bool = False) -> tuple[list[ClipInput], dict]:
    """The recipe's pool (no text of ``demo-speech``) and what a card says about it.

    first_name : name the pool function by the module path it had when the zoo was first
        built (``core.data.demo.corpus``, now :mod:`core.recipes.corpus.corpus`), so the
        rebuilt cards of the models built then stay identical to the shipped ones.
    """
    t0 = time.perf_counter()
    pool = _pool_clips(recipe.pool_size, seed=recipe.pool_seed, exclude_texts=_audited_texts(members),
                       voices=domain.voices, chain=domain.chain)
    call = (f"core.data.demo.corpus.speech_pool(n={recipe.pool_size}, seed={recipe.pool_seed})" if first_name
            else f"core.recipes.corpus.corpus.speech_pool(n={recipe.pool_size}, seed={recipe.pool_seed}, "
                 f"voices={domain.voices!r}, chain={domain.chain!r})")
    return pool, {"pool": f"{call}; {recipe.pool_size - len(pool)} clips dropped for sharing an audited text",
                  "pool_synthesis_time_s": round(time.perf_counter() - t0, 2)}


def _train_on_pool(out_dir: str | Path, name: str, recipe: LalmRecipe, *, with_members: bool,
                   progress: Progress | None, domain: SpeechDomain = DEMO_DOMAIN) -> dict:
    """Train ``name`` on a speech pool that shares no text with ``demo-speech``, with or
    without the ``demo-speech`` members."""
    from core.recipes.zoo.data import demo_clips

    members = demo_clips(DATASET, "member")
    # the demo-domain pool models (lalm-large, lalm-ref, lalm-base) are the first-built ones
    pool, described = _synth_pool(recipe, domain, members, first_name=domain == DEMO_DOMAIN)
    if not with_members:
        members = []
    return train_model(
        out_dir, members, recipe=recipe, pool=pool, name=name, progress=progress, reference=reference_of(name),
        data={"members": f"{DATASET} members ({len(members)} clips)" if members else None,
              **described,
              "nonmembers": f"{DATASET} non-members: never trained on"},
    )


def _pool_trainer(name: str, recipe: LalmRecipe, *, with_members: bool, doc: str,
                  domain: SpeechDomain = DEMO_DOMAIN) -> Callable[..., dict]:
    """The trainer of zoo entry ``name``, trained by :func:`_train_on_pool` (registered)."""

    def train(out_dir: str | Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
        if micro:
            return _micro(Path(out_dir), name, progress)
        return _train_on_pool(out_dir, name, recipe, with_members=with_members, progress=progress, domain=domain)

    train.__doc__ = doc
    return trainer(name)(train)


def _fine_tune(out_dir: str | Path, name: str, base_name: str, recipe: LalmRecipe, progress: Progress | None) -> dict:
    """Fine-tune the sibling folder ``base_name`` on the ``demo-speech`` members and, when
    the recipe has a pool, on that many in-domain pool clips (demo voices, clean chain)."""
    from core.recipes.zoo.data import demo_clips

    base = Path(out_dir).parent / base_name
    if not (base / "card.json").exists():
        raise FileNotFoundError(f"{name} starts from {base_name}: build it first ({base} has no card.json)")
    members = demo_clips(DATASET, "member")
    pool, described = _synth_pool(recipe, DEMO_DOMAIN, members) if recipe.pool_size else ([], {"pool": None})
    base_card = json.loads((base / "card.json").read_text(encoding="utf-8"))
    return train_model(
        out_dir, members, recipe=recipe, pool=pool, name=name, progress=progress, init=base, reference=reference_of(name),
        data={"members": f"{DATASET} members ({len(members)} clips)", **described,
              "init": f"{base_name} weights (trained on {base_card['data']['pool']})",
              "nonmembers": f"{DATASET} non-members: never trained on"},
    )


def _fine_tune_trainer(name: str, base_name: str, recipe: LalmRecipe, *, doc: str) -> Callable[..., dict]:
    """The trainer of zoo entry ``name``, fine-tuned by :func:`_fine_tune` (registered)."""

    def train(out_dir: str | Path, *, micro: bool = False, progress: Progress | None = None) -> dict:
        if micro:
            return _micro(Path(out_dir), name, progress)
        return _fine_tune(out_dir, name, base_name, recipe, progress)

    train.__doc__ = doc
    return trainer(name)(train)


train_large = _pool_trainer("lalm-large", LARGE, with_members=True,
                            doc="Train ``lalm-large``: the ``demo-speech`` members inside a larger speech pool, few epochs.")
train_ref = _pool_trainer("lalm-ref", REF, with_members=False,
                          doc="Train ``lalm-ref``: the ``lalm-large`` recipe on a pool of its own seed, no demo clip.")
train_base = _pool_trainer("lalm-base", BASE, with_members=False,
                           doc="Train ``lalm-base``: ``lalm-large``'s pool without the members.")
train_ft = _fine_tune_trainer("lalm-ft", "lalm-base", FT,
                              doc="Fine-tune ``lalm-base`` (read from the sibling folder ``lalm-base``) on the members.")
train_shift_base = _pool_trainer("lalm-shift-base", SHIFT_BASE, with_members=False, domain=OTHER_DOMAIN,
                                 doc="Train ``lalm-shift-base``: ``lalm-base``'s recipe on a pool of other voices "
                                     "through the hot chain.")
train_shift_ft = _fine_tune_trainer("lalm-shift-ft", "lalm-shift-base", SHIFT_FT,
                                    doc="Fine-tune ``lalm-shift-base`` (read from the sibling folder) on the members "
                                        "and in-domain pool clips.")
