"""The hostile-input run behind the README's reliability figures.

``python -m bench.hostile_run [N] [SEED]`` (default 600 cases, seed 3): the corpus of
``tests/hostile.py`` ingested as a folder, a zip and browser uploads, then audited
(MIA with zoo:lalm-small, blind baseline with acoustic features). Counts crashes (an
exception out of ingest or audit), lost files (neither stored nor listed as rejected) and
lost clips (neither analysed nor listed as failed); writes ``bench/hostile_results.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import torch

from core.data.ingest import ingest_path, ingest_uploads
from core.pipeline import BlindRunConfig, MIAConfig, audit_blind, audit_mia
from core.runtime.store import Workspace
from tests.hostile import hostile_cases, labelled, to_zip, write_folder

OUT = Path(__file__).with_name("hostile_results.json")


def main(n: int = 600, seed: int = 3) -> dict:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="overheard-hostile-"))
    ws = Workspace(tmp / "ws")
    cases = hostile_cases(n, seed)
    crashes: list[str] = []
    res: dict = {"cases": len(cases), "kinds": dict(Counter(c.kind.split(":")[0] for c in cases)), "seed": seed}

    def attempt(label: str, fn):
        try:
            return fn()
        except Exception:  # noqa: BLE001 - counted, the run goes on
            crashes.append(f"{label}: {traceback.format_exc(limit=2)}")
            return None

    written = write_folder(tmp / "folder", cases)
    archive, entries = to_zip(cases)
    (tmp / "c.zip").write_bytes(archive)
    uploads = [(rel.decode("utf-8", "replace"), c.data) for rel, c in labelled(cases)]
    for name, fn, sent in (("folder", lambda: ingest_path(ws, tmp / "folder", "folder"), written),
                           ("zip", lambda: ingest_path(ws, tmp / "c.zip", "zip"), entries),
                           ("upload", lambda: ingest_uploads(ws, uploads, "upload"), len(uploads))):
        attempt(name, fn)
        stored, rejected = len(ws.items(name)), len(ws.rejected(name))
        res[name] = {"files": sent, "stored": stored, "rejected": rejected, "lost": sent - stored - rejected}
    clips = ws.analysis_clips("folder")
    mia = attempt("mia", lambda: audit_mia(ws, "folder", "zoo:lalm-small", MIAConfig(n_boot=100, n_perm=50)))
    if mia:
        failed = {f["clip_hash"] for f in mia[1]["failed_clips"]}
        res["mia"] = {"clips": len(clips), "analysed": len(mia[1]["clip_order"]), "failed_listed": len(failed),
                      "lost": len(set(clips["clip_hash"]) - set(mia[1]["clip_order"]) - failed)}
    blind = attempt("blind", lambda: audit_blind(ws, "folder", BlindRunConfig(groups=("metadata", "acoustic"), n_boot=100, n_perm=50)))
    res["blind_ok"] = blind is not None
    res["crashes"] = crashes
    res["seconds"] = round(time.perf_counter() - t0, 1)
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(main(*args), indent=1))
