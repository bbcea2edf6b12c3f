"""The studio's tools for agents (MCP clients such as Claude Desktop or Cursor) and API callers.

Gradio serves every public endpoint as an MCP tool, described by its function's docstring
(its `Args:` section documents the parameters). The generation tool is the public `/generate`
(`components/wiring.py`); these two read a caller's history. They are `gr.api` functions with
typed parameters, because MCP clients refuse the untyped parameters page-only state would give.

Visitor isolation applies as on the page: on a shared deployment a caller sees only the
generations made with its own `client_id` (the one it passed to `/generate`); without one it
sees none. Locally (single-user) the one user sees everything.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import gradio as gr

from components import history_handlers as history
from components.handlers import Studio
from studio.ledger import JobRow

MAX_LISTED = 50


def _summary(studio: Studio, row: JobRow) -> dict[str, Any]:
    spec = studio.catalog.models.get(row.model)
    return {
        "job_id": row.job_id,
        "prompt": row.prompt,
        "model": row.model,
        "model_label": spec.label if spec else row.model,
        "settings": {k: v for k, v in row.params.items() if k in _SETTINGS and v},
        "state": row.state.value,
        "task_id": row.task_id,
        "credits": row.credits,
        "error": row.error_message,
        "files": [r.path for r in row.results if r.path],
        "created_at": row.created_at,
        "finished_at": row.finished_at,
        "parent": row.parent,
        "starred": row.starred,
    }


_SETTINGS = ("aspect_ratio", "resolution", "output_format", "routing", "variant", "variants")


def register_tools(studio: Studio) -> None:
    """Add the history tools to the Blocks being built."""

    async def list_generations(limit: int = 10, client_id: str = "") -> str:
        """List your most recent generations, newest first.

        Args:
            limit: how many to list, 1 to 50.
            client_id: the id you passed to /generate (on a shared deployment you see only
                the generations made with it).

        Returns:
            A JSON list, one object per generation: job_id, prompt, model, settings, state
            (done, failed, running, ...), task_id, credits, error (a plain sentence), files
            (saved images).
        """
        owner = history.owner_for(studio, client_id or None)
        rows = await asyncio.to_thread(
            studio.runner.ledger.history, owner, limit=max(1, min(int(limit), MAX_LISTED))
        )
        return json.dumps([_summary(studio, row) for row in rows], ensure_ascii=False)

    async def get_generation(job_id: str, client_id: str = "") -> str:
        """Get one generation's status and saved files.

        Args:
            job_id: a job id from /generate's status or from list_generations.
            client_id: the id you passed to /generate, on a shared deployment.

        Returns:
            A JSON object: job_id, prompt, model, settings, state, task_id, credits, error,
            files (saved images), created_at and finished_at (Unix seconds).
        """
        row = await history.selected_row(studio, client_id or None, job_id)
        return json.dumps(_summary(studio, row), ensure_ascii=False)

    gr.api(list_generations, api_name="list_generations", concurrency_limit=None)
    gr.api(get_generation, api_name="get_generation", concurrency_limit=None)
