"""Figure and table export: PNG, SVG, PDF (kaleido, which drives a local Chromium),
standalone HTML; CSV and Parquet."""

from __future__ import annotations

import io
import shutil

import pandas as pd
import plotly.graph_objects as go

FIGURE_FORMATS = ("png", "svg", "pdf", "html")
TABLE_FORMATS = ("csv", "parquet")
MIME = {
    "png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "html": "text/html",
    "csv": "text/csv", "parquet": "application/vnd.apache.parquet",
}


def image_export_available() -> tuple[bool, str]:
    """Static images need kaleido and a Chromium on the machine (never downloaded)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False, "install the export extra: `make install` from the checkout (or `.venv/bin/pip install -e '.[export]'`)"
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome")):
        return False, "no Chromium found: `make chromium` (Debian's chromium) or install Chromium/Chrome for PNG/SVG/PDF export"
    return True, ""


def figure_bytes(fig: go.Figure, fmt: str, *, width: int = 1000, height: int | None = None, scale: float = 2.0) -> bytes:
    """The figure as ``fmt`` (png, svg, pdf or standalone html with plotly.js inline)."""
    if fmt == "html":
        return fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; valid: {', '.join(FIGURE_FORMATS)}")
    ok, why = image_export_available()
    if not ok:
        raise RuntimeError(why)
    h = height or int(fig.layout.height or 450)
    return fig.to_image(format=fmt, width=width, height=h, scale=scale if fmt == "png" else 1.0)


def table_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return df.to_csv(index=False).encode("utf-8")
    if fmt == "parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    raise ValueError(f"unknown table format {fmt!r}; valid: {', '.join(TABLE_FORMATS)}")
