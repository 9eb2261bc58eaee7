"""The one place that decides whether a member/non-member comparison is fair.

Every surface (Blind Baseline, MIA and DI pages, the CLI, the report) calls
:func:`blind_verdict` on the blind baseline's all-groups result, so the same run reads the
same everywhere.

Rule (thresholds written once, here):

- **fair** — the blind AUC is not significantly above chance (permutation p >=
  ``SHIFT_P``; for a run without permutations, its interval includes 0.5);
- **shift** — significantly above chance, but below ``CONFOUND_AUC``: a weak shift;
  membership results should be compared with it;
- **confounded** — significantly above chance and at least ``CONFOUND_AUC``: a model-free
  classifier separates the sets, so a membership signal may be nothing but the shift.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Sequence

SHIFT_P = 0.05
"""A blind AUC whose permutation p-value is below this is a detected shift."""

CONFOUND_AUC = 0.6
"""A detected shift with a blind AUC at or above this confounds membership results."""

Level = Literal["fair", "shift", "confounded"]


@dataclass(frozen=True)
class BlindVerdict:
    """The verdict on a blind AUC, with the numbers it rests on and one sentence."""

    level: Level
    auc: float
    ci: tuple[float, float]
    p_value: float | None
    sentence: str

    @property
    def confounded(self) -> bool:
        return self.level == "confounded"

    def caveat(self, what: str = "this result", references: Sequence[str] = ()) -> str | None:
        """A warning for a membership result on the same data (None when fair).

        With ``references`` (the result is calibrated against reference models) the warning
        says so: calibration cancels the part of a shift that the references react to as
        the target does, not a shift that only the target's training makes visible.
        """
        if self.level == "fair":
            return None
        if self.level == "confounded":
            text = (f"confounded: the blind baseline tells members from non-members without the model ({self._numbers()}); "
                    f"{what} may reflect the data shift, not the model")
        else:
            text = (f"weak distribution shift: the blind baseline separates members from non-members above chance "
                    f"({self._numbers()}); compare {what} with it")
        if references:
            text += (f"; {what} is calibrated against reference model(s) {', '.join(references)}, which cancels the part of "
                     "the shift the references see as the target does (compare the uncalibrated result beside it)")
        return text

    def _numbers(self) -> str:
        p = "" if self.p_value is None else f", p = {self.p_value:.2g}"
        return f"AUC {self.auc:.2f} [{self.ci[0]:.2f}, {self.ci[1]:.2f}]{p}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci)
        return d


def blind_verdict(auc: float, ci: Sequence[float], p_value: float | None = None) -> BlindVerdict:
    """Fair, shift or confounded (see the module docstring for the rule)."""
    lo, hi = float(ci[0]), float(ci[1])
    significant = (p_value < SHIFT_P) if p_value is not None else lo > 0.5
    v = BlindVerdict("fair", float(auc), (lo, hi), None if p_value is None else float(p_value), "")
    if not significant:
        level: Level = "fair"
        text = f"No detectable distribution shift: a model-free classifier does no better than chance ({v._numbers()})."
    elif auc >= CONFOUND_AUC:
        level = "confounded"
        text = (f"Confounded: a model-free classifier separates members from non-members ({v._numbers()}); "
                "any membership result on this dataset may reflect the data, not the model.")
    else:
        level = "shift"
        text = (f"A weak but detectable distribution shift ({v._numbers()}): compare every membership result "
                "with this baseline, or build a matched subset.")
    return BlindVerdict(level, v.auc, v.ci, v.p_value, text)


def verdict_of_run(result: dict, group: str = "all") -> BlindVerdict | None:
    """The verdict of a stored blind run's result (runs made before p-values existed are
    judged by their interval)."""
    auc = (result.get("auc") or {}).get(group)
    ci = (result.get("auc_ci") or {}).get(group)
    if auc is None or ci is None:
        return None
    return blind_verdict(auc, ci, (result.get("auc_p_value") or {}).get(group))
