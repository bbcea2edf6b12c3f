"""The concurrency benchmark's tables: latency and memory per row, and CPU per row."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from bench.concurrency_users import MODEL, RESOLUTION
from providers.services import CATALOG

if TYPE_CHECKING:
    from bench.concurrency_runs import Run


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def ideal_ratio(users: int) -> float:
    """E[max of `users` uniform draws from the 1K window] / mean draw."""
    low, high = CATALOG.model(MODEL).expected_window(RESOLUTION)
    return (low + (high - low) * users / (users + 1)) / ((low + high) / 2)


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[tuple[str, Run, float | None]]) -> str:
    lines = [
        "| config | users | wall s | wall / single-user wall | median user latency s "
        "| p95 user latency s | failures | server peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run, ratio in rows:
        ok = run.latencies
        lines.append(
            f"| {name} | {run.users} | {fmt(run.wall)} | {fmt(ratio)} "
            f"| {fmt(statistics.median(ok) if ok else None)} "
            f"| {fmt(percentile(ok, 95) if ok else None)} "
            f"| {run.failures} | {run.peak_rss_mb:.0f} |"
        )
    return "\n".join(lines)


def cpu_table(rows: list[tuple[str, Run, float | None]], cpus: int) -> str:
    lines = [
        "| config | users | app CPU s | simulator CPU s | clients CPU s "
        "| all CPU / (CPUs x wall) | load avg at start |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run, _ in rows:
        used = run.server_cpu + (run.service_cpu or 0.0) + run.bench_cpu
        busy = used / (cpus * run.wall) if run.wall else None
        service = fmt(run.service_cpu) if run.service_cpu is not None else "in app"
        lines.append(
            f"| {name} | {run.users} | {fmt(run.server_cpu)} | {service} "
            f"| {fmt(run.bench_cpu)} | {fmt(busy)} | {run.load:.1f} |"
        )
    return "\n".join(lines)
