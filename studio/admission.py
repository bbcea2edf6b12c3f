"""The gate before the owner's keys: quotas, the daily budget and the running caps.

Every task that would run on the owner's keys passes here before anything about it is sent
or even recorded (`admit`): the line for running slots takes it (or refuses when it is full),
then one ledger transaction checks the visitor's quota and the day's budget and counts it
(`Ledger.reserve_usage`). Then it waits for a running slot (`wait_turn`, its place shown on
its card) and leaves the line when it ends (`leave`); a task that never got its turn gives its
unit back. A refusal is `LimitReached`, a plain sentence that names the limit and when it
resets. Tasks on a visitor's own key and offline previews never come here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from providers.errors import InvalidRequestError
from studio.feed import LiveJob
from studio.ledger import Ledger, UsageLimit, UsageRefusal
from studio.running_line import LineFull, RunningLine
from studio.spending import DAY, SpendingRules
from studio.visitors import UNKNOWN_VISITOR, Visitor

OWN_KEY = "Your own key (under Service keys) is not limited."


class LimitReached(InvalidRequestError):
    """A limit on the owner's keys refused the tasks; nothing was recorded or sent."""


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _duration(seconds: float) -> str:
    minutes = max(int(seconds // 60), 1)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def reset_words(at: float, now: float) -> str:
    """The time of `at` and how far off it is: "00:00 UTC (in 5 h 12 min)"."""
    clock = datetime.fromtimestamp(at, UTC).strftime("%H:%M")
    return f"{clock} UTC (in {_duration(at - now)})"


def _tasks(n: int) -> str:
    return f"{n} task{'s' if n != 1 else ''}"


class Admission:
    """Holds the running line and asks the ledger; one per runner."""

    def __init__(
        self,
        rules: SpendingRules,
        ledger: Ledger,
        *,
        owner_keys: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules
        self.ledger = ledger
        self.owner_keys = owner_keys  # whether any owner key is configured at all
        self.clock = clock
        self.line = RunningLine(
            rules.max_running,
            rules.max_running_per_visitor,
            size=rules.line_size,
            size_per_visitor=rules.line_size_per_visitor,
        )
        self._admitted: set[str] = set()  # job ids in the line, from admit() or occupy()

    # ---- the gate -----------------------------------------------------------------------------

    async def admit(
        self, visitor: Visitor | None, job_ids: Sequence[str], *, owner_key: bool = True
    ) -> None:
        """Let `job_ids` (one generation's tasks) onto the owner's keys, all or none. Raises
        LimitReached with the sentence to show. Nothing to do unless on the `owner_key`; an
        unknown `visitor` counts as UNKNOWN_VISITOR (all unknown callers share one count)."""
        if not owner_key:
            return
        visitor = visitor or UNKNOWN_VISITOR
        try:
            self.line.join(job_ids, visitor.ids)
        except LineFull as exc:
            raise LimitReached(self._line_full(exc)) from None
        try:
            refusal = await self._reserve(visitor, job_ids)
        except BaseException:
            for job_id in job_ids:
                self.line.leave(job_id)
            raise
        if refusal is not None:
            for job_id in job_ids:
                self.line.leave(job_id)
            raise LimitReached(self._refused(refusal, len(job_ids)))
        self._admitted.update(job_ids)

    async def _reserve(self, visitor: Visitor, job_ids: Sequence[str]) -> UsageRefusal | None:
        if not self.rules.counts:
            return None
        now = self.clock()
        return await asyncio.to_thread(
            self.ledger.reserve_usage,
            job_ids,
            browser=visitor.browser,
            address=visitor.address,
            limits=self._limits(now),
            now=now,
        )

    async def precheck(self, visitor: Visitor | None, count: int, *, owner_key: bool) -> None:
        """Refuse early (LimitReached) what `admit` would refuse for the quota or the budget,
        before the caller spends work on it (preparing references); counts nothing."""
        if not (owner_key and self.rules.counts):
            return
        visitor = visitor or UNKNOWN_VISITOR
        refusal = await asyncio.to_thread(
            self.ledger.check_usage,
            count,
            browser=visitor.browser,
            address=visitor.address,
            limits=self._limits(self.clock()),
        )
        if refusal is not None:
            raise LimitReached(self._refused(refusal, count))

    def _limits(self, now: float) -> list[UsageLimit]:
        limits = []
        quota = self.rules.visitor_quota
        if quota is not None:
            start, _ = quota.window(now)
            limits.append(UsageLimit("quota", "browser", start, quota.count))
            limits.append(UsageLimit("quota", "address", start, quota.count))
        if self.rules.daily_budget is not None:
            start, _ = DAY.window(now)
            limits.append(UsageLimit("budget", "all", start, self.rules.daily_budget))
        return limits

    def occupy(self, job_id: str) -> None:
        """A task sent already (taken up after a restart) holds a running slot at once."""
        self.line.occupy(job_id)
        self._admitted.add(job_id)

    async def wait_turn(self, job: LiveJob) -> None:
        """Until `job` may be sent, its place in line published on its card as it changes
        (the words cleared when its turn comes). At once for a task not admitted here."""
        if job.progress.job_id not in self._admitted:
            return

        async def on_place(place: int) -> None:
            await job.publish(message=self.place_words(place))

        await self.line.wait_turn(job.progress.job_id, on_place)

    async def leave(self, *job_ids: str) -> None:
        """The jobs ended (or were never recorded): free their slots; a task that never had
        its turn gives its unit back."""
        unsent = []
        for job_id in job_ids:
            if job_id in self._admitted:
                self._admitted.discard(job_id)
                if not self.line.leave(job_id):
                    unsent.append(job_id)
        if unsent and self.rules.counts:
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.to_thread(self.ledger.refund_usage, unsent))

    # ---- words --------------------------------------------------------------------------------

    def _caps(self) -> str:
        parts = []
        if self.rules.max_running is not None:
            parts.append(f"{self.rules.max_running} at once")
        if self.rules.max_running_per_visitor is not None:
            parts.append(f"{self.rules.max_running_per_visitor} per visitor")
        return ", ".join(parts)

    def place_words(self, place: int) -> str:
        if place <= 0:
            return ""
        return (
            f"Waiting for a free slot: {ordinal(place)} in line (the studio's key runs "
            f"{self._caps()}). Nothing has been sent yet."
        )

    def _line_full(self, exc: LineFull) -> str:
        if exc.own:
            return (
                f"You already have {_tasks(exc.size)} waiting for the studio's key, the most "
                f"one visitor may have waiting: wait for them to start. {OWN_KEY}"
            )
        running = self.line.running
        return (
            f"The studio's key is busy: {_tasks(running)} {'is' if running == 1 else 'are'} "
            f"running and {self.line.waiting} are waiting, the most the line holds. Try again "
            f"in a few minutes. {OWN_KEY}"
        )

    def _refused(self, refusal: UsageRefusal, asked: int) -> str:
        now = self.clock()
        limit = refusal.limit
        left = max(limit.allowed - refusal.used, 0)
        if limit.name == "budget":
            _, reset = DAY.window(now)
            if left == 0:
                return (
                    f"The studio's key has started its {_tasks(limit.allowed)} for today, the "
                    f"daily budget for all visitors, and rests until {reset_words(reset, now)}. "
                    f"{OWN_KEY}"
                )
            return (
                f"Only {left} of the studio's {_tasks(limit.allowed)} for today are left for "
                f"all visitors and you asked for {asked}: ask for fewer variants, or wait until "
                f"{reset_words(reset, now)}. {OWN_KEY}"
            )
        quota = self.rules.visitor_quota
        assert quota is not None  # a quota limit exists only with a quota
        _, reset = quota.window(now)
        where = " from your network address" if limit.scope == "address" else ""
        if left == 0:
            return (
                f"You have used your {_tasks(quota.count)} {quota.words} on the studio's "
                f"key{where} (VISITOR_QUOTA {quota}); more from {reset_words(reset, now)}. "
                f"{OWN_KEY}"
            )
        return (
            f"You asked for {_tasks(asked)} but {left} of your {quota.count} {quota.words} on "
            f"the studio's key{where} are left: ask for {left} or fewer variants, or wait "
            f"until {reset_words(reset, now)}. {OWN_KEY}"
        )

    def used_by(self, visitor: Visitor, since: float) -> int:
        """Tasks the visitor started on the owner's keys since `since`, counted as the quota
        counts them: by browser id and by address, whichever used more. Reads the ledger."""
        return max(
            (
                self.ledger.usage_count(scope, key, since)
                for scope, key in (("browser", visitor.browser), ("address", visitor.address))
                if key
            ),
            default=0,
        )

    def _left(self, visitor: Visitor) -> str:
        """What the page shows beside Generate; a few ledger reads (call off the loop)."""
        rules = self.rules
        if not self.owner_keys:
            return ""
        if rules.visitor_keys_only:
            return (
                "The studio's key is not used for visitors here: add your own under Service keys."
            )
        if not rules.counts:
            return ""
        now = self.clock()
        budget_left: int | None = None
        if rules.daily_budget is not None:
            used = self.ledger.usage_count("all", "", DAY.window(now)[0])
            budget_left = max(rules.daily_budget - used, 0)
            if budget_left == 0:
                reset = reset_words(DAY.window(now)[1], now)
                return f"The studio's key rests until {reset}: today's budget is spent. {OWN_KEY}"
        quota = rules.visitor_quota
        if quota is None:
            return f"{budget_left} of {rules.daily_budget} today on the studio's key (all visitors)"
        left = max(quota.count - self.used_by(visitor, quota.window(now)[0]), 0)
        if left == 0:
            reset = reset_words(quota.window(now)[1], now)
            return f"0 of {quota.count} {quota.words} on the studio's key: more from {reset}"
        if budget_left is not None and budget_left < left:
            return (
                f"{budget_left} of {quota.count} {quota.words} on the studio's key "
                "(the day's budget for all visitors is nearly spent)"
            )
        return f"{left} of {quota.count} {quota.words} on the studio's key"

    async def left_words(self, visitor: Visitor) -> str:
        if not self.owner_keys or not (self.rules.counts or self.rules.visitor_keys_only):
            return ""  # nothing to read
        return await asyncio.to_thread(self._left, visitor)
