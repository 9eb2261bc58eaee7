"""Hostile uploads: random bytes and mutated real audio never break ingestion.

Every file fed to ``decode``, ``ingest_uploads`` or ``ingest_path`` must end up either
accepted with metadata that an independent libsndfile read confirms, or listed as
rejected with a one-line reason. Nothing may raise out of ingestion, hang (each call runs
under ``signal.alarm``) or allocate memory out of proportion to the file.

Hypothesis runs derandomized so CI sees the same cases every time; each test prints how
many cases it ran (``pytest -s``) and asserts a floor on that count.
"""

from __future__ import annotations

import hashlib
import io
import signal
import tracemalloc
import zipfile
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.blind.acoustic import ACOUSTIC_FEATURE_NAMES, acoustic_features
from core.data.audio import AudioError, decode, to_analysis
from core.data.guard import DEFAULT_MAX_DECODED_BYTES, check_decoded_size, decoded_nbytes, guarded_decode
from core.data.ingest import ingest_path, ingest_uploads
from core.runtime.settings import Limits
from core.runtime.store import Workspace
from tests.hostile import ABSURD, RIFF_FIELDS, base_files, encode, riff_patch

torch.set_num_threads(1)

SECONDS_PER_CALL = 20  # a hang is a failure, not a slow test
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
F0_COLUMNS = {i for i, n in enumerate(ACOUSTIC_FEATURE_NAMES) if n.startswith("f0_")}
CASES: dict[str, int] = {}  # cases per fuzz test, for the printed summary


@contextmanager
def time_limit(seconds: int = SECONDS_PER_CALL) -> Iterator[None]:
    def _raise(signum, frame):  # noqa: ARG001
        raise TimeoutError(f"call exceeded {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


BASES = base_files()
BASE_NAMES = sorted(BASES)
GOOD_NONMEMBER = encode("WAV", "PCM_16", seconds=0.3, seed=99)


@st.composite
def mutated_audio(draw) -> tuple[str, bytes, str]:
    """(base name, mutated bytes, description of the mutation)."""
    name = draw(st.sampled_from(BASE_NAMES))
    data = bytearray(BASES[name])
    kind = draw(st.sampled_from(["truncate", "bitflip", "header_noise", "riff_field", "splice", "zero_run"]))
    if kind == "truncate":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut]
    elif kind == "bitflip":
        for pos, bit in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 7)), min_size=1, max_size=16)):
            data[pos] ^= 1 << bit
    elif kind == "header_noise":
        start = draw(st.integers(0, min(64, len(data) - 1)))
        noise = draw(st.binary(min_size=1, max_size=32))
        data[start : start + len(noise)] = noise
    elif kind == "riff_field" and name.endswith(".wav"):
        field = draw(st.sampled_from(sorted(RIFF_FIELDS)))
        value = draw(st.sampled_from(ABSURD) | st.integers(0, 2**32 - 1))
        data = bytearray(riff_patch(bytes(data), field, value))
        kind = f"riff_field {field}={value}"
    elif kind == "splice":
        other = BASES[draw(st.sampled_from(BASE_NAMES))]
        cut = draw(st.integers(1, len(data)))
        data = data[:cut] + other[draw(st.integers(0, len(other) - 1)) :]
    else:
        start = draw(st.integers(0, len(data) - 1))
        length = draw(st.integers(1, 4096))
        data[start : start + length] = bytes(min(length, len(data) - start))
    return name, bytes(data), kind


MAGIC = [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS\x00\x02", b"ID3\x03\x00", b"FORM\x00\x00\x00\x00AIFF", b"\xff\xfb\x90", b"PK\x03\x04"]


@st.composite
def random_file(draw) -> bytes:
    return draw(st.sampled_from(MAGIC)) + draw(st.binary(max_size=2048))


def _check_decoded(data: bytes, audio: np.ndarray, info, limits: Limits = Limits()) -> None:
    """An accepted file: metadata consistent with the samples and with libsndfile's own read."""
    assert audio.dtype == np.float32 and audio.ndim == 2
    assert audio.shape == (info.frames, info.channels) and info.frames > 0
    assert np.all(np.isfinite(audio))
    assert 0 < info.sample_rate <= limits.max_sample_rate and 1 <= info.channels <= limits.max_channels
    assert info.duration == pytest.approx(info.frames / info.sample_rate, rel=1e-12)
    assert info.duration <= limits.max_duration_s and info.size_bytes == len(data)
    with sf.SoundFile(io.BytesIO(data)) as f:  # independent read of the same bytes
        assert (f.samplerate, f.channels) == (info.sample_rate, info.channels)
        declared = f.frames
    # the same request size as decode(): libFLAC reports a lost sync in spliced streams
    # or not depending on how many frames one read asks for
    ref, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True, frames=declared + info.sample_rate)
    assert ref.shape[0] == info.frames
    # lossy decoders (mpg123) differ in the last float bit between read calls
    np.testing.assert_allclose(ref, audio, rtol=0, atol=1e-6)


def _check_features(audio: np.ndarray, sr: int) -> None:
    """Acoustic descriptors of an accepted file are finite (f0 may be NaN: documented for unvoiced clips)."""
    feats = acoustic_features([to_analysis(audio, sr, 16000)], sr=16000, device="cpu")
    assert feats.shape == (1, len(ACOUSTIC_FEATURE_NAMES))
    other = [j for j in range(feats.shape[1]) if j not in F0_COLUMNS]
    assert np.all(np.isfinite(feats[0, other])), dict(zip(ACOUSTIC_FEATURE_NAMES, feats[0]))


def _decode_outcome(data: bytes) -> tuple[np.ndarray, object] | str:
    with time_limit():
        try:
            return decode(data)
        except AudioError as exc:
            return str(exc)


def _assert_reason(reason: object) -> None:
    assert isinstance(reason, str) and reason.strip() and "\n" not in reason, repr(reason)


def _report(name: str, n: int, floor: int) -> None:
    CASES[name] = n
    print(f"\n{name}: {n} fuzz cases")
    assert n >= floor, f"{name} ran only {n} cases"


# -- decode ---------------------------------------------------------------------------------
def test_decode_random_bytes():
    seen = {"accepted": 0, "rejected": 0}

    @settings(FUZZ, max_examples=200)
    @given(random_file())
    def case(data: bytes) -> None:
        out = _decode_outcome(data)
        if isinstance(out, str):
            _assert_reason(out)
            seen["rejected"] += 1
        else:
            _check_decoded(data, *out)
            seen["accepted"] += 1

    case()
    _report("decode/random bytes", sum(seen.values()), 150)


def test_decode_mutated_real_files_and_features():
    seen = {"accepted": 0, "rejected": 0}
    kinds: set[str] = set()

    @settings(FUZZ, max_examples=200)
    @given(mutated_audio())
    def case(sample: tuple[str, bytes, str]) -> None:
        _, data, kind = sample
        kinds.add(kind.split()[0])
        out = _decode_outcome(data)
        if isinstance(out, str):
            _assert_reason(out)
            seen["rejected"] += 1
            return
        audio, info = out
        _check_decoded(data, audio, info)
        with time_limit():
            _check_features(audio, info.sample_rate)
        seen["accepted"] += 1

    case()
    _report("decode/mutated real files", sum(seen.values()), 150)
    print(f"  accepted {seen['accepted']}, rejected {seen['rejected']}, mutations {sorted(kinds)}")
    assert seen["accepted"] > 0 and seen["rejected"] > 0, seen  # both branches exercised
    assert len(kinds) >= 5


@pytest.mark.parametrize("field", sorted(RIFF_FIELDS))
def test_decode_absurd_riff_fields(field):
    """Every header field of a WAV set to each absurd value: consistent or refused."""
    for value in ABSURD:
        data = riff_patch(BASES["pcm16.wav"], field, value)
        out = _decode_outcome(data)
        if isinstance(out, str):
            _assert_reason(out)
        else:
            _check_decoded(data, *out)
    CASES[f"riff/{field}"] = len(ABSURD)


def test_declared_2_31_frames_allocates_nothing_large():
    """A WAV header claiming 2^31 frames (and a RIFF size to match) must not allocate gigabytes."""
    data = riff_patch(riff_patch(BASES["pcm16.wav"], "data_size", 2**32 - 2), "riff_size", 2**32 - 1)
    for sr in (16000, 384_000):
        d = riff_patch(riff_patch(data, "sample_rate", sr), "byte_rate", sr * 2)
        tracemalloc.start()
        try:
            out = _decode_outcome(d)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 * 1024**2, f"decoding a {len(d)}-byte file peaked at {peak / 1e6:.0f} MB"
        if not isinstance(out, str):
            _check_decoded(d, *out)


def _flac_bomb() -> bytes:
    """46 kB of FLAC silence that declares 8 channels x 60 s at 96 kHz (184 MB as float32)."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((96000 * 60, 8), np.float32), 96000, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def flac_bomb() -> bytes:
    return _flac_bomb()


def _lying_flac() -> bytes:
    """A 120-byte FLAC whose STREAMINFO declares 8 channels x 600 s at 384 kHz: every header
    field is within ``Limits()``, yet the float32 samples it promises take 7.4 GB."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((4096, 8), np.float32), 384000, format="FLAC", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO is the first block
    # bytes 18..25: sample rate (20 bits), channels-1 (3), bits-1 (5), total samples (36)
    packed = int.from_bytes(data[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | (600 * 384000 - 1)
    data[18:26] = packed.to_bytes(8, "big")
    return bytes(data)


def test_lying_flac_header_is_within_limits():
    info = sf.info(io.BytesIO(_lying_flac()))
    assert (info.samplerate, info.channels, info.frames) == (384000, 8, 600 * 384000 - 1)
    lim = Limits()
    assert info.samplerate <= lim.max_sample_rate and info.channels <= lim.max_channels and info.duration <= lim.max_duration_s
    with pytest.raises(AudioError, match=r"decodes to 7373 MB"):
        guarded_decode(_lying_flac())


def test_decode_refuses_header_promising_gigabytes():
    data = _lying_flac()
    tracemalloc.start()
    try:
        out = _decode_outcome(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # today: decode() asks numpy for 7.4 GB before libsndfile finds the file short
    assert peak < 64 * 1024**2, f"a {len(data)}-byte file made decode() allocate {peak / 1e6:.0f} MB ({out!r})"


def test_guarded_decode_refuses_bomb_before_decoding(flac_bomb):
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=r"decodes to 184 MB .*limit 67 MB"):
            guarded_decode(flac_bomb, max_decoded_bytes=64 * 1024**2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024**2
    info = sf.info(io.BytesIO(flac_bomb))
    assert info.frames * info.channels * 4 == 184_320_000  # the size the message quotes, computed independently


def test_guarded_decode_time_limit_and_memory_cap(flac_bomb):
    with pytest.raises(AudioError, match=r"took longer than 0.05 s"):
        guarded_decode(flac_bomb, max_decoded_bytes=None, timeout_s=0.05)
    # An address-space cap below what the samples need: refused, the parent survives.
    with pytest.raises(AudioError, match=r"memory|decod"):
        guarded_decode(flac_bomb, max_decoded_bytes=None, memory_headroom_bytes=-int(1.9 * 184_320_000))


def test_guarded_decode_matches_decode_on_good_and_bad_files():
    for name, data in BASES.items():
        a, info = guarded_decode(data)
        b, ref = decode(data)
        np.testing.assert_array_equal(a, b)
        assert info == ref and decoded_nbytes(info) == b.nbytes, name
    for bad in (b"", b"RIFF" + bytes(40), BASES["pcm16.wav"][:30]):
        with pytest.raises(AudioError) as exc:
            guarded_decode(bad)
        with pytest.raises(AudioError) as ref_exc:
            decode(bad)
        assert str(exc.value) == str(ref_exc.value)
    _, info = decode(BASES["float_stereo.wav"])
    check_decoded_size(info, max_decoded_bytes=decoded_nbytes(info))
    with pytest.raises(AudioError, match="decodes to"):
        check_decoded_size(info, max_decoded_bytes=decoded_nbytes(info) - 1)
    assert DEFAULT_MAX_DECODED_BYTES >= 600 * 48000 * 2 * 4  # ten minutes of 48 kHz stereo fits


def test_isolated_decode_is_a_setting_that_ingestion_follows(flac_bomb, tmp_path, monkeypatch):
    """``OVERHEARD_ISOLATE_DECODE=1`` puts ingestion's decoding under guarded_decode's time
    limit: a file that decodes in-process (a 46 kB FLAC expanding to 184 MB) is refused when
    it takes longer than ``per_file_seconds``; good files are stored the same either way."""
    from core.runtime.settings import Settings

    monkeypatch.delenv("OVERHEARD_ISOLATE_DECODE", raising=False)
    assert Settings.from_env(tmp_path).limits.isolate_decode is False
    monkeypatch.setenv("OVERHEARD_ISOLATE_DECODE", "1")
    isolated = Settings.from_env(tmp_path).limits
    assert isolated.isolate_decode is True and isolated.per_file_seconds == Limits().per_file_seconds
    uploads = [("members/bomb.flac", flac_bomb), ("members/good.wav", BASES["pcm16.wav"]),
               ("nonmembers/good.flac", BASES["pcm24.flac"])]
    stored = {}
    for isolate in (False, True):
        ws = Workspace(tmp_path / f"ws{int(isolate)}")
        rep = ingest_uploads(ws, uploads, "d", limits=Limits(isolate_decode=isolate, per_file_seconds=0.05))
        rejected = {r["path"]: r["reason"] for r in rep.rejected}
        stored[isolate] = ws.items("d").set_index("path")[["clip_hash", "frames", "sample_rate", "channels"]]
        if isolate:
            assert list(rejected) == ["members/bomb.flac"] and "took longer than 0.05 s" in rejected["members/bomb.flac"]
        else:
            assert not rejected
    assert stored[True].equals(stored[False].drop(index="members/bomb.flac"))


# -- ingestion ------------------------------------------------------------------------------
def _check_ingest(ws: Workspace, name: str, uploads: list[tuple[str, bytes]], rep) -> tuple[int, int]:
    items = ws.items(name).set_index("path")
    rejected = {r["path"]: r["reason"] for r in rep.rejected}
    accepted = 0
    for path, data in uploads:
        assert (path in items.index) != (path in rejected), f"{path} must be either stored or rejected"
        if path in rejected:
            _assert_reason(rejected[path])
            continue
        accepted += 1
        row = items.loc[path]
        assert row["clip_hash"] == hashlib.sha256(data).hexdigest()
        assert ws.read_audio(row["clip_hash"]) == data
        with sf.SoundFile(io.BytesIO(data)) as f:
            frames = f.read(dtype="float32", always_2d=True).shape[0]
            assert (row["sample_rate"], row["channels"], row["frames"]) == (f.samplerate, f.channels, frames)
        assert row["duration"] == pytest.approx(frames / row["sample_rate"], rel=1e-12)
    return accepted, len(uploads) - accepted


def test_ingest_uploads_mutated_batches(tmp_path):
    ws = Workspace(tmp_path / "ws")
    seen = {"accepted": 0, "rejected": 0, "calls": 0}

    @settings(FUZZ, max_examples=40)
    @given(st.lists(mutated_audio() | random_file().map(lambda b: ("random.bin", b, "random")), min_size=3, max_size=6))
    def case(samples: list[tuple[str, bytes, str]]) -> None:
        uploads = [(f"members/{i:02d}_{base}", data) for i, (base, data, _) in enumerate(samples)]
        uploads.append(("nonmembers/ok.wav", GOOD_NONMEMBER))
        name = f"fuzz{seen['calls']}"
        seen["calls"] += 1
        with time_limit():
            rep = ingest_uploads(ws, uploads, name)
        a, r = _check_ingest(ws, name, uploads[:-1], rep)
        seen["accepted"] += a
        seen["rejected"] += r
        assert rep.nonmembers == 1

    case()
    _report("ingest_uploads/mutated files", seen["accepted"] + seen["rejected"], 120)
    print(f"  in {seen['calls']} ingest calls; accepted {seen['accepted']}, rejected {seen['rejected']}")
    assert ws.query("PRAGMA integrity_check")["integrity_check"].iloc[0] == "ok"


def test_ingest_uploads_mutated_zips(tmp_path):
    """Zips whose bytes are truncated or bit-flipped: refused as a whole or entry by entry."""
    ws = Workspace(tmp_path / "ws")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (name, data) in enumerate(sorted(BASES.items())):
            zf.writestr(f"c/members/{i}_{name}", data)
        zf.writestr("c/nonmembers/ok.wav", GOOD_NONMEMBER)
    archive = buf.getvalue()
    seen = {"n": 0}
    escaped: list[str] = []

    # flips land in local headers and compressed data (the central directory stays intact, so
    # the archive opens and the damage is met per entry); some cases also truncate the end.
    body = archive.find(b"PK\x01\x02")

    @settings(FUZZ, max_examples=25)
    @given(
        st.lists(st.tuples(st.integers(0, body - 1), st.integers(0, 7)), min_size=1, max_size=8),
        st.just(len(archive)) | st.just(len(archive)) | st.integers(len(archive) // 2, len(archive)),
    )
    def case(flips: list[tuple[int, int]], cut: int) -> None:
        data = bytearray(archive[:cut])
        for pos, bit in flips:
            if pos < len(data):
                data[pos] ^= 1 << bit
        uploads = [("bundle.zip", bytes(data)), ("nonmembers/anchor.wav", encode("WAV", "PCM_16", seed=7))]
        name = f"z{seen['n']}"
        seen["n"] += 1
        try:
            with time_limit():
                rep = ingest_uploads(ws, uploads, name)
        except Exception as exc:  # noqa: BLE001 - collected, asserted empty below
            escaped.append(f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:80]}")
            return
        stored = set(ws.items(name)["path"])
        for r in rep.rejected:
            _assert_reason(r["reason"])
        # every stored entry decodes to what the database says
        for _, row in ws.items(name).iterrows():
            with sf.SoundFile(io.BytesIO(ws.read_audio(row["clip_hash"]))) as f:
                assert (f.samplerate, f.channels) == (row["sample_rate"], row["channels"])
        assert "nonmembers/anchor.wav" in stored or any(p.endswith("anchor.wav") for p in stored)

    case()
    _report("ingest_uploads/mutated zips", seen["n"], 20)
    assert not escaped, f"{len(escaped)} of {seen['n']} corrupt zips raised out of ingest_uploads: " + "; ".join(sorted(set(escaped)))


def test_ingest_path_mutated_folders(tmp_path):
    ws = Workspace(tmp_path / "ws")
    seen = {"files": 0, "calls": 0}

    @settings(FUZZ, max_examples=12)
    @given(st.lists(mutated_audio(), min_size=3, max_size=6))
    def case(samples: list[tuple[str, bytes, str]]) -> None:
        root = tmp_path / f"src{seen['calls']}"
        (root / "members").mkdir(parents=True)
        (root / "nonmembers").mkdir()
        (root / "nonmembers" / "ok.wav").write_bytes(GOOD_NONMEMBER)
        uploads = []
        for i, (base, data, _) in enumerate(samples):
            rel = f"members/{i:02d}_{base}"
            (root / rel).write_bytes(data)
            uploads.append((rel, data))
        name = f"p{seen['calls']}"
        seen["calls"] += 1
        with time_limit():
            rep = ingest_path(ws, root, name)
        _check_ingest(ws, name, uploads, rep)
        seen["files"] += len(uploads)

    case()
    _report("ingest_path/mutated folders", seen["files"], 36)


def test_acoustic_features_on_edge_signals():
    """Silence, a single sample, full-scale clipping and DC: finite features, f0 NaN only when unvoiced."""
    sr = 16000
    clips = [np.zeros(sr, np.float32), np.ones(1, np.float32), np.sign(np.sin(np.arange(sr) / 3)).astype(np.float32), np.full(sr, 0.5, np.float32)]
    feats = acoustic_features(clips, sr=sr, device="cpu")
    other = [j for j in range(feats.shape[1]) if j not in F0_COLUMNS]
    assert np.all(np.isfinite(feats[:, other]))
