"""The poll schedule (a value) and the watch loop, on a fake clock and scripted status sources."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import httpx
import pytest
from conftest import FakeClock, read_seed

from providers.errors import (
    AuthenticationError,
    RateLimitedError,
    ServiceError,
    ServiceUnreachableError,
    TaskNotFoundError,
    WatchTimeoutError,
)
from providers.types import TaskState, TaskStatus
from providers.watch import BRISK_FROM, PRIOR_WEIGHT, PollSchedule, quantile, watch_task

# The schedule below: window (20, 30), first check at 2 s, brisk from 19 s (settle -1 s), and
# no growing gaps before it (early_gap = quiet_interval: every quiet wait is 30 s at most).
# The shape is tested on explicit numbers, apart from the tuned defaults.
SCHEDULE = PollSchedule(
    window=(20.0, 30.0),
    first_check=2.0,
    quiet_interval=30.0,
    near_interval=1.5,
    late_interval=3.0,
    settle=-1.0,
    early_gap=30.0,
)


def status(state: TaskState, task_id: str = "task_1") -> TaskStatus:
    return TaskStatus(
        service="nano_banana_pro", task_id=task_id, state=state, provider_state=str(state)
    )


QUEUED, RUNNING = status(TaskState.QUEUED), status(TaskState.RUNNING)
SUCCEEDED, FAILED = status(TaskState.SUCCEEDED), status(TaskState.FAILED)


class ScriptedSource:
    """Answers each read with the next step (the last repeats); records the clock at each read."""

    provider = "Scripted"

    def __init__(self, clock: FakeClock, *steps: TaskStatus | Exception) -> None:
        self.clock = clock
        self.steps = list(steps)
        self.read_times: list[float] = []
        self.task_ids: list[str] = []

    async def fetch_status(self, task_id: str) -> TaskStatus:
        self.read_times.append(self.clock.now() - 1000.0)  # seconds since the fake clock's start
        self.task_ids.append(task_id)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step


async def collect(source: ScriptedSource, clock: FakeClock, **kwargs) -> list[TaskStatus]:
    kwargs.setdefault("schedule", SCHEDULE)
    return [
        s async for s in watch_task(source, "task_1", clock=clock.now, sleep=clock.sleep, **kwargs)
    ]


# ---------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize(
    ("elapsed", "delay"),
    [
        (0.0, 2.0),  # first check catches fast failures
        (1.5, 0.5),
        (2.0, 17.0),  # quiet until the window (20 s) less 1 s
        (10.0, 9.0),
        (18.9, pytest.approx(0.1)),
        (19.0, 1.5),  # near: brisk inside the window
        (25.0, 1.5),
        (29.99, 1.5),
        (30.0, 3.0),  # late: the seed's 3 s
        (600.0, 3.0),
    ],
)
def test_next_delay_shape(elapsed, delay):
    assert SCHEDULE.next_delay(elapsed) == delay


def test_quiet_phase_is_capped_by_quiet_interval():
    schedule = replace(SCHEDULE, window=(100.0, 130.0))
    assert schedule.next_delay(2.0) == 30.0
    assert schedule.next_delay(32.0) == 30.0
    assert schedule.next_delay(80.0) == 19.0  # up to 99 s, where the brisk phase starts


def test_window_opening_before_the_first_check():
    schedule = replace(SCHEDULE, window=(1.0, 5.0))
    assert schedule.next_delay(0.0) == 2.0
    assert schedule.next_delay(2.0) == 1.5
    assert schedule.next_delay(5.0) == 3.0


def test_late_polls_never_wait_more_than_three_seconds():
    for window in [(8.0, 20.0), (20.0, 30.0), (30.0, 45.0), (45.0, 60.0)]:
        schedule = replace(SCHEDULE, window=window)
        for elapsed in range(int(window[1]), 900, 7):
            assert 0 < schedule.next_delay(float(elapsed)) <= 3.0


def test_read_times_from_submit_follow_the_schedule():
    elapsed, reads = 0.0, []
    while elapsed < 36.0:
        elapsed += SCHEDULE.next_delay(elapsed)
        reads.append(elapsed)
    assert reads == [2.0, 19.0, 20.5, 22.0, 23.5, 25.0, 26.5, 28.0, 29.5, 31.0, 34.0, 37.0]


@pytest.mark.parametrize("factor", [0.01, 0.5, 3.0])
def test_scaled_schedule(factor):
    scaled = SCHEDULE.scaled(factor)
    assert scaled.window == pytest.approx((20.0 * factor, 30.0 * factor))
    assert scaled.first_check == pytest.approx(2.0 * factor)
    assert scaled.quiet_interval == pytest.approx(30.0 * factor)
    assert scaled.near_interval == pytest.approx(1.5 * factor)
    assert scaled.late_interval == pytest.approx(3.0 * factor)
    assert scaled.settle == pytest.approx(-1.0 * factor)
    assert scaled.early_gap == pytest.approx(30.0 * factor)
    assert scaled.early_fraction == SCHEDULE.early_fraction  # a share, not a duration
    for schedule in (SCHEDULE, PollSchedule(), PollSchedule(brisk=(12.0, 16.0))):
        for elapsed in [0.0, 1.0, 2.0, 7.0, 10.0, 19.0, 25.0, 30.0, 100.0]:
            expected = schedule.next_delay(elapsed) * factor
            assert schedule.scaled(factor).next_delay(elapsed * factor) == pytest.approx(expected)


# ---------------------------------------------------------------------------- the growing gaps


def read_times(schedule: PollSchedule, until: float) -> list[float]:
    elapsed, reads = 0.0, []
    while elapsed < until:
        elapsed += schedule.next_delay(elapsed)
        reads.append(round(elapsed, 6))
    return reads


def test_before_the_window_the_gaps_grow_with_the_time_waited():
    schedule = PollSchedule(window=(60.0, 80.0))
    assert read_times(schedule, 40.0) == [
        2.0,
        4.0,
        6.0,
        8.0,
        10.4,
        13.52,
        17.576,
        22.8488,
        29.70344,
        38.614472,
        50.198814,
    ]


@pytest.mark.parametrize(
    "schedule",
    [
        PollSchedule(),
        PollSchedule(window=(45.0, 60.0)),
        PollSchedule(window=(90.0, 120.0)),
        PollSchedule().learned((20.0, 30.0), [25.0] * 30),
        PollSchedule(window=(20.0, 30.0)).scaled(1.0),
    ],
)
def test_a_task_that_ends_early_is_noticed_within_2_s_or_30_percent_of_its_run(schedule):
    reads = read_times(schedule, 400.0)
    for tenth in range(1, 3000):
        ends = tenth / 10
        seen = next(r for r in reads if r >= ends)
        assert seen - ends <= max(2.0, 0.3 * ends) + 1e-9, (ends, seen)


def test_inside_the_window_before_the_brisk_phase_gaps_are_at_most_late_interval():
    schedule = PollSchedule(window=(40.0, 60.0), brisk=(50.0, 60.0))
    assert schedule.next_delay(40.0) == 3.0  # 30 % of 40 s would be 12 s
    assert schedule.next_delay(48.5) == pytest.approx(1.5)  # lands on the brisk start
    assert schedule.next_delay(50.0) == 1.0


# ---------------------------------------------------------------------------- learning


def test_without_run_times_the_documented_window_is_the_schedule():
    schedule = PollSchedule().learned((20.0, 30.0), [])
    assert schedule.window == (20.0, 30.0)
    assert schedule.brisk == (20.0 + 10.0 * BRISK_FROM, 30.0)


def test_learned_from_a_service_twice_as_fast():
    run_times = [10.0 + 5.0 * i / 19 for i in range(20)]  # 10-15 s, documented 20-30 s
    schedule = PollSchedule().learned((20.0, 30.0), run_times)
    assert schedule.window == pytest.approx((10.25, 14.75))
    assert schedule.brisk == pytest.approx((11.25, 14.75 + 1.0))
    reads = read_times(schedule, 20.0)
    assert reads[:6] == [2.0, 4.0, 6.0, 8.0, 10.4, 11.25]  # growing gaps, then the brisk start
    assert reads[5:] == pytest.approx([11.25, 12.25, 13.25, 14.25, 15.25, 16.25, 19.25, 22.25])


def test_learned_from_a_service_twice_as_slow():
    run_times = [40.0 + 20.0 * i / 49 for i in range(50)]
    schedule = PollSchedule().learned((20.0, 30.0), run_times)
    assert schedule.window == pytest.approx((41.0, 59.0), abs=0.2)
    assert schedule.brisk == pytest.approx((45.0, 60.0), abs=0.2)
    # The documented window no longer matters: at 25 s the gaps still grow (30 % of 25 s).
    assert schedule.next_delay(25.0) == 7.5
    assert schedule.next_delay(46.0) == 1.0


def test_each_run_time_replaces_part_of_the_prior():
    prior = (20.0, 30.0)
    starts = [
        PollSchedule().learned(prior, [12.0] * n).brisk[0]  # type: ignore[index]
        for n in (1, 5, 10, 15, PRIOR_WEIGHT, PRIOR_WEIGHT + 30)
    ]
    assert starts == sorted(starts, reverse=True)  # moves towards the observations...
    assert starts[0] > 20.0
    assert starts[-2] == starts[-1] == 12.0  # ...and after PRIOR_WEIGHT follows them alone


def test_nonsense_run_times_are_ignored():
    clean = PollSchedule().learned((20.0, 30.0), [24.0] * 25)
    noisy = PollSchedule().learned(
        (20.0, 30.0), [24.0] * 25 + [0.0, -3.0, float("nan"), float("inf")]
    )
    assert noisy == clean
    assert PollSchedule().learned((20.0, 30.0), [float("nan")]) == PollSchedule().learned(
        (20.0, 30.0), []
    )


def test_read_times_and_when_a_task_seen_done_ended():
    schedule = PollSchedule(window=(20.0, 30.0), brisk=(22.0, 26.0))
    assert schedule.read_times(24.0) == pytest.approx(
        [2.0, 4.0, 6.0, 8.0, 10.4, 13.52, 17.576, 22.0, 23.0, 24.0]
    )
    # Seen done by a read of the schedule (a little late: the request took 0.05 s): it ended
    # after the read before.
    assert schedule.ended_between(13.57) == pytest.approx((10.45, 13.57))
    assert schedule.ended_between(23.05) == pytest.approx((22.05, 23.05))
    assert schedule.ended_between(2.05) == pytest.approx((0.05, 2.05))  # since the submit
    # Seen done between reads (a callback woke the watcher): that moment.
    assert schedule.ended_between(15.0) == (15.0, 15.0)
    assert schedule.ended_between(1.0) == (1.0, 1.0)
    assert schedule.ended_between(23.05, tolerance=0.01) == (23.05, 23.05)


def test_a_schedule_of_zero_delays_still_lists_its_reads():
    stuck = PollSchedule(first_check=0.0, near_interval=0.0, brisk=(0.0, 100.0))
    assert 0 < len(stuck.read_times(5.0)) <= 10_000


def test_what_sparse_reads_saw_is_spread_over_the_gap_they_leave():
    # Tasks of a service twice as fast as documented, seen by the prior's growing gaps only at
    # 22.8 and 29.7 s: the learned brisk phase must start inside the gap, not at its reads.
    prior = PollSchedule(window=(45.0, 60.0))
    seen = [22.9] * 10 + [29.75] * 10
    naive = PollSchedule().learned((45.0, 60.0), seen)
    spread = PollSchedule().learned((45.0, 60.0), [prior.ended_between(t) for t in seen])
    assert naive.brisk is not None and spread.brisk is not None
    assert naive.brisk[0] == pytest.approx(22.9)
    assert 17.6 < spread.brisk[0] < 22.9
    assert 27.0 < spread.window[1] <= 29.75


def test_quantile_interpolates():
    assert quantile([1.0], 0.5) == 1.0
    assert quantile([0.0, 10.0], 0.25) == 2.5
    assert quantile([0.0, 10.0, 20.0], 1.0) == 20.0


# ---------------------------------------------------------------------------- the watch loop


class FinishesAt:
    """Running until `ends` seconds after the fake clock's start, then succeeded."""

    provider = "Timed"

    def __init__(self, clock: FakeClock, ends: float) -> None:
        self.clock = clock
        self.ends = ends
        self.read_times: list[float] = []

    async def fetch_status(self, task_id: str) -> TaskStatus:
        elapsed = self.clock.now() - 1000.0
        self.read_times.append(round(elapsed, 6))
        return SUCCEEDED if elapsed >= self.ends else RUNNING


@pytest.mark.parametrize(
    ("ends", "reads"),
    [
        (3.0, [2.0, 4.0]),  # GemPix2-fast: seen 1 s after it ended
        (8.5, [2.0, 4.0, 6.0, 8.0, 10.4]),  # 1.9 s late, within 30 % of 8.5 s
        (14.0, [2.0, 4.0, 6.0, 8.0, 10.4, 13.52, 17.576]),  # 3.6 s late, 30 % is 4.2 s
    ],
)
async def test_a_task_that_ends_before_its_window_is_noticed_soon(ends, reads, fake_clock):
    source = FinishesAt(fake_clock, ends)
    seen = await collect(source, fake_clock, schedule=PollSchedule(window=(20.0, 30.0)))
    assert seen[-1] == SUCCEEDED
    assert source.read_times == reads


async def test_a_learned_schedule_reads_where_tasks_finished_before(fake_clock):
    learned = PollSchedule().learned((20.0, 30.0), [12.0, 12.5, 13.0, 13.5, 14.0] * 4)
    source = FinishesAt(fake_clock, 13.2)
    await collect(source, fake_clock, schedule=learned)
    assert source.read_times == [2.0, 4.0, 6.0, 8.0, 10.4, 12.5, 13.5]


@pytest.mark.parametrize("final", [SUCCEEDED, FAILED])
async def test_yields_each_status_and_stops_at_a_terminal_state(final, fake_clock):
    source = ScriptedSource(fake_clock, QUEUED, RUNNING, RUNNING, final, RUNNING)
    seen = await collect(source, fake_clock)
    assert [s.state for s in seen] == [
        TaskState.QUEUED,
        TaskState.RUNNING,
        TaskState.RUNNING,
        final.state,
    ]
    assert source.read_times == [2.0, 19.0, 20.5, 22.0]
    assert source.task_ids == ["task_1"] * 4
    assert fake_clock.sleeps == [2.0, 17.0, 1.5, 1.5]


async def test_deadline_raises_watch_timeout_after_bounded_reads(fake_clock):
    source = ScriptedSource(fake_clock, RUNNING)
    seen = []
    with pytest.raises(WatchTimeoutError) as caught:
        async for s in watch_task(
            source,
            "task_1",
            schedule=SCHEDULE,
            deadline=60.0,
            clock=fake_clock.now,
            sleep=fake_clock.sleep,
        ):
            seen.append(s)
    assert caught.value.task_id == "task_1"
    assert caught.value.provider == "Scripted"
    assert caught.value.message == "no final state after 60 s"
    assert fake_clock.now() == 1060.0  # not a moment past the deadline
    assert max(source.read_times) == 60.0
    # 2, 19, then every 1.5 s to 31, then every 3 s to 58, and a last read at the deadline.
    assert len(source.read_times) == 2 + 8 + 9 + 1
    assert len(seen) == len(source.read_times)


async def test_deadline_is_kept_while_every_read_fails(fake_clock):
    source = ScriptedSource(fake_clock, ServiceError("down", status_code=503))
    with pytest.raises(WatchTimeoutError) as caught:
        await collect(source, fake_clock, deadline=25.0)
    assert isinstance(caught.value.__cause__, ServiceError)
    assert fake_clock.now() == 1025.0
    assert source.read_times == [2.0, 19.0, 20.5, 22.0, 23.5, 25.0]


async def test_transient_errors_are_survived(fake_clock, caplog):
    caplog.set_level(logging.WARNING, logger="providers.watch")
    source = ScriptedSource(
        fake_clock,
        ServiceError("HTTP 500", status_code=500),
        RateLimitedError("slow down", retry_after=1.0),
        ServiceUnreachableError("connection failed"),
        RUNNING,
        SUCCEEDED,
    )
    seen = await collect(source, fake_clock)
    assert [s.state for s in seen] == [TaskState.RUNNING, TaskState.SUCCEEDED]
    assert source.read_times == [2.0, 19.0, 20.5, 22.0, 23.5]
    warnings = [r.getMessage() for r in caplog.records if r.name == "providers.watch"]
    assert warnings == [
        "Scripted task task_1: status read failed: HTTP 500",
        "Scripted task task_1: status read failed: slow down",
        "Scripted task task_1: status read failed: connection failed",
    ]


@pytest.mark.parametrize(
    "error", [AuthenticationError("Invalid API key", status_code=401), TaskNotFoundError("gone")]
)
async def test_rejections_propagate(error, fake_clock):
    source = ScriptedSource(fake_clock, RUNNING, error, SUCCEEDED)
    seen = []
    with pytest.raises(type(error)) as caught:
        async for s in watch_task(
            source, "task_1", schedule=SCHEDULE, clock=fake_clock.now, sleep=fake_clock.sleep
        ):
            seen.append(s)
    assert caught.value is error
    assert seen == [RUNNING]
    assert len(source.read_times) == 2


@pytest.mark.parametrize(
    ("ago", "first_sleep"),
    [
        (0.0, 2.0),  # just submitted: the first check
        (1.0, 1.0),
        (10.0, 9.0),  # quiet until 19 s
        (25.0, 1.5),  # re-attached inside the window: brisk at once
        (100.0, 3.0),  # re-attached late
    ],
)
async def test_submitted_at_places_the_schedule(ago, first_sleep, fake_clock):
    source = ScriptedSource(fake_clock, SUCCEEDED)
    await collect(source, fake_clock, submitted_at=fake_clock.now() - ago)
    assert fake_clock.sleeps == [first_sleep]


async def test_wake_before_the_first_wait_reads_at_once(fake_clock):
    wake = asyncio.Event()
    wake.set()
    source = ScriptedSource(fake_clock, SUCCEEDED)
    seen = await collect(source, fake_clock, wake=wake)
    assert seen == [SUCCEEDED]
    assert fake_clock.sleeps == []  # no wait at all
    assert not wake.is_set()  # consumed


async def test_wake_during_a_wait_triggers_an_immediate_read():
    clock = FakeClock()
    waits: list[float] = []

    async def blocking_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.Event().wait()  # only a wake-up (which cancels it) ends this wait

    wake = asyncio.Event()
    source = ScriptedSource(clock, RUNNING, SUCCEEDED)
    seen: asyncio.Queue[TaskStatus] = asyncio.Queue()

    async def consume() -> None:
        async for s in watch_task(
            source, "task_1", schedule=SCHEDULE, wake=wake, clock=clock.now, sleep=blocking_sleep
        ):
            seen.put_nowait(s)

    watcher = asyncio.create_task(consume())
    try:
        await asyncio.sleep(0.02)
        assert waits == [2.0]
        assert source.read_times == []  # nothing read while the wait blocks
        wake.set()
        assert await asyncio.wait_for(seen.get(), 1.0) == RUNNING
        await asyncio.sleep(0.02)
        assert len(waits) == 2
        assert len(source.read_times) == 1
        wake.set()
        assert await asyncio.wait_for(seen.get(), 1.0) == SUCCEEDED
        await asyncio.wait_for(watcher, 1.0)
    finally:
        watcher.cancel()
    assert len(source.read_times) == 2


async def test_watch_a_real_client_to_success(fake_service, fake_clock):
    done = read_seed("apixo_status_success")
    pending = {"code": 200, "message": "success", "data": done["data"] | {"state": "pending"}}
    working = {"code": 200, "message": "success", "data": done["data"] | {"state": "processing"}}
    fake = fake_service(
        "nano_banana_pro",
        httpx.Response(200, json=pending),
        httpx.Response(500, json={"code": 500, "message": "hiccup"}),
        httpx.Response(200, json=working),
        httpx.Response(200, json=done),
    )
    seen = [
        s
        async for s in watch_task(
            fake.client,
            "task_12345678",
            schedule=SCHEDULE,
            clock=fake_clock.now,
            sleep=fake_clock.sleep,
        )
    ]
    assert [s.provider_state for s in seen] == ["pending", "processing", "success"]
    assert seen[-1].images[0].location == "https://r2.apixo.ai/image.png"
    assert len(fake.requests) == 4  # the 500 was retried by the transport
    assert all(r.url.params["taskId"] == "task_12345678" for r in fake.requests)


async def test_a_retry_after_handed_back_holds_the_next_read(fake_clock):
    # The transport gives up on a Retry-After longer than its budget; the loop must then wait
    # at least that long instead of asking again on its brisk schedule.
    source = ScriptedSource(
        fake_clock,
        RUNNING,
        RateLimitedError("slow down", retry_after=45.0),
        SUCCEEDED,
    )
    seen = await collect(source, fake_clock)
    assert [s.state for s in seen] == [TaskState.RUNNING, TaskState.SUCCEEDED]
    assert source.read_times == [2.0, 19.0, 64.0]
