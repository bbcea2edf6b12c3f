"""Rewrite docs/screenshot*.png (workspace on a desktop and a phone, an experiment) from the page.

Run: `.venv/bin/python scripts/screenshots.py [--out docs]`

Starts the whole app in this process on a free loopback port (tests/app_server.py's
`running_app`: offline simulator, a fresh temporary data folder, SIMULATOR_TIME_SCALE 0.05),
opens it in headless Chromium (Debian's /usr/bin/chromium, through Playwright), types a prompt,
generates two Nano Banana Pro variants and waits until both are done, then saves the viewport:
1440x900 on a desktop (the page from its top) and 390x844 on a phone (`is_mobile`, touch,
scrolled to the feed of cards); docs/screenshot-experiment.png is the Experiment tab at
1440x900 after a 3 prompts x 3 models grid has filled. Like the browser test, the page may
only reach the app: any other request is aborted, and the script fails if there was one.
Gradio is kept offline with the tests' settings.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]

# Gradio must not phone home: the same settings as tests/conftest.py, set before it is imported.
os.environ.update(
    GRADIO_ANALYTICS_ENABLED="False",
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_HUB_OFFLINE="1",
    NO_PROXY="localhost,127.0.0.1",
    no_proxy="localhost,127.0.0.1",
    GRADIO_TEMP_DIR=tempfile.mkdtemp(prefix="image-studio-screenshots-"),
)
for _name in ("DEFAPI_API_KEY", "APIXO_API_KEY", "PUBLIC_URL", "SPACE_HOST", "SPACE_ID"):
    os.environ.pop(_name, None)  # the offline preview, never a real service or address

sys.path.insert(0, str(PROJECT_DIR / "tests"))  # app_server, the tests' way to run the app
sys.path.insert(0, str(PROJECT_DIR))

from app_server import running_app  # noqa: E402 (after the environment and sys.path)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 60_000
PROMPT = "a lighthouse on a rocky cliff at dusk, warm light in the windows, watercolour"
VARIANTS = 2
# A 1K task lasts 20-30 s x this: about a second, so the status reads "done in 1 s", not 0 s.
TIME_SCALE = "0.05"


EXPERIMENT_PROMPTS = (
    "a lighthouse on a rocky cliff at dusk, watercolour",
    "a paper boat on a rainy street, macro photo",
    "a fox in a snowy forest, flat vector illustration",
)
EXPERIMENT_MODELS = ("GemPix2 (Nano Banana)", "Gemini 2.5 Flash Image", "Nano Banana Pro")


@dataclass(frozen=True)
class Shot:
    file_name: str
    width: int
    height: int
    mobile: bool
    experiment: bool = False  # the Experiment tab's grid instead of the workspace


SHOTS = (
    Shot("screenshot.png", 1440, 900, mobile=False),
    Shot("screenshot-phone.png", 390, 844, mobile=True),
    Shot("screenshot-experiment.png", 1440, 900, mobile=False, experiment=True),
)


@contextmanager
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def take(browser, url: str, shot: Shot, out_dir: Path) -> Path:
    """Open the page at `shot`'s size, generate, and save the viewport as `shot.file_name`."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(
        viewport={"width": shot.width, "height": shot.height},
        device_scale_factor=1,
        is_mobile=shot.mobile,
        has_touch=shot.mobile,
    )
    outside: list[str] = []

    def loopback_only(route) -> None:
        if route.request.url.startswith(url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        context.route("**/*", loopback_only)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        if shot.experiment:
            fill_experiment(page)
            return save(page, out_dir / shot.file_name)
        expect(page.locator("#model input[role=combobox]")).to_have_value("Nano Banana Pro")
        page.locator("#prompt textarea").fill(PROMPT)
        variants = page.locator("#variants input[type=number]")
        variants.fill(str(VARIANTS))
        variants.press("Enter")
        page.get_by_role("button", name="Generate", exact=True).click()
        card = page.locator(".feed-card").first
        expect(card.get_by_text(re.compile(r"^Done in"))).to_have_count(VARIANTS)
        expect(card.locator("img")).to_have_count(VARIANTS)
        for image in card.locator("img").all():  # decoded, not half-drawn
            image.evaluate("img => img.decode()")
        # A desktop shows the page from its top (form and feed side by side); a phone shows
        # the finished card (the feed is below the form there).
        if shot.mobile:
            card.evaluate("el => el.scrollIntoView({block: 'start'})")
        else:
            page.evaluate("window.scrollTo(0, 0)")
        path = save(page, out_dir / shot.file_name)
        if os.environ.get("SCREENSHOT_TOP"):  # also the first screen, to check the layout
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            page.screenshot(path=str(out_dir / f"top-{shot.file_name}"))
    finally:
        context.close()
    if outside:
        raise RuntimeError(f"the page requested outside hosts: {outside}")
    return path


def fill_experiment(page) -> None:
    """Plan and run 3 prompts x 3 models on the Experiment tab, until all 9 cells are done."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Experiment").click()
    page.get_by_role("textbox", name="Prompts, one per line").fill("\n".join(EXPERIMENT_PROMPTS))
    for label in EXPERIMENT_MODELS:
        page.get_by_role("checkbox", name=label, exact=True).check()
    page.get_by_role("button", name="Plan", exact=True).click()
    run = page.get_by_role("button", name="Run", exact=True)
    expect(run).to_be_enabled()
    run.click()
    grid = page.get_by_role("table", name="Experiment grid")
    expect(grid.get_by_text(re.compile(r"^done in"))).to_have_count(9)
    for image in grid.get_by_role("img").all():
        image.evaluate("img => img.decode()")
    page.evaluate("window.scrollTo(0, 0)")


def save(page, path: Path) -> Path:
    """The viewport as `path`, once hover and transitions are out of the picture."""
    page.mouse.move(0, 0)  # no hover highlight in the picture
    page.wait_for_timeout(500)  # let Gradio's transitions settle
    page.screenshot(path=str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=PROJECT_DIR / "docs", help="folder for the PNGs (docs/)"
    )
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        parser.error(f"{CHROMIUM} is missing (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        for shot in SHOTS:  # a fresh app each, so each picture shows only its own generation
            with running_app(env={"SIMULATOR_TIME_SCALE": TIME_SCALE}) as server:
                path = take(browser, server.url, shot, args.out)
            print(f"{path} ({shot.width}x{shot.height}{', phone' if shot.mobile else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
