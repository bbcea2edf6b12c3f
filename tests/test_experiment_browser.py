"""The Experiment tab in headless Chromium (Debian's /usr/bin/chromium), on the offline simulator:
plan, run, watch the grid fill in place, export. Things are found by label, role and text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from app_server import RunningApp, app_server_fixture
from test_browser import browser, generate, open_page, wait_done  # noqa: F401 - `browser` is a fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Slow enough (a GemPix2 task takes 2-4 s, a Nano Banana Pro 1K one 4-6 s) to see the grid fill.
experiment_server = app_server_fixture({"SIMULATOR_TIME_SCALE": "0.2", "MULTI_USER": "1"})
PROMPTS = ["a red kite over the dunes", "a lighthouse at dusk", "a bowl of ramen"]
MODELS = ["GemPix2 (Nano Banana)", "Gemini 2.5 Flash Image", "Nano Banana Pro"]


@pytest.fixture
def page(browser, experiment_server: RunningApp) -> Iterator[object]:  # noqa: F811
    with open_page(browser, experiment_server) as opened:
        yield opened


def grid(page):
    return page.get_by_role("table", name="Experiment grid")


def test_an_experiment_fills_its_grid_in_place(page) -> None:
    from playwright.sync_api import expect

    wait_done(generate(page, "an ordinary generation beside it"))
    page.get_by_role("tab", name="Experiment").click()
    run = page.get_by_role("button", name="Run", exact=True)
    plan = page.get_by_role("button", name="Plan", exact=True)
    expect(run).to_be_disabled()  # nothing is sent before the plan is shown
    prompts = page.get_by_role("textbox", name="Prompts, one per line")
    prompts.fill("\n".join(PROMPTS[:2]))
    for label in MODELS:
        page.get_by_role("checkbox", name=label, exact=True).check()
    plan.click()
    expect(page.get_by_text(re.compile(r"^6 cells \(2 prompts × 3 columns"))).to_be_visible()
    expect(run).to_be_enabled()
    prompts.fill("\n".join(PROMPTS))  # what Run sends is what was planned: plan again
    expect(run).to_be_disabled()
    plan.click()
    expect(page.get_by_text(re.compile(r"^9 cells \(3 prompts × 3 columns"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"9 tasks; about 3 credits"))).to_be_visible()
    expect(run).to_be_enabled()
    run.click()

    table = grid(page)
    expect(table).to_be_visible()
    for label in ["Prompt", *MODELS]:
        expect(table.get_by_role("columnheader", name=label, exact=True)).to_be_visible()
    for prompt in PROMPTS:
        expect(table.get_by_role("rowheader", name=prompt, exact=True)).to_be_visible()
    images = table.get_by_role("img")
    seen = set()
    for _ in range(600):  # the cells fill as they finish, in the same table
        seen.add(images.count())
        if images.count() == 9:
            break
        page.wait_for_timeout(50)
    assert images.count() == 9
    assert seen & set(range(1, 9)), seen  # some cells were shown done while others ran
    expect(table.get_by_text(re.compile(r"^done in"))).to_have_count(9)
    expect(page.get_by_text(re.compile(r"^Finished: 9 of 9 cells settled"))).to_be_visible()
    widths = images.evaluate_all("(imgs) => imgs.map((img) => img.naturalWidth)")
    assert all(width > 0 for width in widths)  # served from the saved files
    expect(images.first).to_have_accessible_name(re.compile(r"^a red kite over the dunes — "))

    page.get_by_role("button", name="Export", exact=True).click()
    exports = page.locator("#experiment-results")
    for name in ("-contact-sheet.png", "-manifest.csv", "-manifest.json", ".zip"):
        expect(exports.get_by_role("row", name=re.compile(re.escape(name)))).to_be_visible()

    # Its cells are ordinary generations, grouped in History by the experiment.
    page.get_by_role("button", name="Show in History").click()
    expect(page.get_by_role("tab", name="History", selected=True)).to_be_visible()
    experiment = page.get_by_role("combobox", name="Experiment")
    expect(experiment).to_have_value(re.compile(r" · a red kite over the dunes \+2 · 9 cells$"))
    for prompt in PROMPTS:
        expect(page.get_by_role("gridcell", name=prompt, exact=True)).to_have_count(3)
    ordinary = page.get_by_role("gridcell", name="an ordinary generation beside it", exact=True)
    expect(ordinary).to_have_count(0)
    experiment.click()
    page.get_by_role("option", name="All generations").click()
    expect(ordinary).to_be_visible()
    expect(page.get_by_role("gridcell", name=PROMPTS[0], exact=True)).to_have_count(3)
