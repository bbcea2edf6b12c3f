"""The real page in headless Chromium (Debian's /usr/bin/chromium), on the offline simulator.

The browser may only reach the app on loopback: any other request is aborted and recorded.
"""

from __future__ import annotations

import base64
import contextlib
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

# Each browser context is a visitor of its own (MULTI_USER), so each test sees only its own
# cards; two pages of one context are two tabs of one visitor.
server = app_server_fixture({"MULTI_USER": "1"})


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


# Slow enough (a 1K task takes 4-6 s, a 4K one 9-12 s) to reload the page while a task runs.
slow_server = app_server_fixture({"SIMULATOR_TIME_SCALE": "0.2", "MULTI_USER": "1"})


@pytest.fixture
def page(browser, server: RunningApp) -> Iterator[object]:
    with open_page(browser, server) as opened:
        yield opened


@pytest.fixture
def slow_page(browser, slow_server: RunningApp) -> Iterator[object]:
    with open_page(browser, slow_server) as opened:
        yield opened


@contextlib.contextmanager
def open_page(
    browser, server: RunningApp, viewport: tuple[int, int] = (1440, 900), **context_options
) -> Iterator[object]:
    """A fresh page on the app; fails the test if the page tried to reach another host."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    width, height = viewport
    context = browser.new_context(viewport={"width": width, "height": height}, **context_options)
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
    ready(page)
    yield page
    context.close()
    assert outside == [], f"the page requested outside hosts: {outside}"


def ready(page) -> None:
    """The page is mounted, its scripts attached and its feed subscribed."""
    from playwright.sync_api import expect

    expect(page.locator("html[data-shortcuts=on]")).to_have_count(1)
    expect(model_box(page)).to_have_value(re.compile(".+"))
    expect(page.get_by_text("Your generations appear here").or_(cards(page).first)).to_be_visible()


@pytest.fixture(scope="module")
def reference_pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("browser-refs")
    paths = []
    for i, colour in enumerate([(220, 80, 60), (60, 120, 220), (80, 200, 90), (200, 200, 40)]):
        path = folder / f"swatch-{i}.png"
        Image.new("RGB", (96, 96), colour).save(path)
        paths.append(path)
    return paths


# ---- finding things the way a person does ---------------------------------------------------


def model_box(page):
    return (
        page.get_by_role("listbox", name="Model")
        .or_(page.get_by_role("combobox", name="Model"))
        .first
    )


def prompt_box(page):
    # "Prompt", or "Prompt" followed by the validator's sentence while it shows one.
    return page.get_by_role("textbox", name=re.compile(r"^Prompt"))


def generate_button(page):
    return page.get_by_role("button", name="Generate", exact=True)


def cards(page):
    return page.get_by_role("article")


def card(page, prompt: str):
    """The feed's card for `prompt` with its results and buttons (the card's whole slot)."""
    article = page.get_by_role("article", name=re.compile(re.escape(prompt[:60])))
    # Gradio marks both a group's frame and its body with the class: the body is the last.
    return page.locator(".feed-card").filter(has=article).last


def card_images(slot):
    return slot.locator("img")  # the results (an icon is no <img>)


def references(page):
    return page.locator("#references")


def choose_model(page, label: str) -> None:
    model_box(page).click()
    page.get_by_role("option", name=label, exact=True).click()


def set_variants(page, count: int) -> None:
    box = (
        page.get_by_role("spinbutton", name="Variants")
        .or_(page.get_by_label("number input for Variants"))
        .first
    )
    box.fill(str(count))
    box.press("Enter")


def generate(page, prompt: str, variants: int = 1):
    """Type `prompt`, press Generate, and return its card (once it shows)."""
    from playwright.sync_api import expect

    prompt_box(page).fill(prompt)
    if variants != 1:
        set_variants(page, variants)
    generate_button(page).click()
    slot = card(page, prompt)
    expect(slot).to_be_visible()
    return slot


def wait_done(slot, images: int = 1) -> None:
    from playwright.sync_api import expect

    expect(slot.get_by_text(re.compile(r"^Done in"))).to_have_count(images)
    expect(card_images(slot)).to_have_count(images)


# ---- generating -------------------------------------------------------------------------------


def test_gempix2_with_references_shows_a_card_with_both_results(
    page, reference_pngs: list[Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_text("Aspect ratio", exact=True)).to_be_visible()  # Nano Banana Pro
    choose_model(page, "GemPix2 (Nano Banana)")
    expect(page.get_by_text("Aspect ratio", exact=True)).to_be_hidden()
    expect(references(page)).to_contain_text("up to 4")
    upload = references(page).locator("input[type=file]")
    upload.set_input_files([str(p) for p in reference_pngs[:2]])
    for path in reference_pngs[:2]:  # listed as "swatch-0 .png": name and extension apart
        expect(references(page)).to_contain_text(path.stem)

    slot = generate(page, "a watercolour blend of the two swatches", variants=2)
    expect(slot).to_contain_text("GemPix2 (Nano Banana) · 2 variants · 2 references")
    wait_done(slot, images=2)
    expect(slot.get_by_role("progressbar")).to_have_count(2)
    expect(page.get_by_text("Started 2 tasks.")).to_be_visible()

    screenshot = tmp_path / "screenshot.png"  # the test's own; docs/ come from scripts/
    page.screenshot(path=str(screenshot), full_page=True)
    with Image.open(screenshot) as shot:
        assert shot.width >= 1440 and shot.height >= 900


def test_ctrl_enter_in_prompt_generates(page) -> None:
    prompt = prompt_box(page)
    prompt.fill("a paper boat on a puddle")
    prompt.press("Control+Enter")
    wait_done(card(page, "a paper boat on a puddle"))
    assert prompt.input_value() == "a paper boat on a puddle"  # no newline typed


def test_progress_reads_in_plain_words_with_a_bar_and_the_task_id(slow_page) -> None:
    from playwright.sync_api import expect

    page = slow_page
    slot = generate(page, "a lighthouse in fog, slow")
    expect(slot.get_by_text(re.compile(r"^(Queued|Running)"))).to_be_visible()
    expect(slot.get_by_role("progressbar", name="Task progress")).to_be_visible()
    slot.get_by_text("Details").click()
    expect(slot.get_by_role("button", name=re.compile(r"^Copy task id task_"))).to_be_visible()
    expect(slot.get_by_text("Offline preview: a placeholder image")).to_be_visible()
    wait_done(slot)


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

    png = base64.b64encode(reference_pngs[0].read_bytes()).decode("ascii")
    # Text and an image pasted into the prompt: a text paste, left to the browser.
    assert page.evaluate(PASTE_JS, [png, "#prompt textarea"]) is True
    # An image pasted on the page: taken, uploaded and checked like a picked file.
    assert page.evaluate(PASTE_JS, [png, "body"]) is False
    expect(references(page)).to_contain_text("pasted")
    expect(page.locator("#reference-preview").get_by_role("img")).to_have_count(1)


def test_stop_ends_a_task_that_never_finishes(page) -> None:
    from playwright.sync_api import expect

    slot = generate(page, "a clock without hands [sim:never_finish]")
    expect(slot.get_by_text(re.compile(r"^(Queued|Running)"))).to_be_visible()
    expect(page.get_by_text("1 running")).to_be_visible()
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(slot.get_by_text(re.compile(r"^Stopped"))).to_be_visible()
    expect(slot.get_by_role("alert")).to_contain_text("the task may still finish and be billed")
    assert card_images(slot).count() == 0
    expect(page.get_by_text("1 running")).to_be_hidden()


# ---- one feed: nothing hides or overwrites another job (problem 1) ---------------------------


def test_a_reloaded_page_keeps_the_old_job_and_shows_the_new_one_beside_it(slow_page) -> None:
    from playwright.sync_api import expect

    page = slow_page
    prompt_box(page).fill("a 4K harbour at dawn, very slow")
    page.get_by_role("radio", name="4K").check()
    generate_button(page).click()
    old = card(page, "a 4K harbour at dawn")
    expect(old.get_by_text(re.compile(r"^(Queued|Running)"))).to_be_visible()

    page.reload()  # the old page's subscription is gone; the job goes on in the server
    ready(page)
    expect(old.get_by_text(re.compile(r"^(Queued|Running)"))).to_be_visible()
    choose_model(page, "Gemini 2.5 Flash Image")
    new = generate(page, "a quick gemini sketch of a kite")
    wait_done(new)
    # Both cards, the new one on top, the old one still following its own task.
    expect(cards(page).first).to_contain_text("a quick gemini sketch of a kite")
    expect(cards(page).nth(1)).to_contain_text("a 4K harbour at dawn")
    wait_done(old)
    expect(new.get_by_text(re.compile(r"^Done in"))).to_have_count(1)


def test_a_second_tab_follows_the_same_jobs(browser, server: RunningApp) -> None:
    from playwright.sync_api import expect

    with open_page(browser, server) as first:
        second = first.context.new_page()
        second.goto(server.url)
        ready(second)
        slot = generate(first, "a fox seen from two tabs")
        wait_done(card(second, "a fox seen from two tabs"))
        wait_done(slot)
        expect(cards(second)).to_have_count(1)


# ---- recall and re-run (problems 2 and 3) -----------------------------------------------------


def open_history_and_select(page, prompt: str) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="History").click()
    row = page.get_by_role("gridcell", name=prompt, exact=True).first
    expect(row).to_be_visible()
    row.click()
    expect(page.locator("#history-details")).to_contain_text(prompt)


def no_error_shown(page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_text(re.compile("not in the list of choices"))).to_have_count(0)
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)


def test_recall_of_a_gempix2_job_with_nano_banana_pro_selected_raises_nothing(page) -> None:
    from playwright.sync_api import expect

    choose_model(page, "GemPix2 (Nano Banana)")
    wait_done(generate(page, "a gempix2 owl to recall"))
    choose_model(page, "Nano Banana Pro")
    expect(page.get_by_text("Aspect ratio", exact=True)).to_be_visible()

    open_history_and_select(page, "a gempix2 owl to recall")
    page.get_by_role("button", name="Recall settings").click()
    expect(model_box(page)).to_have_value("GemPix2 (Nano Banana)")
    expect(prompt_box(page)).to_have_value("a gempix2 owl to recall")
    expect(page.get_by_text("Aspect ratio", exact=True)).to_be_hidden()
    for label in ("Nano Banana Pro", "Gemini 2.5 Flash Image", "Nano Banana Pro"):
        choose_model(page, label)  # every later switch works too
        expect(model_box(page)).to_have_value(label)
    page.wait_for_timeout(500)
    no_error_shown(page)


def test_rerun_is_exactly_the_job_and_recall_gives_back_references_and_variants(
    page, reference_pngs: list[Path]
) -> None:
    from playwright.sync_api import expect

    files = [str(p) for p in reference_pngs[:2]]
    references(page).locator("input[type=file]").set_input_files(files)
    expect(references(page)).to_contain_text("swatch-1")
    first = generate(page, "two swatches, sixteen by nine", variants=2)
    wait_done(first, images=2)

    # A different form now: no references, one variant.
    references(page).get_by_role("button", name=re.compile("Clear|Remove")).first.click()
    set_variants(page, 1)
    first.get_by_role("button", name="Re-run").click()
    expect(page.get_by_text("Re-running: started 2 tasks.")).to_be_visible()
    expect(cards(page)).to_have_count(2)
    again = cards(page).first
    expect(again).to_contain_text("two swatches, sixteen by nine")
    expect(again).to_contain_text("2 variants · 2 references")

    open_history_and_select(page, "two swatches, sixteen by nine")
    page.get_by_role("button", name="Recall settings").click()
    expect(prompt_box(page)).to_have_value("two swatches, sixteen by nine")
    expect(references(page)).to_contain_text(".png")
    expect(page.locator("#reference-preview").locator("img")).to_have_count(2)
    expect(
        page.get_by_label("number input for Variants")
        .or_(page.get_by_role("spinbutton", name="Variants"))
        .first
    ).to_have_value("2")


# ---- actions on each result ----------------------------------------------------------------


def test_use_as_reference_edit_this_and_compare_on_a_card(page) -> None:
    from playwright.sync_api import expect

    slot = generate(page, "a red kite over dunes")
    wait_done(slot)
    slot.get_by_role("button", name="Use as reference").click()
    expect(references(page)).to_contain_text("red-kite")  # the result's own file name
    expect(page.locator("#reference-preview").locator("img")).to_have_count(1)

    # Edit this: the result becomes the only reference and the prompt waits for the instruction.
    slot.get_by_role("button", name="Edit this").click()
    expect(page.locator("#reference-preview").locator("img")).to_have_count(1)
    expect(prompt_box(page)).to_be_focused()
    page.keyboard.type("the same kite, now at night")
    expect(prompt_box(page)).to_have_value("the same kite, now at night")
    generate_button(page).click()
    edit = card(page, "the same kite, now at night")
    expect(edit).to_contain_text("1 reference · edit of an earlier result")
    wait_done(edit)

    # Compare: the edit beside the picture it was made from, on a before/after slider.
    edit.get_by_role("button", name="Compare").click()
    compare = page.locator("#compare").last
    expect(compare.locator("img")).to_have_count(2)
    expect(compare.get_by_text("Compare (drag the handle)")).to_be_visible()
    page.get_by_role("button", name="Close compare").click()
    expect(page.get_by_role("button", name="Close compare")).to_be_hidden()


def test_a_result_opens_full_size_and_downloads(page) -> None:
    from playwright.sync_api import expect

    slot = generate(page, "a square tile to download")
    wait_done(slot)
    card_images(slot).first.click()  # the preview: the image at full size
    with page.expect_download() as download:
        slot.get_by_role("button", name="Download").first.click()
    assert download.value.suggested_filename.endswith(".png")
    expect(slot.locator("img").first).to_be_visible()


def test_a_single_square_result_is_shown_whole(page) -> None:
    slot = generate(page, "one square result, never cropped")
    wait_done(slot)
    image = card_images(slot).first
    image.evaluate("img => img.decode()")
    box = image.evaluate(
        """img => { const r = img.getBoundingClientRect();
                    const c = img.closest('.card-results').getBoundingClientRect();
                    const fit = getComputedStyle(img).objectFit;
                    return [r.top, r.bottom, c.top, c.bottom, fit, img.naturalWidth]; }"""
    )
    top, bottom, frame_top, frame_bottom, fit, natural = box
    assert natural == 1024
    assert fit == "contain"
    assert frame_top <= top and bottom <= frame_bottom + 1  # inside its frame, not cut


# ---- the form: layout, refusals, memory (problems 4 and 5) ----------------------------------


def in_view(locator, height: int) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def test_at_1440_by_900_the_form_fits_and_feedback_is_where_the_eye_is(page) -> None:
    from playwright.sync_api import expect

    for part in (
        prompt_box(page),
        model_box(page),
        page.get_by_text("Aspect ratio", exact=True),
        page.get_by_text("Resolution", exact=True),
        generate_button(page),
    ):
        assert in_view(part, 900), part
    expect(page.get_by_text("Output: 1024 × 1024 px")).to_be_visible()
    page.get_by_role("radio", name="2K").check()
    expect(page.get_by_text("Output: 2048 × 2048 px")).to_be_visible()

    generate_button(page).click()  # no prompt
    message = page.get_by_text("Write a prompt first.")
    expect(message.first).to_be_visible()
    assert in_view(message.first, 900)

    slot = generate(page, "a card that appears in view")
    assert in_view(slot, 900)
    # Generate stays usable while a job runs: a second press adds a second card.
    generate_button(page).click()
    expect(cards(page)).to_have_count(2)


def test_on_a_phone_prompt_and_generate_are_on_the_first_screen(browser, server) -> None:
    from playwright.sync_api import expect

    with open_page(browser, server, (390, 844), is_mobile=True, has_touch=True) as phone:
        assert in_view(prompt_box(phone), 844)
        assert in_view(generate_button(phone), 844)
        slot = generate(phone, "a phone-sized snail")
        wait_done(slot)
        expect(slot).to_be_in_viewport()  # brought into view after Generate


def test_the_form_survives_a_reload(page) -> None:
    from playwright.sync_api import expect

    choose_model(page, "Nano Banana Pro")
    prompt_box(page).fill("a prompt worth keeping")
    page.get_by_role("radio", name="4K").check()
    set_variants(page, 3)
    page.wait_for_timeout(300)
    page.reload()
    ready(page)
    expect(prompt_box(page)).to_have_value("a prompt worth keeping")
    expect(page.get_by_role("radio", name="4K")).to_be_checked()
    expect(page.get_by_text("Output: 4096 × 4096 px")).to_be_visible()


def test_a_fake_png_is_refused_at_upload_with_its_name(page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    fake = tmp_path / "holiday.png"
    fake.write_bytes(b"%PDF-1.7 this is a document")
    references(page).locator("input[type=file]").set_input_files([str(fake)])
    expect(page.get_by_text(re.compile(r"holiday\.png is not an image"))).to_be_visible()
    expect(references(page)).not_to_contain_text("holiday")


def test_the_offline_banner_follows_the_keys_a_visitor_enters(page) -> None:
    from playwright.sync_api import expect

    banner = page.locator("#offline-notice")
    expect(banner).to_contain_text("Offline preview for GemPix2 and Nano Banana Pro")
    page.get_by_text("Service keys").click()
    page.get_by_label(re.compile(r"apixo.* key")).fill("my-own-apixo-key")
    expect(banner).to_contain_text("Offline preview for GemPix2:")
    expect(banner).not_to_contain_text("Nano Banana Pro")


def test_references_beyond_a_smaller_cap_are_set_aside_and_come_back(
    page, reference_pngs: list[Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    extra = []
    for i in range(2):
        path = tmp_path / f"more-{i}.png"
        Image.new("RGB", (80, 80), (30 * i, 90, 160)).save(path)
        extra.append(str(path))
    files = [str(p) for p in reference_pngs] + extra  # six
    references(page).locator("input[type=file]").set_input_files(files)
    preview = page.locator("#reference-preview").locator("img")
    expect(preview).to_have_count(6)
    choose_model(page, "GemPix2 (Nano Banana)")
    expect(preview).to_have_count(4)
    expect(page.get_by_text(re.compile(r"^2 references set aside"))).to_be_visible()
    choose_model(page, "Nano Banana Pro")
    expect(preview).to_have_count(6)
    expect(page.get_by_text(re.compile(r"set aside"))).to_have_count(0)


# ---- History: edit chains, stars, deletion ----------------------------------------------------


def edit_with(page, slot, instruction: str):
    from playwright.sync_api import expect

    slot.get_by_role("button", name="Edit this").click()
    expect(prompt_box(page)).to_be_focused()
    page.keyboard.type(instruction)
    generate_button(page).click()
    edit = card(page, instruction)
    wait_done(edit)
    return edit


def test_an_edit_chain_of_three_steps_shows_in_history_and_can_be_walked(page) -> None:
    from playwright.sync_api import expect

    first = generate(page, "step one: a paper crane")
    wait_done(first)
    second = edit_with(page, first, "step two: the crane in gold")
    edit_with(page, second, "step three: the gold crane on a red table")

    open_history_and_select(page, "step two: the crane in gold")
    details = page.locator("#history-details")
    expect(details).to_contain_text(
        "Edit chain: “step one: a paper crane” → “step two: the crane in gold”"
    )
    expect(details).to_contain_text("Edits made from this: “step three: the gold crane on a")
    page.get_by_role("button", name="Open parent").click()
    expect(details.get_by_role("blockquote")).to_have_text("step one: a paper crane")
    page.get_by_role("button", name="Open next edit").click()
    page.get_by_role("button", name="Open next edit").click()
    expect(details.get_by_role("blockquote")).to_have_text(
        "step three: the gold crane on a red table"
    )
    expect(details).to_contain_text(
        "Edit chain: “step one: a paper crane” → “step two: the crane in gold” → “step three"
    )
    expect(details.get_by_role("strong").last).to_contain_text("step three")  # this one


def test_star_filter_and_delete_in_history(page) -> None:
    from playwright.sync_api import expect

    wait_done(generate(page, "a keeper to star"))
    wait_done(generate(page, "a throwaway to delete"))

    open_history_and_select(page, "a keeper to star")
    page.get_by_role("button", name="Star", exact=True).click()
    expect(page.locator("#history-details")).to_contain_text("★ Starred")
    page.get_by_label("Starred only").check()
    expect(page.get_by_role("gridcell", name="★ a keeper to star")).to_be_visible()
    expect(page.get_by_role("gridcell", name="a throwaway to delete")).to_have_count(0)
    page.get_by_label("Starred only").uncheck()

    row = page.get_by_role("gridcell", name="a throwaway to delete", exact=True)
    row.click()
    expect(page.locator("#history-details")).to_contain_text("a throwaway to delete")
    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_role("button", name="Cancel").click()  # a second thought: nothing happens
    expect(row).to_be_visible()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_text("Delete this generation and its images for good?")).to_be_visible()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.locator("#history-details")).to_contain_text("Deleted “a throwaway to delete”")
    expect(row).to_have_count(0)
    expect(page.get_by_role("gridcell", name="★ a keeper to star")).to_be_visible()
