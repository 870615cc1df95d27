"""How rebuilds end against the real service: failure with the fault, refusals, ERROR and
stopped servers, deadlines, and fleets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import anyio
import pytest

from ecs_rebuild_async import (
    ECS,
    NOVA,
    BadRequest,
    Conflict,
    InvalidRequest,
    NotFound,
    OutcomeKind,
    RebuildEvent,
    RebuildFailed,
    RebuildRequest,
    RebuildTimeout,
    ServerStatus,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_image_that_fails_to_spawn_ends_in_rebuild_failed_with_the_fault(
    target: Any, model_problems: Any
) -> None:
    failing = target.need("failing_image")
    server_id = target.take_server()
    async with target.client() as ecs:
        with pytest.raises(RebuildFailed) as caught:
            await ecs.rebuild_and_wait(
                server_id, RebuildRequest(image_ref=failing), timeout=target.wait_timeout
            )
        version = await ecs.negotiate()
    failed = caught.value
    assert failed.server is not None
    assert failed.server.status is ServerStatus.ERROR
    raw = await target.raw_server(server_id, version)
    assert raw["status"] == "ERROR"
    assert failed.fault is not None
    assert failed.fault == failed.server.fault
    assert (failed.fault.code, failed.fault.message) == (
        raw["fault"]["code"],
        raw["fault"]["message"],
    )
    assert failed.fault.message in str(failed)
    # Read again later: Nova may have saved the instance since (a newer ``updated``), nothing else.
    problems = model_problems(failed.server, raw)
    assert [p for p in problems if not p.startswith("updated:")] == []
    assert failed.server.updated is not None
    assert datetime.fromisoformat(raw["updated"].replace("Z", "+00:00")) >= failed.server.updated


async def test_paused_server_gives_conflict_naming_its_state(target: Any) -> None:
    paused = target.need("paused_server")
    async with target.client() as ecs:
        with pytest.raises(Conflict) as caught:
            await ecs.rebuild(paused, RebuildRequest(image_ref=target.need("image")))
        after = await ecs.get_server(paused)
    assert caught.value.status == 409
    assert caught.value.state == "vm_state paused"
    assert caught.value.request_id
    assert after.status is ServerStatus.PAUSED


async def test_locked_server_gives_conflict_naming_the_lock(target: Any) -> None:
    locked = target.need("locked_server")
    async with target.client() as ecs:
        with pytest.raises(Conflict) as caught:
            await ecs.rebuild_and_wait(locked, RebuildRequest(image_ref=target.need("image")))
    assert caught.value.status == 409
    assert caught.value.state == "locked"


async def test_unknown_server_gives_not_found(target: Any) -> None:
    missing = str(uuid.uuid4())
    async with target.client() as ecs:
        with pytest.raises(NotFound) as caught:
            await ecs.rebuild(missing, RebuildRequest(image_ref=target.need("image")))
        with pytest.raises(NotFound):
            await ecs.get_server(missing)
    assert caught.value.status == 404
    assert missing in caught.value.message


@pytest.fixture(scope="module")
def refused_server(target: Any) -> str:
    """One server for the requests the service refuses (it is never rebuilt)."""
    return str(target.take_server())


async def test_unknown_key_pair_gives_bad_request(target: Any, refused_server: str) -> None:
    request = RebuildRequest(image_ref=target.need("image"), key_name=f"no-such-{uuid.uuid4()}")
    async with target.client() as ecs:
        with pytest.raises(BadRequest) as caught:
            await ecs.rebuild(refused_server, request)
        after = await ecs.get_server(refused_server)
    assert caught.value.status == 400
    assert (after.status, after.task_state) == (ServerStatus.ACTIVE, None)


async def test_unknown_image_gives_bad_request(target: Any, refused_server: str) -> None:
    async with target.client() as ecs:
        with pytest.raises(BadRequest) as caught:
            await ecs.rebuild(refused_server, RebuildRequest(image_ref=str(uuid.uuid4())))
        after = await ecs.get_server(refused_server)
    assert caught.value.status == 400
    assert "image" in caught.value.message.lower()
    assert (after.status, after.task_state) == (ServerStatus.ACTIVE, None)


async def test_second_rebuild_while_one_runs_gives_conflict(target: Any) -> None:
    slow = target.need("slow_image")
    server_id = target.take_server()
    async with target.client() as ecs:
        accepted = await ecs.rebuild(server_id, RebuildRequest(image_ref=slow))
        with pytest.raises(Conflict) as caught:
            await ecs.rebuild(server_id, RebuildRequest(image_ref=target.need("image")))
    assert accepted.status is ServerStatus.REBUILD
    assert caught.value.status == 409
    assert caught.value.state is not None
    assert caught.value.state.startswith("task_state rebuild")


async def test_deadline_shorter_than_the_spawn_times_out_then_the_next_wait_ends_active(
    target: Any,
) -> None:
    slow = target.need("slow_image")
    server_id = target.take_server()
    async with target.client() as ecs:
        with pytest.raises(RebuildTimeout) as caught:
            await ecs.rebuild_and_wait(server_id, RebuildRequest(image_ref=slow), timeout=1.5)
        last = caught.value.server
        assert last is not None
        assert last.status is ServerStatus.REBUILD
        assert last.task_state is not None
        done = await ecs.wait_for_rebuild(
            server_id, timeout=target.wait_timeout, since=last.updated
        )
    assert (done.status, done.task_state, done.image_id) == (ServerStatus.ACTIVE, None, slow)


async def test_nova_dialect_rebuilds_a_server_in_error_back_to_active(target: Any) -> None:
    if target.dialect is ECS:
        pytest.skip("ECS_IT_DIALECT is ecs: ECS cannot rebuild a server in ERROR")
    broken = target.need("error_server")
    # Another image than the seed's, so that the end is proven by the image shown however
    # quickly the fake virt driver finishes (see the README on same-image rebuilds).
    image = target.need("image_alt")
    async with target.client(dialect=ECS) as ecs:
        assert (await ecs.get_server(broken)).status is ServerStatus.ERROR
        with pytest.raises(InvalidRequest):
            await ecs.rebuild_and_wait(broken, RebuildRequest(image_ref=image))
    events: list[RebuildEvent] = []
    async with target.client(dialect=NOVA) as nova:
        done = await nova.rebuild_and_wait(
            broken,
            RebuildRequest(image_ref=image, name="repaired"),
            timeout=target.wait_timeout,
            on_event=events.append,
        )
    assert (done.status, done.task_state, done.name) == (ServerStatus.ACTIVE, None, "repaired")
    assert done.fault is None
    assert events[0].phase == "submitted"
    assert events[-1].phase == "done"


async def test_stopped_server_ends_shutoff(target: Any) -> None:
    server_id = target.take_server()
    image = target.image_alt or target.need("image")
    async with target.raw() as http:
        stopped = await http.post(f"servers/{server_id}/action", json={"os-stop": None})
        assert stopped.status_code == 202, stopped.text
        with anyio.fail_after(target.wait_timeout):
            while True:
                shown = (await http.get(f"servers/{server_id}")).json()["server"]
                if (shown["status"], shown["OS-EXT-STS:task_state"]) == ("SHUTOFF", None):
                    break
                await anyio.sleep(0.3)
    events: list[RebuildEvent] = []
    async with target.client() as ecs:
        done = await ecs.rebuild_and_wait(
            server_id,
            RebuildRequest(image_ref=image, name="stopped-rebuilt"),
            timeout=target.wait_timeout,
            on_event=events.append,
        )
    assert (done.status, done.task_state) == (ServerStatus.SHUTOFF, None)
    assert (done.image_id, done.name) == (image, "stopped-rebuilt")
    assert events[-1].phase == "done"


async def test_rebuild_many_over_a_fleet_gives_every_server_ok(target: Any) -> None:
    fleet = target.take_servers(target.fleet_size)
    image = target.image_alt or target.need("image")
    request = RebuildRequest(image_ref=image, name="fleet", metadata={"fleet": "yes"})
    async with target.client() as ecs:
        outcomes = await ecs.rebuild_many(fleet, request, timeout=target.wait_timeout)
        stats = ecs.stats
    assert [o.server_id for o in outcomes] == fleet
    assert [(o.ok, o.kind, o.error) for o in outcomes] == [(True, OutcomeKind.OK, None)] * len(
        fleet
    )
    for outcome in outcomes:
        assert outcome.server is not None
        assert outcome.submitted
        assert (outcome.server.status, outcome.server.task_state) == (ServerStatus.ACTIVE, None)
        assert (outcome.server.image_id, outcome.server.name) == (image, "fleet")
        assert dict(outcome.server.metadata) == {"fleet": "yes"}
    # The waits were served by fleet listings (changes-since), not only one GET per server.
    assert stats["poll_listings"] >= 1
