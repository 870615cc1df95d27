"""Truth against the real service: an earlier rebuild is never taken for this one, and a server
stopped between a fleet's listing and its own rebuild ends SHUTOFF ok."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from ecs_rebuild_async import RebuildOutcomeUnknown, RebuildRequest, ServerStatus

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class GatewayRefusesOnce(httpx.AsyncBaseTransport):
    """A gateway in front of the service that answers the first rebuild with an HTML 503 and
    never forwards it; everything else goes through."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and not self.refused:
            body = json.loads(await request.aread() or b"{}")
            if isinstance(body, dict) and "rebuild" in body:
                self.refused += 1
                page = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
                return httpx.Response(
                    503, headers={"Content-Type": "text/html"}, content=page, request=request
                )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def rebuild_actions(target: Any, server_id: str) -> int:
    async with target.raw() as http:
        answer = await http.get(f"servers/{server_id}/os-instance-actions")
    assert answer.status_code == 200, answer.text
    return sum(1 for action in answer.json()["instanceActions"] if action["action"] == "rebuild")


async def wait_for_state(target: Any, server_id: str, status: str) -> None:
    async with target.raw() as http:
        with anyio.fail_after(target.wait_timeout):
            while True:
                shown = (await http.get(f"servers/{server_id}")).json()["server"]
                if (shown["status"], shown["OS-EXT-STS:task_state"]) == (status, None):
                    return
                await anyio.sleep(0.3)


@pytest.mark.parametrize("two_step", [False, True], ids=["rebuild_and_wait", "rebuild-then-wait"])
async def test_a_503_that_never_reached_nova_is_not_proven_by_an_earlier_rebuild(
    target: Any, two_step: bool
) -> None:
    server_id = target.take_server()
    earlier = target.need("slow_image")  # its start and end fall in different seconds
    wanted = target.need("image_alt")
    async with target.client() as first:
        await first.rebuild_and_wait(
            server_id, RebuildRequest(image_ref=earlier), timeout=target.wait_timeout
        )
    before = await rebuild_actions(target, server_id)
    gateway = GatewayRefusesOnce()
    async with target.client(transport=gateway) as fresh:
        request = RebuildRequest(image_ref=wanted)
        try:
            if two_step:
                await fresh.rebuild(server_id, request)
                done = await fresh.wait_for_rebuild(server_id, timeout=target.wait_timeout)
            else:
                done = await fresh.rebuild_and_wait(server_id, request, timeout=target.wait_timeout)
        except RebuildOutcomeUnknown:
            pytest.fail("the earlier rebuild ended seconds after it began: it can be told apart")
    assert gateway.refused == 1
    # Proven not carried out, sent once more, and done on the image this call asked for.
    assert await rebuild_actions(target, server_id) == before + 1
    assert done.image_id == wanted
    assert (done.status, done.task_state) == (ServerStatus.ACTIVE, None)
    shown = await target.raw_server(server_id, None)
    assert shown["image"]["id"] == wanted


async def test_a_server_stopped_after_the_fleet_listing_ends_shutoff_ok(target: Any) -> None:
    first, second = target.take_servers(2)
    slow = target.need("slow_image")  # the first takes seconds: time to stop the second
    wanted = target.need("image_alt")
    stopped: list[int] = []

    async def stop_the_second_while_the_first_rebuilds() -> None:
        async with target.raw() as http:
            with anyio.fail_after(target.wait_timeout):
                while True:
                    shown = (await http.get(f"servers/{first}")).json()["server"]
                    if shown["status"] == "REBUILD":
                        break
                    await anyio.sleep(0.2)
            answer = await http.post(f"servers/{second}/action", json={"os-stop": None})
            stopped.append(answer.status_code)
        await wait_for_state(target, second, "SHUTOFF")

    async with target.client() as ecs, anyio.create_task_group() as group:
        group.start_soon(stop_the_second_while_the_first_rebuilds)
        outcomes = await ecs.rebuild_many(
            [(first, RebuildRequest(image_ref=slow)), (second, RebuildRequest(image_ref=wanted))],
            concurrency=1,
            timeout=target.wait_timeout,
        )
    assert stopped == [202]
    by_id = {outcome.server_id: outcome for outcome in outcomes}
    assert by_id[first].ok, by_id[first]
    assert by_id[second].ok, by_id[second]
    server = by_id[second].server
    assert server is not None
    assert (server.status, server.task_state, server.image_id) == (
        ServerStatus.SHUTOFF,
        None,
        wanted,
    )
    shown = await target.raw_server(second, None)
    assert (shown["status"], shown["image"]["id"]) == ("SHUTOFF", wanted)


async def test_rebuilds_to_the_image_the_server_runs_are_each_proven_done(target: Any) -> None:
    """Rebuilt to the image it already runs, three times in a row: Nova's fake driver ends each
    within moments, often within the second it was accepted, where no read can tell the end
    from the start. Each call ends done (proven by a read or by the rebuild's instance action),
    never by timing out, and Nova records exactly one rebuild per call."""
    server_id = target.take_server()
    image = target.need("image")
    async with target.client() as ecs:
        await ecs.rebuild_and_wait(
            server_id, RebuildRequest(image_ref=image), timeout=target.wait_timeout
        )
        before = await rebuild_actions(target, server_id)
        for _ in range(3):
            done = await ecs.rebuild_and_wait(
                server_id, RebuildRequest(image_ref=image), timeout=target.wait_timeout
            )
            assert (done.status, done.task_state) == (ServerStatus.ACTIVE, None)
            assert done.image_id == image
    assert await rebuild_actions(target, server_id) == before + 3
