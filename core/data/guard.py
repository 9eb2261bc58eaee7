"""Decoding untrusted audio with bounded memory and time.

:func:`core.data.audio.decode` checks a file's header (size, duration, rate, channels)
but a compressed file can still expand enormously: 46 kB of FLAC silence declares
8 channels x 60 s at 96 kHz and decodes to 184 MB of float32, and at the default limits
(32 channels, 384 kHz, 600 s) a few MB could ask for tens of GB. A decoder can also spin
on a crafted file. :func:`guarded_decode` refuses files whose *decoded* size exceeds a
bound before any sample is decoded, then decodes in a forked child process under an
address-space limit and a wall-clock limit (``Limits.per_file_seconds``), so a hostile
file costs at most one rejected row, never the server.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.data.audio import AudioError, AudioInfo, decode, probe
from core.runtime.settings import Limits

#: Default bound on decoded float32 samples: 600 s of 48 kHz audio in 8 channels is 0.9 GB.
DEFAULT_MAX_DECODED_BYTES = 1024**3
_BYTES_PER_SAMPLE = 4  # decode() returns float32
_HEADROOM = 512 * 1024**2  # address space the child needs beyond the samples (libsndfile, copies)


def decoded_nbytes(info: AudioInfo) -> int:
    """Bytes the float32 ``[frames, channels]`` array of ``info`` occupies once decoded."""
    return int(info.frames) * int(info.channels) * _BYTES_PER_SAMPLE


def check_decoded_size(info: AudioInfo, *, max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> None:
    """Refuse a file whose header promises more decoded samples than ``max_decoded_bytes``.

    Raises
    ------
    AudioError
        with the decoded size, the limit and the expansion ratio over the file size.
    """
    n = decoded_nbytes(info)
    if n > max_decoded_bytes:
        ratio = n / max(1, info.size_bytes)
        raise AudioError(
            f"decodes to {n / 1e6:.0f} MB of samples ({info.channels} ch x {info.duration:.0f} s at {info.sample_rate} Hz, "
            f"{ratio:.0f}x the file size; limit {max_decoded_bytes / 1e6:.0f} MB)"
        )


def _vm_size() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child(conn: Any, data: bytes, limits: Limits, address_space: int | None) -> None:
    try:
        if address_space is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        audio, info = decode(data, limits=limits)
        conn.send_bytes(json.dumps({"ok": True, "info": info.to_dict(), "shape": list(audio.shape)}).encode())
        conn.send_bytes(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    except AudioError as exc:
        conn.send_bytes(json.dumps({"ok": False, "reason": str(exc)}).encode())
    except MemoryError:
        conn.send_bytes(json.dumps({"ok": False, "reason": "decoding needs more memory than allowed (refused)"}).encode())
    except BaseException as exc:  # noqa: BLE001 - report any decoder failure as one line
        conn.send_bytes(json.dumps({"ok": False, "reason": f"decoding failed ({type(exc).__name__})"}).encode())
    finally:
        conn.close()
        os._exit(0)  # skip atexit handlers inherited from the parent (Streamlit, torch)


def guarded_decode(
    data: bytes,
    *,
    limits: Limits = Limits(),
    max_decoded_bytes: int | None = DEFAULT_MAX_DECODED_BYTES,
    timeout_s: float | None = None,
    memory_headroom_bytes: int = _HEADROOM,
) -> tuple[NDArray[np.float32], AudioInfo]:
    """:func:`core.data.audio.decode` with a decoded-size bound, a memory cap and a time limit.

    Parameters
    ----------
    data : bytes
        The whole file, as uploaded.
    limits : Limits
        Header limits; ``limits.per_file_seconds`` is the default time limit.
    max_decoded_bytes : int or None
        Refuse files whose decoded float32 samples would exceed this (None: no bound
        beyond ``limits``).
    timeout_s : float, optional
        Wall-clock limit for decoding (default ``limits.per_file_seconds``).
    memory_headroom_bytes : int
        Address space the decoding child may use beyond the decoded samples (Linux).

    Returns
    -------
    audio : np.ndarray [shape=(frames, channels), dtype=float32]
    info : AudioInfo
        Frames and duration as actually decoded.

    Raises
    ------
    AudioError
        for every refusal, with a one-line reason: header checks, decoded size, time
        limit, memory cap, or a decoder that died.
    """
    info = probe(data, limits=limits)
    if max_decoded_bytes is not None:
        check_decoded_size(info, max_decoded_bytes=max_decoded_bytes)
    timeout = limits.per_file_seconds if timeout_s is None else float(timeout_s)
    if "fork" not in mp.get_all_start_methods():
        # Without fork a child would re-import the package per file; decode in-process
        # with the size bound only.
        return decode(data, limits=limits)
    address_space = None
    if sys.platform.startswith("linux") and _vm_size():
        address_space = _vm_size() + decoded_nbytes(info) * 2 + int(memory_headroom_bytes)
    ctx = mp.get_context("fork")
    parent, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child_end, data, limits, address_space), daemon=True)
    proc.start()
    child_end.close()
    try:
        if not parent.poll(timeout):
            raise AudioError(f"decoding took longer than {timeout:g} s (refused)")
        try:
            head = json.loads(parent.recv_bytes().decode())
        except EOFError:
            raise AudioError("the decoder crashed on this file (refused)") from None
        if not head["ok"]:
            raise AudioError(head["reason"])
        if not parent.poll(timeout):
            raise AudioError(f"decoding took longer than {timeout:g} s (refused)")
        raw = parent.recv_bytes()
    finally:
        parent.close()
        if proc.is_alive():
            proc.kill()
        proc.join()
    out = AudioInfo(**head["info"])
    audio = np.frombuffer(raw, dtype=np.float32).reshape(head["shape"]).copy()
    return audio, out
