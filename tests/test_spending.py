"""Reading the limits, the logins and the trusted proxies from the environment; who a visitor is.

Pure values: no server, no runner. The settings are read once at start-up, and anything that
cannot be read stops it with a sentence naming the variable (never a secret).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from components.cards import state_line
from studio.config import load_config
from studio.lifecycle import JobState
from studio.logins import Logins, logins_from_env
from studio.progress import Progress
from studio.running_line import LineFull, RunningLine
from studio.spending import (
    PUBLIC_DEFAULTS,
    Quota,
    parse_price_table,
    parse_quota,
    spending_rules_from_env,
)
from studio.visitors import (
    NO_PROXIES,
    SPACE_PROXIES,
    TrustedProxies,
    VisitorPolicy,
    client_address,
    parse_trusted_proxies,
)

PROJECT = Path(__file__).resolve().parent.parent
KEYS = {"APIXO_API_KEY": "apixo-owner-key"}


# ---- the limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "quota"),
    [
        ("20/day", Quota(20, "day")),
        ("5/hour", Quota(5, "hour")),
        (" 5 per hour ", Quota(5, "hour")),
        ("3/min", Quota(3, "minute")),
        ("0/day", Quota(0, "day")),
        ("none", None),
        ("Unlimited", None),
    ],
)
def test_a_quota_reads_as_tasks_per_period(text: str, quota: Quota | None) -> None:
    assert parse_quota("VISITOR_QUOTA", text) == quota


@pytest.mark.parametrize("text", ["20", "20/week", "many/day", "-1/day", "20/day/hour"])
def test_a_quota_that_cannot_be_read_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"^VISITOR_QUOTA must be .* such as 20/day or 5/hour"):
        parse_quota("VISITOR_QUOTA", text)


def test_windows_are_fixed_in_utc() -> None:
    day, hour = Quota(1, "day"), Quota(1, "hour")
    now = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    assert day.window(now) == (1_699_920_000.0, 1_700_006_400.0)
    assert hour.window(now) == (1_699_999_200.0, 1_700_002_800.0)


def test_on_a_space_with_owner_keys_unset_limits_take_conservative_defaults() -> None:
    rules = load_config({"SPACE_ID": "me/studio", **KEYS}).spending
    assert rules.visitor_quota == Quota(10, "day")
    assert rules.daily_budget == 200
    assert (rules.max_running, rules.max_running_per_visitor) == (20, 4)
    assert rules == PUBLIC_DEFAULTS
    assert "VISITOR_QUOTA" in rules.defaults_applied


def test_a_server_listening_beyond_loopback_with_keys_is_public_too() -> None:
    assert load_config({"GRADIO_SERVER_NAME": "0.0.0.0", **KEYS}).spending == PUBLIC_DEFAULTS


@pytest.mark.parametrize(
    "env",
    [
        {**KEYS},  # locally on loopback
        {"SPACE_ID": "me/studio"},  # a Space without owner keys: only the offline preview
    ],
)
def test_no_limits_locally_or_without_owner_keys(env: dict[str, str]) -> None:
    rules = load_config(env).spending
    assert not rules.counts
    assert rules.max_running is None and rules.max_running_per_visitor is None


def test_a_limit_set_or_lifted_by_the_owner_wins_over_the_default() -> None:
    env = {"SPACE_ID": "me/studio", **KEYS, "VISITOR_QUOTA": "3/hour", "MAX_RUNNING": "none"}
    rules = load_config(env).spending
    assert rules.visitor_quota == Quota(3, "hour")
    assert rules.max_running is None
    assert rules.daily_budget == 200  # still defaulted
    assert set(rules.defaults_applied) == {"DAILY_TASK_BUDGET", "MAX_RUNNING_PER_VISITOR"}


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"DAILY_TASK_BUDGET": "lots"}, "DAILY_TASK_BUDGET must be a whole number of tasks"),
        ({"MAX_RUNNING": "0"}, "MAX_RUNNING must be at least 1"),
        ({"MAX_RUNNING_PER_VISITOR": "2.5"}, "MAX_RUNNING_PER_VISITOR must be a whole number"),
        ({"VISITOR_KEYS_ONLY": "maybe"}, "VISITOR_KEYS_ONLY must be 1 (on) or 0 (off)"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8, the proxy"}, "TRUSTED_PROXIES: 'the proxy' is not"),
        ({"APP_USERS": "ada:pw1,bob"}, "APP_USERS must be name:password pairs"),
        ({"PRICE_TABLE": "nano-banana-pro=cheap"}, "PRICE_TABLE: 'nano-banana-pro=cheap'"),
        ({"PRICE_TABLE": "dall-e=1"}, "must be a model id (one of google/gempix2"),
    ],
)
def test_a_setting_that_cannot_be_read_is_a_sentence(env: dict[str, str], sentence: str) -> None:
    with pytest.raises(ValueError) as caught:
        load_config(env)
    assert str(caught.value).startswith(sentence) or sentence in str(caught.value)


def test_the_app_refuses_to_start_with_a_sentence_not_a_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), "VISITOR_QUOTA": "20 a day"}
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Image Studio cannot start: VISITOR_QUOTA must be")
    assert "Traceback" not in done.stderr


def test_the_price_table_prices_by_model_and_resolution() -> None:
    models = {"nano-banana-pro": None, "google/gempix2": None}
    table = parse_price_table("nano-banana-pro=0.12, nano-banana-pro@4K=0.24", models)
    assert table.estimate("nano-banana-pro", "1K") == 0.12
    assert table.estimate("nano-banana-pro", "4K") == 0.24
    assert table.estimate("google/gempix2") is None


def test_a_card_shows_reported_credits_else_the_estimate_marked_as_one() -> None:
    done = Progress("j", 1, "Nano Banana Pro", JobState.DONE, submitted_at=0.0, finished_at=9.0)
    assert (
        state_line(done, 10.0, estimate=0.12) == "Done in 9 s · 0 images · 0.12 credits (estimate)"
    )
    reported = done.evolve(credits=0.5)
    assert state_line(reported, 10.0, estimate=0.12).endswith("· 0.5 credits")
    assert "estimate" not in state_line(done.evolve(offline=True), 10.0, estimate=0.12)
    assert "estimate" not in state_line(done.evolve(state=JobState.FAILED), 10.0, estimate=0.12)


def test_public_defaults_do_not_apply_to_a_visitor_keys_only_switch() -> None:
    rules = spending_rules_from_env({"VISITOR_KEYS_ONLY": "1"}, public=False, owner_keys=True)
    assert rules.visitor_keys_only and not rules.counts


# ---- logins -------------------------------------------------------------------------------------


def test_a_shared_password_takes_any_name_and_accounts_their_own() -> None:
    logins = logins_from_env({"APP_PASSWORD": "team-secret", "APP_USERS": "ada:pw-ada"})
    assert logins is not None and logins.named
    assert logins.check("anyone", "team-secret")
    assert logins.check("ada", "pw-ada")
    assert not logins.check("ada", "team-secret")  # a listed name uses its own password
    assert not logins.check("anyone", "wrong")
    assert "team-secret" not in repr(logins) and "pw-ada" not in repr(logins)


def test_without_a_password_there_is_no_login() -> None:
    assert logins_from_env({}) is None
    assert not Logins(password="x").named


# ---- who a visitor is ---------------------------------------------------------------------------

XFF_FROM_A_SCRIPT = "6.6.6.6"  # what a script puts in its own X-Forwarded-For


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "address"),
    [
        # No proxy trusted: the header is anyone's words, the connection's address counts.
        ("203.0.113.9", [XFF_FROM_A_SCRIPT], NO_PROXIES, "203.0.113.9"),
        ("127.0.0.1", [XFF_FROM_A_SCRIPT], NO_PROXIES, "127.0.0.1"),
        # A trusted proxy appends what it saw: the rightmost untrusted hop is the client.
        (
            "10.0.0.2",
            [f"{XFF_FROM_A_SCRIPT}, 198.51.100.20"],
            parse_trusted_proxies("10.0.0.0/8"),
            "198.51.100.20",
        ),
        (
            "10.0.0.2",
            ["198.51.100.20", "10.0.0.3"],
            parse_trusted_proxies("10.0.0.0/8"),
            "198.51.100.20",
        ),
        # A peer that is not one of the trusted proxies is believed about nothing.
        ("192.0.2.50", ["198.51.100.20"], parse_trusted_proxies("10.0.0.0/8"), "192.0.2.50"),
        # On a Space: the peer is the Space's proxy, private hops are its own.
        (
            "10.16.3.80",
            [f"{XFF_FROM_A_SCRIPT}, 198.51.100.20, 10.16.0.1"],
            SPACE_PROXIES,
            "198.51.100.20",
        ),
        ("10.16.3.80", [], SPACE_PROXIES, "10.16.3.80"),
        # IPv6 counts by /64; an IPv4 address mapped into IPv6 is the IPv4 address.
        ("2001:db8:1:2:aaaa::1", [], NO_PROXIES, "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", [], NO_PROXIES, "198.51.100.7"),
        ("10.0.0.2", ["[2001:db8::5]:443"], parse_trusted_proxies("10.0.0.2"), "2001:db8::/64"),
        ("10.0.0.2", ["198.51.100.20:5123"], parse_trusted_proxies("10.0.0.2"), "198.51.100.20"),
    ],
)
def test_the_forwarded_address_counts_only_from_trusted_proxies(
    peer: str, forwarded: list[str], trusted: TrustedProxies, address: str
) -> None:
    assert client_address(peer, forwarded, trusted) == address


def test_a_visitor_is_a_browser_id_and_an_address_or_a_named_login() -> None:
    policy = VisitorPolicy(NO_PROXIES)
    visitor = policy.visitor("browser-a", "203.0.113.9", [], username="someone")
    assert visitor.ids == ("browser-a", "203.0.113.9")
    named = VisitorPolicy(NO_PROXIES, named_logins=True).visitor("b", "203.0.113.9", [], "ada")
    assert named.ids == ("login:ada",)
    assert policy.visitor(None, None).ids == ("unknown",)


# ---- the line for running slots -----------------------------------------------------------------


async def test_the_line_is_first_come_first_served_and_bounded() -> None:
    line = RunningLine(2, None, size=2)
    line.join(["a", "b", "c", "d"], ["v"])
    assert (line.running, line.waiting) == (2, 2)
    assert (line.place("c"), line.place("d"), line.place("a")) == (1, 2, 0)
    with pytest.raises(LineFull):
        line.join(["e"], ["w"])
    assert (line.running, line.waiting) == (2, 2)  # the refusal changed nothing
    places: list[int] = []

    async def note(place: int) -> None:
        places.append(place)

    waiter = asyncio.create_task(line.wait_turn("d", note))
    await asyncio.sleep(0)
    assert line.leave("a") is True  # a ran: its slot goes to c, d moves up
    await asyncio.sleep(0)
    assert line.leave("b") is True
    await asyncio.wait_for(waiter, 1)
    assert places == [2, 1, 0]
    assert line.leave("never-joined") is False
