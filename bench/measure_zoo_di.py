"""Per zoo target: per-sample MIA AUC beside DI min_suspects / null rate / p for each scorer.

usage: OVERHEARD_WORKSPACE=DIR .venv/bin/python bench/measure_zoo_di.py [target ...]
"""
import os
import sys
from core.pipeline import load_demo
from core.pipeline.di import DIRunConfig, audit_di
from core.runtime.store import Workspace
from core.targets import list_targets
from core.targets.zoo.registry import get_zoo

ws = Workspace(os.environ.get("OVERHEARD_WORKSPACE", "/tmp/ws-di"))
load_demo(ws)
specs = sys.argv[1:] or [t.spec for t in list_targets() if t.available]
print("| target | dataset | MIA AUC | scorer | p-value | min suspects | null rate (95% CI) |")
print("|---|---|---|---|---|---|---|")
for spec in specs:
    dataset = get_zoo(spec.split(":", 1)[1]).dataset
    _, r = audit_di(ws, dataset, spec, DIRunConfig(compare=True))
    for row in r["comparison"]:
        if "error" in row:
            print(f"| {spec} | {dataset} | {r['mia_auc']:.3f} | {row['scorer']} | error: {row['error']} | | |")
            continue
        print(f"| {spec} | {dataset} | {r['mia_auc']:.3f} | {row['scorer']} | {row['p_value']:.2g} | {row['min_suspects']} | "
              f"{row['null_rejection_rate']:.1%} ({row['null_ci_low']:.1%}-{row['null_ci_high']:.1%}) |")
    for w in r["warnings"]:
        print(f"<!-- {spec}: {w} -->")
