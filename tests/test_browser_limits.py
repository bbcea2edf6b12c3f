"""The limits on the owner's keys, on the real page in headless Chromium (see test_browser.py).

The owner's keys point at a simulator inside the app (tests/keyed_service.py). The page says
what is left beside Generate, says why a generation is refused, shows a card's place in line
and the credits a task is estimated to cost,
and in the password mode asks for a login first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import test_browser
from keyed_service import KeyedApp, owner_submits, running_keyed_app
from test_browser import (
    cards,
    generate,
    generate_button,
    open_page,
    prompt_box,
    wait_done,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
browser = test_browser.browser  # the module's own headless Chromium (a module-scoped fixture)


def keyed_fixture(env: dict[str, str]):  # type: ignore[no-untyped-def]
    @pytest.fixture(scope="module")
    def _keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedApp]:
        with running_keyed_app({"MULTI_USER": "1", **env}, tmp_path_factory.mktemp("k")) as app:
            yield app

    return _keyed


quota = keyed_fixture({"VISITOR_QUOTA": "2/day", "PRICE_TABLE": "nano-banana-pro=0.12"})
one_at_a_time = keyed_fixture({"MAX_RUNNING": "1"})
keys_only = keyed_fixture({"VISITOR_KEYS_ONLY": "1"})
password = keyed_fixture({"APP_PASSWORD": "team-secret"})


def test_the_page_shows_what_is_left_and_why_a_generation_is_refused(browser, quota) -> None:
    from playwright.sync_api import expect

    with open_page(browser, quota.server) as page:
        left = page.locator("#left")
        expect(left).to_have_text("2 of 2 today on the studio's key")
        first = generate(page, "a first kite on the studio's key")
        wait_done(first)
        expect(left).to_have_text("1 of 2 today on the studio's key")
        # Nano Banana Pro reports no credits: the owner's price table gives an estimate.
        expect(first).to_contain_text("0.12 credits (estimate)")
        wait_done(generate(page, "a second kite on the studio's key"))
        expect(left).to_contain_text("0 of 2 today on the studio's key: more from 00:00 UTC")

        prompt_box(page).fill("a third kite, one too many")
        generate_button(page).click()
        expect(
            page.get_by_text(re.compile("You have used your 2 tasks today")).first
        ).to_be_visible()
        expect(cards(page)).to_have_count(2)  # the refused one has no card: nothing was made
        assert owner_submits(quota.sim) == 2


def test_a_card_shows_its_place_in_line(browser, one_at_a_time) -> None:
    from playwright.sync_api import expect

    with open_page(browser, one_at_a_time.server) as page:
        first = generate(page, "[sim:never_finish] a kite that keeps the slot")
        expect(first.get_by_text(re.compile(r"^(Queued|Running)"))).to_be_visible()
        second = generate(page, "a kite that waits its turn")
        expect(second.get_by_role("status")).to_contain_text(
            "Waiting for a free slot: 1st in line (the studio's key runs 1 at once)"
        )
        expect(second.get_by_text(re.compile(r"^Waiting to send"))).to_be_visible()
        expect(page.locator("#running")).to_have_text("1 running · 1 waiting")
        page.get_by_role("button", name="Stop", exact=True).click()
        expect(first.get_by_text(re.compile(r"^Stopped"))).to_be_visible()
        assert owner_submits(one_at_a_time.sim) == 1


def test_visitor_keys_only_through_the_page(browser, keys_only) -> None:
    from playwright.sync_api import expect

    with open_page(browser, keys_only.server) as page:
        expect(page.locator("#left")).to_contain_text("The studio's key is not used for visitors")
        expect(page.locator("#offline-notice")).to_contain_text("Offline preview for GemPix2")
        slot = generate(page, "a preview kite, no key of my own")
        wait_done(slot)
        slot.get_by_text("Details").click()
        expect(slot.get_by_text("Offline preview: a placeholder image")).to_be_visible()
        assert owner_submits(keys_only.sim) == 0


def test_the_password_mode_asks_for_a_login_first(browser, password) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = context.new_page()
        page.goto(password.url)
        expect(page.get_by_text("This studio is private: log in to use it.")).to_be_visible()
        expect(page.get_by_role("button", name="Generate", exact=True)).to_have_count(0)
        page.get_by_label("username").fill("ada")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_text(re.compile("incorrect", re.IGNORECASE))).to_be_visible()
        page.get_by_label("username").fill("ada")  # the login page starts again, empty
        page.get_by_label("password").fill("team-secret")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_role("button", name="Generate", exact=True)).to_be_visible()
    finally:
        context.close()
