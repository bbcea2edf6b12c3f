"""The real page in headless Chromium (Debian's /usr/bin/chromium), on the offline simulator.

The browser may only reach the app on loopback: any other request is aborted and recorded.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_server import RunningApp, app_server_fixture
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 30_000

server = app_server_fixture()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; CI must run the browser tests")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


# Slow enough (a 1K task takes 4-6 s) to reload the page while a task runs.
slow_server = app_server_fixture({"SIMULATOR_TIME_SCALE": "0.2"})


@pytest.fixture
def page(browser, server: RunningApp) -> Iterator[object]:
    yield from open_page(browser, server)


@pytest.fixture
def slow_page(browser, slow_server: RunningApp) -> Iterator[object]:
    yield from open_page(browser, slow_server)


def open_page(browser, server: RunningApp) -> Iterator[object]:
    """A fresh page on the app; fails the test if the page tried to reach another host."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def loopback_only(route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", loopback_only)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url)
    expect(page.locator("#model input[role=combobox]")).to_have_value("Nano Banana Pro")
    yield page
    context.close()
    assert outside == [], f"the page requested outside hosts: {outside}"


@pytest.fixture(scope="module")
def reference_pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("browser-refs")
    paths = []
    for i, colour in enumerate([(220, 80, 60), (60, 120, 220)]):
        path = folder / f"swatch-{i}.png"
        Image.new("RGB", (96, 96), colour).save(path)
        paths.append(path)
    return paths


def status_box(page):
    return page.locator("#status textarea")


def result_images(page):
    return page.locator("#results img")


def choose_model(page, label: str) -> None:
    page.locator("#model input[role=combobox]").click()
    page.get_by_role("option", name=label, exact=True).click()


def set_variants(page, count: int) -> None:
    box = page.locator("#variants input[type=number]")
    box.fill(str(count))
    box.press("Enter")


def test_gempix2_with_references_shows_results(
    page, reference_pngs: list[Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    assert page.locator("#aspect-ratio").is_visible()  # Nano Banana Pro takes an aspect ratio
    choose_model(page, "GemPix2 (Nano Banana)")
    expect(page.locator("#model input[role=combobox]")).to_have_value("GemPix2 (Nano Banana)")
    expect(page.locator("#aspect-ratio")).to_be_hidden()
    expect(page.locator("#references")).to_contain_text("up to 4")

    page.locator("#references input[type=file]").set_input_files([str(p) for p in reference_pngs])
    for path in reference_pngs:  # listed as "swatch-0 .png": name and extension apart
        expect(page.locator("#references")).to_contain_text(path.stem)
    page.locator("#prompt textarea").fill("a watercolour blend of the two swatches")
    set_variants(page, 2)
    page.locator("#generate").click()

    expect(result_images(page)).to_have_count(2)
    expect(status_box(page)).to_have_value(re.compile(r"#2 GemPix2.*: done"), timeout=TIMEOUT_MS)
    status = status_box(page).input_value()
    assert "Offline preview" in status
    assert status.count(": done") == 2, status

    # The test's own file: docs/screenshot*.png come from scripts/screenshots.py.
    screenshot = tmp_path / "screenshot.png"
    page.screenshot(path=str(screenshot), full_page=True)
    with Image.open(screenshot) as shot:
        assert shot.width >= 1280 and shot.height >= 900


def test_ctrl_enter_in_prompt_generates(page) -> None:
    from playwright.sync_api import expect

    # The shortcut is attached by a script Gradio runs after mounting the page; on a busy
    # machine a key pressed before that would reach a plain textarea.
    expect(page.locator("html[data-shortcuts=on]")).to_have_count(1)
    prompt = page.locator("#prompt textarea")
    prompt.fill("a paper boat on a puddle")
    prompt.press("Control+Enter")

    expect(result_images(page)).to_have_count(1)
    expect(status_box(page)).to_have_value(re.compile(r"#1 Nano Banana Pro: done"))
    assert prompt.input_value() == "a paper boat on a puddle"  # no newline typed


PASTE_JS = """
([b64, target]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const clipboard = new DataTransfer();
  clipboard.items.add(new File([bytes], "pasted.png", { type: "image/png" }));
  if (target !== "body") clipboard.setData("text/plain", "a line of text");
  const event = new ClipboardEvent("paste", { clipboardData: clipboard, bubbles: true,
                                              cancelable: true });
  return document.querySelector(target).dispatchEvent(event);  // false: the page took it
}
"""


def test_an_image_pasted_on_the_page_becomes_a_reference(page, reference_pngs) -> None:
    from playwright.sync_api import expect

    expect(page.locator("html[data-shortcuts=on]")).to_have_count(1)
    png = base64.b64encode(reference_pngs[0].read_bytes()).decode("ascii")

    # Text and an image pasted into the prompt: a text paste, left to the browser.
    assert page.evaluate(PASTE_JS, [png, "#prompt textarea"]) is True
    # An image pasted on the page: taken, uploaded and checked like a picked file.
    assert page.evaluate(PASTE_JS, [png, "body"]) is False

    expect(page.locator("#references")).to_contain_text("pasted")
    expect(page.locator("#reference-preview img")).to_have_count(1)


def test_stop_ends_a_task_that_never_finishes(page) -> None:
    from playwright.sync_api import expect

    page.locator("#prompt textarea").fill("a clock without hands [sim:never_finish]")
    page.locator("#generate").click()
    # Submitted and being watched: the status names the task and how long it has waited.
    expect(status_box(page)).to_have_value(re.compile(r"#1 Nano Banana Pro: .*queued.*· task \S+"))
    running = status_box(page).input_value()
    assert "done" not in running and "stopped" not in running
    task_id = re.search(r"· task (\S+)", running).group(1)

    page.locator("#stop").click()
    # One expectation for both, so a failure shows the status box as it was.
    expect(status_box(page)).to_have_value(
        re.compile(rf"#1 Nano Banana Pro: stopped.*· task {re.escape(task_id)}")
    )
    assert result_images(page).count() == 0


def test_a_reload_mid_task_reattaches_and_the_image_arrives(slow_page) -> None:
    from playwright.sync_api import expect

    page = slow_page
    page.locator("#prompt textarea").fill("a lantern on a pier at night")
    page.locator("#generate").click()
    expect(status_box(page)).to_have_value(re.compile(r"#1 Nano Banana Pro: .*· task \S+"))
    task_id = re.search(r"· task (\S+)", status_box(page).input_value()).group(1)
    assert result_images(page).count() == 0

    page.reload()  # the old page's stream is gone; the job goes on in the server
    expect(status_box(page)).to_have_value(re.compile(rf"done in .*· task {re.escape(task_id)}"))
    expect(result_images(page)).to_have_count(1)
