"""What the owner's keys may spend, read from the environment: quotas, budget, running caps.

    VISITOR_QUOTA             tasks one visitor may start on the owner's keys per period:
                              "20/day", "5/hour", "3/minute" (a variant is a task)
    DAILY_TASK_BUDGET         tasks per UTC day on the owner's keys, all visitors together
    MAX_RUNNING               tasks running at once on the owner's keys, all visitors together
    MAX_RUNNING_PER_VISITOR   the same for one visitor
    VISITOR_KEYS_ONLY         "1": the owner's keys are never used for visitors
    PRICE_TABLE               credits per task for services that report none, by model
                              (and resolution): "nano-banana-pro=0.12, nano-banana-pro@4K=0.24"

Periods are fixed windows in UTC: a day runs from 00:00 UTC, an hour from the full hour. A
value of "none" (or "off", "unlimited") lifts a limit; 0 means none on the owner's keys.

Defaults: where the app is public (a Hugging Face Space, or a server listening beyond
loopback) and the owner has keys, a limit that is not set takes a conservative value
(`PUBLIC_DEFAULTS`), so a demo cannot be drained by accident; locally on loopback nothing is
limited. Every value that cannot be read stops the start-up with a sentence naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

_NO_LIMIT = frozenset({"none", "off", "unlimited", "no"})
_PERIODS = {  # unit -> (seconds, words for "what is left ...")
    "minute": (60, "this minute"),
    "hour": (3600, "this hour"),
    "day": (86400, "today"),
}
_UNIT_NAMES = {
    "m": "minute",
    "min": "minute",
    "mins": "minute",
    "minute": "minute",
    "minutes": "minute",
    "h": "hour",
    "hr": "hour",
    "hour": "hour",
    "hours": "hour",
    "d": "day",
    "day": "day",
    "days": "day",
}
_QUOTA = re.compile(r"^\s*(\d{1,7})\s*(?:/|per\s+)\s*([a-z]+)\s*$", re.IGNORECASE)
MAX_LINE_FACTOR = 2  # the line holds twice what may run at once (see SpendingRules.line_size)


@dataclass(frozen=True)
class Quota:
    """`count` tasks per `unit` ("minute", "hour" or "day"), a fixed window in UTC."""

    count: int
    unit: str = "day"

    @property
    def seconds(self) -> int:
        return _PERIODS[self.unit][0]

    @property
    def words(self) -> str:
        return _PERIODS[self.unit][1]

    def window(self, now: float) -> tuple[float, float]:
        """The current window: (its start, when the next one starts), epoch seconds."""
        start = math.floor(now / self.seconds) * self.seconds
        return float(start), float(start + self.seconds)

    def __str__(self) -> str:
        return f"{self.count}/{self.unit}"


DAY = Quota(0, "day")  # the budget's window (its count is the budget)


@dataclass(frozen=True)
class SpendingRules:
    """The limits on the owner's keys; None: no limit."""

    visitor_quota: Quota | None = None
    daily_budget: int | None = None
    max_running: int | None = None
    max_running_per_visitor: int | None = None
    visitor_keys_only: bool = False
    defaults_applied: tuple[str, ...] = field(default=(), compare=False)  # names defaulted

    @property
    def counts(self) -> bool:
        """Whether tasks on the owner's keys are counted in the ledger."""
        return self.visitor_quota is not None or self.daily_budget is not None

    @property
    def line_size(self) -> int | None:
        """How many tasks may wait for a running slot (None: no bound)."""
        if self.max_running is None:
            return None
        return max(self.max_running * MAX_LINE_FACTOR, 4)

    @property
    def line_size_per_visitor(self) -> int | None:
        if self.max_running_per_visitor is None:
            return None
        return max(self.max_running_per_visitor * MAX_LINE_FACTOR, 4)


NO_LIMITS = SpendingRules()
# Where the app is public and the owner has keys: 10 tasks per visitor per UTC day, 200 a day
# in all, 20 at once, 4 at once per visitor (one generation of 4 variants runs together).
PUBLIC_DEFAULTS = SpendingRules(
    visitor_quota=Quota(10, "day"),
    daily_budget=200,
    max_running=20,
    max_running_per_visitor=4,
)


def parse_quota(name: str, text: str) -> Quota | None:
    """A quota such as "20/day", "5 per hour" or "none". Raises ValueError (a sentence)."""
    if text.strip().lower() in _NO_LIMIT:
        return None
    match = _QUOTA.match(text)
    unit = _UNIT_NAMES.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"{name} must be a number of tasks per minute, hour or day, such as 20/day or "
            f'5/hour (or "none" for no limit), not {text.strip()[:40]!r}.'
        )
    return Quota(int(match.group(1)), unit)


def parse_count(name: str, text: str) -> int | None:
    """A whole number of tasks, or "none". Raises ValueError, a sentence naming `name`."""
    value = text.strip().lower()
    if value in _NO_LIMIT:
        return None
    if not value.isdigit() or len(value) > 7:
        raise ValueError(
            f'{name} must be a whole number of tasks (or "none" for no limit), not '
            f"{text.strip()[:40]!r}."
        )
    return int(value)


def parse_switch(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 (on) or 0 (off), not {text.strip()[:40]!r}.")


def spending_rules_from_env(
    env: Mapping[str, str], *, public: bool, owner_keys: bool
) -> SpendingRules:
    """The rules from the environment; where `public` and `owner_keys`, unset limits take
    `PUBLIC_DEFAULTS`. Raises ValueError (a sentence) on a value it cannot read."""
    defaulting = public and owner_keys
    applied: list[str] = []

    def read(name: str, parse: Callable[[str, str], T | None], default: T | None) -> T | None:
        text = env.get(name)
        if text is None or not text.strip():
            if defaulting and default is not None:
                applied.append(name)
                return default
            return None
        return parse(name, text)

    for name in ("MAX_RUNNING", "MAX_RUNNING_PER_VISITOR"):
        if (env.get(name) or "").strip() == "0":
            raise ValueError(f'{name} must be at least 1 (or "none" for no limit), not 0.')
    base = PUBLIC_DEFAULTS
    return SpendingRules(
        visitor_quota=read("VISITOR_QUOTA", parse_quota, base.visitor_quota),
        daily_budget=read("DAILY_TASK_BUDGET", parse_count, base.daily_budget),
        max_running=read("MAX_RUNNING", parse_count, base.max_running),
        max_running_per_visitor=read(
            "MAX_RUNNING_PER_VISITOR", parse_count, base.max_running_per_visitor
        ),
        visitor_keys_only=parse_switch("VISITOR_KEYS_ONLY", env.get("VISITOR_KEYS_ONLY") or ""),
        defaults_applied=tuple(applied),
    )


@dataclass(frozen=True)
class PriceTable:
    """Credits per task for services that report none, set by the owner: by model id, or by
    model id and resolution ("nano-banana-pro@4K"), which wins. Shown as an estimate."""

    prices: Mapping[str, float] = field(default_factory=dict)

    def estimate(self, model: str, resolution: str | None = None) -> float | None:
        if resolution and f"{model}@{resolution}" in self.prices:
            return self.prices[f"{model}@{resolution}"]
        return self.prices.get(model)


def parse_price_table(text: str | None, models: Mapping[str, object]) -> PriceTable:
    """`PRICE_TABLE`: "model=credits" pairs, comma-separated; a model id may carry
    "@resolution". Raises ValueError, a sentence naming the entry."""
    prices: dict[str, float] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        key, _, value = entry.partition("=")
        key = key.strip()
        model = key.split("@", 1)[0]
        try:
            price = float(value)
        except ValueError:
            price = math.nan
        if model not in models or not math.isfinite(price) or price < 0:
            known = ", ".join(models)
            raise ValueError(
                f"PRICE_TABLE: {entry.strip()[:60]!r} must be a model id (one of {known}), "
                "optionally @resolution, then = and the credits one task costs, e.g. "
                "nano-banana-pro@4K=0.24."
            )
        prices[key] = price
    return PriceTable(prices)


def describe(rules: SpendingRules) -> str:
    """The rules in a line, for the start-up log: "VISITOR_QUOTA 10/day, DAILY_TASK_BUDGET 200"."""
    parts = [
        f"{name} {value}"
        for name, value in (
            ("VISITOR_QUOTA", rules.visitor_quota),
            ("DAILY_TASK_BUDGET", rules.daily_budget),
            ("MAX_RUNNING", rules.max_running),
            ("MAX_RUNNING_PER_VISITOR", rules.max_running_per_visitor),
        )
        if value is not None
    ]
    if rules.visitor_keys_only:
        parts.append("VISITOR_KEYS_ONLY")
    return ", ".join(parts) or "no limits"
