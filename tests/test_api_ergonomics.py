"""The public API as people print, type and misconfigure it: one-line outcomes, reprs that keep
what matters, endpoints checked when the client is made, reimage_boot_volume's microversions."""

from __future__ import annotations

import pytest

from ecs_rebuild_async import (
    NOVA,
    APIVersion,
    AsyncEcsClient,
    Conflict,
    InvalidRequest,
    MicroversionError,
    RebuildEvent,
    RebuildOutcome,
    RebuildRequest,
    ResponseError,
    TokenAuth,
)
from ecs_rebuild_async.testing import FakeCompute


@pytest.fixture
def fake() -> FakeCompute:
    return FakeCompute(time_scale=50.0, rebuild_seconds=2.0)


def client(fake: FakeCompute, **options: object) -> AsyncEcsClient:
    return AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), **options
    )  # type: ignore[arg-type]  # options are the client's own keywords, per test


@pytest.mark.anyio
async def test_printing_an_outcome_gives_one_short_line(fake: FakeCompute) -> None:
    ok_id = fake.add_server(name="web-1")
    bad_id = fake.add_server(name="web-2", fail=True)
    request = RebuildRequest(image_ref=fake.images["ubuntu-24.04"])
    async with client(fake) as ecs:
        outcomes = await ecs.rebuild_many([ok_id, bad_id], request)

    ok, bad = (str(outcome) for outcome in outcomes)
    assert ok == f"ok {ok_id} (web-1) ACTIVE image {fake.images['ubuntu-24.04']}"
    assert bad.startswith(f"failed {bad_id} (web-2) ERROR RebuildFailed: ")
    assert "\n" not in bad
    assert len(bad) < 300


def test_error_reprs_keep_the_status_and_the_request_id() -> None:
    error = Conflict("locked", status=409, code="conflictingRequest", request_id="req-1")
    unreadable = ResponseError("not JSON", status=502, request_id="req-2")

    assert repr(error) == (
        "Conflict(status=409, code='conflictingRequest', message='locked', request_id='req-1')"
    )
    assert "status=502" in repr(unreadable)
    assert "request_id='req-2'" in repr(unreadable)
    outcome = RebuildOutcome(
        "s-1", False, kind=__import__("ecs_rebuild_async").OutcomeKind.CONFLICT, error=error
    )
    assert (
        str(outcome)
        == "conflict s-1 Conflict: HTTP 409 conflictingRequest: locked (request id req-1)"
    )


def test_the_client_repr_names_its_endpoint() -> None:
    ecs = AsyncEcsClient("https://ecs.example.com/v2.1/abc", auth=TokenAuth("secret-token"))

    assert "https://ecs.example.com/v2.1/abc" in repr(ecs)
    assert "secret-token" not in repr(ecs)


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ecs.example.com/v2.1/abc", "no scheme: write https://ecs.example.com/v2.1/abc"),
        ("ftp://ecs.example.com/v2.1/abc", "'ftp' is not http or https"),
        ("https:///v2.1", "no host"),
        (
            "https://ecs.example.com",
            "no /v2.1 (or /v2) in its path: the compute endpoint is "
            "https://ecs.example.com/v2.1/<project_id>",
        ),
        ("https://ecs.example.com/compute/abc", "https://ecs.example.com/compute/abc/v2.1/"),
    ],
)
def test_a_mistyped_endpoint_is_refused_when_the_client_is_made(endpoint: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match="endpoint") as caught:
        AsyncEcsClient(endpoint, auth=TokenAuth("t"))

    assert says in str(caught.value)
    assert caught.value.field == "endpoint"


@pytest.mark.parametrize(
    "endpoint",
    ["https://ecs.example.com/v2.1/abc", "http://127.0.0.1:8774/v2.1", "https://h/compute/v2/p"],
)
def test_a_compute_endpoint_is_accepted(endpoint: str) -> None:
    assert endpoint in repr(AsyncEcsClient(endpoint, auth=TokenAuth("t")))


@pytest.mark.anyio
async def test_reimage_boot_volume_picks_the_microversions_on_either_side_of_2_93() -> None:
    fake = FakeCompute(dialect="nova", max_version="2.96")
    image = fake.default_image
    async with client(fake, dialect=NOVA) as ecs:
        assert str(await ecs.negotiate(RebuildRequest(image_ref=image))) == "2.96"
        wanted = RebuildRequest(image_ref=image, reimage_boot_volume=True)
        refused = RebuildRequest(image_ref=image, reimage_boot_volume=False)
        assert str(await ecs.negotiate(wanted)) == "2.96"
        assert str(await ecs.negotiate(refused)) == "2.92"
        server_id = fake.add_server()
        prepared = await ecs.prepare(server_id, wanted)

    assert prepared["body"] == {"rebuild": {"imageRef": image}}  # nothing is sent for it
    assert RebuildRequest(image_ref=image, reimage_boot_volume=True).min_microversion() == (
        APIVersion(2, 93)
    )


@pytest.mark.anyio
async def test_reimage_boot_volume_on_a_service_below_2_93_fails_before_sending(
    fake: FakeCompute,
) -> None:
    server_id = fake.add_server()
    request = RebuildRequest(image_ref=fake.default_image, reimage_boot_volume=True)
    async with client(fake) as ecs:
        with pytest.raises(MicroversionError, match=r"2\.93"):
            await ecs.rebuild(server_id, request)

    assert fake.stats.requests[("POST", "rebuild")] == 0


def test_reimage_boot_volume_must_be_a_boolean() -> None:
    with pytest.raises(InvalidRequest, match="reimage_boot_volume"):
        RebuildRequest(image_ref="70a5e0a4-0000-4000-8000-00000000000a", reimage_boot_volume="yes")  # type: ignore[arg-type]  # the wrong type is the test


@pytest.mark.anyio
async def test_rebuild_stream_reports_events_like_rebuild_many(fake: FakeCompute) -> None:
    ids = fake.add_servers(2)
    events: list[RebuildEvent] = []
    async with (
        client(fake) as ecs,
        ecs.rebuild_stream(
            ids, RebuildRequest(image_ref=fake.images["centos-9"]), on_event=events.append
        ) as outcomes,
    ):
        done = [outcome async for outcome in outcomes]

    assert all(outcome.ok for outcome in done)
    assert {event.server_id for event in events} == set(ids)
    assert {event.phase for event in events} >= {"submitted", "done"}


def test_from_env_takes_overrides_by_keyword() -> None:
    environ = {"OS_TOKEN": "t", "OS_COMPUTE_ENDPOINT": "https://a.example.com/v2.1/p"}

    ecs = AsyncEcsClient.from_env(environ, endpoint="https://b.example.com/v2.1/p")

    assert "https://b.example.com/v2.1/p" in repr(ecs)
