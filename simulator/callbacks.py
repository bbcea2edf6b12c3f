"""Webhook delivery with a few retries; failures are logged, never raised."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from simulator.tasks import TaskRecord

logger = logging.getLogger("simulator")


async def post_callback(
    client: httpx.AsyncClient,
    task: TaskRecord,
    body: dict[str, Any],
    *,
    attempts: int,
    backoff: float,
) -> bool:
    """POST `body` to the task's callback URL; True once a 2xx answer arrives."""
    url = task.callback_url
    if url is None:
        return False
    for attempt in range(1, attempts + 1):
        task.callback_attempts = attempt
        try:
            response = await client.post(url, json=body)
        except Exception as exc:  # any failure of a webhook receiver must not hurt the simulator
            logger.warning(
                "callback for %s to %s failed (attempt %d/%d): %r",
                task.id,
                url,
                attempt,
                attempts,
                exc,
            )
        else:
            if response.is_success:
                task.callback_delivered = True
                return True
            logger.warning(
                "callback for %s to %s answered HTTP %d (attempt %d/%d)",
                task.id,
                url,
                response.status_code,
                attempt,
                attempts,
            )
        if attempt < attempts:
            await asyncio.sleep(backoff * 2 ** (attempt - 1))
    task.callback_delivered = False
    logger.error("callback for %s to %s gave up after %d attempts", task.id, url, attempts)
    return False
