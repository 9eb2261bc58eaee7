"""Soak: the whole demo audit twice in one workspace while another process ingests.

Pass one runs blind baseline, MIA on two targets, dataset inference, disentanglement and
the report on the demo's speech clips (60 per label, with their speakers); a second process meanwhile ingests a folder of its own
into the same workspace through the CLI. Pass two repeats the audit. Nothing may be lost
or duplicated (database integrity, every dataset complete), every number of pass two
must equal pass one, and pass two must read its evidence from the cache.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.data.ingest import ingest_path
from core.pipeline import BlindRunConfig, DIRunConfig, DisentangleConfig, MIAConfig, audit_blind, audit_di, audit_disentangle, audit_mia
from core.runtime.store import Workspace
from core.viz.report import build_report
from tests.conftest import demo_subset
from tests.test_concurrency import _folder, _integrity

torch.set_num_threads(1)
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
DATASET = "demo-speech"
TARGETS = ("zoo:lalm-small", "zoo:lalm-large")
# fewer resamples than the defaults: the soak checks equality and integrity, not the level
MIA = MIAConfig(n_boot=50, n_perm=20)
VOLATILE = {"seconds", "created", "computed", "id", "run_id", "blind_run", "mia_run", "timestamp"}


def _stable(obj):
    """A run's result without what legitimately differs between passes (times, ids, cache counts)."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _audit(ws: Workspace) -> dict:
    out: dict = {}
    _, out["blind"] = audit_blind(ws, DATASET, BlindRunConfig(n_boot=50, n_perm=20))
    for t in TARGETS:
        _, out[f"mia {t}"] = audit_mia(ws, DATASET, t, MIA)
    _, out["di"] = audit_di(ws, DATASET, TARGETS[1], DIRunConfig(n_resamples=30, null_resamples=30))
    _, out["disentangle"] = audit_disentangle(ws, DATASET, TARGETS[0], DisentangleConfig(conditions=("original", "silence", "noise"), mia=MIA, max_realizations=1))
    out["report"] = build_report(ws, DATASET, TARGETS[0])
    return out


def test_demo_audit_twice_beside_a_concurrent_ingest(tmp_path: Path) -> None:
    ws_dir = tmp_path / "ws"
    ws = Workspace(ws_dir)
    ingest_path(ws, demo_subset(tmp_path / "demo", 60), DATASET)  # 60 per label: the suite's time budget
    before = ws.analysis_clips(DATASET)["clip_hash"].tolist()
    src = _folder(tmp_path / "side", 150, broken=True)
    ingest = subprocess.Popen([sys.executable, "-m", "core.cli", "--workspace", str(ws_dir), "--json", "ingest", str(src), "--name", "side"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = _audit(ws)
    out, err = ingest.communicate(timeout=600)
    assert ingest.returncode == 0, err
    side = json.loads(out)
    second = _audit(Workspace(ws_dir))

    # nothing lost or duplicated, by either writer
    ws = Workspace(ws_dir)
    _integrity(ws)
    assert ws.analysis_clips(DATASET)["clip_hash"].tolist() == before
    assert (side["members"], side["nonmembers"], len(side["rejected"])) == (150, 150, 1)
    assert len(ws.analysis_clips("side")) == 300 and set(ws.datasets()["status"]) == {"ready"}
    runs = ws.runs()
    assert sorted(runs["kind"].value_counts().items()) == sorted({"blind": 2, "mia": 4, "di": 2, "disentangle": 2}.items())

    # pass two read its evidence from the cache and reproduced every number
    for t in TARGETS:
        assert first[f"mia {t}"]["computed"] == 120 and second[f"mia {t}"]["computed"] == 0
        assert not second[f"mia {t}"]["failed_clips"]
    for key in ("blind", *(f"mia {t}" for t in TARGETS), "di", "disentangle"):
        assert _stable(second[key]) == _stable(first[key]), key
    a, b = _normalised(first["report"]), _normalised(second["report"])
    assert len(a) > 0.99 * len(first["report"])
    if a != b:
        at = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        pytest.fail(f"reports differ at {at}: {a[at - 200:at + 200]!r} vs {b[at - 200:at + 200]!r}")


VOLATILE_TEXT = [
    re.compile(r"(?:blind|mia|di|disentangle|crossdata)-\d{8}-\d{6}-[0-9a-f]{6}"),  # run ids
    re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?: UTC)?"),  # dates
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),  # plotly div ids
    re.compile(r"(?<=seconds</th><td>)[\d.]+(?=</td>)"),  # run times in the provenance tables
    re.compile(r"(?<=read from the cache\)</th><td>)\d+(?=</td>)"),  # clips computed by this run (the rerun reads them)
]


def _normalised(html: str) -> str:
    for pat in VOLATILE_TEXT:
        html = pat.sub("#", html)
    return html
