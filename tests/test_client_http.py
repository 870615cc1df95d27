"""AsyncEcsClient at the HTTP boundary (respx): the rebuild sent at most once, reconciling a lost
answer, typed errors from service answers, and secrets kept out of logs, reprs and errors."""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
import respx

from ecs_rebuild_async import (
    NOVA,
    AsyncEcsClient,
    BadRequest,
    ClientSettings,
    Conflict,
    EcsError,
    InvalidRequest,
    NotFound,
    RebuildOutcomeUnknown,
    RebuildRequest,
    RebuildTimeout,
    ServerStatus,
    TokenAuth,
)

BASE = "http://127.0.0.1:8774"
PROJECT = "6f70656e737461636b20726f636b7321"
ENDPOINT = f"{BASE}/v2.1/{PROJECT}"
VERSION_ROOT = f"{BASE}/v2.1/"
SERVER_ID = "a0a80a94-3d81-4a10-822a-daa0cf9e870b"
SERVER_URL = f"{ENDPOINT}/servers/{SERVER_ID}"
ACTION_URL = f"{SERVER_URL}/action"
ACTIONS_URL = f"{SERVER_URL}/os-instance-actions"
IMAGE = "70a599e0-31e7-49b7-b260-868f441e862b"

# The service's clock, as its Date headers tell it.
DATE = "Sun, 29 Nov 2026 12:00:00 GMT"
DATED = {"Date": DATE, "x-openstack-request-id": "req-1"}

FAST = ClientSettings(
    poll_first_delay=0.01,
    poll_interval=0.01,
    backoff_initial=0.001,
    backoff_max=0.005,
    retry_after_cap=0.05,
    reconcile_settle=0.01,
)

VERSIONS = {
    "version": {
        "id": "v2.1",
        "status": "CURRENT",
        "version": "2.60",
        "min_version": "2.1",
        "links": [{"href": VERSION_ROOT, "rel": "self"}],
    }
}


def server_body(
    status: str = "ACTIVE",
    task_state: str | None = None,
    updated: str = "2026-11-29T11:00:00Z",
) -> dict[str, Any]:
    return {
        "server": {
            "id": SERVER_ID,
            "name": "web-1",
            "status": status,
            "OS-EXT-STS:task_state": task_state,
            "OS-EXT-STS:vm_state": "active",
            "updated": updated,
            "image": {"id": IMAGE, "links": []},
        }
    }


def instance_actions(*starts: str) -> dict[str, Any]:
    return {
        "instanceActions": [
            {
                "action": "rebuild",
                "instance_uuid": SERVER_ID,
                "request_id": f"req-{index}",
                "start_time": start,
                "message": None,
            }
            for index, start in enumerate(starts)
        ]
    }


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mocked:
        mocked.get(VERSION_ROOT).respond(200, json=VERSIONS)
        yield mocked


def client(**kwargs: Any) -> AsyncEcsClient:
    kwargs.setdefault("settings", FAST)
    kwargs.setdefault("auth", TokenAuth("token-for-tests"))
    return AsyncEcsClient(ENDPOINT, transport=httpx.AsyncHTTPTransport(), **kwargs)


def post_count(router: respx.MockRouter) -> int:
    return sum(1 for call in router.calls if call.request.method == "POST")


# -- a lost answer to the rebuild ----------------------------------------------------------------


@pytest.mark.anyio
async def test_lost_answer_then_server_rebuilding_is_accepted_without_resending(
    router: respx.MockRouter,
) -> None:
    router.post(ACTION_URL).mock(side_effect=httpx.ReadTimeout("answer lost"))
    router.get(SERVER_URL).side_effect = [
        httpx.Response(200, json=server_body(), headers=DATED),  # the read before
        httpx.Response(200, json=server_body("REBUILD", "rebuilding"), headers=DATED),
    ]
    async with client() as ecs:
        server = await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert post_count(router) == 1
    assert server.status is ServerStatus.REBUILD
    assert server.task_state == "rebuilding"


@pytest.mark.anyio
async def test_lost_answer_then_instance_action_shows_the_rebuild(
    router: respx.MockRouter,
) -> None:
    router.post(ACTION_URL).mock(side_effect=httpx.ReadTimeout("answer lost"))
    # The rebuild was fast: the server is settled again, but its actions list the rebuild.
    router.get(SERVER_URL).side_effect = [
        httpx.Response(200, json=server_body(), headers=DATED),  # the read before
        httpx.Response(200, json=server_body(updated="2026-11-29T12:00:01Z"), headers=DATED),
    ]
    actions = router.get(ACTIONS_URL).respond(
        200, json=instance_actions("2026-11-29T12:00:00.000000"), headers=DATED
    )
    async with client() as ecs:
        await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert post_count(router) == 1
    assert actions.call_count == 1
    for call in router.calls:
        if call.request.url != VERSION_ROOT:  # the GETs of the reconciliation are versioned too
            assert call.request.headers["OpenStack-API-Version"] == "compute 2.60"
            assert call.request.headers["X-OpenStack-Nova-API-Version"] == "2.60"


@pytest.mark.anyio
async def test_lost_answer_without_evidence_is_outcome_unknown(router: respx.MockRouter) -> None:
    router.post(ACTION_URL).mock(side_effect=httpx.ReadTimeout("answer lost"))
    router.get(SERVER_URL).respond(200, json=server_body(), headers=DATED)
    router.get(ACTIONS_URL).respond(
        403, json={"forbidden": {"code": 403, "message": "Policy doesn't allow it."}}
    )
    async with client() as ecs:
        with pytest.raises(RebuildOutcomeUnknown) as caught:
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert post_count(router) == 1
    assert caught.value.server is not None
    assert caught.value.server.id == SERVER_ID
    assert any("instance actions" in line for line in caught.value.evidence)


@pytest.mark.anyio
async def test_lost_answer_and_server_gone_is_outcome_unknown(router: respx.MockRouter) -> None:
    router.post(ACTION_URL).mock(side_effect=httpx.ReadTimeout("answer lost"))
    router.get(SERVER_URL).side_effect = [
        httpx.Response(200, json=server_body(), headers=DATED),  # the read before
        httpx.Response(
            404, json={"itemNotFound": {"code": 404, "message": "Instance could not be found."}}
        ),
    ]
    async with client() as ecs:
        with pytest.raises(RebuildOutcomeUnknown):
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert post_count(router) == 1


@pytest.mark.anyio
async def test_lost_answer_proven_twice_not_carried_out_is_sent_once_more(
    router: respx.MockRouter,
) -> None:
    action = router.post(ACTION_URL)
    action.side_effect = [
        httpx.ReadTimeout("answer lost"),
        httpx.Response(202, json=server_body("REBUILD", "rebuilding"), headers=DATED),
    ]
    reads = router.get(SERVER_URL).respond(200, json=server_body(), headers=DATED)
    # Only an old rebuild, long before this request.
    router.get(ACTIONS_URL).respond(
        200, json=instance_actions("2026-11-01T00:00:00.000000"), headers=DATED
    )
    async with client() as ecs:
        server = await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert action.call_count == 2
    assert reads.call_count == 3  # once before, twice while reconciling
    assert server.task_state == "rebuilding"


@pytest.mark.anyio
async def test_lost_answer_without_service_clock_never_resends_over_a_listed_rebuild(
    router: respx.MockRouter,
) -> None:
    action = router.post(ACTION_URL)
    action.side_effect = [
        httpx.ReadTimeout("answer lost"),
        httpx.Response(202, json=server_body("REBUILD", "rebuilding")),
    ]
    router.get(SERVER_URL).respond(200, json=server_body())  # no Date header anywhere
    router.get(ACTIONS_URL).respond(200, json=instance_actions("2026-11-29T12:00:00.000000"))
    async with client() as ecs:
        with contextlib.suppress(RebuildOutcomeUnknown):
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert action.call_count == 1


# -- a whole rebuild -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_rebuild_and_wait_reads_sends_once_and_waits(router: respx.MockRouter) -> None:
    action = router.post(ACTION_URL).respond(
        202, json=server_body("REBUILD", "rebuilding"), headers=DATED
    )
    reads = router.get(SERVER_URL)
    reads.side_effect = [
        httpx.Response(200, json=server_body(), headers=DATED),
        httpx.Response(200, json=server_body("REBUILD", "rebuild_spawning"), headers=DATED),
        httpx.Response(200, json=server_body(updated="2026-11-29T12:00:05Z"), headers=DATED),
    ]
    async with client() as ecs:
        done = await ecs.rebuild_and_wait(SERVER_ID, RebuildRequest(image_ref=IMAGE), timeout=5)
    assert action.call_count == 1
    assert reads.call_count == 3
    assert done.status is ServerStatus.ACTIVE
    assert done.task_state is None


# -- typed errors --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_404_on_get_is_not_found_with_request_id(router: respx.MockRouter) -> None:
    router.get(SERVER_URL).respond(
        404,
        json={
            "itemNotFound": {"code": 404, "message": f"Instance {SERVER_ID} could not be found."}
        },
        headers={"x-openstack-request-id": "req-404", "x-compute-request-id": "req-404"},
    )
    async with client() as ecs:
        with pytest.raises(NotFound) as caught:
            await ecs.get_server(SERVER_ID)
    assert caught.value.status == 404
    assert caught.value.request_id == "req-404"
    assert "req-404" in str(caught.value)


@pytest.mark.anyio
async def test_409_on_rebuild_is_conflict_with_state(router: respx.MockRouter) -> None:
    message = f"Cannot 'rebuild' instance {SERVER_ID} while it is in task_state rebuilding"
    router.post(ACTION_URL).respond(
        409,
        json={"conflictingRequest": {"code": 409, "message": message}},
        headers={"x-openstack-request-id": "req-409"},
    )
    router.get(SERVER_URL).respond(200, json=server_body(), headers=DATED)
    async with client() as ecs:
        with pytest.raises(Conflict) as caught:
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert caught.value.state == "task_state rebuilding"
    assert caught.value.request_id == "req-409"
    assert post_count(router) == 1


# -- secrets -------------------------------------------------------------------------------------

CANARIES = ("canary-token-XYZ", "canary-pass", "canary-userdata")
CANARY_USER_DATA_B64 = base64.b64encode(b"canary-userdata").decode()


def assert_no_secret(text: str) -> None:
    for secret in (*CANARIES, CANARY_USER_DATA_B64):
        assert secret not in text


@pytest.mark.anyio
async def test_secrets_stay_out_of_logs_reprs_and_errors(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "ecs_rebuild_async"):
        caplog.set_level(logging.DEBUG, logger=name)
    request = RebuildRequest(
        image_ref=IMAGE, admin_pass="canary-pass", user_data="canary-userdata", key_name="k"
    )
    wire = {"imageRef": IMAGE, "adminPass": "canary-pass", "user_data": CANARY_USER_DATA_B64}
    echoed = (
        f"Invalid input for field/attribute rebuild. Value: {wire!r}. "
        "Additional properties are not allowed ('user_data' was unexpected)"
    )
    action = router.post(ACTION_URL)
    action.side_effect = [
        httpx.Response(202, json=server_body("REBUILD", "rebuilding"), headers=DATED),
        httpx.Response(400, json={"badRequest": {"code": 400, "message": echoed}}),
        httpx.Response(
            400,
            json={
                "badRequest": {
                    "code": 400,
                    "message": "Invalid input for field/attribute adminPass. "
                    "Value: canary-pass. 'canary-pass' is too short",
                }
            },
        ),
        httpx.ReadTimeout("answer lost"),
    ]
    router.get(SERVER_URL).respond(200, json=server_body(), headers=DATED)
    router.get(ACTIONS_URL).respond(500, text="<html>oops</html>")
    errors: list[EcsError] = []
    ecs = client(auth=TokenAuth("canary-token-XYZ"), dialect=NOVA)
    async with ecs:
        sent = await ecs.rebuild(SERVER_ID, request)
        for _ in range(3):
            with pytest.raises(EcsError) as caught:
                await ecs.rebuild(SERVER_ID, request)
            errors.append(caught.value)
        with pytest.raises(EcsError) as caught:
            await ecs.rebuild(SERVER_ID, attrs.evolve(request, name="x" * 300))
        errors.append(caught.value)
        prepared = await ecs.prepare(SERVER_ID, request)
    assert prepared["body"]["rebuild"]["adminPass"] == "canary-pass"  # what is sent is intact
    sent_body = action.calls[0].request.content.decode()
    assert "canary-pass" in sent_body
    assert CANARY_USER_DATA_B64 in sent_body
    assert action.calls[0].request.headers["X-Auth-Token"] == "canary-token-XYZ"
    assert sent.task_state == "rebuilding"
    assert [type(error).__name__ for error in errors] == [
        "BadRequest",
        "BadRequest",
        "RebuildOutcomeUnknown",
        "InvalidRequest",
    ]
    assert isinstance(errors[0], BadRequest)
    assert "user_data" in str(errors[0])  # the service's message still says what it refused
    for error in errors:
        assert_no_secret(str(error))
        assert_no_secret(repr(error))
        if isinstance(error, RebuildOutcomeUnknown):
            assert_no_secret(" ".join(error.evidence))
    assert_no_secret(repr(ecs))
    assert_no_secret(repr(request))
    assert_no_secret(repr(TokenAuth("canary-token-XYZ")))
    assert_no_secret(caplog.text)
    assert caplog.records  # DEBUG logging was on and captured something


@pytest.mark.anyio
async def test_a_long_echoed_secret_cut_short_stays_out_of_the_error(
    router: respx.MockRouter,
) -> None:
    user_data = "canary-userdata " * 100
    encoded = base64.b64encode(user_data.encode()).decode()
    wire = {"imageRef": IMAGE, "user_data": encoded}
    router.post(ACTION_URL).respond(
        400,
        json={
            "badRequest": {
                "code": 400,
                "message": f"Invalid input for field/attribute rebuild. Value: {wire!r}. "
                "Additional properties are not allowed ('user_data' was unexpected)",
            }
        },
    )
    router.get(SERVER_URL).respond(200, json=server_body(), headers=DATED)
    async with client(dialect=NOVA) as ecs:
        with pytest.raises(BadRequest) as caught:
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE, user_data=user_data))
    text = str(caught.value)
    assert "Invalid input for field/attribute rebuild" in text
    chunks = {encoded[index : index + 12] for index in range(0, len(encoded) - 12)}
    assert not any(chunk in text for chunk in chunks)


@pytest.mark.anyio
async def test_an_unreadable_ca_bundle_is_a_clear_error_before_anything_is_sent(
    tmp_path: Any,
) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    ecs = AsyncEcsClient(ENDPOINT, auth=TokenAuth("t"), verify=missing)
    with pytest.raises(InvalidRequest) as caught:
        await ecs.__aenter__()
    assert caught.value.field == "verify"
    assert "no-such-ca.pem" in str(caught.value)


# -- the instance-action proof ----------------------------------------------------------------


def action_detail(request_id: str, finish: str | None, result: str | None) -> dict[str, Any]:
    return {
        "instanceAction": {
            "action": "rebuild",
            "request_id": request_id,
            "start_time": "2026-11-29T12:00:00.000000",
            "events": [
                {
                    "event": "compute_rebuild_instance",
                    "start_time": "2026-11-29T12:00:00.000000",
                    "finish_time": finish,
                    "result": result,
                }
            ],
        }
    }


CASES = [
    # This rebuild's action, its compute event done: proven.
    (("2026-11-29T12:00:00.000000",), "2026-11-29T12:00:00.400000", "Success", True),
    # Its event not finished, or finished with an error: not proven.
    (("2026-11-29T12:00:00.000000",), None, None, False),
    (("2026-11-29T12:00:00.000000",), "2026-11-29T12:00:00.400000", "Error", False),
    # Only an older rebuild (before the read before): not this one.
    (("2026-11-29T10:59:59.000000",), "2026-11-29T11:00:00.000000", "Success", False),
    # A rebuild in the very second of the read before: could be either, not proven.
    (("2026-11-29T11:00:00.500000",), "2026-11-29T11:00:00.900000", "Success", False),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("starts", "finish", "result", "proven", "named"),
    # By its request id the 202 names this rebuild's action: no older one to mistake for it.
    [(*case, named) for case in CASES for named in (True, False) if not named or case[3] or
     case[0][0] >= "2026-11-29T12"],
)  # fmt: skip
async def test_a_same_image_rebuild_seen_only_settled_is_done_only_on_its_own_finished_action(
    router: respx.MockRouter, starts: tuple[str, ...], finish: str | None, result: str | None,
    proven: bool, named: bool,
) -> None:  # fmt: skip
    """Every read after the 202 shows the server as it was (same image, settled, `updated` in
    the second of the acceptance), so no read can prove the end: only the instance actions can.
    The action is the one under the 202's request id (Nova's); where the service's request ids
    are not its actions' (the detail is 404), the newest rebuild, if it began after the read
    before. Proven only when that action's compute event finished with Success."""
    posted = "req-0" if named else "req-gateway"
    router.post(ACTION_URL).respond(  # a body that proves nothing
        202, json={}, headers={"Date": DATE, "x-openstack-request-id": posted}
    )
    router.get(SERVER_URL).side_effect = [
        httpx.Response(200, json=server_body(), headers=DATED),  # the read before
        *(
            httpx.Response(200, json=server_body(updated="2026-11-29T12:00:00Z"), headers=DATED)
            for _ in range(400)
        ),
    ]
    listing = router.get(ACTIONS_URL).respond(200, json=instance_actions(*starts), headers=DATED)
    router.get(f"{ACTIONS_URL}/req-gateway").respond(
        404, json={"itemNotFound": {"code": 404, "message": "Action not found"}}
    )
    detail = router.get(f"{ACTIONS_URL}/req-0").respond(
        200, json=action_detail("req-0", finish, result), headers=DATED
    )
    async with client() as ecs:
        if proven:
            done = await ecs.rebuild_and_wait(SERVER_ID, RebuildRequest(image_ref=IMAGE), timeout=2)
            assert done.status is ServerStatus.ACTIVE
            assert detail.call_count >= 1
        else:
            with pytest.raises(RebuildTimeout, match="looks rebuilt"):
                await ecs.rebuild_and_wait(SERVER_ID, RebuildRequest(image_ref=IMAGE), timeout=1)
    assert post_count(router) == 1
    assert listing.called is not named  # by its request id, the action needs no listing
