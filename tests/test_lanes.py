"""The gate before the wire: lanes bound the requests in flight per kind, below the pool.

Requests are held inside a MockTransport handler (an asyncio.Event), so what is in flight at
once is counted, not timed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from conftest import read_seed

from providers.lanes import Lane, LaneLimits, Lanes, pool_limits
from providers.services import CATALOG
from providers.settings import service_configs
from providers.transport import ServiceTransport
from studio.backends import Backends


async def test_a_lane_lets_in_at_most_its_limit_in_order() -> None:
    lane = Lane("test", 3)
    release = asyncio.Event()
    entered: list[int] = []

    async def request(n: int) -> None:
        async with lane:
            entered.append(n)
            await release.wait()

    tasks = [asyncio.create_task(request(n)) for n in range(10)]
    await asyncio.sleep(0.01)
    assert entered == [0, 1, 2]
    assert (lane.in_flight, lane.waiting) == (3, 7)
    release.set()
    await asyncio.gather(*tasks)
    assert entered == list(range(10))  # first come, first served
    assert (lane.peak_in_flight, lane.peak_waiting, lane.passed) == (3, 7, 10)
    assert (lane.in_flight, lane.waiting) == (0, 0)


async def test_a_request_cancelled_while_waiting_leaves_no_trace() -> None:
    lane = Lane("test", 1)
    release = asyncio.Event()

    async def hold() -> None:
        async with lane:
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    assert lane.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (lane.in_flight, lane.waiting, lane.passed) == (1, 0, 0)
    release.set()
    await holder
    async with lane:  # the slot came back
        assert lane.in_flight == 1


def test_limits_must_leave_room() -> None:
    with pytest.raises(ValueError):
        LaneLimits(status=0)
    with pytest.raises(ValueError):
        Lane("none", 0)


def test_a_lanes_pool_has_room_for_the_whole_lane() -> None:
    pool = pool_limits(32)
    assert pool.max_connections is not None and pool.max_connections > 32
    assert pool.max_keepalive_connections == pool.max_connections


async def test_lanes_with_pools_send_on_their_own_connections() -> None:
    seen: list[str] = []

    def lane_pool(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(200, json={"ok": True})

    def caller_client(request: httpx.Request) -> httpx.Response:
        raise AssertionError("a lane with a pool of its own must not use the caller's client")

    lanes = Lanes(LaneLimits(submits=1, status=2), pools=httpx.Timeout(5.0))
    assert lanes.submits.http is not None and lanes.status.http is not None
    for lane in (lanes.submits, lanes.status):
        await lane.http.aclose()  # type: ignore[union-attr]
        lane.http = httpx.AsyncClient(transport=httpx.MockTransport(lane_pool))
    http = httpx.AsyncClient(transport=httpx.MockTransport(caller_client))
    transport = ServiceTransport(
        http, base_url="https://svc.test", api_key="lane-test-key-0123", provider="T", lanes=lanes
    )
    assert await transport.post_once("/submit", {}, body) == {"ok": True}
    assert await transport.get_with_retry("/status", {}, body) == {"ok": True}
    assert seen == ["POST", "GET"]
    await lanes.aclose()
    await http.aclose()
    assert Lanes().submits.http is None  # without pools: the caller's client


class HeldService:
    """A MockTransport handler that holds each request until released; counts them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.inside: dict[str, int] = {"GET": 0, "POST": 0}
        self.peak: dict[str, int] = {"GET": 0, "POST": 0}
        self.delay = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        method = request.method
        self.inside[method] += 1
        self.peak[method] = max(self.peak[method], self.inside[method])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            else:
                await self.release.wait()
        finally:
            self.inside[method] -= 1
        return httpx.Response(200, json={"ok": True})


def transport_for(service: HeldService, lanes: Lanes, **options: Any) -> ServiceTransport:
    http = httpx.AsyncClient(transport=httpx.MockTransport(service))
    return ServiceTransport(
        http,
        base_url="https://svc.test",
        api_key="lane-test-key-0123",
        provider="Test",
        lanes=lanes,
        **options,
    )


def body(response: httpx.Response) -> Any:
    return response.json()


async def test_status_reads_and_submits_each_keep_their_own_bound() -> None:
    service = HeldService()
    lanes = Lanes(LaneLimits(submits=2, status=5))
    transport = transport_for(service, lanes)
    reads = [
        asyncio.create_task(transport.get_with_retry("/status", {"id": str(n)}, body))
        for n in range(40)
    ]
    await asyncio.sleep(0.02)
    assert service.inside["GET"] == 5  # the rest wait on our gate, not on httpx's pool
    assert lanes.status.waiting == 35
    # A burst of status reads does not hold back a submit: it has a lane of its own.
    submits = [
        asyncio.create_task(transport.post_once("/submit", {"n": n}, body)) for n in range(6)
    ]
    await asyncio.sleep(0.02)
    assert service.inside["POST"] == 2
    service.release.set()
    assert all(r == {"ok": True} for r in await asyncio.gather(*reads, *submits))
    assert service.peak == {"GET": 5, "POST": 2}


async def test_waiting_on_the_gate_is_not_part_of_the_deadline() -> None:
    # Each request takes 60 ms under a 100 ms deadline; one at a time, the fourth waits about
    # 180 ms in its lane first, and must still succeed: nothing was sent while it waited.
    service = HeldService()
    service.delay = 0.06
    lanes = Lanes(LaneLimits(submits=1, status=1))
    transport = transport_for(service, lanes, deadline=0.1)
    submits = [transport.post_once("/submit", {"n": n}, body) for n in range(4)]
    assert await asyncio.gather(*submits) == [{"ok": True}] * 4
    assert service.peak["POST"] == 1


async def test_every_client_of_a_service_shares_its_lanes() -> None:
    # Two visitors' keys make two clients of one service; together they stay in one lane.
    done = read_seed("apixo_status_success")
    release = asyncio.Event()
    inside = [0, 0]  # now, peak

    async def service(request: httpx.Request) -> httpx.Response:
        inside[0] += 1
        inside[1] = max(inside)
        await release.wait()
        inside[0] -= 1
        return httpx.Response(200, json=done)

    http = httpx.AsyncClient(transport=httpx.MockTransport(service))
    backends = Backends(CATALOG, service_configs(CATALOG, {}), http=http)
    try:
        clients = [
            backends.for_service("nano_banana_pro", key).client
            for key in ("visitor-key-one-0123", "visitor-key-two-4567")
        ]
        assert clients[0] is not clients[1]
        reads = [
            asyncio.create_task(client.fetch_status(f"task_{n}"))
            for n in range(40)
            for client in clients
        ]
        await asyncio.sleep(0.05)
        limit = backends.lanes["nano_banana_pro"].limits.status
        assert inside[0] == limit < 80
        release.set()
        await asyncio.gather(*reads)
        assert inside[1] == limit
        assert backends.lanes["nano_banana_pro"].status.passed == 80
        assert backends.simulator_lanes["nano_banana_pro"].status.passed == 0  # its own gate
    finally:
        await backends.aclose()
