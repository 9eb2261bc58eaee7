"""One look for every figure: Okabe-Ito colour-blind-safe palette, members and
non-members always in the same two colours."""

from __future__ import annotations

MEMBER_COLOR = "#D55E00"  # vermillion
NONMEMBER_COLOR = "#0072B2"  # blue
LABEL_COLORS = {"member": MEMBER_COLOR, "nonmember": NONMEMBER_COLOR}
LABEL_NAMES = {"member": "members (P)", "nonmember": "non-members (U)"}
SEQUENCE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
TEMPLATE = "plotly_white"

VERDICT_STYLES = {
    "found": ("#e7f1f8", "#0072B2"),  # evidence of use: the finding the audit looks for, in blue
    "none": ("#eef7f1", "#009E73"),  # no evidence of use
}
"""Background and border colour of a dataset-inference verdict, the same on the pages and in
the report; red stays for errors."""


def verdict_style(rejected: bool) -> str:
    """The inline CSS of a verdict box (``rejected``: evidence that the set was used)."""
    bg, border = VERDICT_STYLES["found" if rejected else "none"]
    return f"background:{bg};border-left:4px solid {border};padding:.6em .9em;margin:.5em 0;border-radius:.3em"


def style(fig, *, title: str | None = None, height: int = 360):
    """Apply the shared layout to a plotly figure (returns it)."""
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        height=height,
        margin=dict(l=60, r=20, t=50 if title else 20, b=50),
        colorway=SEQUENCE,
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
        font=dict(size=13),
    )
    return fig


def shared_bins(*samples, nbins: int = 30) -> dict | None:
    """One set of histogram bins (plotly ``xbins``) for every sample, so bar heights of
    members and non-members count clips in the same intervals; None when nothing is finite."""
    import numpy as np

    try:
        vals = [np.asarray(s, dtype=np.float64) for s in samples]
    except (TypeError, ValueError):
        return None  # categories (e.g. "16 kHz"): plotly counts each one, nothing to bin
    vals = [v[np.isfinite(v)] for v in vals]
    every = np.concatenate(vals) if vals else np.zeros(0)
    if every.size == 0:
        return None
    lo, hi = float(every.min()), float(every.max())
    if hi <= lo:
        width = max(abs(lo) * 0.05, 1e-6)
        return dict(start=lo - width / 2, end=hi + width / 2, size=width)
    size = (hi - lo) / nbins
    return dict(start=lo, end=hi + size * 1e-6, size=size)
