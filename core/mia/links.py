"""The blind run a membership result was compared with, resolved when it is read.

An MIA, DI or disentanglement run records the blind run it used in its ``refs``; every
surface (pages, report, CLI) shows that run's verdict and correlation, computed here from
the two stored runs, never from whichever blind run is newest when it is read. A blind run
deleted since is reported as deleted, not replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.blind.verdict import BlindVerdict, verdict_of_run
from core.mia.aggregate import blind_correlation
from core.runtime.store import RunRef, Workspace


@dataclass(frozen=True)
class BlindLink:
    """The blind run a result used, with what follows from it.

    Attributes
    ----------
    ref : the reference (its status: ``linked``, ``deleted`` or ``none``).
    verdict : the blind verdict of the linked run, or None.
    correlation : :func:`core.mia.aggregate.blind_correlation` of the result's per-clip
        scores with the linked run's, or None (no scores given, no linked run).
    blind_scores, scores : ``[n]`` the two runs' scores on the clips they share, in the
        result's clip order (empty without a linked run or scores).
    """

    ref: RunRef
    verdict: BlindVerdict | None = None
    correlation: dict[str, Any] | None = None
    blind_scores: pd.Series | None = None
    scores: pd.Series | None = None

    @property
    def run_id(self) -> str | None:
        return self.ref.run_id

    def describe(self) -> str:
        """One sentence: which blind run, and whether it is gone or superseded."""
        return self.ref.describe()


def blind_link(ws: Workspace, run: dict[str, Any], scores: pd.Series | None = None) -> BlindLink:
    """The blind run ``run`` references, its verdict and (given ``scores``, a per-clip
    score Series indexed by clip hash) the correlation of those scores with its own.

    Parameters
    ----------
    ws : the workspace holding both runs.
    run : a run record (``refs`` is read; ``{"refs": {"blind": id}}`` is enough).
    scores : ``[n]`` per-clip scores of ``run`` indexed by clip hash, or None.
    """
    ref = ws.run_ref(run, "blind")
    if ref.run is None:
        return BlindLink(ref)
    verdict = verdict_of_run(ref.run["result"])
    if scores is None:
        return BlindLink(ref, verdict)
    blind = ws.run_table(ref.run, "clips")["score"].astype(float)
    common = [h for h in scores.index if h in blind.index]
    mine, theirs = scores.reindex(common).astype(float), blind.reindex(common)
    corr = blind_correlation(mine.to_numpy(np.float64), theirs.to_numpy(np.float64))
    return BlindLink(ref, verdict, corr, theirs, mine)
