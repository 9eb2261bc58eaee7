"""Shared helpers for loading real checkpoints from local folders.

Every real-checkpoint adapter goes through the same rules: weights load from safetensors
only (a pickle-based ``.bin``/``.pt`` file can execute code when unpickled), code shipped
inside a checkpoint folder runs only when the user passes ``trust_remote_code=True``, the
device is CUDA when present, weights are bfloat16 on CUDA and float32 on CPU, and a batch
that does not fit in GPU (or host) memory is retried at half the size.

torch is imported by the helpers that use it, not with this module: the ``local`` loader
reads folder metadata through it when a spec is resolved, which needs no torch.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from core.config import Config
from core.runtime.device import default_dtype, resolve_device  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
R = TypeVar("R")

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
"""Weight-file suffixes that are refused: they are unpickled, which can run arbitrary code."""

DEFAULT_CUDA_BATCH = 16
DEFAULT_CPU_BATCH = 4


@dataclass(frozen=True)
class LoadConfig(Config):
    """How a checkpoint was loaded; recorded with the target so reports can show it.

    device : ``"cuda"``, ``"cuda:1"``, ``"cpu"``...
    dtype : weight dtype name (``"bfloat16"``, ``"float32"``).
    trust_remote_code : whether code from the checkpoint folder was allowed to run.
    batch_size : starting batch size (halved on out-of-memory).
    """

    device: str
    dtype: str
    trust_remote_code: bool = False
    batch_size: int = DEFAULT_CPU_BATCH


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"`` -> :func:`default_dtype`; a name such as ``"float16"`` or a dtype."""
    import torch

    if dtype is None or dtype == "auto":
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    out = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(out, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; valid: 'auto', 'float32', 'bfloat16', 'float16'")
    return out


def default_batch_size(device: torch.device) -> int:
    """Starting batch size; on CUDA it is an upper guess that OOM halving brings down."""
    return DEFAULT_CUDA_BATCH if device.type == "cuda" else DEFAULT_CPU_BATCH


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def read_config(folder: str | Path) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict.

    Raises
    ------
    FileNotFoundError
        No ``config.json`` in the folder.
    ValueError
        The file is not valid JSON.
    """
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder (no config.json)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def check_safetensors(folder: str | Path) -> list[Path]:
    """The folder's ``*.safetensors`` files; refuses pickle-only checkpoints.

    Returns
    -------
    list of Path
        The safetensors weight files, sorted.

    Raises
    ------
    ValueError
        The folder has pickle weight files (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``)
        and no safetensors file, or no weight files at all.
    """
    folder = Path(folder)
    safe = sorted(p for p in folder.rglob("*.safetensors") if p.is_file())
    if safe:
        return safe
    pickled = sorted(p.name for p in folder.rglob("*") if p.is_file() and p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise ValueError(
            f"{folder} has only pickle weight files ({', '.join(pickled[:4])}); Overheard loads "
            "safetensors only, because unpickling can execute code. Convert the checkpoint first, "
            "e.g. load it once in a trusted environment and call "
            "model.save_pretrained(out_dir, safe_serialization=True)."
        )
    raise ValueError(f"{folder} has no weight files (*.safetensors)")


def check_remote_code(config: dict[str, Any], *, trust_remote_code: bool, folder: str | Path) -> None:
    """Refuse a checkpoint that needs its own Python code unless the user allowed it.

    Raises
    ------
    ValueError
        ``config`` has an ``auto_map`` (custom modelling code) and ``trust_remote_code`` is
        False.
    """
    if config.get("auto_map") and not trust_remote_code:
        raise ValueError(
            f"{folder} ships its own model code (auto_map in config.json); it runs only with "
            "the loader option trust_remote_code=True. Read that code first."
        )


def free_memory() -> None:
    """Return cached CUDA blocks after a failed or finished batch."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


_CPU_OOM_MARKER = "DefaultCPUAllocator"


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure that a smaller batch may avoid.

    CUDA raises :class:`torch.OutOfMemoryError`; the CPU allocator raises a plain
    ``RuntimeError`` naming ``DefaultCPUAllocator``; numpy and Python raise ``MemoryError``.
    """
    import torch

    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and _CPU_OOM_MARKER in str(exc)


def run_batches_halving(
    fn: Callable[[list[T]], list[R]],
    items: Sequence[T],
    *,
    batch_size: int,
    on_shrink: Callable[[int], None] | None = None,
) -> tuple[list[R], int]:
    """Apply ``fn`` to consecutive batches, halving the batch size on out-of-memory.

    A batch that runs out of CUDA or host memory (:func:`is_out_of_memory`) is retried,
    from the same item, at half the size; the smaller size is kept for the remaining batches. At batch
    size 1 the error propagates, since nothing smaller can be tried.

    Parameters
    ----------
    fn : callable
        Maps a list of ``b`` items to a list of ``b`` results, in order.
    items : sequence
        What to process.
    batch_size : int
        Starting batch size (at least 1).
    on_shrink : callable, optional
        Called with each new, smaller batch size (adapters remember it for later calls).

    Returns
    -------
    results : list
        ``fn``'s results for every item, in order.
    batch_size : int
        The batch size in use at the end.
    """
    bs = max(1, int(batch_size))
    out: list[R] = []
    start = 0
    while start < len(items):
        batch = list(items[start : start + bs])
        try:
            res = fn(batch)
        except (RuntimeError, MemoryError) as exc:
            if bs == 1 or not is_out_of_memory(exc):
                raise
            free_memory()
            bs = max(1, bs // 2)
            if on_shrink is not None:
                on_shrink(bs)
            continue
        if len(res) != len(batch):
            raise RuntimeError(f"batch function returned {len(res)} results for {len(batch)} items")
        out.extend(res)
        start += len(batch)
    return out, bs


def resample(audio, *, orig_sr: int, target_sr: int):
    """Mono float32 audio resampled to ``target_sr`` (returned unchanged when equal)."""
    import numpy as np

    a = np.asarray(audio, dtype=np.float32).reshape(-1)
    if int(orig_sr) == int(target_sr):
        return a
    import librosa

    return librosa.resample(a, orig_sr=int(orig_sr), target_sr=int(target_sr)).astype(np.float32)
