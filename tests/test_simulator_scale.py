"""The simulator under benchmark loads: one drawing per setting, callbacks bounded in flight."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

import simulator.core as simulator_core
from simulator import Simulator, SimulatorConfig

BASE = "http://simulator.test"
SUBMIT = "/api/v1/generateTask/nano-banana-pro"
STATUS = "/api/v1/statusTask/nano-banana-pro"


async def result_of(client: httpx.AsyncClient, resolution: str, prompt: str) -> bytes:
    body = {
        "request_type": "async",
        "input": {"mode": "text-to-image", "prompt": prompt, "resolution": resolution},
    }
    task_id = (await client.post(SUBMIT, json=body)).json()["data"]["taskId"]
    while True:
        data = (await client.get(STATUS, params={"taskId": task_id})).json()["data"]
        if data["state"] == "success":
            (url,) = json.loads(data["resultJson"])["resultUrls"]
            return (await client.get(url)).content
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("reuse", [True, False])
async def test_one_drawing_per_setting(reuse: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    real = simulator_core.render_image

    def counting(request: Any) -> bytes:
        drawn.append(request.resolution)
        return real(request)

    monkeypatch.setattr(simulator_core, "render_image", counting)
    sim = Simulator(SimulatorConfig(time_scale=0.002, seed=1, reuse_renders=reuse))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app),
        base_url=BASE,
        headers={"Authorization": "Bearer sim-key-123456"},
    )
    try:
        images = await asyncio.gather(
            result_of(client, "1K", "a fox"),
            result_of(client, "1K", "a cat"),
            result_of(client, "2K", "a fox"),
        )
    finally:
        await client.aclose()
        await sim.aclose()
    if reuse:
        assert sorted(drawn) == ["1K", "2K"]
        assert images[0] == images[1] != images[2]
    else:
        assert sorted(drawn) == ["1K", "1K", "2K"]
        assert images[0] != images[1]


async def test_callbacks_in_flight_are_bounded() -> None:
    release = asyncio.Event()
    inside = [0, 0]  # now, peak

    async def receiver(request: httpx.Request) -> httpx.Response:
        inside[0] += 1
        inside[1] = max(inside)
        await release.wait()
        inside[0] -= 1
        return httpx.Response(200, json={"ok": True})

    callbacks = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    sim = Simulator(SimulatorConfig(time_scale=0.001, seed=1), callback_client=callbacks)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app),
        base_url=BASE,
        headers={"Authorization": "Bearer sim-key-123456"},
    )
    body = {
        "request_type": "callback",
        "callback_url": "https://app.test/callbacks/job/token",
        "input": {"mode": "text-to-image", "prompt": "a kite", "resolution": "1K"},
    }
    try:
        for _ in range(50):
            assert (await client.post(SUBMIT, json=body)).status_code == 200
        for _ in range(200):  # the tasks end within 30 ms; their callbacks then queue
            await asyncio.sleep(0.01)
            if inside[0] >= 32:
                break
        await asyncio.sleep(0.05)
        assert inside[0] == 32
        release.set()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if all(task.callback_delivered for task in sim.tasks.values()):
                break
        assert all(task.callback_delivered for task in sim.tasks.values())
        assert inside[1] == 32
    finally:
        release.set()
        await client.aclose()
        await sim.aclose()
        await callbacks.aclose()
