"""FakeCompute: the rebuild action — validation, conflicts, timelines, injected faults."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from samples import load_sample

from ecs_rebuild_async.testing import FakeCompute, InjectedFault

IMAGE_B = "70a5e0a4-0000-4000-8000-00000000000b"


@pytest.fixture
def fake() -> FakeCompute:
    fake = FakeCompute(time_scale=0)  # frozen: the tests step the clock
    fake.add_keypair("k1")
    return fake


@pytest.fixture
async def http(fake: FakeCompute) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"X-Auth-Token": fake.token}
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=fake.compute_url, headers=headers
    ) as client:
        yield client


async def _rebuild(
    http: httpx.AsyncClient, sid: str, body: Any, version: str = "2.60"
) -> httpx.Response:
    headers = {"OpenStack-API-Version": f"compute {version}"}
    return await http.post(f"/servers/{sid}/action", json=body, headers=headers)


async def _state(http: httpx.AsyncClient, sid: str) -> tuple[str, str | None]:
    server = (await http.get(f"/servers/{sid}")).json()["server"]
    return server["status"], server["OS-EXT-STS:task_state"]


def _message(response: httpx.Response) -> str:
    ((_, fault),) = response.json().items()
    return str(fault["message"])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("field", "value", "ok_from", "gone_at"),
    [
        ("description", "d", "2.19", None),
        ("key_name", "k1", "2.54", None),
        ("user_data", "ZWNobyBoaQ==", "2.57", None),
        ("personality", [{"path": "/a", "contents": "YQ=="}], "2.1", "2.57"),
    ],
)
async def test_fields_follow_their_microversion_ranges(
    fake: FakeCompute,
    http: httpx.AsyncClient,
    field: str,
    value: Any,
    ok_from: str,
    gone_at: str | None,
) -> None:
    sid = fake.add_server()
    body = {"rebuild": {"imageRef": fake.default_image, field: value}}
    major, minor = ok_from.split(".")
    if ok_from != "2.1":
        below = await _rebuild(http, sid, body, f"{major}.{int(minor) - 1}")
        assert below.status_code == 400
        assert f"Additional properties are not allowed ('{field}' was unexpected)" in _message(
            below
        )
    accepted = await _rebuild(http, sid, body, ok_from)
    assert accepted.status_code == 202
    if gone_at is not None:
        fake.advance(10)
        after = await _rebuild(http, sid, body, gone_at)
        assert after.status_code == 400
        assert f"('{field}' was unexpected)" in _message(after)


@pytest.mark.anyio
async def test_schema_error_matches_the_sample(fake: FakeCompute, http: httpx.AsyncClient) -> None:
    sid = fake.add_server()
    body = {"rebuild": {"imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "key_name": "k1"}}
    response = await _rebuild(http, sid, body, "2.53")
    assert response.json() == load_sample("nova/errors/rebuild-400-schema-additional-property.json")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("rebuild", "needle"),
    [
        ({"name": "x"}, "'imageRef' is a required property"),
        ({"imageRef": "not-a-uuid"}, "'not-a-uuid' is not a 'uuid'"),
        ({"imageRef": IMAGE_B, "name": ""}, "is too short"),
        ({"imageRef": IMAGE_B, "name": "x" * 255}, "is too long"),  # ECS allows 254
        ({"imageRef": IMAGE_B, "name": " padded"}, "An invalid 'name' value"),
        ({"imageRef": IMAGE_B, "metadata": [1]}, "[1] is not of type 'object'"),
        ({"imageRef": IMAGE_B, "metadata": {"k": "v" * 256}}, "is too long"),
        ({"imageRef": IMAGE_B, "metadata": {"bad/key": "v"}}, "does not match any of the regexes"),
        ({"imageRef": IMAGE_B, "user_data": "abc"}, "is not a 'base64'"),
        ({"imageRef": IMAGE_B, "accessIPv4": ""}, "is not a 'ipv4'"),
        ({"imageRef": IMAGE_B, "hostname": "h"}, "('hostname' was unexpected)"),
    ],
)
async def test_invalid_bodies_get_nova_messages(
    fake: FakeCompute, http: httpx.AsyncClient, rebuild: dict[str, Any], needle: str
) -> None:
    response = await _rebuild(http, fake.add_server(), {"rebuild": rebuild})
    assert response.status_code == 400
    assert needle in _message(response)
    assert fake.rebuilds_accepted(fake.server_ids()[-1]) == 0


@pytest.mark.anyio
async def test_user_data_is_never_echoed_in_errors(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    secret = "c2VjcmV0cw"  # "secrets" with its padding missing
    response = await _rebuild(
        http, fake.add_server(), {"rebuild": {"imageRef": IMAGE_B, "user_data": secret}}
    )
    assert response.status_code == 400
    assert secret not in response.text


@pytest.mark.anyio
async def test_ecs_user_data_limit_is_32k_before_encoding() -> None:
    too_big = base64.b64encode(b"x" * (32 * 1024 + 1)).decode()
    for dialect, expected in (("ecs", 400), ("nova", 202)):
        fake = FakeCompute(dialect=dialect, time_scale=0)  # type: ignore[arg-type]  # parametrized str
        body = {"rebuild": {"imageRef": IMAGE_B, "user_data": too_big}}
        status, _, _ = fake.handle(
            "POST",
            f"/v2.1/{fake.project_id}/servers/{fake.add_server()}/action",
            headers={"X-Auth-Token": fake.token, "OpenStack-API-Version": "compute 2.57"},
            body=httpx.Request("POST", "http://x", json=body).read(),
        )
        assert status == expected


@pytest.mark.anyio
async def test_hostname_rules_change_at_2_94() -> None:
    fake = FakeCompute(dialect="nova", max_version="2.100", time_scale=0, rebuild_seconds=0)
    sid = fake.add_server()
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=fake.compute_url, headers={"X-Auth-Token": fake.token}
    ) as http:
        fqdn = {"rebuild": {"imageRef": IMAGE_B, "hostname": "web.example.com"}}
        assert (await _rebuild(http, sid, fqdn, "2.90")).status_code == 400
        assert (await _rebuild(http, sid, fqdn, "2.94")).status_code == 202


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "sample", "status"),
    [
        (b'{"rebuild": ', "rebuild-400-malformed-body.json", 400),
        (b'{"rebuild": {}, "x": 1}', "rebuild-400-malformed-body.json", 400),
        (b'{"rebuid": {}}', "rebuild-400-no-such-action.json", 400),
    ],
)
async def test_unroutable_bodies(
    fake: FakeCompute, http: httpx.AsyncClient, body: bytes, sample: str, status: int
) -> None:
    response = await http.post(f"/servers/{fake.add_server()}/action", content=body)
    assert response.status_code == status
    assert response.json() == load_sample(f"nova/errors/{sample}")


@pytest.mark.anyio
async def test_unknown_image_and_key_name(fake: FakeCompute, http: httpx.AsyncClient) -> None:
    sid = fake.add_server()
    image = await _rebuild(
        http, sid, {"rebuild": {"imageRef": "11111111-2222-4333-8444-555555555555"}}
    )
    key = await _rebuild(http, sid, {"rebuild": {"imageRef": IMAGE_B, "key_name": "nope"}})
    assert image.json() == load_sample("nova/errors/rebuild-400-image-not-found.json")
    assert key.json() == load_sample("nova/errors/rebuild-400-bad-key-name.json")


@pytest.mark.anyio
async def test_metadata_quota_is_403(fake: FakeCompute, http: httpx.AsyncClient) -> None:
    metadata = {f"k{i}": "v" for i in range(129)}
    response = await _rebuild(
        http, fake.add_server(), {"rebuild": {"imageRef": IMAGE_B, "metadata": metadata}}
    )
    assert response.json() == load_sample("nova/errors/rebuild-403-metadata-quota.json")


@pytest.mark.anyio
async def test_unknown_server_is_404(http: httpx.AsyncClient) -> None:
    sid = "a0a80a94-3d81-4a10-822a-daa0cf9e870b"
    response = await _rebuild(http, sid, {"rebuild": {"imageRef": IMAGE_B}})
    assert response.json() == load_sample("nova/errors/rebuild-404-server.json")


@pytest.mark.anyio
async def test_conflicts(fake: FakeCompute, http: httpx.AsyncClient) -> None:
    body = {"rebuild": {"imageRef": IMAGE_B}}
    busy = fake.add_server(server_id="a0a80a94-3d81-4a10-822a-daa0cf9e870b")
    assert (await _rebuild(http, busy, body)).status_code == 202
    second = await _rebuild(http, busy, body)
    assert second.json() == load_sample("nova/errors/rebuild-409-task-state.json")
    locked = await _rebuild(http, fake.add_server(locked=True), body)
    assert locked.status_code == 409
    assert _message(locked).endswith("is locked")
    paused = await _rebuild(http, fake.add_server(status="PAUSED"), body)
    assert _message(paused).endswith("while it is in vm_state paused")
    error = await _rebuild(http, fake.add_server(status="ERROR"), body)
    assert _message(error).endswith("while it is in vm_state error")  # ECS refuses ERROR
    assert fake.rebuilds_accepted(busy) == 1


@pytest.mark.anyio
async def test_nova_dialect_rebuilds_error_servers_to_active() -> None:
    fake = FakeCompute(dialect="nova", time_scale=0)
    sid = fake.add_server(status="ERROR")
    status, _, _ = fake.handle(
        "POST",
        f"/v2.1/{fake.project_id}/servers/{sid}/action",
        headers={"X-Auth-Token": fake.token},
        body=b'{"rebuild": {"imageRef": "%s"}}' % IMAGE_B.encode(),
    )
    assert status == 202
    fake.advance(5)
    assert (fake.truth(sid).status, fake.truth(sid).fault) == ("ACTIVE", None)


@pytest.mark.anyio
async def test_active_timeline_and_applied_fields(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    sid = fake.add_server(name="old", metadata={"old": "1"}, key_name=None)
    body = {
        "rebuild": {"imageRef": IMAGE_B, "name": "new", "metadata": {"new": "2"}, "key_name": "k1"}
    }
    accepted = await _rebuild(http, sid, body)
    server = accepted.json()["server"]
    assert accepted.status_code == 202
    assert accepted.headers["location"].endswith(f"/servers/{sid}")
    assert (server["status"], server["name"], server["metadata"]) == (
        "REBUILD",
        "new",
        {"new": "2"},
    )
    assert server["image"]["id"] == IMAGE_B
    assert server["adminPass"]
    seen = [await _state(http, sid)]
    for step in (1.1, 0.7, 0.3):
        fake.advance(step)
        seen.append(await _state(http, sid))
    assert seen == [
        ("REBUILD", "rebuilding"),
        ("REBUILD", "rebuild_spawning"),
        ("REBUILD", "rebuild_spawning"),
        ("ACTIVE", None),
    ]
    truth = fake.truth(sid)
    assert (truth.image_id, truth.key_name, truth.rebuilds) == (IMAGE_B, "k1", 1)


@pytest.mark.anyio
async def test_stopped_server_passes_active_then_powering_off_and_ends_shutoff(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    # nova/compute/manager.py saves ACTIVE with no task after the spawn, then powering-off.
    sid = fake.add_server(status="SHUTOFF")
    launched_before = (await http.get(f"/servers/{sid}")).json()["server"]["OS-SRV-USG:launched_at"]
    fake.advance(1)
    await _rebuild(http, sid, {"rebuild": {"imageRef": IMAGE_B}})
    seen: list[tuple[str, str | None, str]] = []
    launched: dict[tuple[str, str | None, str], str] = {}
    for _ in range(60):
        server = (await http.get(f"/servers/{sid}")).json()["server"]
        state = (server["status"], server["OS-EXT-STS:task_state"], server["OS-EXT-STS:vm_state"])
        if not seen or seen[-1] != state:
            seen.append(state)
            launched[state] = server["OS-SRV-USG:launched_at"]
        fake.advance(0.05)
    assert seen == [
        ("REBUILD", "rebuilding", "stopped"),
        ("REBUILD", "rebuild_spawning", "stopped"),
        ("ACTIVE", None, "active"),
        ("ACTIVE", "powering-off", "active"),
        ("SHUTOFF", None, "stopped"),
    ]
    # launched_at is the spawn's time from the ACTIVE step on, and stays after SHUTOFF.
    assert launched[seen[1]] == launched_before
    assert launched[seen[2]] > launched_before
    assert launched[seen[2]] == launched[seen[3]] == launched[seen[4]]


@pytest.mark.anyio
async def test_failed_rebuild_ends_in_error_with_fault(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    sid = fake.add_server(fail=True)
    before = (await http.get(f"/servers/{sid}")).json()["server"]["updated"]
    fake.advance(1)
    await _rebuild(http, sid, {"rebuild": {"imageRef": IMAGE_B}})
    fake.advance(3)
    server = (await http.get(f"/servers/{sid}")).json()["server"]
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("ERROR", None)
    assert server["fault"]["code"] == 500
    assert server["fault"]["message"] == "RuntimeError: spawn failed"
    assert set(server["fault"]) >= set(
        load_sample("nova/api-guide/faults/server-get-error-fault.json")["server"]["fault"]
    )
    assert server["updated"] > before
    assert fake.truth(sid).fault == "RuntimeError: spawn failed"


@pytest.mark.anyio
async def test_fail_rate_is_seeded() -> None:
    outcomes = []
    for _ in range(2):
        fake = FakeCompute(time_scale=0, fail_rate=0.5, seed=7)
        ids = fake.add_servers(20)
        for sid in ids:
            fake.handle(
                "POST",
                f"/v2.1/{fake.project_id}/servers/{sid}/action",
                headers={"X-Auth-Token": fake.token},
                body=b'{"rebuild": {"imageRef": "%s"}}' % IMAGE_B.encode(),
            )
        fake.advance(10)
        outcomes.append([fake.truth(sid).status for sid in ids])
    assert outcomes[0] == outcomes[1]
    assert {"ACTIVE", "ERROR"} == set(outcomes[0])


@pytest.mark.anyio
async def test_stale_accepted_body_shows_the_previous_state() -> None:
    fake = FakeCompute(time_scale=0, accepted_body="stale")
    sid = fake.add_server()
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=fake.compute_url, headers={"X-Auth-Token": fake.token}
    ) as http:
        accepted = await _rebuild(http, sid, {"rebuild": {"imageRef": IMAGE_B}})
        assert accepted.json()["server"]["status"] == "ACTIVE"
        assert (await _state(http, sid)) == ("REBUILD", "rebuilding")


@pytest.mark.anyio
async def test_read_lag_shows_the_pre_rebuild_state_for_a_while() -> None:
    fake = FakeCompute(time_scale=0, read_lag=1.0, rebuild_seconds=10)
    sid = fake.add_server(name="before")
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=fake.compute_url, headers={"X-Auth-Token": fake.token}
    ) as http:
        await _rebuild(http, sid, {"rebuild": {"imageRef": IMAGE_B, "name": "after"}})
        lagging = (await http.get(f"/servers/{sid}")).json()["server"]
        listed = (await http.get("/servers/detail")).json()["servers"][0]
        assert (lagging["status"], lagging["name"]) == ("ACTIVE", "before")
        assert listed["name"] == "before"
        assert fake.truth(sid).status == "REBUILD"
        fake.advance(1.0)
        caught_up = (await http.get(f"/servers/{sid}")).json()["server"]
        assert (caught_up["status"], caught_up["name"]) == ("REBUILD", "after")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "status", "root"), [("500", 500, "computeFault"), ("503", 503, "serviceUnavailable")]
)
async def test_scripted_server_errors_do_not_rebuild(
    fake: FakeCompute, http: httpx.AsyncClient, kind: str, status: int, root: str
) -> None:
    sid = fake.add_server()
    fake.faults.script("POST", "rebuild", [kind])
    failed = await _rebuild(http, sid, {"rebuild": {"imageRef": IMAGE_B}})
    assert failed.status_code == status
    assert list(failed.json()) == [root]
    assert fake.rebuilds_accepted(sid) == 0
    assert (await _rebuild(http, sid, {"rebuild": {"imageRef": IMAGE_B}})).status_code == 202
    assert fake.stats.faults[kind] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["429", "413"])
async def test_over_limit_carries_retry_after(
    fake: FakeCompute, http: httpx.AsyncClient, kind: str
) -> None:
    fake.faults.script("GET", "server", [InjectedFault(kind, retry_after="4")])
    response = await http.get(f"/servers/{fake.add_server()}")
    sample = load_sample(f"nova/errors/overlimit-{kind}-retry-after.json")
    assert response.status_code == int(kind)
    assert response.headers["retry-after"] == "4"
    assert set(response.json()["overLimit"]) == set(sample["overLimit"])
    assert response.json()["overLimit"]["retryAfter"] == "4"


@pytest.mark.anyio
async def test_default_retry_after_is_one_second(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    fake.faults.rate("429", 1.0, route="servers_detail")
    response = await http.get("/servers/detail")
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")


@pytest.mark.anyio
@pytest.mark.parametrize("lost_error", ["timeout", "disconnect"])
async def test_lost_answer_still_rebuilds(lost_error: str) -> None:
    fake = FakeCompute(time_scale=0, lost_error=lost_error)  # type: ignore[arg-type]  # parametrized str
    sid = fake.add_server()
    fake.faults.script("POST", "rebuild", ["lost"])
    expected = httpx.ReadTimeout if lost_error == "timeout" else httpx.RemoteProtocolError
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=fake.compute_url, headers={"X-Auth-Token": fake.token}
    ) as http:
        with pytest.raises(expected):
            await _rebuild(http, sid, {"rebuild": {"imageRef": IMAGE_B}})
    assert fake.rebuilds_accepted(sid) == 1
    assert fake.truth(sid).status == "REBUILD"


@pytest.mark.anyio
async def test_latency_delays_the_answer_in_real_time(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    fake.faults.script("GET", "server", [InjectedFault("latency", seconds=0.01, real=True)])
    reply = fake.dispatch(
        "GET", f"/v2.1/servers/{fake.add_server()}", headers={"X-Auth-Token": fake.token}
    )
    assert reply.delay == 0.01
    assert reply.status == 200
    fake.faults.script("GET", "servers", [InjectedFault("latency", seconds=0.01, real=True)])
    assert (await http.get("/servers")).status_code == 200
    assert fake.stats.faults["latency"] == 2


def test_fake_latency_scales_with_the_clock() -> None:
    fake = FakeCompute(time_scale=100)
    fake.faults.script("GET", "versions", [InjectedFault("latency", seconds=2.0)])
    assert fake.dispatch("GET", "/").delay == pytest.approx(0.02)


def test_hook_and_rates() -> None:
    fake = FakeCompute(time_scale=0, seed=1)
    fake.faults.hook = lambda method, route: "503" if route == "versions" else None
    assert fake.handle("GET", "/")[0] == 503
    fake.faults.clear()
    fake.faults.rate("500", 0.5, method="GET", route="versions")
    statuses = {fake.handle("GET", "/")[0] for _ in range(40)}
    assert statuses == {200, 500}
    assert fake.stats.requests[("GET", "versions")] == 41
    assert fake.stats.responses[500] == fake.stats.faults["500"]


def test_unknown_fault_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        InjectedFault("teapot")


FAILING_IMAGE = "70a5e0a4-0000-4000-8000-0000000000ff"
SLOW_IMAGE = "70a5e0a4-0000-4000-8000-0000000000ee"


def test_default_images_include_the_failing_and_slow_ones() -> None:
    fake = FakeCompute(time_scale=0)
    assert fake.images["fails-to-spawn"] == fake.failing_image == FAILING_IMAGE
    assert fake.images["slow-to-spawn"] == fake.slow_image == SLOW_IMAGE
    assert fake.images["ubuntu-22.04"] == fake.default_image
    assert fake.slow_spawn_seconds == 600.0
    assert FakeCompute(slow_spawn_seconds=8).slow_spawn_seconds == 8.0


async def _timeline(
    fake: FakeCompute, http: httpx.AsyncClient, sid: str, *, steps: int, step: float
) -> list[tuple[str, str | None, str, bool]]:
    """Each distinct (status, task_state, vm_state, fault shown) as the clock steps on."""
    seen: list[tuple[str, str | None, str, bool]] = []
    for _ in range(steps):
        server = (await http.get(f"/servers/{sid}")).json()["server"]
        state = (
            server["status"],
            server["OS-EXT-STS:task_state"],
            server["OS-EXT-STS:vm_state"],
            "fault" in server,
        )
        if not seen or seen[-1] != state:
            seen.append(state)
        fake.advance(step)
    return seen


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fail", "image", "message"),
    [
        (False, FAILING_IMAGE, "RuntimeError"),
        (True, IMAGE_B, "RuntimeError: spawn failed"),
    ],
)
async def test_failed_rebuild_shows_rebuild_with_vm_state_error_before_error(
    fake: FakeCompute, http: httpx.AsyncClient, fail: bool, image: str, message: str
) -> None:
    sid = fake.add_server(fail=fail)
    before = (await http.get(f"/servers/{sid}")).json()["server"]
    fake.advance(1)
    assert (await _rebuild(http, sid, {"rebuild": {"imageRef": image}})).status_code == 202
    assert await _timeline(fake, http, sid, steps=60, step=0.05) == [
        ("REBUILD", "rebuilding", "active", False),
        ("REBUILD", "rebuild_spawning", "active", False),
        ("REBUILD", "rebuild_spawning", "error", False),
        ("ERROR", None, "error", True),
    ]
    server = (await http.get(f"/servers/{sid}")).json()["server"]
    assert {k: server["fault"][k] for k in ("code", "message")} == {"code": 500, "message": message}
    assert "details" not in server["fault"]  # a 500's details are for admins only
    assert server["image"]["id"] == image
    assert server["OS-SRV-USG:launched_at"] == before["OS-SRV-USG:launched_at"]
    assert fake.truth(sid).fault == message


@pytest.mark.anyio
async def test_failing_image_fails_any_server_and_the_server_can_be_rebuilt_again() -> None:
    fake = FakeCompute(dialect="nova", time_scale=0)
    sid = fake.add_server()
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=fake.compute_url, headers={"X-Auth-Token": fake.token}
    ) as nova:
        await _rebuild(nova, sid, {"rebuild": {"imageRef": FAILING_IMAGE}})
        fake.advance(5)
        assert fake.truth(sid).status == "ERROR"
        actions = (await nova.get(f"/servers/{sid}/os-instance-actions")).json()
        assert actions["instanceActions"][0]["message"] == "Error"
        # Nova rebuilds an ERROR server: a good image brings it back, without the fault.
        assert (await _rebuild(nova, sid, {"rebuild": {"imageRef": IMAGE_B}})).status_code == 202
        fake.advance(5)
    assert (fake.truth(sid).status, fake.truth(sid).fault) == ("ACTIVE", None)


@pytest.mark.anyio
async def test_slow_image_sits_in_rebuild_spawning_for_slow_spawn_seconds(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    sid = fake.add_server()
    accepted = await _rebuild(http, sid, {"rebuild": {"imageRef": SLOW_IMAGE}})
    assert accepted.json()["server"]["status"] == "REBUILD"
    fake.advance(1.0)  # rebuilding lasts half of rebuild_seconds, as for any image
    assert await _state(http, sid) == ("REBUILD", "rebuild_spawning")
    fake.advance(598.0)
    assert await _state(http, sid) == ("REBUILD", "rebuild_spawning")
    second = await _rebuild(http, sid, {"rebuild": {"imageRef": IMAGE_B}})
    assert (second.status_code, _message(second)) == (
        409,
        f"Cannot 'rebuild' instance {sid} while it is in task_state rebuild_spawning",
    )
    fake.advance(2.5)  # spawning began at 1 s and lasts 600 s
    assert await _state(http, sid) == ("ACTIVE", None)
    assert fake.truth(sid).image_id == SLOW_IMAGE


@pytest.mark.anyio
async def test_slow_spawn_seconds_is_an_option() -> None:
    fake = FakeCompute(time_scale=0, slow_spawn_seconds=8, rebuild_seconds=2)
    sid = fake.add_server(status="SHUTOFF")
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=fake.compute_url, headers={"X-Auth-Token": fake.token}
    ) as http:
        await _rebuild(http, sid, {"rebuild": {"imageRef": SLOW_IMAGE}})
        fake.advance(8.9)
        assert await _state(http, sid) == ("REBUILD", "rebuild_spawning")
        fake.advance(0.3)  # spawned at 1 + 8 s: ACTIVE, then powering-off, then SHUTOFF
        assert await _state(http, sid) == ("ACTIVE", "powering-off")
        fake.advance(1.0)
        assert await _state(http, sid) == ("SHUTOFF", None)
