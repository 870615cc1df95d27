"""FakeCompute: the ``os-stop`` and ``os-start`` server actions, as Nova answers them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from ecs_rebuild_async import (
    AsyncEcsClient,
    ClientSettings,
    RebuildEvent,
    RebuildRequest,
    ServerStatus,
    TokenAuth,
)
from ecs_rebuild_async.testing import FakeCompute

IMAGE_B = "70a5e0a4-0000-4000-8000-00000000000b"


@pytest.fixture
def fake() -> FakeCompute:
    return FakeCompute(dialect="nova", max_version="2.100", time_scale=0)


@pytest.fixture
async def http(fake: FakeCompute) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"X-Auth-Token": fake.token, "OpenStack-API-Version": "compute 2.60"}
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=fake.compute_url, headers=headers
    ) as client:
        yield client


async def _act(http: httpx.AsyncClient, sid: str, body: Any) -> httpx.Response:
    return await http.post(f"/servers/{sid}/action", json=body)


async def _server(http: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    server: dict[str, Any] = (await http.get(f"/servers/{sid}")).json()["server"]
    return server


async def _states(
    fake: FakeCompute, http: httpx.AsyncClient, sid: str, *, steps: int = 20, step: float = 0.1
) -> list[tuple[str, str | None, str, int]]:
    """Each distinct (status, task_state, vm_state, power_state) while the clock steps on."""
    seen: list[tuple[str, str | None, str, int]] = []
    for _ in range(steps):
        server = await _server(http, sid)
        state = (
            server["status"],
            server["OS-EXT-STS:task_state"],
            server["OS-EXT-STS:vm_state"],
            server["OS-EXT-STS:power_state"],
        )
        if not seen or seen[-1] != state:
            seen.append(state)
        fake.advance(step)
    return seen


def _message(response: httpx.Response) -> str:
    ((_, fault),) = response.json().items()
    return str(fault["message"])


@pytest.mark.anyio
async def test_stop_goes_through_powering_off_to_shutoff(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    sid = fake.add_server()
    response = await _act(http, sid, {"os-stop": None})
    assert (response.status_code, response.content) == (202, b"")
    assert response.headers["x-openstack-request-id"].startswith("req-")
    assert await _states(fake, http, sid) == [
        ("ACTIVE", "powering-off", "active", 1),
        ("SHUTOFF", None, "stopped", 4),
    ]
    assert fake.truth(sid).status == "SHUTOFF"
    assert fake.rebuilds_accepted(sid) == 0


@pytest.mark.anyio
async def test_start_goes_through_powering_on_to_active(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    sid = fake.add_server(status="SHUTOFF")
    response = await _act(http, sid, {"os-start": None})
    assert response.status_code == 202
    assert await _states(fake, http, sid) == [
        ("SHUTOFF", "powering-on", "stopped", 4),
        ("ACTIVE", None, "active", 1),
    ]


@pytest.mark.anyio
async def test_stop_then_start_are_recorded_as_instance_actions(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    sid = fake.add_server()
    stop = await _act(http, sid, {"os-stop": None})
    fake.advance(5)
    start = await _act(http, sid, {"os-start": None})
    fake.advance(5)
    listed = (await http.get(f"/servers/{sid}/os-instance-actions")).json()["instanceActions"]
    assert [(a["action"], a["request_id"], a["message"]) for a in listed] == [
        ("start", start.headers["x-openstack-request-id"], None),
        ("stop", stop.headers["x-openstack-request-id"], None),
    ]
    one = await http.get(
        f"/servers/{sid}/os-instance-actions/{stop.headers['x-openstack-request-id']}",
        headers={"OpenStack-API-Version": "compute 2.51"},
    )
    (event,) = one.json()["instanceAction"]["events"]
    assert (event["event"], event["result"]) == ("compute_stop_instance", "Success")


@pytest.mark.anyio
async def test_an_error_server_can_be_stopped(fake: FakeCompute, http: httpx.AsyncClient) -> None:
    sid = fake.add_server(status="ERROR")
    assert (await _act(http, sid, {"os-stop": None})).status_code == 202
    assert (await _server(http, sid))["OS-EXT-STS:task_state"] == "powering-off"
    fake.advance(5)
    server = await _server(http, sid)
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("SHUTOFF", None)
    assert "fault" not in server


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "action", "state"),
    [
        ("SHUTOFF", "os-stop", "vm_state stopped"),
        ("PAUSED", "os-stop", "vm_state paused"),
        ("ACTIVE", "os-start", "vm_state active"),
        ("ERROR", "os-start", "vm_state error"),
    ],
)
async def test_actions_the_vm_state_forbids_are_409(
    fake: FakeCompute, http: httpx.AsyncClient, status: str, action: str, state: str
) -> None:
    sid = fake.add_server(status=status)
    response = await _act(http, sid, {action: None})
    verb = action.removeprefix("os-")
    assert response.status_code == 409
    assert response.json() == {
        "conflictingRequest": {
            "code": 409,
            "message": f"Cannot '{verb}' instance {sid} while it is in {state}",
        }
    }
    assert fake.truth(sid).status == status


@pytest.mark.anyio
async def test_a_running_task_makes_stop_and_start_409(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    rebuilding = fake.add_server()
    accepted = await _act(http, rebuilding, {"rebuild": {"imageRef": IMAGE_B}})
    assert accepted.status_code == 202
    refused = await _act(http, rebuilding, {"os-stop": None})
    assert _message(refused) == (
        f"Cannot 'stop' instance {rebuilding} while it is in task_state rebuilding"
    )
    stopping = fake.add_server()
    assert (await _act(http, stopping, {"os-stop": None})).status_code == 202
    again = await _act(http, stopping, {"os-stop": None})
    assert (again.status_code, _message(again)) == (
        409,
        f"Cannot 'stop' instance {stopping} while it is in task_state powering-off",
    )
    # A rebuild is refused while the server powers off, too.
    rebuild = await _act(http, stopping, {"rebuild": {"imageRef": IMAGE_B}})
    assert _message(rebuild).endswith("while it is in task_state powering-off")


@pytest.mark.anyio
async def test_locked_and_unknown_servers(fake: FakeCompute, http: httpx.AsyncClient) -> None:
    locked = fake.add_server(locked=True)
    response = await _act(http, locked, {"os-stop": None})
    assert (response.status_code, _message(response)) == (409, f"Instance {locked} is locked")
    missing = "a0a80a94-3d81-4a10-822a-daa0cf9e870b"
    gone = await _act(http, missing, {"os-start": None})
    assert (gone.status_code, _message(gone)) == (
        404,
        f"Instance {missing} could not be found.",
    )


@pytest.mark.anyio
async def test_other_actions_are_still_unknown(fake: FakeCompute, http: httpx.AsyncClient) -> None:
    response = await _act(http, fake.add_server(), {"os-resetState": {"state": "error"}})
    assert (response.status_code, _message(response)) == (
        400,
        "There is no such action: os-resetState",
    )


@pytest.mark.anyio
async def test_library_rebuild_of_a_server_stopped_by_os_stop_ends_shutoff(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    sid = fake.add_server()
    assert (await _act(http, sid, {"os-stop": None})).status_code == 202
    fake.advance(5)
    events: list[RebuildEvent] = []
    reads = 0

    async def step_clock() -> None:
        # Step the frozen clock a little after each read, so every phase is seen.
        # It also steps when nothing was read for a while, so that a request waiting on the
        # fake's clock (the rebuild's answer, awaited even under cancellation) cannot wait on
        # it for ever.
        nonlocal reads
        idle = 0
        while True:
            current = fake.stats.requests[("GET", "server")]
            idle += 1
            if current > reads or idle >= 200:
                reads = max(reads, current)
                idle = 0
                fake.advance(0.05)
            await anyio.sleep(0.001)

    settings = ClientSettings(poll_first_delay=0.01, poll_interval=0.01, poll_interval_max=0.01)
    async with (
        AsyncEcsClient(
            fake.compute_url,
            auth=TokenAuth(fake.token),
            transport=fake.transport(),
            settings=settings,
        ) as ecs,
        anyio.create_task_group() as group,
    ):
        group.start_soon(step_clock)
        done = await ecs.rebuild_and_wait(
            sid, RebuildRequest(image_ref=IMAGE_B), timeout=60, on_event=events.append
        )
        group.cancel_scope.cancel()
    assert (done.status, done.task_state) == (ServerStatus.SHUTOFF, None)
    seen = [(e.status, e.task_state) for e in events]
    # The brief ACTIVE with no task between the spawn and powering-off was seen, and passed.
    assert (ServerStatus.ACTIVE, None) in seen
    assert (ServerStatus.ACTIVE, "powering-off") in seen
    assert events[-1].phase == "done"
