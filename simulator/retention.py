"""What the simulator keeps of past tasks and requests, so that its memory stays flat however
many generations it serves (the offline preview runs inside the app, for as long as it runs).

* at most `max_tasks` tasks are remembered; older ones are forgotten (a status read then gets
  "task not found", as from a service that keeps tasks for a limited time);
* a task's references are kept as sent only until they have been read: then a long one (a data
  URI of megabytes) is shortened to the form its failure message shows anyway;
* reference thumbnails stay with the latest `max_thumbnail_tasks` tasks that had references; a
  task that must be drawn again after that (its picture left the render cache) is drawn
  without its reference strip;
* the inspection windows (`Simulator.submissions`) keep bodies with long strings shortened.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from simulator.tasks import TaskRecord, shorten_url

KEPT_TASKS = 10_000
KEPT_THUMBNAIL_TASKS = 16
# Strings longer than this are shortened in what is kept (a prompt is at most 4,000).
LONG_TEXT = 4096
_MAX_DEPTH = 32


def compact(value: Any, depth: int = 0) -> Any:
    """A JSON-like copy of `value` with long strings shortened and deep nesting cut off."""
    if isinstance(value, str):
        return shorten_url(value) if len(value) > LONG_TEXT else value
    if depth >= _MAX_DEPTH and isinstance(value, dict | list):
        return "…"
    if isinstance(value, dict):
        return {compact(k, depth + 1): compact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(item, depth + 1) for item in value]
    return value


class Retention:
    """Applies the bounds above to the simulator's task and file tables (shared, not copied)."""

    def __init__(
        self,
        tasks: dict[str, TaskRecord],
        files: dict[str, str],
        *,
        max_tasks: int = KEPT_TASKS,
        max_thumbnail_tasks: int = KEPT_THUMBNAIL_TASKS,
    ) -> None:
        if max_tasks < 1 or max_thumbnail_tasks < 0:
            raise ValueError("max_tasks must be >= 1 and max_thumbnail_tasks >= 0")
        self._tasks = tasks
        self._files = files
        self._max_tasks = max_tasks
        self._max_thumbnail_tasks = max_thumbnail_tasks
        self._with_thumbnails: deque[TaskRecord] = deque()

    def task_added(self) -> None:
        """Forget the oldest tasks beyond the cap (dicts keep insertion order)."""
        while len(self._tasks) > self._max_tasks:
            oldest = next(iter(self._tasks))
            task = self._tasks.pop(oldest)
            self._files.pop(task.file_name, None)
            task.reference_images = []

    def references_read(self, task: TaskRecord) -> None:
        """The task's references were read (or failed): keep only what is still needed."""
        task.references = [compact(url) for url in task.references]
        if task.refs_error_url is not None:
            task.refs_error_url = compact(task.refs_error_url)
        if task.reference_images:
            self._with_thumbnails.append(task)
            while len(self._with_thumbnails) > self._max_thumbnail_tasks:
                self._with_thumbnails.popleft().reference_images = []
