"""What a loaded target said about itself, remembered so that a rerun loads no model.

A clip's cached evidence is keyed by the target's fingerprint and the evidence settings its
family reads (:func:`core.pipeline.evidence.evidence_identity`), and both are known only
once the model is loaded. After every local load the workspace records them, with the
language facts of a multilingual model, in ``cache/targets/`` under the target's spec,
loader options, device and the signature of its files (a stat of each, no file read).

A later run of the same target asks :func:`known_target` for a :class:`KnownTarget`, a
stand-in that answers the same questions from the record: when every clip is in the cache
the model is never loaded (changing the folds' seed, the scorer or the calibration costs no
model time). Whatever the record cannot answer (a language not yet decoded, a language
identification not yet cached) raises :class:`NeedsModel` and the run loads the model as
before. A replaced file changes the signature; a loaded model whose fingerprint disagrees
with the record replaces the record (:class:`StaleRecord`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.runtime.pool import options_key
from core.runtime.store import Workspace, atomic_write

RECORD_VERSION = 2
"""Raise it when what a record holds changes meaning (2: diffusion targets read ``pia``)."""


class NeedsModel(Exception):
    """The record cannot answer: the model must be loaded."""


class StaleRecord(Exception):
    """A loaded model's fingerprint disagrees with its record (which is then replaced)."""


def _path(ws: Workspace, ref, device: str | None, options: dict):
    key = json.dumps([RECORD_VERSION, ref.loader, ref.spec, ref.files_signature(), device or "auto", options_key(options)],
                     default=str)
    return ws.cache_dir / "targets" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _language_code(target) -> str:
    lang = getattr(target, "language", None)
    return getattr(lang, "language", "") or ""


def remember(ws: Workspace, ref, device: str | None, options: dict, target, reads: dict[str, list[str]]) -> None:
    """Record what the loaded ``target`` says about itself (its fingerprint in its current
    language joins those already recorded); ``reads`` maps each access level to the
    evidence settings the target reads there."""
    path = _path(ws, ref, device, options)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {}
    lang = getattr(target, "language", None)
    fixed = bool(getattr(target, "language_fixed", False))
    fingerprints = dict(record.get("fingerprints") or {}) if record.get("model_fingerprint") == getattr(
        target, "model_fingerprint", None) else {}
    fingerprints[_language_code(target)] = target.fingerprint
    record = {
        "spec": ref.spec, "family": getattr(target, "family", ref.family), "reads": reads,
        "fingerprints": fingerprints,
        "model_fingerprint": getattr(target, "model_fingerprint", None),
        "multilingual": bool(getattr(target, "multilingual", False)),
        "language_hint": bool(getattr(target, "language_hint", False)),
        "language_fixed": fixed,
        "fixed_language": lang.to_dict() if fixed and lang is not None else None,
        "language_options": list(target.language_options()) if callable(getattr(target, "language_options", None)) else [],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, sort_keys=True).encode())


def forget(ws: Workspace, ref, device: str | None, options: dict) -> None:
    """Drop the record of ``ref`` (a loaded model disagreed with it)."""
    _path(ws, ref, device, options).unlink(missing_ok=True)


class KnownTarget:
    """A target as its record describes it: the attributes a run reads before it needs the
    model (fingerprint, evidence settings, languages), and nothing that needs weights."""

    known = True

    def __init__(self, ref, record: dict[str, Any]):
        from core.targets.language import LanguageChoice

        self.spec = ref.spec
        self.family = record["family"]
        self._reads = {k: tuple(v) for k, v in record["reads"].items()}
        self._fingerprints: dict[str, str] = record["fingerprints"]
        self.model_fingerprint = record.get("model_fingerprint")
        self.multilingual = bool(record.get("multilingual"))
        self.language_hint = bool(record.get("language_hint"))
        self.language_fixed = bool(record.get("language_fixed"))
        self._options = list(record.get("language_options") or [])
        fixed = record.get("fixed_language")
        self.language = LanguageChoice.from_dict(fixed) if fixed else None
        code = self.language.language if self.language is not None else ""
        # a multilingual model's fingerprint follows the language the run chooses
        self.fingerprint: str | None = self._fingerprints.get(code)

    def _fingerprint(self, code: str) -> str:
        if code not in self._fingerprints:
            raise NeedsModel(f"no recorded fingerprint in language {code or '(none)'!r}")
        return self._fingerprints[code]

    def reads(self, access: str) -> tuple[str, ...]:
        """The evidence settings the target reads at ``access`` (as recorded)."""
        if access not in self._reads:
            raise NeedsModel(f"no recorded evidence settings at the {access} level")
        return self._reads[access]

    def language_options(self) -> list[str]:
        return list(self._options)

    def set_language(self, choice) -> None:
        if self.language_fixed and self.multilingual:
            return
        self.fingerprint = self._fingerprint(choice.language if choice is not None else "")
        self.language = choice

    def detect_language(self, clips):  # noqa: ARG002 - the signature of a loaded target's
        raise NeedsModel("language identification is not cached")


def known_target(ws: Workspace, ref, device: str | None, options: dict) -> KnownTarget | None:
    """The :class:`KnownTarget` of ``ref`` loaded with ``options`` on ``device``, or None when
    no run has loaded it since its files last changed."""
    path = _path(ws, ref, device, options)
    try:
        return KnownTarget(ref, json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, NeedsModel):
        return None
