"""MIA and disentanglement on a built-in reference target (``zoo:lalm-small``, a tiny
Whisper trained on the demo-speech members), driven from their pages.

The zoo ships with ``make test`` (``overheard zoo build``), so a missing target is a
failure, not a skip."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sklearn.metrics import roc_auc_score

from conftest import App, metric_value
from tests.conftest import demo_subset

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TARGET = "zoo:lalm-small"
DATASET = "speech-mini"
PER_LABEL = 8


def _require_target() -> None:
    from core.targets import list_targets

    infos = {t.spec: t for t in list_targets()}
    assert TARGET in infos, f"{TARGET} is not registered; targets: {sorted(infos)}"
    assert infos[TARGET].available, f"{TARGET} is not built: run `overheard zoo build` (make zoo) first"


@pytest.fixture(scope="session")
def speech_dataset(workspace, tmp_path_factory) -> str:
    """The first 8 members and 8 non-members of the bundled demo-speech corpus."""
    from core.data.ingest import ingest_path

    if DATASET in workspace.dataset_names():
        return DATASET
    dst = demo_subset(tmp_path_factory.mktemp("speech") / DATASET, PER_LABEL)
    ingest_path(workspace, dst, DATASET)
    return DATASET


def _select_target(app: App) -> None:
    box = app.page.get_by_role("combobox", name="Target model", exact=True)
    expect(box).to_be_visible(timeout=30_000)
    box.click()
    app.page.get_by_role("option").filter(has_text=TARGET).first.click()
    app.wait_idle()
    expect(box).to_have_value(re.compile(rf"^{re.escape(TARGET)} · audio-language"))


def test_mia_then_disentanglement_on_zoo_target(app: App, workspace, speech_dataset):
    _require_target()
    page = app.page

    app.goto("MIA Audit")
    app.select("Dataset", speech_dataset)
    _select_target(app)
    page.get_by_role("button", name="Run MIA").click()
    shown = metric_value(page, "Aggregate AUC", timeout=170_000)
    app.wait_idle()
    assert not app.exception_texts()
    run = workspace.latest_run("mia", speech_dataset, TARGET)
    assert run is not None
    res = run["result"]
    assert shown == f"{res['auc']:.3f}"
    clips = workspace.run_table(run, "clips")
    y, s = clips["label"].to_numpy(), clips["score"].to_numpy()
    assert (int(y.sum()), int((1 - y).sum())) == (PER_LABEL, PER_LABEL)
    assert res["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert metric_value(page, "Clips") == f"{PER_LABEL} P / {PER_LABEL} U"

    # dataset inference reuses the MIA run's indicators
    app.goto("Dataset Inference")
    app.select("Dataset", speech_dataset)
    _select_target(app)
    page.get_by_role("button", name="Run dataset inference").click()
    shown_p = metric_value(page, "p-value", timeout=170_000)
    app.wait_idle()
    assert not app.exception_texts()
    di = workspace.latest_run("di", speech_dataset, TARGET)
    assert di is not None and shown_p == f"{di['result']['p_value']:.2g}"
    rate = di["result"].get("null_rejection_rate")
    assert metric_value(page, "Null rejection rate") == ("not run" if rate is None else f"{rate:.1%}")

    app.goto("Disentanglement")
    app.select("Dataset", speech_dataset)
    _select_target(app)
    # keep original + silence: the two conditions that need no synthesis, to stay quick
    expect(page.get_by_role("combobox", name="Conditions", exact=True)).to_be_visible()
    for cond in ("noise", "tts"):
        remove = page.get_by_role("button", name=f"Remove {cond}", exact=True)
        if remove.count():
            remove.click()
            app.wait_idle()
    chips = page.locator('[data-testid="stMultiSelect"] [data-tag] > span[title]')
    assert chips.all_inner_texts() == ["original", "silence"]
    page.get_by_role("button", name="Run disentanglement").click()
    expect(page.get_by_role("heading", name="Listen side by side")).to_be_visible(timeout=170_000)
    app.wait_idle()
    assert not app.exception_texts()
    audio = page.locator('[data-testid="stMain"] audio')
    expect(audio).to_have_count(2)  # one player per condition
    for i in range(2):
        src = audio.nth(i).get_attribute("src")
        assert src and src.startswith(("/media/", "http", "data:audio")), src
    # the player can load what it points at
    played = audio.nth(1).evaluate(
        "a => new Promise(r => { if (a.readyState >= 1) r(a.duration); else { a.onloadedmetadata = () => r(a.duration); a.onerror = () => r(-1); a.load(); } })"
    )
    assert played > 0
    assert workspace.latest_run("disentangle", speech_dataset, TARGET) is not None
