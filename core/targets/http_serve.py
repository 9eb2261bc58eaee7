"""Serve a target's transcriptions through the common transcription API (``overheard serve-api``).

``POST {prefix}/audio/transcriptions`` takes a multipart form with a ``file`` (any audio
soundfile reads) and answers ``{"text": ...}``; ``GET {prefix}/models`` lists the one
model. This is the other end of :mod:`core.targets.http_api`: it lets a local model be
audited exactly as a deployed API would be, and the tests audit it on loopback.

``drop`` makes the server misbehave like a loaded service, for tests of the client's
retries: that fraction of transcription requests (seeded) is answered with HTTP 503 and
``Retry-After: 0``, or has its connection closed with no answer, in turn.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from core.targets.base import ANALYSIS_SR, ClipInput, Transcriber


def form_file(content_type: str, body: bytes, field: str = "file") -> bytes | None:
    """The bytes of the multipart form field ``field`` (None when there is none)."""
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        return None
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == field:
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else None
    return None


class TranscriptionServer(ThreadingHTTPServer):
    """A threading HTTP server answering transcription requests with ``target``.

    ``counts`` tells what happened: ``requests`` (transcription POSTs received),
    ``answered``, ``dropped``, ``refused`` (bad key or bad form).
    """

    daemon_threads = True

    def __init__(self, target: Any, *, host: str = "127.0.0.1", port: int = 0, prefix: str = "/v1", drop: float = 0.0,
                 seed: int = 0, api_key: str = "", model_name: str = "") -> None:
        if not isinstance(target, Transcriber) or target.family != "audio-language":
            raise ValueError(f"{getattr(target, 'spec', target)} does not return transcriptions: only audio-language targets "
                             "can be served through the transcription API")
        if not 0.0 <= drop < 1.0:
            raise ValueError(f"drop must be in [0, 1), got {drop}")
        super().__init__((host, port), _Handler)
        self.target, self.prefix, self.drop, self.api_key = target, "/" + prefix.strip("/"), float(drop), api_key
        self.model_name = model_name or getattr(target, "spec", "model")
        self.counts = {"requests": 0, "answered": 0, "dropped": 0, "refused": 0}
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()  # one model call at a time, and the counters
        # a language the target was loaded with (--target-option language=) answers requests
        # that name none
        self._default_language = getattr(target, "language", None) if getattr(target, "language_fixed", False) else None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{self.prefix}"

    def decide_drop(self) -> str:
        """``""`` (answer), ``"503"`` or ``"close"`` for the next transcription request."""
        with self._lock:
            self.counts["requests"] += 1
            if self.drop and self._rng.random() < self.drop:
                self.counts["dropped"] += 1
                return "503" if self.counts["dropped"] % 2 else "close"
        return ""

    def transcribe(self, audio_file: bytes, language: str = "") -> str:
        """The target's transcription of one WAV. A multilingual model decodes in the
        request's ``language``, else the server's (``--target-option language=``), else the
        one it identifies in this clip, as the common API does; an English-only model
        refuses another language."""
        import soundfile as sf

        from core.targets.language import LanguageChoice, normalize_language

        audio, sr = sf.read(io.BytesIO(audio_file), dtype="float32", always_2d=True)
        mono = audio.mean(axis=1)
        if sr != ANALYSIS_SR:
            import librosa

            mono = librosa.resample(mono, orig_sr=sr, target_sr=ANALYSIS_SR)
        clip = ClipInput(hashlib.sha256(audio_file).hexdigest(), np.asarray(mono, dtype=np.float32), "", ANALYSIS_SR)
        with self._lock:
            if getattr(self.target, "multilingual", False):
                if language:
                    choice = LanguageChoice(normalize_language(language, self.target.language_options()), "request")
                else:
                    choice = self._default_language or self.target.detect_language([clip])
                self.target.set_language(choice, force=True)
            elif language:
                normalize_language(language, ["en"])  # ValueError (HTTP 400) for another language
            text = self.target.transcribe([clip])[0]
            self.counts["answered"] += 1
        return str(text)


class _Handler(BaseHTTPRequestHandler):
    server: TranscriptionServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: the CLI prints a summary instead

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        if self.server.api_key and self.headers.get("Authorization", "") != f"Bearer {self.server.api_key}":
            with self.server._lock:
                self.server.counts["refused"] += 1
            self._send(401, {"error": {"message": "invalid or missing API key"}})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/") != f"{self.server.prefix}/models":
            self._send(404, {"error": {"message": f"no such path {self.path}"}})
        elif self._authorized():
            self._send(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != f"{self.server.prefix}/audio/transcriptions":
            self._send(404, {"error": {"message": f"no such path {self.path}"}})
            return
        if not self._authorized():
            return
        action = self.server.decide_drop()
        if action == "503":
            self._send(503, {"error": {"message": "overloaded (simulated)"}}, {"Retry-After": "0"})
            return
        if action == "close":
            self.close_connection = True
            self.connection.shutdown(2)  # no answer at all: the client sees the connection drop
            return
        content_type = self.headers.get("Content-Type", "")
        audio_file = form_file(content_type, body)
        language = (form_file(content_type, body, "language") or b"").decode("utf-8", "replace").strip()
        if not audio_file:
            with self.server._lock:
                self.server.counts["refused"] += 1
            self._send(400, {"error": {"message": "expected a multipart form with a 'file' field"}})
            return
        try:
            text = self.server.transcribe(audio_file, language)
        except Exception as exc:  # noqa: BLE001 - the clip's failure goes back to the client
            self._send(400, {"error": {"message": f"{type(exc).__name__}: {exc}"[:200]}})
            return
        self._send(200, {"text": text})


def serve_in_thread(server: TranscriptionServer) -> threading.Thread:
    """Run ``server`` in a daemon thread (stop it with ``server.shutdown()``)."""
    thread = threading.Thread(target=server.serve_forever, name="transcription-server", daemon=True)
    thread.start()
    return thread
