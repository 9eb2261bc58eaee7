"""Every page (``app.py`` and each file in ``pages/``) opens through AppTest on one small
workspace holding a run of each kind, raises nothing and shows its key element.

The page list is read from ``pages/``, so a new page is covered without editing this file;
a page without an entry in ``KEY_ELEMENT`` fails until its key element is named here.
The runs are real and cheap: the built-in ``lalm-small`` target on 8 + 8 demo clips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import demo_subset
from core.data.ingest import ingest_path
from core.pipeline import DisentangleConfig, MIAConfig, audit_disentangle, audit_mia
from core.pipeline.blind import BlindRunConfig, audit_blind
from core.pipeline.crossdata import cross_dataset_matrix
from core.pipeline.di import DIRunConfig, audit_di
from core.runtime.store import Workspace
from test_pages import _run as open_page
from test_pipeline_di import write_corpus

ROOT = Path(__file__).resolve().parents[1]
TARGET = "zoo:lalm-small"
PAGES = ["app.py"] + sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))


def _labels(at: AppTest, kind: str) -> list[str]:
    return [e.label for e in at.get(kind)]


# The element that shows the page did its job on a workspace with runs (not its empty state).
KEY_ELEMENT: dict[str, Callable[[AppTest], bool]] = {
    "app.py": lambda at: at.table[0].value["name"].tolist() == ["speech", "tones"],
    "pages/1_Dataset.py": lambda at: len(at.get("audio")) == 1 and "Unique clips analysed" in _labels(at, "metric"),
    "pages/2_MIA_Audit.py": lambda at: any("model fingerprint" in c.value for c in at.caption) and len(at.get("plotly_chart")) > 0,
    "pages/3_Blind_Baseline.py": lambda at: any("groups metadata" in c.value for c in at.caption) and len(at.get("plotly_chart")) > 0,
    "pages/4_Dataset_Inference.py": lambda at: any("from MIA run" in c.value for c in at.caption) and len(at.get("plotly_chart")) > 0,
    "pages/5_Disentanglement.py": lambda at: any("clips" in c.value and c.value.startswith("Run `") for c in at.caption) and len(at.get("plotly_chart")) > 0,
    "pages/6_Report.py": lambda at: "Download report (HTML)" in _labels(at, "download_button"),
}


@pytest.fixture(scope="module")
def smoke_ws(tmp_path_factory) -> Workspace:
    """Two datasets; a blind, cross-dataset, MIA, DI and disentanglement run on one of them."""
    tmp = tmp_path_factory.mktemp("smoke")
    ws = Workspace(tmp / "ws")
    ingest_path(ws, demo_subset(tmp / "speech", 8), "speech")
    ingest_path(ws, write_corpus(tmp / "tones", n=8), "tones")
    audit_blind(ws, "speech", BlindRunConfig(groups=("metadata",), n_splits=4, n_boot=50, n_perm=0))
    cross_dataset_matrix(ws, status="member", groups=("metadata",), n_splits=4)
    mia = MIAConfig(n_splits=4, n_boot=50, n_perm=0, batch_size=16)
    audit_mia(ws, "speech", TARGET, mia)
    audit_di(ws, "speech", TARGET, DIRunConfig(n_resamples=20, null_resamples=20))
    audit_disentangle(ws, "speech", TARGET, DisentangleConfig(conditions=("original", "silence"), mia=mia))
    return ws


def test_every_page_has_a_key_element() -> None:
    assert set(KEY_ELEMENT) == set(PAGES), "name the key element of each page in KEY_ELEMENT"


@pytest.fixture
def env(smoke_ws: Workspace, monkeypatch) -> Workspace:
    monkeypatch.setenv("OVERHEARD_WORKSPACE", str(smoke_ws.root))
    monkeypatch.setenv("OVERHEARD_AUTO_DEMO", "0")
    return smoke_ws


@pytest.mark.parametrize("page", PAGES)
def test_page_opens_on_a_workspace_with_runs(page: str, env: Workspace) -> None:
    at = open_page(page)  # asserts that no exception was raised
    assert at.title, f"{page} shows no title"
    check = KEY_ELEMENT.get(page)
    assert check is not None and check(at), f"{page}: key element missing"


def test_mia_page_exports_the_per_sample_scores(env: Workspace) -> None:
    at = open_page("pages/2_MIA_Audit.py")
    table = {b.label: b.proto for b in at.get("download_button") if "-tbl-" in b.proto.id}
    assert set(table) == {"CSV", "PARQUET"}
    assert all(p.id.endswith(f"mia-scores-tbl-{fmt.lower()}") and p.deferred_file_id for fmt, p in table.items())
