"""The hostile-input corpus (``tests/hostile.py``) through every way in and on through an
audit: nothing raises, nothing is lost, every refusal has a reason, and a clip the model
cannot score is listed while the others are analysed.

The default run uses 60 cases; the slow run 250 (``bench/hostile_run.py``: 600, for the
README's figures).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.data.ingest import ingest_path, ingest_uploads
from core.pipeline import BlindRunConfig, MIAConfig, audit_blind, audit_mia
from core.runtime.store import Workspace
from tests.hostile import accounting, hostile_cases, labelled, to_zip, write_folder

torch.set_num_threads(1)
# a traceback printed from inside libsndfile's callbacks is a failure, not noise
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def _run(tmp_path: Path, n: int, seed: int) -> dict:
    ws = Workspace(tmp_path / "ws")
    cases = hostile_cases(n, seed)
    written = write_folder(tmp_path / "folder", cases)
    ingest_path(ws, tmp_path / "folder", "folder")
    folder = accounting(ws, "folder")
    assert folder["stored"] + folder["rejected"] == written, (folder, written)

    archive, entries = to_zip(cases)
    (tmp_path / "corpus.zip").write_bytes(archive)
    ingest_path(ws, tmp_path / "corpus.zip", "zip")
    zipped = accounting(ws, "zip")
    assert zipped["stored"] + zipped["rejected"] == entries, (zipped, entries)
    reasons = dict(zip(ws.rejected("zip")["path"], ws.rejected("zip")["reason"]))
    assert not any("escape" in p for p in ws.items("zip")["path"]), "a path trick was stored"
    assert "members/nested.zip" in reasons and "members/link.wav" in reasons

    uploads = [(rel.decode("utf-8", "replace"), c.data) for rel, c in labelled(cases)]
    ingest_uploads(ws, uploads, "upload")
    up = accounting(ws, "upload")
    assert up["stored"] + up["rejected"] == len(uploads)
    # the same bytes are accepted or refused the same way, however they arrive
    assert folder["clips"] == zipped["clips"] == up["clips"]

    crafted = {c.text_name.split("_", 1)[1]: f"members/{c.text_name}" if k % 2 == 0 else f"nonmembers/{c.text_name}"
               for k, c in enumerate(cases) if c.kind.startswith("crafted")}
    rej = dict(zip(ws.rejected("folder")["path"], ws.rejected("folder")["reason"]))
    for bad in ("huge_sample.wav", "nan_samples.wav", "inf_sample.wav", "empty.wav", "text.wav"):
        if bad in crafted:
            assert crafted[bad] in rej, f"{bad} was accepted"
    return {"ws": ws, "cases": len(cases), "written": written, "folder": folder, "zip": zipped, "upload": up}


def _audit(ws: Workspace, dataset: str) -> dict:
    clips = ws.analysis_clips(dataset)
    _, mia = audit_mia(ws, dataset, "zoo:lalm-small", MIAConfig(n_boot=50, n_perm=20, mode="generated"))
    failed = {f["clip_hash"] for f in mia["failed_clips"]}
    assert set(mia["clip_order"]) | failed == set(clips["clip_hash"]), "a clip neither analysed nor listed"
    assert all(f["reason"].strip() and "\n" not in f["reason"] for f in mia["failed_clips"])
    _, blind = audit_blind(ws, dataset, BlindRunConfig(groups=("metadata", "acoustic"), n_boot=50, n_perm=20))
    assert set(blind["auc"]) >= {"metadata", "acoustic"}
    return {"clips": len(clips), "analysed": len(mia["clip_order"]), "failed": len(failed)}


def test_hostile_corpus_every_way_in_and_through_an_audit(tmp_path: Path) -> None:
    out = _run(tmp_path, 60, seed=1)
    assert out["folder"]["stored"] >= 20 and out["folder"]["rejected"] >= 10  # the corpus has both
    _audit(out["ws"], "folder")


@pytest.mark.slow
def test_large_hostile_corpus(tmp_path: Path) -> None:
    out = _run(tmp_path, 250, seed=2)
    audit = _audit(out["ws"], "folder")
    print(f"\nhostile corpus: {out['cases']} cases, {out['written']} written; folder {out['folder']}; zip {out['zip']}; upload {out['upload']}; audit {audit}")
