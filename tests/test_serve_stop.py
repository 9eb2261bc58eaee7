"""``overheard serve`` (the dashboard, what ``make run`` starts) stops cleanly and promptly
on SIGTERM, as ``docker stop`` or ``systemctl stop`` send it, also when it was started with
SIGINT ignored (a background job), and leaves no process of its own behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _processes_with(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
                if stat[0] != "Z" and text.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


@pytest.mark.parametrize("stop", [signal.SIGTERM])  # SIGINT takes the same path (serve-api's test sends both)
def test_the_dashboard_stops_on_a_stop_signal_and_leaves_nothing(tmp_path, stop):
    port = _free_port()
    env = dict(os.environ, OVERHEARD_AUTO_DEMO="0", OVERHEARD_WORKSPACE=str(tmp_path / "ws"))
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", "--port", str(port), "--address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 90
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and time.monotonic() - t0 < 15, err
        assert f"stopped ({stop.name})" in err
        time.sleep(0.5)
        assert not _listening(port) and not _processes_with(f"--server.port\0{port}")
    finally:
        proc.kill()
        for pid in _processes_with(f"--server.port\0{port}"):
            os.kill(pid, signal.SIGKILL)
