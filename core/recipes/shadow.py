"""Shadow references: a public base checkpoint fine-tuned on the auditor's own non-members.

A fine-tune of a public base adapts to the domain of the data it saw (voices, recording
chain, style), members and non-members alike; calibrating against the base cannot remove
that. The base fine-tuned briefly, with a recipe like the target's, on non-members that
then leave the audit carries the adaptation without the members (LiRA's "out" model, made
practical for fine-tunes). :func:`train_shadow` does the fine-tuning; choosing the clips,
excluding them from audits and the job are in :mod:`core.pipeline.reference`.

Supported here, one objective per checkpoint layout (:mod:`core.recipes.shadow_objectives`):

- speech seq2seq (Whisper-architecture) checkpoints, the ones
  :class:`core.targets.seq2seq.Seq2SeqTarget` audits (the zoo's ``lalm-*`` models, Hugging
  Face Whisper folders, CTranslate2 Whisper folders): the teacher-forced cross-entropy of
  each clip's transcript after the model's decoder prompt, on exactly the positions the
  adapter scores as evidence (:meth:`Seq2SeqTarget.teacher_forced`);
- autoregressive caption -> audio-token models in the zoo's layout
  (:class:`core.targets.causal_audio.CausalAudioTarget`, ``ar-*``): the teacher-forced
  cross-entropy of each clip's audio tokens given its caption;
- caption-conditioned mel-patch diffusion models in the zoo's layout
  (:class:`core.targets.diffusion_audio.MelDiffusionTarget`, ``diffusion-*``): the denoising
  loss on each clip's patch given its caption, at seeded timesteps and noise;
- MusicGen checkpoints (:class:`core.targets.musicgen.MusicgenTarget`): the teacher-forced
  cross-entropy of each clip's EnCodec codes, every codebook in the delay pattern, given its
  caption;
- chat audio-language checkpoints (:class:`core.targets.chat_lalm.ChatLALMTarget`,
  Qwen2-Audio, Audio Flamingo 3): the teacher-forced cross-entropy of each clip's transcript
  as the answer after the chat prompt;
- diffusers pipelines (:class:`core.targets.diffusers_audio.DiffusersAudioTarget`, AudioLDM,
  MusicLDM, AudioLDM 2): the denoising loss on each clip's VAE latent given its caption, the
  UNet trained.

Every weight is trained by default; ``ShadowRecipe.lora_rank`` trains LoRA adapters
(``peft``) on the linear layers instead, for bases too large to fine-tune whole (a 7B
audio-language model), and merges them into the weights before saving, so the shadow is an
ordinary checkpoint of the base's layout either way.

Each with the adapter's own feature extraction and tokenization: what the shadow learns is
what the audit reads. The result is saved in the base's own layout, so it loads back as a
target of the same family.

torch is imported by the functions that train, not with this module, so the CLI can read
:class:`ShadowRecipe` to build its options without loading a model library.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from core.config import Config, setting
from core.recipes.shadow_objectives import OBJECTIVES, Objective, objective_of
from core.runtime.store import write_json

Progress = Callable[[int, int, str], None]
"""``progress(epochs_done, epochs_total, message)``, after each epoch (as the zoo's trainers)."""

SUPPORTED = "; ".join(o.bases for o in OBJECTIVES)
"""What a shadow can be built from today, as the refusal names it (read without loading a model library)."""

CARD_KIND = "shadow-reference"
STATE_DIR = ".partial"
"""Where a build keeps its state between epochs (removed once the checkpoint is written)."""


@dataclass(frozen=True)
class ShadowRecipe(Config):
    """How the base is fine-tuned: every weight (or, with ``lora_rank`` > 0, LoRA adapters on
    the linear layers, merged into the weights before saving) with AdamW, the learning rate decayed
    on a cosine from ``lr`` to 5% of it over the run (no warm-up), gradients clipped at
    norm 1, batches drawn in a seeded order. Deterministic on the CPU for a fixed thread
    count; on CUDA the weights stay float32 and the forward pass runs in bfloat16.

    The fine-tuner's recipe is unknown to the auditor: guess one of the same kind (a few
    epochs; a learning rate near what fine-tunes of this base use, e.g. 1e-5 to 5e-5 for a
    released Whisper, 5e-4 for the zoo's ``lalm-ft``, about 1e-3 for the zoo's ``ar-*`` and
    ``diffusion-*``, trained from scratch at 2e-3 to 3e-3). LoRA wants a larger rate than
    full fine-tuning (1e-4 to 1e-3 is usual).
    """

    epochs: int = setting(2, help="passes over the shadow's non-members")
    lr: float = setting(1e-5, help="peak learning rate (cosine decay to 5% of it)")
    batch_size: int = setting(8, help="clips per optimizer step")
    seed: int = setting(0, help="seed of the non-member draw and of the batch order")
    weight_decay: float = setting(0.01, help="AdamW weight decay")
    threads: int = setting(1, help="CPU threads while training (results are reproducible for a fixed count)")
    lora_rank: int = setting(0, help="0: full fine-tuning; R > 0: LoRA adapters of rank R (peft) on the model's linear layers, "
                                     "merged into the weights before saving (for models too large to fine-tune whole)")
    lora_alpha: int = setting(16, help="LoRA scale numerator (the update is scaled by alpha / rank); used with --lora-rank")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.threads < 1 or not self.lr > 0 or self.weight_decay < 0:
            raise ValueError("a shadow recipe needs epochs, batch_size and threads >= 1, lr > 0 and weight_decay >= 0")
        if self.lora_rank < 0 or not self.lora_alpha > 0:
            raise ValueError("a shadow recipe needs lora_rank >= 0 (0: full fine-tuning) and lora_alpha > 0")


def check_base(target: Any) -> Objective:
    """The objective that fine-tunes the loaded ``target``; refused in one line when none does.

    Raises
    ------
    ValueError
        no family's objective fine-tunes ``target`` (names what is supported).
    """
    objective = objective_of(target)
    if objective is None:
        raise ValueError(f"{target.spec} is a {target.family} model ({type(target).__name__}): shadow references can be "
                         f"built from {SUPPORTED} only")
    return objective


def request_digest(base_fingerprint: str, recipe: ShadowRecipe, clip_hashes: Sequence[str]) -> str:
    """What identifies one build: the base, the recipe and the clips, in order. A rerun
    with the same digest resumes (or finds the build done); another digest is refused."""
    settings = recipe.to_dict()
    if not recipe.lora_rank:  # the LoRA settings unused: digests of full fine-tunes stay those of builds made before them
        settings = {k: v for k, v in settings.items() if not k.startswith("lora_")}
    text = json.dumps([base_fingerprint, settings, list(clip_hashes)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_card(folder: str | Path) -> dict | None:
    """The shadow card of ``folder`` (None when it holds no finished shadow)."""
    path = Path(folder) / "card.json"
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) and card.get("kind") == CARD_KIND else None


def card_line(card: dict, *, excluded: int | None = None, cross_fitted: bool = False) -> str:
    """One line saying what a shadow reference is, from its card: the base, the recipe (and,
    for one of a set of shadows, which one, its seed and whether the set shares its clips),
    how many known non-members it trained on (and, for one chosen among a grid, on how many
    held-out ones its recipe was chosen), and that they were kept out of the audit
    (``excluded``: how many of them this audit's dataset held, when known), or, in a
    ``cross_fitted`` audit, that they were audited against the other shadows."""
    recipe, base = card.get("recipe") or {}, card.get("base") or {}
    n = card.get("n_clips", len(card.get("trained_clip_hashes") or ()))
    lr = recipe.get("lr")
    how = ", ".join(x for x in (f"{recipe['epochs']} epoch(s)" if "epochs" in recipe else "",
                                f"lr {lr:g}" if isinstance(lr, (int, float)) else "",
                                f"batch {recipe['batch_size']}" if "batch_size" in recipe else "",
                                f"LoRA rank {recipe['lora_rank']}" if recipe.get("lora_rank") else "") if x)
    member = card.get("shadow_set") or {}
    if member:  # one of several shadows (LiRA's spread): which one, and what differs between them
        folds = int(member.get("folds", 0))
        other = {"seed": "the same clips as the others",
                 "both": f"draw {int(member.get('index', 0)) % max(folds, 1) + 1} of {folds} disjoint draws of clips"}.get(
            str(member.get("vary")), "its own disjoint draw of clips")
        how += (f"; shadow {int(member.get('index', 0)) + 1} of {member.get('shadows', '?')} of a set "
                f"(seed {recipe.get('seed', '?')}, {other})")
    data = (card.get("dataset") or {}).get("name")
    held = len(card.get("heldout_clip_hashes") or ())
    chosen = (f", its recipe chosen among {(card.get('recipe_selection') or {}).get('recipes', 'several')} on {held} other "
              "held-out ones" if held else "")
    kept = ("those clips were audited, each calibrated against shadows that never trained on it (cross-fitted)" if cross_fitted else
            "those clips were kept out of this audit" + (f" ({excluded} of them in this dataset)" if excluded is not None else ""))
    return (f"shadow of {base.get('spec', '?')} (fingerprint {str(base.get('fingerprint', '?'))[:12]})"
            + (f", {how}" if how else "") + f"; trained on {n} known non-members" + (f" of {data}" if data else "")
            + f"{chosen}; {kept}")


def shadow_cards(references: Sequence[str]) -> dict[str, dict]:
    """reference spec -> its shadow card, for each of ``references`` whose folder holds one
    (a base, a zoo model or a folder no longer there has none). Reads metadata only."""
    from core.targets import resolve_target

    out: dict[str, dict] = {}
    for spec in references:
        try:
            loc = resolve_target(spec).location
        except (ValueError, FileNotFoundError, OSError):
            continue
        card = read_card(loc) if loc is not None and Path(loc).is_dir() else None
        if card is not None:
            out[spec] = card
    return out


def shadow_lines(references: Sequence[str], excluded: Sequence[dict] | None = None, *, cross_fitted: bool = False) -> list[str]:
    """``"SPEC: <card line>"`` for each shadow among a run's ``references`` (what every
    surface shows beside a calibrated result); ``excluded`` is the run's ``excluded_clips``,
    counted per shadow by the content hashes its card lists (trained on or held out);
    ``cross_fitted``: the run audited the shadows' own clips (:func:`card_line`)."""
    gone = {str(e.get("clip_hash")) for e in excluded or ()}
    def left_out(card: dict) -> int:
        return len(gone & {str(h) for key in ("trained_clip_hashes", "heldout_clip_hashes") for h in card.get(key) or ()})

    return [f"{spec}: {card_line(card, excluded=left_out(card), cross_fitted=cross_fitted)}"
            for spec, card in shadow_cards(references).items()]


def _check_out(out: Path, digest: str) -> dict | None:
    """The finished card when ``out`` already holds this build; refuse a folder that holds
    anything else (another build, another model, unrelated files)."""
    card = read_card(out)
    if card is not None:
        if card.get("request") == digest:
            return card
        raise ValueError(f"{out} holds a shadow reference built from another base, recipe or clip list; choose another --out")
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir() if p.name != STATE_DIR)
        if others:
            raise ValueError(f"{out} is not empty ({', '.join(others[:3])}{'...' if len(others) > 3 else ''}); "
                             "a shadow reference is written to a new or empty folder")
    return None


def _lr_factor(step: int, total: int) -> float:
    """Cosine decay from 1 to 0.05 over ``total`` steps (the zoo's fine-tuning schedule
    without its warm-up)."""
    import math

    frac = min(1.0, step / max(1, total))
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac))


def train_shadow(
    target: Any,
    clips: Sequence[Any],
    out_dir: str | Path,
    *,
    recipe: ShadowRecipe = ShadowRecipe(),
    card: dict | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> dict:
    """Fine-tune the loaded base ``target`` on ``clips`` and save it as a checkpoint folder.

    Parameters
    ----------
    target : a target of a supported family (:data:`SUPPORTED`) loaded with float32 weights
        (it is trained in place: never a pooled model another run reads). A multilingual
        speech model must have its language chosen.
    clips : the non-members to train on (:class:`~core.targets.base.ClipInput`, each with
        its transcript or caption); their ``clip_hash`` values go into the card.
    out_dir : a new or empty folder, or one holding a partial build of the same request
        (which resumes after its last finished epoch) or the finished one (returned as is).
    recipe : the fine-tuning recipe.
    card : what the caller adds to the card (the dataset, how the clips were chosen).
    progress : called after each epoch with (epochs done, epochs total, message).
    cancelled : checked between batches; True stops with ``InterruptedError``, keeping the
        state of the last finished epoch.

    Returns
    -------
    dict
        The card, also written to ``out_dir/card.json`` (last: a folder with a card holds a
        finished checkpoint): ``family``, ``base`` (spec, fingerprint), ``recipe``,
        ``trained_clip_hashes``, ``train_time_s``, ``clips_per_s`` and the losses per epoch
        (and, for the text-to-audio families, the ``objective`` in words).

    Raises
    ------
    ValueError
        an unsupported base, a clip without a transcript or caption, a folder holding something else.
    """
    import importlib

    import torch

    objective = check_base(target)
    if not clips:
        raise ValueError("a shadow reference needs at least one non-member clip to train on")
    empty = [c.clip_hash[:12] for c in clips if not str(c.text or "").strip()]
    if empty:
        raise ValueError(f"{len(empty)} clip(s) have no {objective.text} to train on (first: {empty[0]}); "
                         f"{objective.kind} shadow is fine-tuned on each clip's {objective.text}")
    out = Path(out_dir)
    hashes = [c.clip_hash for c in clips]
    digest = request_digest(target.fingerprint, recipe, hashes)
    done_card = _check_out(out, digest)
    if done_card is not None:
        return done_card
    state_dir = out / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    state_path = state_dir / "state.safetensors"

    model = objective.module(target)
    device = torch.device(target.device)
    if next(model.parameters()).dtype != torch.float32:
        raise ValueError(f"{target.spec}: load the base with float32 weights to fine-tune it (got {next(model.parameters()).dtype})")
    autocast = device.type == "cuda"
    prev_threads = torch.get_num_threads()
    prev_det, prev_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    frozen = [p for m in objective.frozen(target) for p in m.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    lora: dict[str, Any] | None = None
    try:
        prep = objective.prepare(target, clips, recipe.batch_size)
        n = len(clips)
        steps_per_epoch = -(-n // recipe.batch_size)
        total_steps = steps_per_epoch * recipe.epochs
        torch.manual_seed(recipe.seed)
        if recipe.lora_rank:
            peft_model, lora = _add_lora(objective, model, recipe)  # its initial A matrices drawn from the seed above
        trained = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        # full fine-tuning hands the optimizer every parameter, as builds before LoRA did (the
        # frozen ones get no gradient and are skipped), so their resumable states still load
        params = [p for _, p in trained] if lora is not None else list(model.parameters())
        opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: _lr_factor(step, total_steps))
        gen = torch.Generator().manual_seed(recipe.seed)
        losses: list[float] = []
        seconds, start_epoch = 0.0, 0
        if state_path.is_file():
            # our own state, read back without unpickling code (tensors and plain values only)
            state = _read_state(state_path)
            if state.get("request") == digest:
                if lora is None:
                    model.load_state_dict(state["model"])
                else:  # the adapters only: the base weights are the loaded base's
                    missing = {k for k, _ in trained} - set(state["model"])
                    if missing:
                        raise ValueError(f"{state_path}: the saved state lacks {len(missing)} LoRA weight(s); remove {state_dir}")
                    model.load_state_dict(state["model"], strict=False)
                opt.load_state_dict(state["optim"])
                sched.load_state_dict(state["sched"])
                gen.set_state(state["gen"])
                torch.set_rng_state(state["rng"])
                losses, seconds, start_epoch = list(state["losses"]), float(state["seconds"]), int(state["epoch"])
        model.train()
        for epoch in range(start_epoch, recipe.epochs):
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=gen)
            tot, count = 0.0, 0
            for s in range(0, n, recipe.batch_size):
                if cancelled():
                    raise InterruptedError
                idx = order[s:s + recipe.batch_size].tolist()
                loss, k = objective.batch_loss(target, prep, idx, gen, device, autocast)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                tot, count = tot + float(loss.detach()) * k, count + k
            losses.append(tot / max(1, count))
            seconds += time.perf_counter() - t0
            tmp = state_path.with_name(state_path.name + ".tmp")
            weights = model.state_dict() if lora is None else {k: p for k, p in trained}
            _write_state(tmp, {"request": digest, "epoch": epoch + 1, "model": weights, "optim": opt.state_dict(),
                               "sched": sched.state_dict(), "gen": gen.get_state(), "rng": torch.get_rng_state(),
                               "losses": losses, "seconds": seconds})
            os.replace(tmp, state_path)
            if progress is not None:
                progress(epoch + 1, recipe.epochs, f"epoch {epoch + 1}/{recipe.epochs}: loss {losses[-1]:.4f} {objective.per}")
        if lora is not None:
            # the adapters folded into the base weights: the saved shadow is an ordinary checkpoint
            peft_model.merge_and_unload()
            for p in model.parameters():
                p.requires_grad_(True)
        model.eval()
        objective.save(target, out)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.set_num_threads(prev_threads)

    how = "full fine-tuning" if lora is None else f"LoRA fine-tuning at rank {lora['rank']}, alpha {lora['alpha']:g},"
    versions = {"torch": torch.__version__, **{lib: importlib.import_module(lib).__version__ for lib in objective.versions}}
    if lora is not None:
        versions["peft"] = importlib.import_module("peft").__version__
    result = {
        "name": out.name,
        "kind": CARD_KIND,
        "family": target.family,
        "architecture": objective.architecture(target, how),
        "base": {"spec": target.spec, "fingerprint": target.fingerprint, "adapter": target.adapter},
        "recipe": recipe.to_dict(),
        **({"objective": objective.describe} if objective.describe else {}),
        **objective.card_extra(target),
        **({"lora": lora} if lora is not None else {}),
        **(card or {}),
        "n_clips": n,
        "n_truncated": prep.truncated,
        "trained_clip_hashes": hashes,
        "device": str(device),
        "precision": "float32 weights, bfloat16 forward" if autocast else "float32",
        "param_count": int(sum(p.numel() for p in model.parameters())),
        "trained_param_count": int(sum(p.numel() for _, p in trained)),
        "train_time_s": round(seconds, 2),
        "clips_per_s": round(n * recipe.epochs / seconds, 3) if seconds > 0 else None,
        "loss_per_epoch": [round(x, 5) for x in losses],
        "request": digest,
        "versions": versions | {"python": platform.python_version()},
    }
    write_json(out / "card.json", result)
    shutil.rmtree(state_dir, ignore_errors=True)
    return result


def _add_lora(objective: Objective, model: Any, recipe: ShadowRecipe) -> tuple[Any, dict[str, Any]]:
    """LoRA adapters (``peft``) on the objective's layers of ``model``, injected in place (the
    target's own modules now run through them); every other weight is frozen. Returns the
    ``peft`` model (to merge the adapters with) and the settings the card records."""
    from peft import LoraConfig, get_peft_model

    layers = objective.lora_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no linear layer for LoRA to adapt; build this shadow with --lora-rank 0")
    from transformers.pytorch_utils import Conv1D

    modules = dict(model.named_modules())
    # GPT-2's Conv1D stores its weight transposed (peft would switch this on per layer, warning each time)
    transposed = all(isinstance(modules[name], Conv1D) for name in layers)
    config = LoraConfig(r=recipe.lora_rank, lora_alpha=recipe.lora_alpha, lora_dropout=0.0, bias="none",
                        target_modules=layers, fan_in_fan_out=transposed)
    peft_model = get_peft_model(model, config)
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return peft_model, {"rank": recipe.lora_rank, "alpha": recipe.lora_alpha, "dropout": 0.0, "bias": "none",
                        "layers": len(layers), "adapter_params": int(n_trained), "merged": True}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """A training state as safetensors (every tensor: the model's, the optimizer's moments,
    the random generators') with the plain values as JSON in its metadata: nothing that
    reading it back could execute."""
    from safetensors.torch import save_file

    tensors = {f"model/{k}": v.detach().cpu().clone() for k, v in state["model"].items()}  # tied weights saved apart
    tensors |= {"gen": state["gen"], "rng": state["rng"]}
    optim_values: dict[str, dict[str, Any]] = {}
    for idx, per in state["optim"]["state"].items():
        for key, value in per.items():
            if hasattr(value, "detach"):
                tensors[f"optim/{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                optim_values.setdefault(str(idx), {})[key] = value
    plain = {k: state[k] for k in ("request", "epoch", "losses", "seconds", "sched")} | {
        "optim_groups": state["optim"]["param_groups"], "optim_values": optim_values}
    save_file(tensors, str(path), metadata={"state": json.dumps(plain, default=float)})


def _read_state(path: Path) -> dict[str, Any]:
    """The state :func:`_write_state` wrote (``{}`` for a file it cannot read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            plain = json.loads((f.metadata() or {}).get("state", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # noqa: BLE001 - a torn or foreign file: start over
        return {}
    optim: dict[str, Any] = {"state": {}, "param_groups": plain.get("optim_groups", [])}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, idx, key = name.split("/", 2)
            optim["state"].setdefault(int(idx), {})[key] = value
    for idx, values in (plain.get("optim_values") or {}).items():
        optim["state"].setdefault(int(idx), {}).update(values)
    model = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("model/")}
    return {**plain, "model": model, "optim": optim, "gen": tensors.get("gen"), "rng": tensors.get("rng")}
