"""Size and load time of an MIA run record: per-clip data inside the JSON record (as runs
were stored before per-clip tables) against the record plus its Parquet tables.

usage: OVERHEARD_WORKSPACE=DIR .venv/bin/python bench/measure_run_storage.py [dataset] [target]
"""
import os
import sys
import time

from core.pipeline import MIAConfig, audit_mia, load_demo
from core.pipeline.mia import CLIP_FIELDS
from core.runtime.store import Workspace

dataset = sys.argv[1] if len(sys.argv) > 1 else "demo-speech"
target = sys.argv[2] if len(sys.argv) > 2 else "zoo:lalm-small"
ws = Workspace(os.environ.get("OVERHEARD_WORKSPACE", "/tmp/ws-runs"))
load_demo(ws, names=(dataset,))
run_id, out = audit_mia(ws, dataset, target, MIAConfig(n_perm=20, n_boot=200))
new = ws.load_run(run_id)
# the same run as the earlier version stored it: per-clip fields inside the result JSON
old_id = ws.save_run("mia", dataset=dataset, target=target, config=new["config"], result=out, provenance=new["provenance"], refs=new["refs"])


def record_bytes(rid: str) -> int:
    return int(ws.query("SELECT length(config) + length(result) + length(provenance) AS n FROM runs WHERE id=?", (rid,))["n"][0])


def load(rid: str, tables: bool) -> None:
    run = ws.load_run(rid)
    if tables:
        ws.run_table(run, "clips")
        ws.run_table(run, "indicators")


def best_of(f, n: int = 20) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


parquet = sum((ws.root / p).stat().st_size for p in new["tables"].values())
print(f"{dataset}, {len(out['clip_order'])} clips, {len(out['table'])} indicators; per-clip fields: {', '.join(CLIP_FIELDS)}")
print("| stored as | record (bytes) | tables (bytes) | load record (ms) | load record + per-clip tables (ms) |")
print("|---|---|---|---|---|")
print(f"| JSON only (before) | {record_bytes(old_id)} | 0 | {best_of(lambda: load(old_id, False)):.1f} | {best_of(lambda: load(old_id, True)):.1f} |")
print(f"| record + Parquet (after) | {record_bytes(run_id)} | {parquet} | {best_of(lambda: load(run_id, False)):.1f} | {best_of(lambda: load(run_id, True)):.1f} |")
