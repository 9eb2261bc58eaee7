"""A CLI run on a local checkpoint folder, opened in the browser by typing the folder in the
target picker (a copy of ``zoo:lalm-small`` without its card stands in for a checkpoint)."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect

from conftest import App, metric_value

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_typed_local_checkpoint_opens_its_run(app: App, workspace, blind_dataset):
    from core.cli import main
    from core.targets.zoo.registry import assets_dir

    # under the workspace: one of the folders the dashboard may load from by default
    ckpt = workspace.root / "checkpoints" / "my-whisper"
    if not ckpt.exists():
        shutil.copytree(assets_dir() / "zoo" / "lalm-small", ckpt, ignore=shutil.ignore_patterns("card.json"))
    assert main(["--workspace", str(workspace.root), "mia", "--dataset", blind_dataset, "--target", str(ckpt),
                 "--n-boot", "50", "--n-perm", "10"]) == 0
    run = workspace.latest_run("mia", blind_dataset, str(ckpt))

    app.goto("MIA Audit")
    app.select("Dataset", blind_dataset)
    box = app.page.get_by_role("textbox", name="…or a local folder / hub id / API URL", exact=True)
    box.fill(str(ckpt))
    box.press("Enter")
    app.wait_idle()
    expect(app.page.get_by_role("combobox", name="Target model", exact=True)).to_have_value(f"my-whisper · has runs here · {ckpt}")
    assert metric_value(app.page, "Aggregate AUC") == f"{run['result']['auc']:.3f}"
    expect(app.page.get_by_text(run["id"])).to_be_visible()
    app.settle()  # the rest of the run's view draws after the headline
    assert not app.exception_texts(), app.exception_texts()
    assert f"target={ckpt}".replace("/", "%2F") in app.page.url or f"target={ckpt}" in app.page.url
    app.screenshot("MIA Audit local target")
