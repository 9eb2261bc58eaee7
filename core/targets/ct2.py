"""CTranslate2 model folders (faster-whisper checkpoints), read without CTranslate2.

A CTranslate2 folder holds ``model.bin`` (its own binary format, not a pickle),
``config.json`` (decoding settings, not an architecture) and the vocabulary
(``tokenizer.json`` and/or ``vocabulary.txt``/``vocabulary.json``). This module reads
``model.bin`` with numpy only and returns every variable as float32 (int8 and int16
weights divided by their stored scales, float16 and bfloat16 widened); the Whisper adapter
(:mod:`core.targets.ct2_whisper`) maps them onto a Hugging Face Whisper model.

The layout of ``model.bin`` (binary versions 4 to 6; all integers little-endian)::

    uint32 binary_version
    string spec_name, uint32 spec_revision           # string = uint16 length (incl. NUL) + bytes + NUL
    uint32 n_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank], uint8 dtype, uint32 n_bytes, bytes
    uint32 n_aliases, then per alias: string alias, string target_name

``dtype`` is 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. A quantized
weight ``w`` comes with ``w_scale`` (per output row for int8, one number for int16), and
the stored integers are ``round(float_weight * scale)``.

Reading is safe on untrusted files: nothing is executed, and sizes are checked against the
file before anything is allocated. A format this reader does not know (another binary
version or spec revision, 4-bit AWQ weights with ``_zero`` points, a spec other than
Whisper) is refused with a one-line ``ValueError``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from core.targets.local import model_type

BINARY_VERSIONS = (4, 5, 6)
"""Binary versions read: from 4 on each variable carries a dtype id and a byte count."""

SPEC_REVISIONS = {"WhisperSpec": (3,)}
"""Model specs (and their revisions) this project can turn into a target."""

_DTYPES: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_ITEMSIZE = {"float32": 4, "int8": 1, "int16": 2, "int32": 4, "float16": 2, "bfloat16": 2}
_MAX_RANK = 8


@dataclass(frozen=True)
class Ct2Model:
    """The contents of a ``model.bin``.

    spec : the spec name (``"WhisperSpec"``).
    revision : the spec revision.
    binary_version : the file format version.
    variables : name -> float32 array (quantized weights dequantized, scales consumed);
        scalar settings (``num_heads``, ``activation``...) stay integer arrays of shape ``()``.
    dtypes : name -> the dtype stored in the file (``"int8"``, ``"float16"``...).
    aliases : alias -> the variable it stands for (tied weights).
    """

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, NDArray[Any]] = field(repr=False)
    dtypes: dict[str, str] = field(repr=False)
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> NDArray[Any]:
        """A variable by name or alias.

        Raises
        ------
        KeyError
            Neither a variable nor an alias of one.
        """
        return self.variables[self.aliases.get(name, name)]

    def __contains__(self, name: object) -> bool:
        return name in self.variables or name in self.aliases

    @property
    def quantization(self) -> str:
        """The weights' storage type: the dtype of the largest variable."""
        biggest = max(self.variables, key=lambda n: self.variables[n].size)
        return self.dtypes[biggest]


class _Reader:
    def __init__(self, f: BinaryIO, size: int, path: Path):
        self.f, self.size, self.path = f, size, path

    def take(self, n: int) -> bytes:
        if n < 0 or self.f.tell() + n > self.size:
            raise ValueError(f"{self.path}: truncated CTranslate2 model (needs {n} more bytes at offset {self.f.tell()})")
        return self.f.read(n)

    def uint(self, fmt: str) -> int:
        return int(struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0])

    def string(self) -> str:
        raw = self.take(self.uint("H"))
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: not a CTranslate2 model (undecodable name at offset {self.f.tell()})") from None


def read_header(path: str | Path) -> tuple[int, str, int] | None:
    """``(binary_version, spec_name, spec_revision)`` of a CTranslate2 ``model.bin``, or
    None when the file does not start like one (a PyTorch pickle ``model.bin`` does not)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4 + 2 + 256 + 4)
    except OSError:
        return None
    if len(head) < 10:
        return None
    version = struct.unpack("<I", head[:4])[0]
    if not 2 <= version <= 99:
        return None
    n = struct.unpack("<H", head[4:6])[0]
    name = head[6 : 6 + n]
    if not 2 <= n <= 256 or len(head) < 10 + n or name[-1:] != b"\0" or not name[:-1].isascii():
        return None
    if not name[:-1].decode("ascii").isidentifier():
        return None
    revision = struct.unpack("<I", head[6 + n : 10 + n])[0]
    return version, name[:-1].decode("ascii"), revision


def _to_float(raw: bytes, dtype: str, shape: tuple[int, ...]) -> NDArray[Any]:
    if dtype == "bfloat16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    return arr.astype(np.float32) if dtype in ("float16", "float32") else arr


def read_model(path: str | Path) -> Ct2Model:
    """Read a CTranslate2 ``model.bin`` into float32 arrays.

    Parameters
    ----------
    path : str or Path
        The ``model.bin`` file (or its folder).

    Returns
    -------
    Ct2Model
        Every variable, quantized weights divided by their scales.

    Raises
    ------
    ValueError
        Not a CTranslate2 model, a binary version or spec revision this reader does not
        know, an unknown dtype, a truncated file, or 4-bit (``_zero``) weights.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    header = read_header(path)
    if header is None:
        raise ValueError(f"{path} is not a CTranslate2 model.bin")
    version, spec, revision = header
    if version not in BINARY_VERSIONS:
        raise ValueError(
            f"{path}: CTranslate2 binary version {version} is not supported (readable: "
            f"{', '.join(map(str, BINARY_VERSIONS))}); re-convert it with a recent ct2-transformers-converter"
        )
    size = path.stat().st_size
    raw_vars: dict[str, tuple[str, NDArray[Any]]] = {}
    aliases: dict[str, str] = {}
    with open(path, "rb") as f:
        r = _Reader(f, size, path)
        r.uint("I")
        r.string()
        r.uint("I")
        for _ in range(r.uint("I")):
            name = r.string()
            rank = r.uint("B")
            if rank > _MAX_RANK:
                raise ValueError(f"{path}: variable {name!r} has rank {rank}; not a CTranslate2 model")
            shape = tuple(r.uint("I") for _ in range(rank))
            type_id = r.uint("B")
            dtype = _DTYPES.get(type_id)
            if dtype is None:
                raise ValueError(f"{path}: variable {name!r} has unknown CTranslate2 dtype id {type_id}")
            n_bytes = r.uint("I")
            expected = int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE[dtype]
            if n_bytes != expected:
                raise ValueError(f"{path}: variable {name!r} has {n_bytes} bytes for shape {shape} {dtype}")
            raw_vars[name] = (dtype, _to_float(r.take(n_bytes), dtype, shape))
        for _ in range(r.uint("I")):
            alias = r.string()
            aliases[alias] = r.string()
    zero = sorted(n for n in raw_vars if n.endswith("_zero"))
    if zero:
        raise ValueError(f"{path}: 4-bit (AWQ) CTranslate2 weights ({zero[0]}) are not supported; use an int8, float16 or float32 conversion")
    return Ct2Model(spec, revision, version, *_dequantize(raw_vars, path), aliases=aliases)


def _dequantize(
    raw: dict[str, tuple[str, NDArray[Any]]], path: Path
) -> tuple[dict[str, NDArray[Any]], dict[str, str]]:
    variables: dict[str, NDArray[Any]] = {}
    dtypes: dict[str, str] = {}
    for name, (dtype, value) in raw.items():
        if name.endswith("_scale") and name[: -len("_scale")] in raw:
            continue
        scale_name = name + "_scale"
        if dtype in ("int8", "int16") and name.endswith("weight"):
            if scale_name not in raw:
                raise ValueError(f"{path}: quantized variable {name!r} has no {scale_name!r}")
            scale = raw[scale_name][1].astype(np.float32)
            if scale.ndim == 1:
                if scale.shape[0] != value.shape[0]:
                    raise ValueError(f"{path}: {scale_name!r} has {scale.shape[0]} scales for {value.shape[0]} rows")
                scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
            value = value.astype(np.float32) / scale
        variables[name] = value
        dtypes[name] = dtype
    return variables, dtypes


# ---------------------------------------------------------------------------- folders
def read_ct2_config(folder: str | Path) -> dict[str, Any]:
    """The folder's ``config.json`` (decoding settings), or ``{}`` when absent or not JSON."""
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def ct2_files(folder: str | Path) -> list[Path]:
    """The files that define a CTranslate2 model: ``model.bin``, ``config.json``, the
    vocabulary and tokenizer files, and a ``preprocessor_config.json`` when present."""
    folder = Path(folder)
    names = ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json")
    files = [folder / n for n in names if (folder / n).is_file()]
    files += sorted(p for p in folder.glob("vocabulary.*") if p.is_file())
    return files


def is_ct2_whisper_folder(folder: Path) -> bool:
    """True for a folder whose ``model.bin`` is a CTranslate2 Whisper model of a version
    this reader knows; False when it is not a CTranslate2 folder at all.

    Raises
    ------
    ValueError
        A CTranslate2 folder this project cannot read: another model spec, an unknown
        binary version or spec revision, or 4-bit weights (from ``config.json``).
    """
    header = read_header(Path(folder) / "model.bin")
    if header is None:
        return False
    version, spec, revision = header
    if spec not in SPEC_REVISIONS:
        raise ValueError(
            f"{folder}: CTranslate2 model spec {spec!r} is not supported; readable: {', '.join(SPEC_REVISIONS)}"
        )
    if version not in BINARY_VERSIONS or revision not in SPEC_REVISIONS[spec]:
        raise ValueError(
            f"{folder}: CTranslate2 {spec} binary version {version}, revision {revision} is not supported "
            f"(readable: binary versions {', '.join(map(str, BINARY_VERSIONS))}, revision "
            f"{', '.join(map(str, SPEC_REVISIONS[spec]))})"
        )
    quant = read_ct2_config(folder).get("quantization_type")
    if quant:
        raise ValueError(f"{folder}: CTranslate2 quantization_type {quant!r} (4-bit) is not supported")
    return True


@model_type("ctranslate2-whisper", family="audio-language", detect=is_ct2_whisper_folder)
def _load_ct2_whisper(path: Path, device: str | None, options: dict[str, Any]):
    """A CTranslate2 (faster-whisper) Whisper folder, its weights read and dequantized
    without ctranslate2, audited as a Whisper target."""
    from core.targets.ct2_whisper import Ct2WhisperTarget

    return Ct2WhisperTarget(path, spec=str(path), device=device, **options)

