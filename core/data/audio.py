"""Reading and validating audio: what the file is, before any resampling, and a mono
analysis copy at a fixed rate.

Everything libsndfile reads is supported (WAV in 8/16/24/32-bit and float, FLAC,
OGG/Vorbis, Opus, MP3, AIFF, ...). Other formats get a clear "convert with ffmpeg" error.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

import numpy as np
import soundfile as sf
from numpy.typing import NDArray

from core.runtime.settings import Limits

AUDIO_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".au", ".caf", ".w64", ".rf64"}
UNSUPPORTED_AUDIO = {".m4a", ".aac", ".wma", ".mp4", ".webm", ".amr", ".ac3", ".mka", ".ape", ".alac", ".dsf"}
SIDECAR_EXTENSIONS = {".txt", ".lab"}

_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64, "ALAC_16": 16, "ALAC_24": 24}


class AudioError(ValueError):
    """A file that cannot be used, with a one-line reason."""


@dataclass(frozen=True)
class AudioInfo:
    """What the file says about itself, recorded before any resampling."""

    format: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int
    duration: float
    size_bytes: int

    @property
    def bit_depth(self) -> int:
        """Bits per sample for PCM/float subtypes; 0 for lossy codecs."""
        return _BITS.get(self.subtype, 0)

    def to_dict(self) -> dict:
        return asdict(self)


class _Bytes(io.BytesIO):
    """In-memory file for libsndfile. A damaged header can make libsndfile seek before
    the start; ``BytesIO`` raises there inside a C callback, which Python can only print
    as a traceback on stderr. Staying put instead lets libsndfile report the damage."""

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return super().seek(offset, whence)
        except ValueError:
            return self.tell()


def classify_extension(name: str) -> str:
    """``"audio"``, ``"unsupported"``, ``"sidecar"`` or ``"other"`` by file extension."""
    ext = PurePosixPath(name).suffix.lower()
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in UNSUPPORTED_AUDIO:
        return "unsupported"
    if ext in SIDECAR_EXTENSIONS:
        return "sidecar"
    return "other"


def probe(data: bytes, *, limits: Limits = Limits()) -> AudioInfo:
    """Read the header of an in-memory audio file and check it against ``limits``.

    Raises
    ------
    AudioError
        unreadable, empty, zero duration, absurd parameters, or over a limit.
    """
    if len(data) == 0:
        raise AudioError("empty file (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise AudioError(f"file too large ({len(data) / 1e6:.1f} MB > {limits.max_file_bytes / 1e6:.0f} MB limit)")
    try:
        info = sf.info(_Bytes(data))
    except Exception as exc:  # libsndfile raises several types for corrupt input
        raise AudioError(f"unreadable or unsupported audio ({_short(exc)}); convert it with ffmpeg to WAV or FLAC") from None
    if info.samplerate <= 0 or info.samplerate > limits.max_sample_rate:
        raise AudioError(f"implausible sample rate {info.samplerate} Hz")
    if info.channels <= 0 or info.channels > limits.max_channels:
        raise AudioError(f"implausible channel count {info.channels}")
    frames = int(info.frames)
    if frames <= 0:
        raise AudioError("zero duration (no audio frames)")
    duration = frames / info.samplerate
    if duration > limits.max_duration_s:
        raise AudioError(f"too long ({duration:.0f} s > {limits.max_duration_s:.0f} s limit)")
    decoded = frames * info.channels * 4  # float32 samples decode() will allocate
    if decoded > limits.max_decoded_bytes:
        raise AudioError(
            f"decodes to {decoded / 1e6:.0f} MB of samples ({decoded / len(data):.0f}x the file size; "
            f"limit {limits.max_decoded_bytes / 1e6:.0f} MB)"
        )
    return AudioInfo(str(info.format), str(info.subtype), int(info.samplerate), int(info.channels), frames, float(duration), len(data))


def decode(data: bytes, *, limits: Limits = Limits()) -> tuple[NDArray[np.float32], AudioInfo]:
    """Decode a whole file to float32 ``[frames, channels]`` after :func:`probe`.

    Raises
    ------
    AudioError
        on decoding failure, a frame count that disagrees badly with the header,
        NaN/Inf samples, or sample magnitudes far above full scale.
    """
    info = probe(data, limits=limits)
    try:
        audio, _ = sf.read(_Bytes(data), dtype="float32", always_2d=True, frames=info.frames + info.sample_rate)
    except Exception as exc:
        raise AudioError(f"decoding failed ({_short(exc)})") from None
    if audio.shape[0] == 0:
        raise AudioError("zero duration (no decodable frames)")
    if not np.all(np.isfinite(audio)):
        raise AudioError("contains NaN or Inf samples")
    peak = float(np.max(np.abs(audio)))
    if peak > limits.max_abs_sample:
        raise AudioError(f"non-physical sample values (peak {peak:.3g}; full scale is 1.0, limit {limits.max_abs_sample:g})")
    if audio.shape[0] != info.frames:
        # Header lied (truncated file): keep what decodes, report the real duration.
        info = AudioInfo(info.format, info.subtype, info.sample_rate, info.channels, int(audio.shape[0]), audio.shape[0] / info.sample_rate, info.size_bytes)
    return audio, info


def to_analysis(audio: NDArray[np.float32], sr: int, target_sr: int) -> NDArray[np.float32]:
    """Mono (channel mean) float32 at ``target_sr`` (soxr high quality resampling)."""
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if sr != target_sr:
        import soxr

        mono = soxr.resample(mono, sr, target_sr, quality="HQ").astype(np.float32)
    return mono


def load_analysis(data: bytes, target_sr: int, *, limits: Limits = Limits()) -> NDArray[np.float32]:
    """Decode and convert to the analysis copy in one call."""
    audio, info = decode(data, limits=limits)
    return to_analysis(audio, info.sample_rate, target_sr)


def _short(exc: Exception) -> str:
    import re

    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    msg = re.sub(r"^Error opening <[^>]*>:\s*", "", msg)  # libsndfile names the in-memory buffer
    return msg.rstrip(".")[:120]


def wav_bytes(audio: NDArray[np.floating], sr: int, *, subtype: str = "PCM_16") -> bytes:
    """WAV of mono ``audio [T]`` at its own level: 16-bit PCM for a player, or ``subtype="FLOAT"``
    for the exact samples (what a remote target is sent).

    Streamlit's player scales a raw array by its peak, which turns silence into a division
    by zero and hides level differences between variants; this keeps the level (clipped to
    full scale) so silence plays as silence and a quiet variant sounds quiet.
    """
    buf = io.BytesIO()
    x = np.clip(np.nan_to_num(np.asarray(audio, dtype=np.float64).reshape(-1)), -1.0, 1.0)
    sf.write(buf, x, int(sr), format="WAV", subtype=subtype)
    return buf.getvalue()
