"""Remote targets: a transcription API on loopback (``core.targets.http_serve`` serving a zoo
model) audited through ``core.targets.http_api`` exactly as a deployed endpoint would be.

The server is real (a threading HTTP server on 127.0.0.1); it drops a seeded 10 % of the
requests (HTTP 503 or a closed connection, in turn), so every MIA here also exercises the
client's retries. Nothing leaves loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.data.ingest import ingest_path
from core.pipeline import MIAConfig, audit_mia
from core.pipeline.di import DIRunConfig, audit_di
from core.runtime.store import Workspace
from core.targets import load_target
from core.targets.base import ClipInput, TargetUnavailable
from core.targets.http_serve import TranscriptionServer, form_file, serve_in_thread
from tests.conftest import demo_subset

LOCAL = "zoo:lalm-small"
PER_LABEL = 8
SMALL = dict(n_boot=50, n_perm=10, n_splits=4)
FAST = (("backoff", 0.01),)  # retry waits of 10, 20, 40 ms: the test's time budget


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(torch_one_thread):
    """zoo:lalm-small behind the transcription API on loopback, dropping 10 % of requests."""
    server = TranscriptionServer(load_target(LOCAL), drop=0.1, seed=1)  # its own copy: the pool's resident may change
    serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return demo_subset(tmp_path_factory.mktemp("speech"), PER_LABEL)


def _workspace(tmp_path: Path, corpus: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, corpus, "speech")
    return ws


def _texts(ws: Workspace, run_id: str) -> dict[str, str]:
    return ws.run_table(ws.load_run(run_id), "clips")["decoded"].to_dict()  # indexed by clip hash


# -- the endpoint gives the same evidence as the model it serves ------------------------------
def test_remote_target_gives_the_local_models_evidence_despite_dropped_requests(served, corpus, tmp_path) -> None:
    ws = _workspace(tmp_path, corpus)
    before = dict(served.counts)
    remote_id, remote = audit_mia(ws, "speech", served.base_url, MIAConfig(access="outputs", target_options=FAST, **SMALL))
    local_id, local = audit_mia(ws, "speech", LOCAL, MIAConfig(access="outputs", **SMALL))
    n_inputs = 2 * PER_LABEL * (1 + MIAConfig().n_perturb)
    assert served.counts["answered"] - before["answered"] == n_inputs  # each clip and perturbation answered once
    assert served.counts["dropped"] > before["dropped"]  # ... after retrying what the server dropped
    assert remote["failed_clips"] == [] and remote["computed"] == 2 * PER_LABEL
    assert _texts(ws, remote_id) == _texts(ws, local_id)
    assert remote["auc"] == local["auc"] and remote["indicators"] == local["indicators"]
    assert remote["access"] == "outputs"
    run = ws.load_run(remote_id)
    fp = run["provenance"]["model_fingerprint"]
    assert run["target"] == served.base_url and fp and fp != ws.load_run(local_id)["provenance"]["model_fingerprint"]
    # dataset inference and its null check read the remote run like any other
    _, di = audit_di(ws, "speech", served.base_url, DIRunConfig(mia_access="outputs", n_resamples=20, null_resamples=40))
    assert di["mia_run"] == remote_id and di["access"] == "outputs"


def test_request_budget_stops_the_run_and_a_rerun_resumes_from_the_cache(served, corpus, tmp_path) -> None:
    ws = _workspace(tmp_path, corpus)
    cfg = dict(access="outputs", target_options=FAST, batch_size=4, **SMALL)
    with pytest.raises(TargetUnavailable, match="request budget of 40 is spent"):
        audit_mia(ws, "speech", served.base_url, MIAConfig(max_requests=40, **cfg))
    before = dict(served.counts)
    _, out = audit_mia(ws, "speech", served.base_url, MIAConfig(**cfg))
    per_clip = 1 + MIAConfig().n_perturb
    # the clips answered within the budget (whole batches of 4) were kept: only the rest is asked again
    assert 0 < out["computed"] < 2 * PER_LABEL
    assert served.counts["answered"] - before["answered"] == out["computed"] * per_clip
    assert out["failed_clips"] == []


def test_a_killed_cli_run_resumes_where_it_stopped(served, corpus, tmp_path, capsys) -> None:
    ws = _workspace(tmp_path, corpus)
    argv = ["mia", "--dataset", "speech", "--target", served.base_url, "--access", "outputs", "--batch-size", "2",
            "--target-option", "backoff=0.01", "--target-option", "concurrency=1", "--n-boot", "50", "--n-perm", "0",
            "--workspace", str(ws.root), "--json"]
    start = served.counts["answered"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while served.counts["answered"] - start < 3 * 2 * 4 + 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # three batches of 2 clips x 4 inputs answered, the fourth under way
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    capsys.readouterr()
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["failed_clips"] == [] and out["n_members"] + out["n_nonmembers"] == 2 * PER_LABEL
    assert out["computed"] <= 2 * PER_LABEL - 6, "the clips answered before the kill were not kept"


# -- refusals ---------------------------------------------------------------------------------
def test_unreachable_url_is_refused_in_one_line(corpus, tmp_path, capsys) -> None:
    ws = _workspace(tmp_path, corpus)
    url = f"http://127.0.0.1:{_free_port()}/v1"
    rc = main(["mia", "--dataset", "speech", "--target", url, "--access", "outputs", "--workspace", str(ws.root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "unreachable (connection refused)" in err[0] and url in err[0]


def test_white_box_access_is_refused_before_anything_is_sent(corpus, tmp_path, capsys) -> None:
    ws = _workspace(tmp_path, corpus)
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens: a white-box run must not even try
    rc = main(["mia", "--dataset", "speech", "--target", url, "--workspace", str(ws.root)])
    err = capsys.readouterr().err
    assert rc == 2 and "offers only the outputs access level" in err and "--access outputs" in err


@pytest.mark.parametrize("url, reason", [
    ("http://user:secret@127.0.0.1:9/v1", "holds credentials"),
    ("http:///v1", "has no host"),
    ("http://127.0.0.1:9/v1/audio/transcriptions", "names the transcription path"),
    ("http://127.0.0.1:9/v1?key=secret", "query"),
])
def test_malformed_url_is_refused_before_anything_is_sent(url: str, reason: str, tmp_path, capsys) -> None:
    ws = Workspace(tmp_path / "ws")
    ingest_path(ws, demo_subset(tmp_path / "c", 1), "speech")
    rc = main(["mia", "--dataset", "speech", "--target", url, "--access", "outputs", "--workspace", str(ws.root)])
    assert rc == 2 and reason in capsys.readouterr().err


def test_a_key_passed_as_an_option_is_refused() -> None:
    with pytest.raises(ValueError, match="OVERHEARD_API_KEY"):
        load_target("http://127.0.0.1:9/v1", api_key="secret", probe=False)


# -- the key ----------------------------------------------------------------------------------
def test_the_key_is_sent_as_a_bearer_token_and_stored_nowhere(corpus, tmp_path, monkeypatch, torch_one_thread) -> None:
    from core.viz.report import build_report

    key = "sk-test-4f1d9c2e7b"
    server = TranscriptionServer(load_target(LOCAL), api_key=key)
    serve_in_thread(server)
    try:
        monkeypatch.delenv("OVERHEARD_API_KEY", raising=False)
        with pytest.raises(ValueError, match="refused the request .HTTP 401.; set OVERHEARD_API_KEY"):
            load_target(server.base_url)
        monkeypatch.setenv("OVERHEARD_API_KEY", key)
        ws = _workspace(tmp_path, corpus)
        run_id, out = audit_mia(ws, "speech", server.base_url, MIAConfig(access="outputs", n_perturb=0, **SMALL))
        assert out["computed"] == 2 * PER_LABEL and server.counts["refused"] == 1
        (tmp_path / "report.html").write_text(build_report(ws, "speech"), encoding="utf-8")
    finally:
        server.shutdown()
        server.server_close()
    for f in [*ws.root.rglob("*"), tmp_path / "report.html"]:
        if f.is_file():
            assert key.encode() not in f.read_bytes(), f"the key was written to {f}"


# -- the client's behaviour against misbehaving servers ---------------------------------------
class _Scripted(BaseHTTPRequestHandler):
    """Answers transcription POSTs from ``server.script``: (status, body, headers) per call,
    the last entry repeated."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._answer(200, {"data": [{"id": "scripted"}]}, {})

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server = self.server
        server.posts.append((time.monotonic(), self.headers.get("Content-Type", ""), body))  # type: ignore[attr-defined]
        script = server.script  # type: ignore[attr-defined]
        status, payload, headers = script[min(len(server.posts) - 1, len(script) - 1)]  # type: ignore[attr-defined]
        self._answer(status, payload, headers)

    def _answer(self, status: int, payload, headers: dict) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.posts, server.script = [], []  # type: ignore[attr-defined]
    serve_in_thread(server)  # type: ignore[arg-type]
    yield server
    server.shutdown()
    server.server_close()


def _client(server, **options):
    return load_target(f"http://127.0.0.1:{server.server_address[1]}/v1", **({"backoff": 0.01} | options))


CLIP = ClipInput("c0", np.linspace(-0.5, 0.5, 1600, dtype=np.float32), "", 16000)


def test_client_posts_the_clip_as_a_float_wav_with_the_listed_model(scripted) -> None:
    import io

    import soundfile as sf

    scripted.script = [(200, {"text": " hello world "}, {})]
    client = _client(scripted)
    assert client.model == "scripted"  # the only model the endpoint lists
    assert client.transcribe([CLIP]) == ["hello world"]
    _, ctype, body = scripted.posts[0]
    audio, sr = sf.read(io.BytesIO(form_file(ctype, body)), dtype="float32")
    assert sr == 16000 and np.array_equal(audio, CLIP.audio)  # exactly the analysed samples
    assert b'name="model"\r\n\r\nscripted' in body


def test_client_retries_with_back_off_and_honours_retry_after(scripted) -> None:
    scripted.script = [(503, {}, {}), (429, {}, {"Retry-After": "0.3"}), (200, {"text": "ok"}, {})]
    client = _client(scripted, backoff=0.05)
    assert client.transcribe([CLIP]) == ["ok"] and client.sent == 3
    t = [p[0] for p in scripted.posts]
    assert t[1] - t[0] >= 0.05 and t[2] - t[1] >= 0.3


def test_client_gives_up_after_its_retries_with_one_line(scripted) -> None:
    scripted.script = [(502, {}, {})]
    client = _client(scripted, retries=2)
    with pytest.raises(TargetUnavailable, match=r"stopped answering \(HTTP 502, 3 tries\)") as err:
        client.transcribe([CLIP])
    assert len(scripted.posts) == 3 and "\n" not in str(err.value)


@pytest.mark.parametrize("status, payload, kind, match", [
    (200, {"transcript": "x"}, TargetUnavailable, "without a JSON 'text' field"),
    (200, b"<html>not json</html>", TargetUnavailable, "without a JSON 'text' field"),
    (404, {"error": "no route"}, TargetUnavailable, "answered HTTP 404"),
    (307, {}, TargetUnavailable, "answered HTTP 307"),  # a redirect is not followed: only the named URL is contacted
    (401, {}, TargetUnavailable, "set OVERHEARD_API_KEY"),
    (400, {"error": "cannot decode"}, ValueError, "refused this clip: HTTP 400"),
])
def test_client_names_a_bad_answer(scripted, status, payload, kind, match) -> None:
    scripted.script = [(status, payload, {})]
    with pytest.raises(kind, match=match):
        _client(scripted, retries=0).transcribe([CLIP])


def test_a_clip_the_endpoint_refuses_is_listed_and_the_others_analysed(scripted, corpus, tmp_path) -> None:
    ws = _workspace(tmp_path, corpus)
    scripted.script = [(200, {"text": "a"}, {})] * 3 + [(400, {"error": "bad clip"}, {})] + [(200, {"text": "a"}, {})]
    url = f"http://127.0.0.1:{scripted.server_address[1]}/v1"
    _, out = audit_mia(ws, "speech", url, MIAConfig(access="outputs", n_perturb=0, batch_size=1,
                                                    target_options=FAST + (("concurrency", 1),), **SMALL))
    assert len(out["failed_clips"]) == 1 and "refused this clip: HTTP 400" in out["failed_clips"][0]["reason"]
    assert out["n_members"] + out["n_nonmembers"] == 2 * PER_LABEL - 1


def test_fingerprint_follows_the_url_and_model_only() -> None:
    a = load_target("http://127.0.0.1:9/v1", model="m1", probe=False)
    assert a.fingerprint == load_target("http://127.0.0.1:9/v1/", model="m1", probe=False, concurrency=2).fingerprint
    assert a.fingerprint != load_target("http://127.0.0.1:9/v1", model="m2", probe=False).fingerprint
    assert a.fingerprint != load_target("http://127.0.0.2:9/v1", model="m1", probe=False).fingerprint


def test_cli_serves_a_model_and_audits_it_end_to_end(corpus, tmp_path, capsys) -> None:
    ws = _workspace(tmp_path, corpus)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "serve-api", "--target", LOCAL, "--port", "0", "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        common = ["--dataset", "speech", "--target", url, "--access", "outputs", "--workspace", str(ws.root)]
        capsys.readouterr()
        # a spent budget stops the run with one line and exit code 3: what was answered is kept
        assert main(["mia", *common, "--n-perturb", "0", "--batch-size", "4", "--max-requests", "6"]) == 3
        err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("mia ")]  # less progress
        assert len(err) == 1 and err[0].startswith("stopped:") and "request budget of 6 is spent" in err[0]
        assert main(["mia", *common, "--n-perturb", "0", "--n-boot", "50", "--n-perm", "0", "--json"]) == 0
        mia = json.loads(capsys.readouterr().out)
        assert mia["access"] == "outputs" and mia["computed"] == 2 * PER_LABEL - 4 and mia["auc"] > 0.8
        assert main(["di", *common, "--n-resamples", "20", "--null-resamples", "40", "--json"]) == 0
        di = json.loads(capsys.readouterr().out)
        assert di["mia_run"] == mia["run_id"] and di["access"] == "outputs"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, log = proc.communicate(timeout=30)
        finally:
            proc.kill()
    # the budget's 6 requests (one batch of 4 kept, 2 answers of the unfinished batch lost), then only the 12 clips not kept
    assert proc.returncode == 0 and f"requests {6 + 2 * PER_LABEL - 4}, answered {6 + 2 * PER_LABEL - 4}" in log


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_api_stops_promptly_on_sigterm_and_sigint_even_started_with_sigint_ignored(stop):
    """A background job (``make test &``, nohup, a CI runner) starts with SIGINT ignored;
    ``docker stop``/``systemctl stop`` send SIGTERM: either way the server exits at once."""
    ignore = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731 - what a shell does for '&'
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "serve-api", "--target", LOCAL, "--port", "0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore)
    try:
        url = json.loads(proc.stdout.readline())["url"]  # type: ignore[union-attr]
        t0 = time.monotonic()
        proc.send_signal(stop)
        _, log = proc.communicate(timeout=15)
        assert proc.returncode == 0 and time.monotonic() - t0 < 10 and "served: requests 0" in log
        import requests

        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/models", timeout=2)
    finally:
        proc.kill()
