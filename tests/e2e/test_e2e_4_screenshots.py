"""A full-page screenshot of every page, into tests/artifacts/<page>.png, each drawn
without an exception; runs after the other browser tests so pages show real results."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conftest import PAGES, App

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.mark.parametrize("name", list(PAGES))
def test_page_screenshot(app: App, blind_dataset: str, name: str):
    app.goto(name)
    page = app.page
    picker = page.get_by_role("combobox", name="Dataset", exact=True)
    if picker.count():
        app.select("Dataset", blind_dataset)
        app.settle()
    # plots draw after the script run; wait for every one on the page
    for plot in page.locator(".js-plotly-plot").all():
        expect(plot.locator(".main-svg").first).to_be_attached(timeout=20_000)
    path = app.screenshot(name)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not app.exception_texts(), app.exception_texts()
    expect(page.locator('[data-testid="stMain"] h1').first).to_be_visible()
    # the home page is listed as "Home", never under its file name
    nav = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
    assert nav.first.inner_text().endswith("Home") and nav.nth(1).inner_text() == "Dataset"
    assert not page.locator('[data-testid="stSidebarNavLink"]').count()
