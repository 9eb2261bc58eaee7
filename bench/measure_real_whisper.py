"""The audit of a real pretrained Whisper on ``demo-speech``: MIA in generated and given mode,
at the outputs level, and DI, with clips/s on this machine (README, "Whisper base
(multilingual), measured").

    OVERHEARD_WORKSPACE=DIR python -m bench.measure_real_whisper [base|tiny.en] [--dataset D]

The workspace is loaded with the demo first (``overheard demo``). Wall times include loading
the model and the statistics; the evidence of a second run comes from the cache.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(args: list[str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "core.cli", *args, "--json"], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"overheard {' '.join(args)} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def main() -> int:
    from tests.real_checkpoints import tiny_en_folder, whisper_base_folder

    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="base", choices=["base", "tiny.en"])
    ap.add_argument("--dataset", default="demo-speech")
    a = ap.parse_args()
    folder = str(whisper_base_folder() if a.model == "base" else tiny_en_folder())
    rows = []
    for label, extra in (("generated", ["--mode", "generated"]), ("given", ["--mode", "given"]), ("outputs", ["--access", "outputs"])):
        r, secs = _run(["mia", "--dataset", a.dataset, "--target", folder, *extra])
        check = r.get("transcript_check") or {}
        rows.append({"run": label, "auc": r["auc"], "ci": r["auc_ci"], "p": r.get("auc_p_value"), "seconds": round(secs, 1),
                     "clips_per_s": round(r["computed"] / secs, 3) if r["computed"] else None,
                     "language": (r.get("language") or {}).get("text"), "median_wer": check.get("median_wer"),
                     "median_wer_members": check.get("median_wer_members"), "warnings": r["warnings"]})
        print(json.dumps(rows[-1]), flush=True)
    di, secs = _run(["di", "--dataset", a.dataset, "--target", folder])
    print(json.dumps({"run": "di (generated)", "p": di["p_value"], "rejected": di["rejected"], "min_suspects": di["min_suspects"],
                      "null_rate": di["null_rejection_rate"], "seconds": round(secs, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
