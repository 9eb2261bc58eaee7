"""In-memory speech synthesis with eSpeak NG through ``ctypes``.

The shared library and its voice data come from the ``espeakng-loader`` wheel, so no system
package is needed. eSpeak keeps global state (current voice, parameters, a random generator
for breath noise, wave-generator phases), so every call goes through one module-level lock
and starts from a freshly loaded library with a fixed random seed: the same text and voice
give the same samples regardless of what was synthesized before, in this process or another.

The library is copied to a private temporary file on the first call (never at import time)
and loaded fresh for every utterance; see :func:`_open` for why.
"""

from __future__ import annotations

import _ctypes
import atexit
import ctypes
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.config import Config

ESPEAK_SAMPLE_RATE = 22050

# espeak_AUDIO_OUTPUT / espeak_PARAMETER / flag values from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


@dataclass(frozen=True)
class VoiceSpec(Config):
    """One synthetic speaker: an eSpeak voice (with optional ``+variant``) and prosody.

    Parameters
    ----------
    name : str
        eSpeak voice name, e.g. ``"en-us"``, ``"en-gb-x-rp"`` or ``"en+f2"`` (language
        plus a variant from ``espeak-ng-data/voices/!v``).
    rate : int
        Speaking rate in words per minute (eSpeak accepts 80-450).
    pitch : int
        Base pitch, 0-99 (eSpeak's default is 50).
    pitch_range : int
        Intonation range, 0-99 (0 is monotone; default 50).
    speaker_id : str
        Stable identifier written to metadata; distinct per speaker.
    """

    name: str = "en-us"
    rate: int = 165
    pitch: int = 50
    pitch_range: int = 50
    speaker_id: str = "spk00"


SPEAKERS: tuple[VoiceSpec, ...] = (
    VoiceSpec(name="en-us+m3", rate=175, pitch=40, pitch_range=55, speaker_id="spk00"),
    VoiceSpec(name="en-us+f2", rate=185, pitch=65, pitch_range=60, speaker_id="spk01"),
    VoiceSpec(name="en+m1", rate=165, pitch=35, pitch_range=40, speaker_id="spk02"),
    VoiceSpec(name="en+f3", rate=195, pitch=70, pitch_range=70, speaker_id="spk03"),
    VoiceSpec(name="en-gb-x-rp+m4", rate=170, pitch=45, pitch_range=50, speaker_id="spk04"),
    VoiceSpec(name="en-gb-x-rp+f4", rate=180, pitch=60, pitch_range=45, speaker_id="spk05"),
    VoiceSpec(name="en-us+m7", rate=190, pitch=30, pitch_range=35, speaker_id="spk06"),
    VoiceSpec(name="en+f5", rate=160, pitch=75, pitch_range=65, speaker_id="spk07"),
    VoiceSpec(name="en-gb-scotland+m2", rate=175, pitch=50, pitch_range=55, speaker_id="spk08"),
    VoiceSpec(name="en-us+m6", rate=205, pitch=55, pitch_range=60, speaker_id="spk09"),
)
"""The demo corpus's speakers (``demo-speech`` and the pools of the zoo's same-domain models)."""

OTHER_SPEAKERS: tuple[VoiceSpec, ...] = (
    VoiceSpec(name="en-us+m5", rate=170, pitch=42, pitch_range=50, speaker_id="oth00"),
    VoiceSpec(name="en-us+f1", rate=190, pitch=62, pitch_range=55, speaker_id="oth01"),
    VoiceSpec(name="en+m8", rate=165, pitch=38, pitch_range=45, speaker_id="oth02"),
    VoiceSpec(name="en-gb-x-rp+Annie", rate=180, pitch=55, pitch_range=60, speaker_id="oth03"),
    VoiceSpec(name="en+max", rate=175, pitch=45, pitch_range=65, speaker_id="oth04"),
    VoiceSpec(name="en-gb-x-rp+robert", rate=200, pitch=33, pitch_range=40, speaker_id="oth05"),
    VoiceSpec(name="en-us+steph", rate=185, pitch=58, pitch_range=50, speaker_id="oth06"),
    VoiceSpec(name="en-gb-x-rp+paul", rate=160, pitch=47, pitch_range=55, speaker_id="oth07"),
    VoiceSpec(name="en+linda", rate=195, pitch=72, pitch_range=60, speaker_id="oth08"),
    VoiceSpec(name="en-us+quincy", rate=180, pitch=36, pitch_range=45, speaker_id="oth09"),
)
"""Speakers the demo never uses: the demo's accents with voice variants none of its speakers
has (``m5``, ``m8``, ``f1`` and named formant variants) and other prosody, for the pools of
zoo bases that never heard the demo's voices."""


def _private_library_path() -> Path:
    """A per-process copy of the shared library, so no other loader shares its instance."""
    if "path" not in _STATE:
        import espeakng_loader

        tmp = Path(tempfile.mkdtemp(prefix="overheard-espeak-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        src = Path(espeakng_loader.get_library_path())
        dst = tmp / src.name
        shutil.copyfile(src, dst)
        _STATE["path"] = dst
        _STATE["data_parent"] = str(Path(espeakng_loader.get_data_path()).parent)
    return _STATE["path"]


def _open() -> ctypes.CDLL:
    """Load a fresh instance of eSpeak NG and initialize it; the caller holds ``_LOCK``.

    eSpeak's wave generator keeps function-level statics (pitch-flutter phase, gain
    control, cycle counters) that neither ``espeak_Terminate`` nor ``espeak_Initialize``
    reset, so an utterance would depend on every utterance before it. Unloading and
    reloading the private copy restores all of them; it costs well under a millisecond.
    """
    lib = ctypes.CDLL(str(_private_library_path()), mode=ctypes.RTLD_LOCAL)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int

    # The path argument names the folder that contains ``espeak-ng-data``.
    data_parent = _STATE["data_parent"]
    sr = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), _INITIALIZE_DONT_EXIT
    )
    if sr != ESPEAK_SAMPLE_RATE:
        _close(lib)
        raise RuntimeError(f"espeak_Initialize returned {sr} with data at {data_parent}")
    if "callback" not in _STATE:
        chunks: list[NDArray[np.int16]] = []

        def _collect(wav: Any, n: int, _events: Any) -> int:
            if n > 0 and wav:
                chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        # Kept in _STATE: the C side holds only a raw pointer to the trampoline.
        _STATE["chunks"] = chunks
        _STATE["callback"] = _SYNTH_CALLBACK(_collect)
    lib.espeak_SetSynthCallback(_STATE["callback"])
    return lib


def _close(lib: ctypes.CDLL) -> None:
    lib.espeak_Terminate()
    unload = getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary
    unload(lib._handle)


def synthesize(text: str, *, voice: VoiceSpec) -> tuple[NDArray[np.float32], int]:
    """Speak ``text`` with ``voice`` and return the waveform in memory.

    Parameters
    ----------
    text : str
        UTF-8 text to speak (plain text, no SSML).
    voice : VoiceSpec
        Voice name and prosody.

    Returns
    -------
    audio : ndarray of float32, shape (n_samples,)
        Mono waveform in [-1, 1].
    sr : int
        Sample rate, 22050 Hz for eSpeak NG.

    Raises
    ------
    ValueError
        If eSpeak does not know ``voice.name``.
    RuntimeError
        If synthesis fails.
    """
    payload = text.encode("utf-8") + b"\0"
    with _LOCK:
        lib = _open()
        try:
            if lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
                raise ValueError(f"eSpeak NG has no voice {voice.name!r}")
            lib.espeak_SetParameter(_PARAM_RATE, int(voice.rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(voice.pitch), 0)
            lib.espeak_SetParameter(_PARAM_RANGE, int(voice.pitch_range), 0)
            lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
            # Breath and klatt noise draw from eSpeak's own generator.
            lib.espeak_ng_SetRandSeed(1)
            chunks: list[NDArray[np.int16]] = _STATE["chunks"]
            chunks.clear()
            buf = ctypes.create_string_buffer(payload)
            status = lib.espeak_Synth(
                buf, len(payload), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            lib.espeak_Synchronize()
            if status != _EE_OK:
                raise RuntimeError(f"espeak_Synth failed with status {status}")
            pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
            chunks.clear()
        finally:
            _close(lib)
    return pcm.astype(np.float32) / np.float32(32768.0), ESPEAK_SAMPLE_RATE
