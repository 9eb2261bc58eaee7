"""Run every ``bench/bench_*.py`` and write ``bench/results.json``.

Each script prints JSON lines ``{"name", "ratio", "goal", "detail"}``: a ratio measured in
one process against a baseline on the same inputs, so it holds on a noisy machine. The
goal direction is ">=" unless the entry says ``"goal_op": "<="``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SMOKE_MEASURES = ("measure_shadow.py",)
"""Measurement scripts (``measure_*.py``, long, not ratios) that also have a ``--smoke``
mode printing one ratio line: run with ``--smoke`` only, so they cannot rot either."""


def scripts(smoke: bool) -> list[Path]:
    """The scripts a run covers: every ``bench_*.py``, and with ``smoke`` the
    :data:`SMOKE_MEASURES` too."""
    extra = [HERE / n for n in SMOKE_MEASURES if (HERE / n).is_file()] if smoke else []
    return sorted(HERE.glob("bench_*.py")) + extra


def main(argv: list[str] | None = None) -> int:
    """Run the scripts; exit status 1 when any failed or printed no measurement.
    ``--smoke``: each script's tiny run, nothing written (what ``make test`` checks)."""
    smoke = "--smoke" in (sys.argv[1:] if argv is None else argv)
    results = []
    failed = []
    for script in scripts(smoke):
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(script), *(["--smoke"] if smoke else [])], capture_output=True, text=True,
                              cwd=HERE.parent)
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
        if proc.returncode != 0 or not lines:
            results.append({"name": script.stem, "ratio": None, "goal": None, "detail": f"failed: {proc.stderr.strip()[-500:]}"})
            failed.append(script.name)
            continue
        for ln in lines:
            entry = json.loads(ln)
            if "ratio" in entry and "name" in entry:
                results.append(entry)
    for r in results:
        op = r.get("goal_op", ">=")
        r["met"] = None if r.get("ratio") is None or r.get("goal") is None else (r["ratio"] >= r["goal"] if op == ">=" else r["ratio"] <= r["goal"])
        print(f"{r['name']:<24} ratio {r.get('ratio')!s:<10} goal {op} {r.get('goal')!s:<6} {'met' if r['met'] else 'NOT met'}", file=sys.stderr)
    if not smoke:
        (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
