"""Label-only indicators: membership read from what a model *returned* (outputs access).

An audit of a model that is only an API sees its answers, not its logits. The evidence
(:class:`core.evidence.OutputEvidence`) is the model's transcription of each clip and of a few
seeded perturbations of it (audio-language targets), or the similarity of K seeded
generations from the clip's caption to the clip itself (text-to-audio targets). A model
reproduces what it trained on: members tend to be transcribed exactly, and to keep their
transcription when the audio is disturbed (label-only attacks, Choquette-Choo et al. 2021);
generations from a member's caption tend to resemble the member (the black-box replication
signals of text-to-music and audio latent-diffusion models).

Every family registers with ``evidence="outputs"`` and a fixed direction, so the
aggregate, dataset inference, the curves and the report use them unchanged. A family
whose evidence is absent for a clip (no transcript, no perturbation, no such metric)
gives NaN for it; a column with no finite value is dropped downstream.
"""

from __future__ import annotations

import math

import numpy as np

from core.data.text import char_error_rate, normalize_chars, word_error_rate
from core.evidence import OutputEvidence
from core.mia.registry import families, register_indicator

NAN = math.nan


def _answer(ev: OutputEvidence) -> str | None:
    return ev.texts[0] if ev.texts else None


@register_indicator(
    "wer", higher_is_member=False, evidence="outputs",
    description="word error rate of the model's transcription against the clip's transcript (lower: member)",
    reference="label-only MIA (Choquette-Choo et al. 2021), applied to transcription",
)
def wer(ev: OutputEvidence) -> dict[str, float]:
    out = _answer(ev)
    return {"wer": word_error_rate(ev.reference, out) if out is not None and ev.reference.strip() else NAN}


@register_indicator(
    "cer", higher_is_member=False, evidence="outputs",
    description="character error rate of the transcription against the transcript (lower: member)",
    reference="label-only MIA (Choquette-Choo et al. 2021), applied to transcription",
)
def cer(ev: OutputEvidence) -> dict[str, float]:
    out = _answer(ev)
    return {"cer": char_error_rate(ev.reference, out) if out is not None and ev.reference.strip() else NAN}


@register_indicator(
    "exact", higher_is_member=True, evidence="outputs",
    description="1 when the transcription equals the transcript (case and punctuation ignored), else 0",
    reference="label-only MIA (Choquette-Choo et al. 2021), applied to transcription",
)
def exact(ev: OutputEvidence) -> dict[str, float]:
    out = _answer(ev)
    if out is None or not ev.reference.strip():
        return {"exact": NAN}
    return {"exact": float(normalize_chars(out) == normalize_chars(ev.reference))}


@register_indicator(
    "len_ratio", higher_is_member=False, evidence="outputs",
    description="|log((output characters + 1) / (transcript characters + 1))|: how far the answer's length is off (lower: member)",
    reference="label-only MIA (Choquette-Choo et al. 2021), applied to transcription",
)
def len_ratio(ev: OutputEvidence) -> dict[str, float]:
    out = _answer(ev)
    if out is None or not ev.reference.strip():
        return {"len_ratio": NAN}
    return {"len_ratio": abs(math.log((len(normalize_chars(out)) + 1) / (len(normalize_chars(ev.reference)) + 1)))}


@register_indicator(
    "stability", higher_is_member=True, evidence="outputs",
    description="1 - mean CER between the transcription of the clip and of each seeded perturbation (noise, gain, speed); needs no transcript",
    reference="label-only MIA by robustness to perturbation (Choquette-Choo et al. 2021)",
)
def stability(ev: OutputEvidence) -> dict[str, float]:
    if len(ev.texts) < 2:
        return {"stability": NAN}
    return {"stability": 1.0 - float(np.mean([char_error_rate(ev.texts[0], t) for t in ev.texts[1:]]))}


@register_indicator(
    "wer_perturbed", higher_is_member=False, evidence="outputs",
    description="mean word error rate of the perturbed clips' transcriptions against the transcript (lower: member)",
    reference="label-only MIA by robustness to perturbation (Choquette-Choo et al. 2021)",
)
def wer_perturbed(ev: OutputEvidence) -> dict[str, float]:
    if len(ev.texts) < 2 or not ev.reference.strip():
        return {"wer_perturbed": NAN}
    return {"wer_perturbed": float(np.mean([word_error_rate(ev.reference, t) for t in ev.texts[1:]]))}


SIMILARITY_METRICS = {
    "mel_dist": (False, "time-aligned log-mel spectrogram distance between a generation from the clip's caption and the clip (lower: member)"),
    "chroma_sim": (True, "cosine similarity of the chroma of a generation and of the clip (higher: member)"),
    "clap_sim": (True, "CLAP audio-embedding cosine similarity of a generation and the clip (higher: member; needs a local CLAP)"),
}
"""Text-to-audio output metrics: name -> (higher is member, description). Each is read over
the K generations of a clip twice: at its best (``@min`` for a distance, ``@max`` for a
similarity: one generation close to the clip is what replication looks like) and on
average (``@mean``)."""


def _similarity_family(name: str, higher: bool, description: str) -> None:
    best = "max" if higher else "min"

    def fn(ev: OutputEvidence) -> dict[str, float]:
        values = np.asarray(ev.similarity.get(name, ()), dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return {}
        return {f"{name}@{best}": float(values.max() if higher else values.min()), f"{name}@mean": float(values.mean())}

    fn.__name__ = name
    register_indicator(name, higher_is_member=higher, evidence="outputs", description=description,
                       reference="black-box replication signals of text-to-audio models (mel similarity, CLAP)")(fn)


for _name, (_higher, _desc) in SIMILARITY_METRICS.items():
    _similarity_family(_name, _higher, _desc)


def output_indicators(ev: OutputEvidence) -> dict[str, float]:
    """Every registered output indicator of one clip (column key -> value)."""
    out: dict[str, float] = {}
    for fam in families("outputs"):
        out.update(fam.fn(ev))
    return out
