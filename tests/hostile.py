"""A reusable hostile-input corpus: mutated real-format files, crafted headers and
samples, hostile names, and the ways to deliver them (folder, zip, browser upload).

``hostile_cases(n, seed)`` returns ``n`` seeded cases; ``write_folder`` lays them out
under ``members/`` and ``nonmembers/`` (names that are not valid UTF-8 included, as
bytes paths); ``to_zip`` packs them with archive-level tricks; ``accounting`` checks an
ingest lost nothing. The default suite runs a small corpus, the slow test and
``bench/hostile_run.py`` a large one with the same generator.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from core.runtime.store import Workspace


@dataclass(frozen=True)
class Case:
    name: bytes
    """File name (bytes: names that are not valid UTF-8 are part of the corpus)."""
    data: bytes
    kind: str

    @property
    def text_name(self) -> str:
        return self.name.decode("utf-8", "surrogateescape")


def encode(fmt: str, subtype: str, *, sr: int = 16000, channels: int = 1, seconds: float = 0.25, seed: int = 0,
           signal: np.ndarray | None = None) -> bytes:
    """A real file of ``fmt``/``subtype``: a tone per channel plus seeded noise, or ``signal``
    (``[frames, channels]``) when given."""
    if signal is None:
        rng = np.random.default_rng(seed)
        t = np.arange(int(sr * seconds)) / sr
        signal = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.02 * rng.standard_normal(t.size) for c in range(channels)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, np.asarray(signal).astype(np.float32), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


FORMATS = {"pcm16.wav": ("WAV", "PCM_16", {}), "float_stereo.wav": ("WAV", "FLOAT", {"channels": 2, "sr": 22050}),
           "pcm24.flac": ("FLAC", "PCM_24", {"sr": 44100}), "vorbis.ogg": ("OGG", "VORBIS", {}), "opus.ogg": ("OGG", "OPUS", {"sr": 48000}),
           "pcm16.aiff": ("AIFF", "PCM_16", {"channels": 2}), "layer3.mp3": ("MP3", "MPEG_LAYER_III", {})}
"""Base file name -> (format, subtype, :func:`encode` options)."""


def base_files(seed: int = 0) -> dict[str, bytes]:
    """One good file per format of :data:`FORMATS` that libsndfile can write here (MP3
    needs a libsndfile built with MP3 encoding)."""
    out = {}
    for name, (fmt, sub, kw) in FORMATS.items():
        try:
            out[name] = encode(fmt, sub, seed=seed, **kw)
        except (sf.LibsndfileError, TypeError, ValueError):
            if fmt != "MP3":
                raise
    return out


# RIFF/WAVE header fields of the canonical 44-byte header: (offset, struct format).
RIFF_FIELDS = {"riff_size": (4, "<I"), "fmt_size": (16, "<I"), "audio_format": (20, "<H"), "channels": (22, "<H"),
               "sample_rate": (24, "<I"), "byte_rate": (28, "<I"), "block_align": (32, "<H"), "bits_per_sample": (34, "<H"), "data_size": (40, "<I")}
ABSURD = [0, 1, 3, 255, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 2**31 // 2, 384_001, 8_000_000]


def riff_patch(data: bytes, field: str, value: int) -> bytes:
    """``data`` with one RIFF header field set to ``value`` (masked to the field's width)."""
    off, fmt = RIFF_FIELDS[field]
    size = struct.calcsize(fmt)
    value &= (1 << (8 * size)) - 1
    out = bytearray(data)
    out[off : off + size] = struct.pack(fmt, value)
    return bytes(out)


def _mutate(rng: np.random.Generator, name: str, data: bytes, bases: dict[str, bytes]) -> tuple[bytes, str]:
    data = bytearray(data)
    kind = rng.choice(["truncate", "bitflip", "header_noise", "riff_field", "splice", "zero_run"])
    if kind == "truncate":
        data = data[: int(rng.integers(0, len(data) + 1))]
    elif kind == "bitflip":
        for _ in range(int(rng.integers(1, 17))):
            data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
    elif kind == "header_noise":
        start = int(rng.integers(0, min(64, len(data))))
        noise = rng.bytes(int(rng.integers(1, 33)))
        data[start : start + len(noise)] = noise
    elif kind == "riff_field" and name.endswith(".wav"):
        field = str(rng.choice(sorted(RIFF_FIELDS)))
        value = int(rng.choice(ABSURD)) if rng.random() < 0.6 else int(rng.integers(0, 2**32))
        data = bytearray(riff_patch(bytes(data), field, value))
        kind = f"riff_field {field}={value}"
    elif kind == "splice":
        other = bases[str(rng.choice(sorted(bases)))]
        cut = int(rng.integers(1, len(data) + 1))
        data = data[:cut] + other[int(rng.integers(0, len(other))) :]
    else:
        start = int(rng.integers(0, len(data)))
        length = int(rng.integers(1, 4097))
        data[start : start + length] = bytes(min(length, len(data) - start))
        kind = "zero_run"
    return bytes(data), str(kind)


def _crafted(rng: np.random.Generator, seed: int) -> list[tuple[str, bytes, str]]:
    """Files valid in form but hostile in content: absurd finite samples, NaN/inf,
    extremes of length, rate and channel count."""
    sig = 0.1 * rng.standard_normal((4000, 1))
    huge = sig.copy()
    huge[int(rng.integers(0, 4000)), 0] = 3e38
    nan = sig.copy()
    nan[::97, 0] = np.nan
    inf = sig.copy()
    inf[10, 0] = np.inf
    return [
        ("huge_sample.wav", encode("WAV", "FLOAT", signal=huge), "finite sample of 3e38"),
        ("nan_samples.wav", encode("WAV", "FLOAT", signal=nan), "NaN samples"),
        ("inf_sample.wav", encode("WAV", "FLOAT", signal=inf), "an infinite sample"),
        ("one_frame.wav", encode("WAV", "PCM_16", signal=np.zeros((1, 1))), "one frame"),
        ("silence.flac", encode("FLAC", "PCM_16", signal=np.zeros((8000, 1))), "digital silence"),
        ("dc.wav", encode("WAV", "PCM_16", signal=np.full((8000, 1), 0.9)), "constant DC"),
        ("clipped.wav", encode("WAV", "PCM_16", signal=np.sign(sig) * 1.0), "full-scale square"),
        ("rate_1hz.wav", encode("WAV", "PCM_16", sr=1, signal=sig[:8]), "sample rate 1 Hz"),
        ("many_channels.wav", encode("WAV", "PCM_16", signal=0.1 * rng.standard_normal((800, 64))), "64 channels"),
        ("empty.wav", b"", "0 bytes"),
        ("text.wav", b"hello, I am not audio\n" * 10, "text with an audio extension"),
        ("header_only.wav", encode("WAV", "PCM_16", seed=seed)[:44], "header without data"),
    ]


HOSTILE_NAMES = [
    b"caf\xe9.wav",  # Latin-1, not UTF-8
    b"\xff\xfe.wav",
    "cafe\u0301.wav".encode(),  # NFD beside NFC below
    "caf\u00e9.wav".encode(),
    b"-rf.wav",
    b" leading space.wav",
    "\u202egnp.wav".encode(),  # right-to-left override
    b"semi;colon&amp.wav",
    b"new\nline.wav",
    b"tab\tname.wav",
    b"UPPER.WAV",
    b"x" * 240 + b".wav",
    "\u6f22\u5b57.flac".encode(),
    b"<script>alert(1)</script>.wav",
    b"quote'\"name.wav",
]


def hostile_cases(n: int, seed: int = 0) -> list[Case]:
    """``n`` seeded cases: about half good files of every format (some under hostile
    names), the crafted set, and mutations of the good files."""
    rng = np.random.default_rng(seed)
    bases = base_files(seed)
    cases: list[Case] = []
    crafted = _crafted(rng, seed)
    names = list(HOSTILE_NAMES)
    i = 0
    while len(cases) < n:
        base = str(rng.choice(sorted(bases)))
        r = rng.random()
        if crafted and r < 0.15:
            name, data, kind = crafted.pop(0)
            cases.append(Case(f"{i:04d}_{name}".encode(), data, f"crafted: {kind}"))
        elif names and r < 0.30:
            fmt, sub, kw = FORMATS[base]
            data = encode(fmt, sub, seed=seed * 1000 + i, **kw)
            nm = names.pop(0)
            ext = b"." + base.rsplit(".", 1)[1].encode()
            cases.append(Case(f"{i:04d}_".encode() + nm.rsplit(b".", 1)[0] + ext, data, "good file, hostile name"))
        elif r < 0.60:
            fmt, sub, kw = FORMATS[base]
            cases.append(Case(f"{i:04d}_{base}".encode(), encode(fmt, sub, seed=seed * 1000 + i, **kw), "good file"))
        else:
            data, kind = _mutate(rng, base, bases[base], bases)
            cases.append(Case(f"{i:04d}_mut_{base}".encode(), data, f"mutated {base}: {kind}"))
        i += 1
    return cases


def labelled(cases: list[Case]) -> list[tuple[bytes, Case]]:
    """(relative path, case): alternate cases under members/ and nonmembers/."""
    return [((b"members/" if k % 2 == 0 else b"nonmembers/") + c.name, c) for k, c in enumerate(cases)]


def write_folder(root: Path, cases: list[Case]) -> int:
    """Write the cases under ``root``; returns the number of files written (a file system
    that refuses a name, e.g. one that is too long, skips that case)."""
    written = 0
    for rel, c in labelled(cases):
        path = os.path.join(os.fsencode(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path, "wb") as f:
                f.write(c.data)
            written += 1
        except OSError:
            continue
    return written


def to_zip(cases: list[Case], *, tricks: bool = True) -> tuple[bytes, int]:
    """A zip of the cases, plus (``tricks``) entries a safe reader must refuse one by one:
    ``..`` and absolute paths, a symlink, a nested zip, and a duplicated name. Returns the
    archive and the number of entries in it."""
    buf = io.BytesIO()
    n = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, c in labelled(cases):
            zf.writestr(rel.decode("utf-8", "replace"), c.data)
            n += 1
        if tricks:
            good = encode("WAV", "PCM_16", seed=7)
            zf.writestr("../escape.wav", good)
            zf.writestr("/abs/escape.wav", good)
            link = zipfile.ZipInfo("members/link.wav")
            link.external_attr = (0o120777 << 16)
            zf.writestr(link, "/etc/passwd")
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w") as z2:
                z2.writestr("members/inner.wav", good)
            zf.writestr("members/nested.zip", inner.getvalue())
            n += 4
    return buf.getvalue(), n


def accounting(ws: Workspace, name: str) -> dict[str, int]:
    """What an ingest did with every file: stored, rejected (each with a one-line reason),
    and no path twice. Returns the counts."""
    items = ws.items(name)
    rejected = ws.rejected(name)
    assert not set(items["path"]) & set(rejected["path"]), "a file both stored and rejected"
    assert items["path"].is_unique and rejected["path"].is_unique
    for reason in rejected["reason"]:
        assert isinstance(reason, str) and reason.strip() and "\n" not in reason, repr(reason)
    return {"stored": len(items), "rejected": len(rejected), "clips": int(items["clip_hash"].nunique())}
