"""A remote transcription API as an outputs-only audio-language target.

``--target http://HOST:PORT/v1`` (or ``https://``) names an endpoint speaking the common
transcription API: ``POST {base}/audio/transcriptions`` with a multipart form (``file``: the
clip as a WAV file, ``model``, ``response_format=json``) answered by JSON with a ``text``
field. Only the clips of the audited dataset (and their seeded perturbations) are sent, and
only to the URL the user named; the key, when one is needed, is read from the
``OVERHEARD_API_KEY`` environment variable at each request and never stored (SECURITY.md).

Such a target has one access level, ``outputs``: it has no logits to read. Requests run
``concurrency`` at a time; a dropped connection, a timeout, HTTP 429 or a 5xx answer is
retried ``retries`` times with exponential back-off (a ``Retry-After`` header is honoured).
What cannot go on raises :class:`~core.targets.base.TargetUnavailable` with one line (the
run stops and keeps every answered clip in the cache, so a rerun resumes): an endpoint that
stays unreachable, refuses the key, answers without a ``text``, or a spent request budget
(``max_requests``, counted over every POST, retries included). A 400 or 422 answer is the
clip's own failure: that clip is listed with the reason and the others go on.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.data.audio import wav_bytes
from core.runtime.settings import API_KEY_ENV, check_http_spec, is_http_spec
from core.targets.base import ClipInput, Family, TargetUnavailable
from core.targets.registry import register_loader

TRANSCRIPTIONS = "/audio/transcriptions"
RETRY_AFTER_CAP = 30.0
"""Longest wait a ``Retry-After`` header can impose (seconds)."""


class _Retry(Exception):
    """A transient failure: try again after ``wait`` seconds (None: the back-off schedule)."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


class HttpTranscriber:
    """An endpoint of the common transcription API, read at the outputs access level.

    Parameters
    ----------
    spec : the API base URL (``http://127.0.0.1:8000/v1``).
    model : the ``model`` form field (default: the only model ``GET {base}/models`` lists,
        else none is sent).
    timeout : seconds to wait for one answer.
    retries : further tries of a request after a transient failure.
    backoff : first back-off wait in seconds (doubled at each retry).
    concurrency : requests in flight at once.
    max_requests : most POSTs one run may send, retries included (0: no limit).
    probe : check at load that the endpoint answers (one GET, no audio sent).
    language : the ``language`` form field (``"fr"``); without it a run sends the language
        the dataset's manifests name, if any, else none (the endpoint detects it).
    """

    family: Family = "audio-language"
    access_levels = ("outputs",)

    def __init__(self, spec: str, *, model: str = "", timeout: float = 30.0, retries: int = 4, backoff: float = 0.5,
                 concurrency: int = 4, max_requests: int = 0, probe: bool = True, language: str = "", **unknown: Any) -> None:
        if unknown:
            names = ", ".join(sorted(unknown))
            hint = f" (the key goes in {API_KEY_ENV}, never in an option)" if any("key" in k.lower() or "token" in k.lower() for k in unknown) else ""
            raise ValueError(f"unknown option(s) for an HTTP target: {names}{hint}; valid: model, timeout, retries, backoff, "
                             "concurrency, max_requests, language")
        check_http_spec(spec)
        if int(concurrency) < 1 or int(retries) < 0 or float(timeout) <= 0 or int(max_requests) < 0:
            raise ValueError("an HTTP target needs concurrency >= 1, retries >= 0, timeout > 0 and max_requests >= 0")
        import requests

        self.spec = spec
        self.base = spec.rstrip("/")
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.concurrency, self.max_requests = int(concurrency), int(max_requests)
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy from the environment (and no redirects below): only the named URL is contacted
        self._lock = threading.Lock()
        self.sent = 0
        """POSTs sent since :meth:`begin_run` (retries included)."""
        listed = self._probe() if probe else ""
        self.model = str(model) or listed
        self.language = None
        self.language_fixed = bool(language)
        if language:
            from core.targets.language import LanguageChoice, normalize_language

            self.language = LanguageChoice(normalize_language(language), "target option")
        self._identify()

    language_hint = True
    """A run tells the endpoint the dataset's language when the manifests name one."""

    def _identify(self) -> None:
        lang = f"|{self.language.language}" if self.language is not None else ""
        self.fingerprint = hashlib.sha256(f"http-api|{self.base}|{self.model}{lang}".encode()).hexdigest()[:16]

    def set_language(self, choice) -> None:
        """Send ``choice``'s language with every request from now on (kept when the option
        gave one); the fingerprint follows."""
        if not self.language_fixed:
            self.language = choice
            self._identify()

    # -- per run -----------------------------------------------------------------------
    def begin_run(self) -> None:
        """Start a run's request budget afresh (the target may stay loaded between runs)."""
        with self._lock:
            self.sent = 0

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(API_KEY_ENV, "")
        return {"Authorization": f"Bearer {key}"} if key else {}

    # -- probe -------------------------------------------------------------------------
    def _probe(self) -> str:
        """Check the endpoint answers at all; return the only model it lists, if it lists one.

        Raises
        ------
        ValueError
            one line, when nothing answers at the URL.
        """
        import requests

        try:
            r = self._session.get(f"{self.base}/models", headers=self._headers(), timeout=min(self.timeout, 10.0),
                                  allow_redirects=False)
        except requests.RequestException as exc:
            raise ValueError(f"{self.spec} is unreachable ({_short(exc)}); check the URL and that the server runs") from None
        if r.status_code in (401, 403):
            raise ValueError(f"{self.spec} refused the request (HTTP {r.status_code}); set {API_KEY_ENV} to the endpoint's key")
        try:
            ids = [m.get("id") for m in r.json().get("data", [])] if r.ok else []
        except (ValueError, AttributeError):
            ids = []
        return str(ids[0]) if len(ids) == 1 and ids[0] else ""

    # -- transcription -------------------------------------------------------------------
    def transcribe(self, clips: Sequence[ClipInput], *, batch_size: int | None = None) -> list[str]:
        """The endpoint's transcription of each clip, in order, ``concurrency`` requests at a
        time (``batch_size`` is not used: each clip is one request).

        Raises
        ------
        TargetUnavailable
            the endpoint stopped answering, answered badly, or the budget is spent.
        ValueError
            the endpoint refused this clip (HTTP 400 or 422).
        """
        if not clips:
            return []
        if self.concurrency == 1 or len(clips) == 1:
            return [self._transcribe_one(c) for c in clips]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(clips))) as pool:
            return list(pool.map(self._transcribe_one, clips))

    def _spend(self) -> None:
        with self._lock:
            if self.max_requests and self.sent >= self.max_requests:
                raise TargetUnavailable(f"{self.spec}: the request budget of {self.max_requests} is spent; answered clips are "
                                        "cached, rerun (with a new budget) to go on from there")
            self.sent += 1

    def _transcribe_one(self, clip: ClipInput) -> str:
        body = wav_bytes(clip.audio, clip.sr, subtype="FLOAT")  # 32-bit float: exactly the analysed samples
        data = {"response_format": "json"} | ({"model": self.model} if self.model else {})
        if self.language is not None:
            data["language"] = self.language.language
        last = ""
        for attempt in range(self.retries + 1):
            self._spend()
            try:
                return self._post(body, data)
            except _Retry as exc:
                last = str(exc)
                if attempt < self.retries:
                    time.sleep(exc.wait if exc.wait is not None else self.backoff * 2**attempt)
        raise TargetUnavailable(f"{self.spec} stopped answering ({last}, {self.retries + 1} tries); answered clips are cached, "
                                "rerun to go on")

    def _post(self, body: bytes, data: dict[str, str]) -> str:
        import requests

        try:
            r = self._session.post(f"{self.base}{TRANSCRIPTIONS}", files={"file": ("clip.wav", body, "audio/wav")}, data=data,
                                   headers=self._headers(), timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise _Retry(_short(exc)) from None
        if r.status_code == 429 or r.status_code >= 500:
            raise _Retry(f"HTTP {r.status_code}", _retry_after(r.headers.get("Retry-After")))
        if r.status_code in (400, 413, 415, 422):
            raise ValueError(f"the endpoint refused this clip: HTTP {r.status_code} {_detail(r)}")
        if r.status_code in (401, 403):
            raise TargetUnavailable(f"{self.spec} refused the request (HTTP {r.status_code}); set {API_KEY_ENV} to the endpoint's key")
        if not 200 <= r.status_code < 300:  # a redirect included: it is not followed
            raise TargetUnavailable(f"{self.spec}{TRANSCRIPTIONS} answered HTTP {r.status_code} {_detail(r)}; is this the API base?")
        try:
            text = r.json()["text"]
        except (ValueError, KeyError, TypeError):
            raise TargetUnavailable(f"{self.spec} answered without a JSON 'text' field ({_detail(r)}); "
                                    "it does not speak the transcription API") from None
        if not isinstance(text, str):
            raise TargetUnavailable(f"{self.spec} answered a 'text' that is not a string")
        return text.strip()

    def unload(self) -> None:
        """Close the connection pool."""
        self._session.close()


_CAUSES = {"Connection refused": "connection refused", "timed out": "timed out", "Read timed out": "timed out",
           "Name or service not known": "unknown host", "No route to host": "no route to host",
           "RemoteDisconnected": "the server closed the connection", "Connection reset": "connection reset",
           "Connection aborted": "connection aborted"}


def _short(exc: BaseException) -> str:
    """What went wrong, in a few words (a requests error nests its cause several times)."""
    text = str(exc).replace("\n", " ")
    for marker, phrase in _CAUSES.items():
        if marker in text:
            return phrase
    return text.strip()[-120:] or type(exc).__name__


def _detail(r: Any) -> str:
    text = (r.text or "").strip().replace("\n", " ")
    return repr(text[:80]) if text else "(empty body)"


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (a number of seconds), capped; None when absent or a date."""
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_CAP) if value else None
    except ValueError:
        return None


def _http_family(spec: str) -> str:
    """An API base transcribes: an audio-language target (a URL that cannot be a base is
    refused here, before anything is sent)."""
    check_http_spec(spec)
    return "audio-language"


@register_loader("http", matches=is_http_spec, family=_http_family, access=("outputs",))
def _load(spec: str, *, device: str | None = None, **options: Any) -> HttpTranscriber:
    """An ``http(s)://`` API base as an outputs-only transcription target (``device`` unused)."""
    return HttpTranscriber(spec, **options)
