"""Every benchmark script (and each measurement script with a smoke mode) runs in a tiny
smoke mode and prints its measurement, so none can rot unnoticed between ``make bench``
runs; ``bench/run.py`` fails when a script does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import SMOKE_MEASURES

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "bench").glob("bench_*.py")) + [ROOT / "bench" / n for n in SMOKE_MEASURES]
"""Every benchmark, and the measurement scripts with a smoke mode (``bench.run.SMOKE_MEASURES``)."""


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_benchmark_runs_in_smoke_mode_and_prints_its_ratio(script):
    proc = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    entries = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    assert entries and all(isinstance(e.get("ratio"), (int, float)) and e["ratio"] > 0 and e.get("name") for e in entries), proc.stdout


def test_the_runner_fails_when_a_script_fails(tmp_path, monkeypatch, capsys):
    import bench.run as run

    (tmp_path / "bench_broken.py").write_text("raise SystemExit('broken on purpose')\n")
    (tmp_path / "bench_ok.py").write_text("import json\nprint(json.dumps({'name': 'ok', 'ratio': 2.0, 'goal': 1}))\n")
    monkeypatch.setattr(run, "HERE", tmp_path)
    assert run.main(["--smoke"]) == 1
    assert "failed: bench_broken.py" in capsys.readouterr().err
    (tmp_path / "bench_broken.py").unlink()
    assert run.main(["--smoke"]) == 0 and not (tmp_path / "results.json").exists()


def test_the_swapped_split_audits_the_half_of_the_non_members_the_shadow_trains_on_otherwise(tmp_path):
    from bench.measure_shadow import _paths, halves, split_dataset
    from core.runtime.store import Workspace

    (own, audited), (own_swapped, audited_swapped) = halves(), halves(swap=True)
    assert (own, audited) == ((100, 150), (150, 200)) and (own_swapped, audited_swapped) == (audited, own)
    ws = Workspace(tmp_path / "ws")
    clips = ws.analysis_clips(split_dataset(ws, "swapped", "demo-sounds", audited_swapped))
    assert set(clips.loc[clips["y"] == 0, "path"]) == _paths(100, 150, "demo-sounds")
    assert int((clips["y"] == 1).sum()) == 100 and len(clips) == 150
