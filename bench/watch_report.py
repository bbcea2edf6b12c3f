"""The tables `bench.watch_bench` prints: per group and strategy, requests and notice delays.

Ratios are against the group's baseline: the seed's recipe for Nano Banana Pro (apixo's
advice) and a read every 3 s for GemPix2, whose document gives no timing. The target (issue
11): "ours" at most 1.0x the baseline's requests per task (mean) at no more than 0.5x its median
notice delay, per group, and every task that ends early noticed within max(2 s, 30 % of its
run time).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from providers.types import TaskState

REQUESTS_TARGET = 1.0
DELAY_TARGET = 0.5


@dataclass(frozen=True)
class Sample:
    requests: int
    delay: float  # unscaled seconds from the task's end to the client seeing it
    state: TaskState
    run: float  # unscaled seconds from submit to the task's end

    @property
    def within_early_bound(self) -> bool:
        return self.delay <= max(2.0, 0.3 * self.run)


class Named(Protocol):
    @property
    def name(self) -> str: ...


class GroupLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def baseline(self) -> Named: ...


def p95(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


@dataclass(frozen=True)
class Row:
    requests_median: float
    requests_mean: float
    delay_median: float
    delay_p95: float
    early_bound: float  # share of tasks within max(2 s, 30 % of the run)

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Row:
        requests = [s.requests for s in samples]
        delays = [s.delay for s in samples]
        return cls(
            statistics.median(requests),
            statistics.fmean(requests),
            statistics.median(delays),
            p95(delays),
            sum(s.within_early_bound for s in samples) / len(samples),
        )


def print_report(
    results: dict[tuple[str, str], list[Sample]],
    groups: Sequence[GroupLike],
    lags: dict[str, list[float]],
    time_scale: float,
    elapsed: float,
) -> None:
    failed = sum(s.state is not TaskState.SUCCEEDED for v in results.values() for s in v)
    print(f"- tasks not ending in success: {failed}")
    print(
        "- event-loop lateness per run (unscaled s, median / p95 / max): "
        + "; ".join(
            f"{name} {statistics.median(v) / time_scale:.3f} / {p95(v) / time_scale:.3f} / "
            f"{max(v) / time_scale:.3f}"
            for name, v in lags.items()
        )
    )
    print(f"- wall time: {elapsed:.1f} s\n")
    print(
        "| group | strategy | requests/task (median, mean) | notice delay median s | p95 s "
        "| requests ratio | median-delay ratio | within max(2 s, 30 %) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for group in groups:
        strategies = [name for (g, name) in results if g == group.name]
        baseline_name = group.baseline.name
        base = Row.of(results[(group.name, baseline_name)])
        for name in strategies:
            row = Row.of(results[(group.name, name)])
            label = f"{name} (baseline)" if name == baseline_name else name
            print(
                f"| {group.name} | {label} | {row.requests_median:g}, {row.requests_mean:.2f} "
                f"| {row.delay_median:.2f} | {row.delay_p95:.2f} "
                f"| {row.requests_mean / base.requests_mean:.2f} "
                f"| {row.delay_median / base.delay_median:.2f} | {row.early_bound:.0%} |"
            )
            if name == "ours":
                summary.append((group.name, baseline_name, row, base))
    print("\n| group | baseline | ours: requests ratio | ours: median-delay ratio | target |")
    print("|---|---|---:|---:|---|")
    for name, baseline_name, row, base in summary:
        requests = row.requests_mean / base.requests_mean
        delay = row.delay_median / base.delay_median
        parts = []
        if requests > REQUESTS_TARGET:
            parts.append("requests missed")
        if delay > DELAY_TARGET:
            parts.append("delay missed")
        verdict = "met" if not parts else ", ".join(parts)
        print(f"| {name} | {baseline_name} | {requests:.2f} | {delay:.2f} | {verdict} |")
