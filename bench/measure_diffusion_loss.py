"""Loss-only per-sample AUC of a diffusion reference model on demo-sounds.

usage: .venv/bin/python bench/measure_diffusion_loss.py [MODEL_DIR] [N_NOISE]
(default assets/zoo/diffusion-small, 4 noise draws)

Score = minus the conditional denoising loss averaged over the default timesteps and the
noise draws (members have lower loss); AUC with a stratified bootstrap 95% CI, and the AUC
at each timestep (descriptive).
"""
import sys
from pathlib import Path

import numpy as np
import torch

from core import stats
from core.targets.base import EvidenceConfig
from core.recipes.zoo.ar import audited_clips
from core.targets.zoo.catalogue import load_diffusion as load

torch.set_num_threads(1)
model = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("assets/zoo/diffusion-small")
target = load(model)
members, nonmembers = audited_clips()
evs = target.evidence(members + nonmembers, EvidenceConfig(n_noise=int(sys.argv[2]) if len(sys.argv) > 2 else 4))
y = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
loss = np.stack([np.asarray(e.diffusion.loss_cond).mean(-1) for e in evs])  # [clips, timesteps]
s = -loss.mean(1)
lo, hi = stats.auc_ci(y, s)
print(f"{model.name}: loss-only AUC {stats.auc(y, s):.3f} [{lo:.3f}, {hi:.3f}]")
for j, t in enumerate(evs[0].diffusion.timesteps):
    print(f"  t={int(t)}: {stats.auc(y, -loss[:, j]):.3f}")
