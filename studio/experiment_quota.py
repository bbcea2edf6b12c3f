"""What an experiment asks of the limits on the owner's keys, before anything is sent.

Each cell passes `studio.admission` like any generation when it is sent; this module only
tells beforehand whether the whole experiment fits what the visitor's quota and the day's
budget leave, so an experiment that cannot finish is refused whole instead of stopping half
way. Cells on a visitor's own key and offline previews are not counted (nor limited).
"""

from __future__ import annotations

from collections.abc import Mapping

from studio.admission import OWN_KEY, Admission
from studio.backends import Backends
from studio.experiments import Plan
from studio.spending import DAY
from studio.visitors import UNKNOWN_VISITOR, Visitor


def owner_key_tasks(plan: Plan, backends: Backends, visitor_keys: Mapping[str, str]) -> int:
    """How many of the plan's tasks would run on the owner's keys."""
    catalog = backends.catalog
    tasks = 0
    for cell in plan.cells:
        service = catalog.model(cell.model).service
        # The visitor's own key wins; without one, the owner's (if it serves visitors).
        if not (visitor_keys.get(service) or "").strip() and backends.has_key(service):
            tasks += cell.variants
    return tasks


def tasks_left(admission: Admission, visitor: Visitor | None) -> int | None:
    """Tasks the visitor may still start on the owner's keys now (None: no limit counts).
    Reads the ledger: call off the event loop."""
    rules = admission.rules
    if not admission.owner_keys or not rules.counts:
        return None
    visitor = visitor or UNKNOWN_VISITOR
    now = admission.clock()
    lefts = []
    if rules.daily_budget is not None:
        used = admission.ledger.usage_count("all", "", DAY.window(now)[0])
        lefts.append(max(rules.daily_budget - used, 0))
    quota = rules.visitor_quota
    if quota is not None:
        lefts.append(max(quota.count - admission.used_by(visitor, quota.window(now)[0]), 0))
    return min(lefts) if lefts else None


def quota_problem(needed: int, left: int | None) -> str | None:
    """The sentence refusing an experiment that needs more tasks than are left, or None."""
    if left is None or needed <= left:
        return None
    return (
        f"This experiment needs {needed} tasks on the studio's key but {left} are left for "
        f"you now: use fewer prompts, models, settings or variants. {OWN_KEY}"
    )
