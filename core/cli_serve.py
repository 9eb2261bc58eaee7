"""``overheard serve`` and ``overheard serve-api``: the dashboard and a local transcription
server, each stopped cleanly by SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from core.cli_common import _log, _target, _target_options
from core.runtime.settings import Settings


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""What stops a server: ``systemctl stop``/``docker stop`` send SIGTERM, Ctrl-C SIGINT. Both
are handled even when the server was started with SIGINT ignored (a background ``&`` job)."""


def _on_stop(handler: Callable[[int], None]) -> dict:
    """Install ``handler`` for :data:`STOP_SIGNALS`; returns the previous handlers."""
    previous = {}
    for sig in STOP_SIGNALS:
        previous[sig] = signal.signal(sig, lambda signum, _frame: handler(signum))
    return previous


def _restore(previous: dict) -> None:
    for sig, h in previous.items():
        signal.signal(sig, h)


STOP_GRACE_S = 10.0
"""Seconds a stopped dashboard has to exit before it is killed."""


def cmd_serve(args: argparse.Namespace) -> int:
    app = Path(__file__).resolve().parents[1] / "app.py"
    env = dict(os.environ)
    if args.workspace:
        env["OVERHEARD_WORKSPACE"] = str(Path(args.workspace).resolve())
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.address, "--server.port", str(args.port), "--server.headless", "true"]
    _log(f"serving on http://{args.address}:{args.port}")
    # the dashboard runs in its own process group; a stop signal is passed on to all of it,
    # and what does not exit in time is killed, so a stop never leaves a server behind
    stopping: list[tuple[int, float]] = []  # (signal, when)
    started: list[subprocess.Popen] = []

    def stop(signum: int) -> None:
        stopping.append((signum, time.monotonic()))
        for child in started:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = _on_stop(stop)
    child = subprocess.Popen(cmd, env=env, cwd=app.parent, start_new_session=True)
    started.append(child)
    if stopping:  # stopped while it was starting
        stop(stopping[0][0])
    try:
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stopping and time.monotonic() - stopping[0][1] > STOP_GRACE_S:
                    os.killpg(child.pid, signal.SIGKILL)
    finally:
        _restore(previous)
        try:
            os.killpg(child.pid, signal.SIGKILL)  # anything of its group still there
        except (ProcessLookupError, PermissionError):
            pass
    if stopping:
        _log(f"stopped ({signal.Signals(stopping[0][0]).name})")
        return 0
    return code


def cmd_serve_api(args: argparse.Namespace) -> int:
    from core.pipeline.evidence import get_target
    from core.targets.http_serve import TranscriptionServer

    target = get_target(_target(args), Settings.from_env(args.workspace).device, dict(_target_options(args)))
    server = TranscriptionServer(target, host=args.host, port=args.port, drop=args.drop, seed=args.seed,
                                 api_key=os.environ.get("OVERHEARD_API_KEY", "") if args.require_key else "")
    import threading

    stop = threading.Event()
    previous = _on_stop(lambda signum: stop.set())  # before the URL is out: a client may stop it at once
    _log(f"serving {args.target} at {server.base_url} (POST /audio/transcriptions); Ctrl-C or SIGTERM stops")
    print(json.dumps({"url": server.base_url}) if args.json else server.base_url, flush=True)
    thread = threading.Thread(target=server.serve_forever, name="transcription-server", daemon=True)
    thread.start()
    try:
        while not stop.wait(0.5) and thread.is_alive():
            pass
    finally:
        _restore(previous)
        server.shutdown()  # from this thread: serve_forever returns, requests in flight finish
        server.server_close()
        _log("served: " + ", ".join(f"{k} {v}" for k, v in server.counts.items()))
    return 0
