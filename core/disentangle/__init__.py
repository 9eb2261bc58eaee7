"""Modality disentanglement: re-audit with the audio replaced (silence, noise, resynthesis)."""

from core.disentangle import variants as _variants  # noqa: F401  (registers the built-ins)
from core.disentangle.registry import Variant, VariantFamily, get_variant, register_variant, variant_names

__all__ = ["Variant", "VariantFamily", "get_variant", "register_variant", "variant_names"]
