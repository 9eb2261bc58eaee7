"""Targets: adapters that turn clips into raw evidence (see ``core.targets.base``)."""

from core.targets.base import ClipInput, EvidenceConfig, Target, TargetInfo
from core.targets.registry import Resolved, TargetRef, list_targets, load_target, register_loader, resolve_target

__all__ = ["ClipInput", "EvidenceConfig", "Resolved", "Target", "TargetInfo", "TargetRef", "list_targets", "load_target", "register_loader",
           "resolve_target"]

from core.targets import zoo as _zoo  # noqa: E402,F401  (registers the zoo: loader)
from core.targets import local as _local  # noqa: E402,F401  (registers local checkpoint folders)
from core.targets import ct2 as _ct2  # noqa: E402,F401  (registers CTranslate2 Whisper folders)
from core.targets import hub as _hub  # noqa: E402,F401  (registers Hugging Face cache ids)
from core.targets import http_api as _http_api  # noqa: E402,F401  (registers http(s):// transcription endpoints)
