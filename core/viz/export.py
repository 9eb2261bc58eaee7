"""Figure and table export: PNG, SVG, PDF (kaleido, which drives a local Chromium),
standalone HTML; CSV and Parquet."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys

import pandas as pd
import plotly.graph_objects as go

FIGURE_FORMATS = ("png", "svg", "pdf", "html")
TABLE_FORMATS = ("csv", "parquet")
MIME = {
    "png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "html": "text/html",
    "csv": "text/csv", "parquet": "application/vnd.apache.parquet",
}

DEFAULT_EXPORT_TIMEOUT_S = 60.0
"""How long a PNG/SVG/PDF export may take (``OVERHEARD_EXPORT_TIMEOUT_S`` in the settings)."""

# Only plotly is needed in the worker: it renders from the figure's JSON on stdin and never
# imports this package, so it runs the same from any checkout or install.
_WORKER = (
    "import signal, sys, plotly.io as pio; signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)); a = sys.argv; fig = pio.from_json(sys.stdin.read()); "
    "sys.stdout.buffer.write(fig.to_image(format=a[1], width=int(a[2]), height=int(a[3]), scale=float(a[4])))"
)
_worker_argv: list[str] = [sys.executable, "-c", _WORKER]


class ExportTimeout(RuntimeError):
    """A static-image export did not finish within its time limit (it was stopped)."""


def image_export_available() -> tuple[bool, str]:
    """Static images need kaleido and a Chromium on the machine (never downloaded)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False, "install the export extra: `make install` from the checkout (or `.venv/bin/pip install -e '.[export]'`)"
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome")):
        return False, "no Chromium found: `make chromium` (Debian's chromium) or install Chromium/Chrome for PNG/SVG/PDF export"
    return True, ""


def figure_bytes(fig: go.Figure, fmt: str, *, width: int = 1000, height: int | None = None, scale: float = 2.0,
                 timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S) -> bytes:
    """The figure as ``fmt`` (png, svg, pdf or standalone html with plotly.js inline).

    PNG, SVG and PDF are rendered by kaleido's Chromium in a worker process that is stopped
    after ``timeout_s`` seconds (a loaded machine can stall it for minutes).

    Raises
    ------
    ExportTimeout
        the worker did not finish in time; nothing is left running.
    RuntimeError
        no kaleido or Chromium, or the worker failed (its last error line).
    """
    if fmt == "html":
        return fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; valid: {', '.join(FIGURE_FORMATS)}")
    ok, why = image_export_available()
    if not ok:
        raise RuntimeError(why)
    h = height or int(fig.layout.height or 450)
    args = [fmt, str(width), str(h), str(scale if fmt == "png" else 1.0)]
    return _run_worker([*_worker_argv, *args], fig.to_json().encode("utf-8"), fmt=fmt, timeout_s=timeout_s)


def _run_worker(argv: list[str], payload: bytes, *, fmt: str, timeout_s: float) -> bytes:
    # its own session, so that a stop reaches the worker and whatever it started
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(payload, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise ExportTimeout(f"the {fmt.upper()} export did not finish within {timeout_s:g} s and was stopped") from None
    except BaseException:
        _stop(proc)
        raise
    if proc.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"the {fmt.upper()} export failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    return out


def _stop(proc: subprocess.Popen) -> None:
    # SIGTERM first: the worker unwinds and kaleido closes the Chromium it launched (Chromium
    # runs in a session of its own, which a signal to the worker's group does not reach)
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.communicate(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def table_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return df.to_csv(index=False).encode("utf-8")
    if fmt == "parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    raise ValueError(f"unknown table format {fmt!r}; valid: {', '.join(TABLE_FORMATS)}")
