"""Plain-language names, units and "giveaway" sentences for blind features."""

from __future__ import annotations

import re

import numpy as np

__all__ = ["describe_feature", "format_value", "giveaway_sentence"]

# name -> (plain words, unit); units drive formatting in format_value.
_EXACT: dict[str, tuple[str, str]] = {
    "duration_s": ("duration", "s"),
    "size_bytes": ("file size", "bytes"),
    "bytes_per_second": ("bytes per second of audio", "bytes/s"),
    "sample_rate_hz": ("original sample rate", "Hz"),
    "bit_depth": ("bit depth", "bit"),
    "channels": ("channel count", ""),
    "n_words": ("word count", "words"),
    "n_chars": ("character count", "chars"),
    "words_per_second": ("speaking rate", "words/s"),
    "spectral_centroid_hz": ("spectral centroid", "Hz"),
    "spectral_bandwidth_hz": ("spectral bandwidth", "Hz"),
    "spectral_rolloff_hz": ("spectral roll-off", "Hz"),
    "spectral_flatness": ("spectral flatness", ""),
    "rms_mean": ("loudness (mean RMS)", "rms"),
    "rms_std": ("loudness variation (RMS std)", "rms"),
    "zero_crossing_rate": ("zero-crossing rate", ""),
    "f0_mean_hz": ("mean pitch", "Hz"),
    "f0_std_hz": ("pitch variation", "Hz"),
    "voiced_fraction": ("voiced fraction", "%"),
    "effective_bandwidth_hz": ("effective bandwidth", "Hz"),
    "noise_floor_db": ("noise floor", "dB"),
    "silence_ratio": ("silence ratio", "%"),
    "clipping_fraction": ("clipped-sample fraction", "%"),
    "dc_offset": ("DC offset", ""),
}


def describe_feature(name: str) -> tuple[str, str]:
    """(plain words, unit) for a feature column name."""
    if name in _EXACT:
        return _EXACT[name]
    m = re.fullmatch(r"mfcc_(\d+)_(mean|std)", name)
    if m:
        what = "mean" if m.group(2) == "mean" else "variation"
        return f"MFCC {m.group(1)} {what}", ""
    m = re.fullmatch(r"spectral_contrast_(\d+)_db", name)
    if m:
        return f"spectral contrast in octave band {m.group(1)}", "dB"
    m = re.fullmatch(r"(format|subtype)=(.+)", name)
    if m:
        return f"share of {m.group(2)} {'files' if m.group(1) == 'format' else 'encoding'}", "%"
    return name.replace("_", " "), ""


def format_value(x: float, unit: str) -> str:
    """A value with its unit, scaled for reading (Hz -> kHz, bytes -> kB/MB, ratios -> %)."""
    if x is None or not np.isfinite(x):
        return "n/a"
    if unit == "Hz":
        return f"{x / 1000:.1f} kHz" if abs(x) >= 1000 else f"{x:.0f} Hz"
    if unit == "bytes":
        for div, u in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if abs(x) >= div:
                return f"{x / div:.1f} {u}"
        return f"{x:.0f} B"
    if unit == "bytes/s":
        return f"{x / 1000:.1f} kB/s" if abs(x) >= 1000 else f"{x:.0f} B/s"
    if unit == "%":
        return f"{100 * x:.0f}%"
    if unit == "dB":
        return f"{x:.1f} dB"
    if unit == "s":
        return f"{x:.2f} s"
    if unit in ("bit", "words", "chars"):
        return f"{x:.0f} {unit}" if unit != "bit" else f"{x:.0f}-bit"
    if unit == "words/s":
        return f"{x:.2f} words/s"
    return f"{x:.3g}"


def giveaway_sentence(
    name: str,
    nonmember_values: np.ndarray,
    member_values: np.ndarray,
    *,
    text_term: bool = False,
) -> str:
    """One sentence saying how non-members differ from members on one feature.

    Numeric features compare group medians (means when the medians tie, e.g. for
    one-hot or mostly-zero columns); text terms compare the share of clips whose
    transcript contains the term.
    """
    a = np.asarray(nonmember_values, dtype=np.float64)
    b = np.asarray(member_values, dtype=np.float64)
    if text_term:
        pa, pb = float(np.mean(a > 0)), float(np.mean(b > 0))
        way = "more" if pa > pb else "less"
        return (
            f'non-member transcripts contain "{name}" {way} often '
            f"({pa:.0%} of clips vs {pb:.0%})"
        )
    words, unit = describe_feature(name)
    if np.all(np.isnan(a)) or np.all(np.isnan(b)):
        return f"{words} is missing for every clip of one group"
    ma, mb = float(np.nanmedian(a)), float(np.nanmedian(b))
    stat = "median"
    if np.isclose(ma, mb, rtol=1e-9, atol=1e-12):
        ma, mb, stat = float(np.nanmean(a)), float(np.nanmean(b)), "mean"
    if np.isclose(ma, mb, rtol=1e-9, atol=1e-12):
        return f"non-members and members have the same {words} ({stat} {format_value(ma, unit)})"
    way = "lower" if ma < mb else "higher"
    return (
        f"non-members have {way} {words} "
        f"({stat} {format_value(ma, unit)} vs {format_value(mb, unit)})"
    )
