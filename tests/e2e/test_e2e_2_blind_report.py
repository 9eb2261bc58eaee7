"""The blind baseline run from its page as a background job, a figure exported from its
Export popover, and the HTML report downloaded from the Report page."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from sklearn.metrics import roc_auc_score

from conftest import BLIND_DATASET as DATASET
from conftest import App, metric_value

pytestmark = [pytest.mark.slow, pytest.mark.browser]



def run_blind(app: App, dataset: str) -> str:
    """Press "Run blind baseline" and wait through the job's polling reruns for the headline;
    returns the displayed AUC."""
    app.goto("Blind Baseline")
    app.select("Dataset", dataset)
    app.page.get_by_role("button", name="Run blind baseline").click()
    return metric_value(app.page, "Blind AUC (all groups)", timeout=150_000)


@pytest.fixture
def blind_run(app: App, workspace, blind_dataset) -> dict:
    if workspace.latest_run("blind", blind_dataset) is None:
        run_blind(app, blind_dataset)
    run = workspace.latest_run("blind", blind_dataset)
    assert run is not None
    return run


def test_blind_baseline_runs_as_job_and_shows_auc(app: App, workspace, blind_dataset):
    shown = run_blind(app, blind_dataset)
    app.wait_idle()
    assert not app.exception_texts()
    run = workspace.latest_run("blind", blind_dataset)
    assert run is not None
    res = run["result"]
    assert shown == f"{res['auc']['all']:.3f}"
    # the headline is the AUC of the stored out-of-fold scores
    clips = workspace.run_table(run, "clips")
    y, s = clips["label"].to_numpy(), clips["score"].to_numpy()
    assert (y.sum(), (1 - y).sum()) == (10, 10)
    assert res["auc"]["all"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    # durations differ by label (0.6 s vs 0.9 s): a model-free classifier must see it
    assert res["auc"]["all"] > 0.9
    expect(app.page.locator('[data-testid="stAlert"]').filter(has_text="any membership result on this dataset may reflect the data, not the model")).to_be_visible()
    assert metric_value(app.page, "Clips") == "10 P / 10 U"
    expect(app.page.get_by_text(run["id"])).to_be_visible()


def test_export_figure_from_popover(app: App, blind_run):
    from core.viz.export import image_export_available

    app.goto("Blind Baseline")
    app.select("Dataset", DATASET)
    expect(app.page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
    app.page.get_by_role("button", name="Export").first.click()
    html_btn = app.page.get_by_role("button", name="HTML", exact=True)
    expect(html_btn).to_be_visible()
    with app.page.expect_download(timeout=30_000) as dl:
        html_btn.click()
    download = dl.value
    assert download.suggested_filename == "blind-auc.html"
    text = Path(download.path()).read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith(("<!doctype html", "<html"))
    assert "Plotly.newPlot" in text and "</html>" in text
    # the figure's data: one bar per feature group plus "all"
    for group in blind_run["result"]["auc"]:
        assert group in text

    png_btn = app.page.get_by_role("button", name="PNG", exact=True)
    ok, _ = image_export_available()
    if ok:
        # rendered on request (under a time limit, with a spinner), then saved
        png_btn.click()
        save = app.page.get_by_role("button", name="Save blind-auc.png")
        expect(save).to_be_visible(timeout=60_000)
        with app.page.expect_download(timeout=30_000) as dl:
            save.click()
        assert Path(dl.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        # without kaleido the static formats are offered disabled, with the reason
        expect(png_btn).to_be_disabled()


def test_report_download_contains_blind_section(app: App, blind_run):
    app.goto("Report")
    app.select("Dataset", DATASET)
    button = app.page.get_by_role("button", name="Download report (HTML)")
    expect(button).to_be_visible()
    with app.page.expect_download(timeout=60_000) as dl:
        button.click()
    download = dl.value
    assert download.suggested_filename == f"overheard-report-{DATASET}.html"
    html = Path(download.path()).read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith(("<!doctype html", "<html"))
    assert html.rstrip().lower().endswith("</html>")
    assert "1 · Blind baseline" in html
    r = blind_run["result"]
    lo, hi = r["auc_ci"]["all"]
    assert f"<td>all</td><td>{r['auc']['all']:.3f}</td><td>[{lo:.3f}, {hi:.3f}]</td>" in html
    assert "<b>confounded</b>" in html and "permutation p" in html
