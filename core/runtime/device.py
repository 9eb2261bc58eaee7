"""Device and dtype choice, shared by the targets and the batched feature extractors.

torch is imported when a device is chosen, not with this module, so the loaders that import
it register (and specs resolve) without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA (half the memory, the dtype released checkpoints use; float16 on a
    GPU without bf16 support), float32 on CPU (CPU bfloat16 matmuls are slow and lossy)."""
    import torch

    if device.type != "cuda":
        return torch.float32
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16
