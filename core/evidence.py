"""Raw evidence a target adapter produces for one clip.

Evidence is the expensive product (one or more model passes per clip); it is cached on
disk and every indicator is a cheap pure function of it. Full-vocabulary logits never
reach the disk: only the per-token statistics below.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field, fields

import numpy as np
from numpy.typing import NDArray

EVIDENCE_FORMAT_VERSION = 1
MAGIC = b"OHEV1\n"



def n_selected(n: int, k: float) -> int:
    """Tokens averaged by a k-indexed family on ``n`` tokens: ``max(1, floor(k n))``.

    The small epsilon keeps e.g. ``0.15 * 20`` (= 3.0000000000000004 or 2.9999...) on 3.
    """
    return max(1, int(math.floor(k * n + 1e-9)))


@dataclass(frozen=True)
class TokenStats:
    """Per-token statistics of a model's predictive distributions for one sequence.

    Every array has shape ``[N]`` (one entry per scored token), float64 unless noted.

    Attributes
    ----------
    token_ids : int64 ids of the scored tokens.
    logprob : log p(x_i | x_<i) of the scored token.
    entropy : Shannon entropy of p(. | x_<i), nats (Rényi order 1).
    top1, top2 : the largest and second largest probabilities.
    mean_logp : E_{z~p}[log p(z)] (= -entropy), kept for Min-K%++.
    std_logp : standard deviation of log p(z) under z ~ p, clamped at 1e-6.
    renyi_05, renyi_2, renyi_inf : Rényi entropies of orders 1/2, 2 and infinity.
    infill : optional Infilling Score per token (NaN where undefined), shape ``[N]``: eq. 10
        of the paper, each term normalized by its own predictive distribution.
    infill_ref : optional ``[N]``, the same score as the authors' code normalizes it (future
        terms by the replaced position's distribution). Absent from evidence written before
        it existed, whose ``infill_ref@*`` indicators are then NaN.
    """

    token_ids: NDArray[np.int64]
    logprob: NDArray[np.float64]
    entropy: NDArray[np.float64]
    top1: NDArray[np.float64]
    top2: NDArray[np.float64]
    mean_logp: NDArray[np.float64]
    std_logp: NDArray[np.float64]
    renyi_05: NDArray[np.float64]
    renyi_2: NDArray[np.float64]
    renyi_inf: NDArray[np.float64]
    infill: NDArray[np.float64] | None = None
    infill_ref: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return int(self.logprob.shape[0])

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "TokenStats":
        names = {f.name for f in fields(cls)}
        return cls(**{k: np.asarray(v) for k, v in arrays.items() if k in names})


@dataclass(frozen=True)
class DiffusionEvidence:
    """Denoising losses of a diffusion model on one clip.

    Attributes
    ----------
    timesteps : int64, shape ``[T]``.
    loss_cond : ``[T, K]`` mean squared error ||eps_theta(x_t, t, c) - eps||^2 per timestep
        and fixed noise draw, conditioned on the clip's caption.
    loss_uncond : ``[T, K]`` the same with the empty caption.
    step_error : ``[T]`` SecMI-style deterministic step error: distance between x_t and
        the DDIM reverse(forward) round trip from x_t, conditional.
    pia : ``[T]`` PIA's distance (Kong et al., ICLR 2024), conditional: with
        ``eps_0 = eps_theta(x_0, 0)``, the sum over the patch of
        ``|eps_theta(sqrt(a_t) x_0 + sqrt(1 - a_t) eps_0, t) - eps_0|^4``; empty when not measured.
    """

    timesteps: NDArray[np.int64]
    loss_cond: NDArray[np.float64]
    loss_uncond: NDArray[np.float64]
    step_error: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    pia: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "DiffusionEvidence":
        names = {f.name for f in fields(cls)}
        return cls(**{k: np.asarray(v) for k, v in arrays.items() if k in names})


@dataclass(frozen=True)
class OutputEvidence:
    """What a model *returned* for one clip, read at the ``outputs`` access level (no logits,
    no losses): the evidence of an audit of a model that is only an API.

    Attributes
    ----------
    texts : audio-language targets: the model's output for the clip, then its output for
        each seeded perturbation of the clip's audio (noise, gain, speed), in that order.
    reference : the clip's own transcript (audio-language) or caption (text-to-audio) the
        outputs are compared with; empty when the dataset has none.
    similarity : text-to-audio targets: per metric name (``mel_dist``, ``chroma_sim``,
        ``clap_sim`` ...), one value per seeded generation from the clip's caption, ``[K]``.
    """

    texts: tuple[str, ...] = ()
    reference: str = ""
    similarity: dict[str, NDArray[np.float64]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClipEvidence:
    """What an adapter returns for one clip: token statistics, diffusion losses or (at the
    outputs access level) what the model returned, plus the text the model read or produced
    (decoded hypothesis for audio-language targets)."""

    clip_hash: str
    tokens: TokenStats | None = None
    diffusion: DiffusionEvidence | None = None
    text: str = ""
    notes: tuple[str, ...] = ()
    outputs: OutputEvidence | None = None

    def to_bytes(self) -> bytes:
        """Compact binary form: ``MAGIC``, a 4-byte little-endian header length, a JSON
        header (text, notes, clip hash, version, and each array's dtype, shape and offset),
        then the arrays' raw bytes. Reading it costs one ``json.loads`` and a
        ``np.frombuffer`` per array (an ``.npz`` parses a header per array with ``ast``)."""
        arrays: dict[str, np.ndarray] = {}
        if self.tokens is not None:
            arrays.update({f"tokens.{k}": v for k, v in self.tokens.to_arrays().items()})
        if self.diffusion is not None:
            arrays.update({f"diffusion.{k}": v for k, v in self.diffusion.to_arrays().items()})
        if self.outputs is not None:
            arrays.update({f"outputs.{k}": np.asarray(v, dtype=np.float64) for k, v in self.outputs.similarity.items()})
        specs, blobs, offset = {}, [], 0
        for name, a in arrays.items():
            a = np.ascontiguousarray(a)
            if a.dtype.hasobject or a.dtype.kind in "USV":
                raise TypeError(f"evidence array {name} has dtype {a.dtype}; only numeric arrays are stored")
            specs[name] = [a.dtype.str, list(a.shape), offset]
            blobs.append(a.tobytes())
            offset += a.nbytes
        head = {"v": EVIDENCE_FORMAT_VERSION, "clip_hash": self.clip_hash, "text": self.text,
                "notes": list(self.notes), "arrays": specs}
        if self.outputs is not None:
            head["outputs"] = {"texts": list(self.outputs.texts), "reference": self.outputs.reference}
        header = json.dumps(head).encode()
        return b"".join([MAGIC, len(header).to_bytes(4, "little"), header, *blobs])

    @classmethod
    def from_bytes(cls, data: bytes) -> "ClipEvidence":
        """Read :meth:`to_bytes` output (or the ``.npz`` form earlier versions wrote)."""
        if not data.startswith(MAGIC):
            return cls._from_npz(data)
        n = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "little")
        base = len(MAGIC) + 4 + n
        head = json.loads(data[len(MAGIC) + 4 : base])
        arrays = {}
        for name, (dtype, shape, offset) in head["arrays"].items():
            dt = np.dtype(dtype)
            count = int(np.prod(shape)) if shape else 1
            arrays[name] = np.frombuffer(data, dtype=dt, count=count, offset=base + offset).reshape(shape).copy()
        return cls._from_parts(arrays, head["clip_hash"], head["text"], head["notes"], head.get("outputs"))

    @classmethod
    def _from_npz(cls, data: bytes) -> "ClipEvidence":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls._from_parts(arrays, str(arrays["meta.clip_hash"]), str(arrays["meta.text"]), arrays["meta.notes"])

    @classmethod
    def _from_parts(cls, arrays: dict[str, np.ndarray], clip_hash: str, text: str, notes,
                    outputs: dict | None = None) -> "ClipEvidence":
        """Evidence from ``tokens.*`` / ``diffusion.*`` / ``outputs.*`` arrays and the clip's metadata."""
        tok = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("tokens.")}
        dif = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("diffusion.")}
        sim = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("outputs.")}
        out = None
        if outputs is not None or sim:
            outputs = outputs or {}
            out = OutputEvidence(texts=tuple(str(t) for t in outputs.get("texts", ())),
                                 reference=str(outputs.get("reference", "")), similarity=sim)
        return cls(
            clip_hash=clip_hash,
            tokens=TokenStats.from_arrays(tok) if tok else None,
            diffusion=DiffusionEvidence.from_arrays(dif) if dif else None,
            text=text,
            notes=tuple(str(n) for n in notes),
            outputs=out,
        )
