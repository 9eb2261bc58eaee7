"""Browser fixtures: one ``streamlit run app.py`` per session over a temporary workspace,
Debian's Chromium driven by Playwright, and helpers to reach a page and wait for it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from server import ROOT, StreamlitServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "tests" / "artifacts"
BLIND_DATASET = "blind-set"
VIEWPORT = {"width": 1400, "height": 2600}
# URL path of each page: Streamlit derives it from the file name minus its number prefix.
PAGES = {
    "Home": "",
    "Dataset": "Dataset",
    "MIA Audit": "MIA_Audit",
    "Blind Baseline": "Blind_Baseline",
    "Dataset Inference": "Dataset_Inference",
    "Disentanglement": "Disentanglement",
    "Report": "Report",
}


def tone(freq: float, seconds: float, *, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_corpus(root: Path, *, n: int = 4, bad: bool = True) -> Path:
    """``members/`` + ``nonmembers/`` with ``n`` clips each and sidecar transcripts; with
    ``bad``, also a zero-byte .wav and a text file renamed .wav, which ingest must reject."""
    for label, base, seconds in (("members", 300.0, 0.6), ("nonmembers", 520.0, 0.9)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            sf.write(root / label / f"{label[0]}{i}.wav", tone(base + 37 * i, seconds, seed=i), 16000, subtype="PCM_16")
            (root / label / f"{label[0]}{i}.txt").write_text(f"clip {label} number {i}\n", encoding="utf-8")
    if bad:
        (root / "members" / "empty.wav").write_bytes(b"")
        (root / "nonmembers" / "notes.wav").write_text("this is a text file, not audio\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[StreamlitServer]:
    base = tmp_path_factory.mktemp("e2e")
    srv = StreamlitServer(workspace=base / "ws")
    srv.workspace.mkdir()
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def workspace(server):
    """The server's workspace, for preparing data the way the CLI would."""
    from core.runtime.store import Workspace

    return Workspace(server.workspace)


@pytest.fixture(scope="session")
def blind_dataset(workspace, tmp_path_factory) -> str:
    """10 + 10 clips whose durations differ by label, ingested as the CLI would."""
    from core.data.ingest import ingest_path

    if BLIND_DATASET not in workspace.dataset_names():
        root = write_corpus(tmp_path_factory.mktemp("blind") / "corpus", n=10, bad=False)
        ingest_path(workspace, root, BLIND_DATASET)
    return BLIND_DATASET


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class App:
    """A browser tab on the dashboard."""

    def __init__(self, page, url: str) -> None:
        self.page = page
        self.url = url

    def goto(self, name: str) -> None:
        self.page.goto(f"{self.url}/{PAGES[name]}")
        # the first script run has drawn the page once its title is there (every page has one)
        self.page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=60_000)
        self.wait_idle()
        self.settle()

    def settle(self, *, quiet_ms: int = 750, timeout_ms: int = 20_000) -> None:
        """Wait until the main area stops changing: a quick script run may never show the
        'Running…' widget, and elements arrive over the websocket after the title."""
        count = "document.querySelectorAll('[data-testid=stMain] *').length"
        last, stable_since, waited = -1, 0, 0
        while waited < timeout_ms:
            n = self.page.evaluate(count)
            if n == last:
                stable_since += 250
                if stable_since >= quiet_ms:
                    return
            else:
                last, stable_since = n, 0
            self.page.wait_for_timeout(250)
            waited += 250

    def wait_idle(self, *, timeout: float = 60_000) -> None:
        """Wait until the script run has finished (the 'Running…' widget is gone)."""
        from playwright.sync_api import expect

        self.page.wait_for_timeout(300)
        expect(self.page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=timeout)

    def select(self, label: str, option: str) -> None:
        from playwright.sync_api import expect

        box = self.page.get_by_role("combobox", name=label, exact=True)
        expect(box).to_be_visible(timeout=30_000)
        box.click()
        self.page.get_by_role("option", name=option, exact=True).click()
        self.wait_idle()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_-]+', '_', name)}.png"
        # the main area scrolls inside the window: grow the window to the content's height
        height = self.page.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stMain] *')].map(e => e.scrollHeight))")
        if height + 80 > VIEWPORT["height"]:
            self.page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height) + 80, 10_000)})
            self.settle()
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def exception_texts(self) -> list[str]:
        return self.page.locator('[data-testid="stException"]').all_inner_texts()


@pytest.fixture
def app(server, browser) -> Iterator[App]:
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(90_000)  # a fresh venv compiles bytecode on the first page loads
    page = context.new_page()
    try:
        yield App(page, server.url)
    finally:
        context.close()


def grid_rows(frame) -> list[list[str]]:
    """Cell texts of a Streamlit dataframe (``[data-testid="stDataFrame"]`` locator).

    The grid draws on a canvas; focusing it makes the grid fill its accessibility table,
    which holds the visible rows as text.
    """
    canvas = frame.locator('canvas[data-testid="data-grid-canvas"]')
    canvas.focus()
    frame.locator('td[role="gridcell"]').first.wait_for(state="attached", timeout=10_000)
    rows = frame.locator('tbody tr[role="row"]')
    # hidden elements: inner_text would be empty, textContent is not
    return [row.locator('td[role="gridcell"]').all_text_contents() for row in rows.all()]


def metric_value(page, label: str, *, timeout: float = 30_000) -> str:
    """The displayed value of the ``st.metric`` whose label is ``label``."""
    from playwright.sync_api import expect

    box = page.locator('[data-testid="stMetric"]').filter(has=page.locator('[data-testid="stMetricLabel"]', has_text=label))
    expect(box.first).to_be_visible(timeout=timeout)
    return box.first.locator('[data-testid="stMetricValue"]').inner_text().strip()
