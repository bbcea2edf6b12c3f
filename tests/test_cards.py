"""A card's words and bars, from progress values alone (no page)."""

from __future__ import annotations

from pathlib import Path

from components.cards import Card, card_html, fraction_done, settings_words, state_line
from providers.capabilities import ImageSettings
from providers.services import CATALOG
from studio.lifecycle import JobState
from studio.progress import Progress

NBP = CATALOG.model("nano-banana-pro")
GEMPIX2 = CATALOG.model("google/gempix2")


def task(state: JobState, **changes: object) -> Progress:
    base = Progress(
        job_id="j1",
        variant=1,
        model_label="Nano Banana Pro",
        state=state,
        created_at=100.0,
        expected_seconds=(20.0, 30.0),
    )
    return base.evolve(**changes)


def test_settings_read_as_words_with_the_pixel_size() -> None:
    words = settings_words(NBP, ImageSettings("16:9", "2K", "jpeg", "value"))
    assert words == "16:9 · 2K (2752×1536 px) · JPEG · value routing"
    assert settings_words(GEMPIX2, ImageSettings("16:9", "2K")) == ""  # takes none


def test_states_read_in_plain_words_with_time_left_and_credits() -> None:
    assert state_line(task(JobState.QUEUED, submitted_at=100.0), now=105.0) == (
        "Queued · 5 s · about 15 s–25 s left"
    )
    assert state_line(task(JobState.RUNNING, submitted_at=100.0), now=140.0) == (
        "Running · 40 s · taking longer than usual"
    )
    done = task(
        JobState.DONE,
        submitted_at=100.0,
        finished_at=112.0,
        credits=0.5,
        files=(Path("a.png"), Path("b.png")),
    )
    assert state_line(done, now=200.0) == "Done in 12 s · 2 images · 0.5 credits"


def test_the_bar_is_indeterminate_until_running_and_never_full_before_done() -> None:
    assert fraction_done(task(JobState.QUEUED, submitted_at=100.0), now=110.0) is None
    assert fraction_done(task(JobState.RUNNING, submitted_at=100.0), now=112.5) == 0.5
    assert fraction_done(task(JobState.RUNNING, submitted_at=100.0), now=999.0) == 0.95
    assert fraction_done(task(JobState.DONE), now=0.0) == 1.0


def test_a_card_escapes_what_users_and_services_wrote() -> None:
    hostile = task(
        JobState.FAILED,
        message="<img src=x onerror=alert(1)>",
        provider_state="<b>bad</b>",
        task_id='t"><script>',
    )
    card = Card("g1", "<script>alert(2)</script>", NBP, ImageSettings("1:1"), (hostile,))
    page = card_html(card, now=0.0)
    assert "<script>" not in page and "<img src=x" not in page and "<b>bad" not in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert 'role="alert"' in page and "&lt;img src=x onerror=alert(1)&gt;" in page
