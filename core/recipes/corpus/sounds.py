"""Procedural sound events with captions, for the demo text-to-audio corpus.

Each event is drawn from a seeded generator and rendered in closed form: pure tones,
rising or falling chirps, harmonic instrument-like notes under an ADSR envelope (plucked,
bowed, organ, bell), white or pink noise bursts (optionally band-passed), click trains,
and combinations of two of these in sequence or overlapping. The caption says in words
what kind of sound it is, its pitch register, how long it feels and how loud it is, plus
the main parameter (frequency, band, rate), so captions of different kinds differ in
their wording, not only in numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy import signal

MIN_SECONDS = 1.0
MAX_SECONDS = 3.0

_Renderer = Callable[[np.random.Generator, int, float], tuple[NDArray[np.float64], str]]


def _register(freq_hz: float) -> str:
    if freq_hz < 250:
        return "low"
    if freq_hz < 1000:
        return "mid-range"
    return "high"


def _length_word(seconds: float) -> str:
    if seconds < 1.5:
        return "short"
    if seconds < 2.3:
        return "medium-length"
    return "long"


def _loudness_word(peak: float) -> str:
    if peak < 0.2:
        return "quiet"
    if peak < 0.45:
        return "moderately loud"
    return "loud"


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _fade(x: NDArray[np.float64], sr: int, *, ms: float = 10.0) -> NDArray[np.float64]:
    # Short raised-cosine fades so no event starts or stops with a click.
    n = min(int(sr * ms / 1000), x.size // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def adsr(
    n: int, sr: int, *, attack: float, decay: float, sustain: float, release: float
) -> NDArray[np.float64]:
    """Piecewise-linear attack-decay-sustain-release envelope.

    Parameters
    ----------
    n : int
        Envelope length in samples.
    sr : int
        Sample rate in Hz.
    attack, decay, release : float
        Segment durations in seconds (clipped so that they fit in ``n`` samples).
    sustain : float
        Sustain level in [0, 1].

    Returns
    -------
    ndarray of float64, shape (n,)
        Envelope rising from 0 to 1, decaying to ``sustain`` and released to 0.
    """
    a = max(1, int(attack * sr))
    d = max(1, int(decay * sr))
    r = max(1, int(release * sr))
    if a + d + r > n:
        scale = n / (a + d + r)
        a, d = max(1, int(a * scale)), max(1, int(d * scale))
        r = max(1, n - a - d)
    s = max(0, n - a - d - r)
    env = np.concatenate(
        [
            np.linspace(0.0, 1.0, a, endpoint=False),
            np.linspace(1.0, sustain, d, endpoint=False),
            np.full(s, sustain),
            np.linspace(sustain, 0.0, r),
        ]
    )
    return env[:n]


def _tone(rng: np.random.Generator, sr: int, dur: float) -> tuple[NDArray[np.float64], str]:
    f = _log_uniform(rng, 110, 3000)
    t = np.arange(int(dur * sr)) / sr
    x = np.sin(2 * np.pi * f * t)
    return _fade(x, sr, ms=30), f"a steady {_register(f)} sine tone at {f:.0f} Hz"


def _chirp(rng: np.random.Generator, sr: int, dur: float) -> tuple[NDArray[np.float64], str]:
    lo = _log_uniform(rng, 150, 800)
    hi = lo * _log_uniform(rng, 2.0, 8.0)
    up = bool(rng.random() < 0.5)
    t = np.arange(int(dur * sr)) / sr
    f0, f1 = (lo, hi) if up else (hi, lo)
    x = signal.chirp(t, f0=f0, t1=t[-1], f1=f1, method="logarithmic")
    word = "rising chirp sweeping up" if up else "falling chirp sweeping down"
    return _fade(x, sr), f"a {word} from {f0:.0f} Hz to {f1:.0f} Hz"


_TIMBRES = ("plucked", "bowed", "organ", "bell")


def _note(rng: np.random.Generator, sr: int, dur: float) -> tuple[NDArray[np.float64], str]:
    timbre = _TIMBRES[int(rng.integers(len(_TIMBRES)))]
    midi = int(rng.integers(40, 89))
    f = 440.0 * 2.0 ** ((midi - 69) / 12)
    n = int(dur * sr)
    t = np.arange(n) / sr
    bright = bool(rng.random() < 0.5)
    tilt = 0.8 if bright else 1.8  # partial k has amplitude k**-tilt
    if timbre == "bell":
        # Inharmonic partials of a struck bar, each decaying faster than the one below.
        ratios = np.array([1.0, 2.76, 5.40, 8.93])
        x = sum(
            k ** -tilt * np.sin(2 * np.pi * f * r * t) * np.exp(-t * (2.0 + 3.0 * k))
            for k, r in enumerate(ratios, start=1)
        )
        env = np.ones(n)
    else:
        n_part = max(1, min(12, int(0.45 * sr / f)))
        ks = np.arange(1, n_part + 1)
        if timbre == "organ":
            ks = ks[ks % 2 == 1]  # odd partials only: a hollow, clarinet-like sound
        x = sum(k ** -tilt * np.sin(2 * np.pi * f * k * t) for k in ks)
        if timbre == "plucked":
            env = np.exp(-t * rng.uniform(2.5, 5.0)) * adsr(
                n, sr, attack=0.005, decay=0.05, sustain=0.9, release=0.05
            )
        elif timbre == "bowed":
            env = adsr(n, sr, attack=0.25, decay=0.1, sustain=0.8, release=0.3)
        else:
            env = adsr(n, sr, attack=0.03, decay=0.05, sustain=0.95, release=0.08)
    x = _fade(np.asarray(x) * env, sr, ms=5)
    names = {"plucked": "plucked string note", "bowed": "slow bowed note",
             "organ": "hollow organ note", "bell": "ringing bell strike"}
    colour = "bright" if bright else "mellow"
    return x, f"a {colour} {_register(f)} {names[timbre]} at {f:.0f} Hz"


def _noise(rng: np.random.Generator, sr: int, dur: float) -> tuple[NDArray[np.float64], str]:
    n = int(dur * sr)
    pink = bool(rng.random() < 0.5)
    x = rng.standard_normal(n)
    if pink:
        # 1/f power: scale the spectrum by 1/sqrt(f).
        spec = np.fft.rfft(x)
        fr = np.fft.rfftfreq(n, 1 / sr)
        spec[1:] /= np.sqrt(fr[1:])
        spec[0] = 0
        x = np.fft.irfft(spec, n)
    kind = "pink noise" if pink else "white noise"
    band = ""
    if rng.random() < 0.6:
        fc = _log_uniform(rng, 200, 4000)
        lo, hi = fc / 1.5, min(fc * 1.5, 0.45 * sr)
        sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
        x = signal.sosfilt(sos, x)
        band = f" band-passed around {fc:.0f} Hz ({_register(fc)})"
    gate = adsr(n, sr, attack=0.02, decay=0.1, sustain=0.7, release=0.15)
    x = x / (np.max(np.abs(x)) + 1e-12) * gate
    return _fade(x, sr), f"a hissing burst of {kind}{band}"


def _clicks(rng: np.random.Generator, sr: int, dur: float) -> tuple[NDArray[np.float64], str]:
    n = int(dur * sr)
    rate = _log_uniform(rng, 3.0, 40.0)
    x = np.zeros(n)
    fc = _log_uniform(rng, 800, 5000)
    m = int(0.004 * sr)
    tc = np.arange(m) / sr
    # A click is a few cycles of a damped sinusoid; its centre frequency sets how sharp it sounds.
    click = np.exp(-tc * 2000.0) * np.sin(2 * np.pi * fc * tc)
    for start in (np.arange(0.0, dur, 1.0 / rate) * sr).astype(int):
        seg = x[start : start + m]
        seg += click[: seg.size]
    speed = "slow" if rate < 8 else ("steady" if rate < 20 else "fast, buzzing")
    feel = "sharp" if fc > 2000 else "dull"
    return x, f"a {speed} train of {feel} clicks at {rate:.0f} clicks per second"


_SIMPLE: tuple[tuple[str, _Renderer], ...] = (
    ("tone", _tone),
    ("chirp", _chirp),
    ("note", _note),
    ("noise", _noise),
    ("clicks", _clicks),
)
KINDS: tuple[str, ...] = tuple(k for k, _ in _SIMPLE) + ("sequence", "overlap")


def _unit(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return x / (np.max(np.abs(x)) + 1e-12)


def _simple(
    rng: np.random.Generator, sr: int, dur: float, *, exclude: str = ""
) -> tuple[str, NDArray[np.float64], str]:
    names = [k for k, _ in _SIMPLE if k != exclude]
    kind = names[int(rng.integers(len(names)))]
    x, cap = dict(_SIMPLE)[kind](rng, sr, dur)
    return kind, x, cap


def render_event(
    rng: np.random.Generator, *, sr: int = 16000
) -> tuple[NDArray[np.float32], str]:
    """Draw and render one captioned sound event of 1-3 seconds.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice; the same state gives the same event.
    sr : int, default 16000
        Sample rate in Hz.

    Returns
    -------
    audio : ndarray of float32, shape (n_samples,)
        Mono waveform with peak amplitude in [0.08, 0.8].
    caption : str
        One-sentence description: kind, pitch register or band, duration and loudness.
    """
    dur = float(rng.uniform(MIN_SECONDS, MAX_SECONDS))
    peak = float(rng.uniform(0.08, 0.8))
    u = rng.random()
    if u < 0.7:
        _, x, cap = _simple(rng, sr, dur)
    elif u < 0.85:
        gap = np.zeros(int(0.05 * sr))
        half = (dur - gap.size / sr) / 2
        kind_a, a, cap_a = _simple(rng, sr, half)
        _, b, cap_b = _simple(rng, sr, half, exclude=kind_a)
        x = np.concatenate([_unit(a), gap, _unit(b)])
        cap = f"{cap_a}, followed by {cap_b}"
    else:
        kind_a, a, cap_a = _simple(rng, sr, dur)
        _, b, cap_b = _simple(rng, sr, dur * 0.6, exclude=kind_a)
        x = _unit(a)
        off = int(rng.integers(0, x.size - b.size + 1))
        x[off : off + b.size] += 0.8 * _unit(b)
        cap = f"{cap_a} overlapping with {cap_b}"
    x = np.asarray(x, dtype=np.float64)
    x = x / (np.max(np.abs(x)) + 1e-12) * peak
    seconds = x.size / sr
    cap = f"{cap[0].upper()}{cap[1:]}, {_length_word(seconds)} and {_loudness_word(peak)}."
    return x.astype(np.float32), cap
