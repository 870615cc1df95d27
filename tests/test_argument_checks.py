"""Bad arguments are an InvalidRequest naming the argument, raised before anything is sent:
settings, timeouts, callbacks, a bulk run's report and servers read before, ``since``, the
status of a search, the dialect. Never a TypeError, OverflowError or AttributeError from deep
inside, and never after the rebuild was sent."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from ecs_rebuild_async import (
    ECS,
    NOVA,
    AsyncEcsClient,
    ClientSettings,
    InvalidRequest,
    RebuildEvent,
    RebuildRequest,
    RolloutPolicy,
    Server,
    TokenAuth,
)
from ecs_rebuild_async.testing import FakeCompute

FAST = ClientSettings(poll_first_delay=0.01, poll_interval=0.02)


def short(value: object) -> str:
    """A test id that does not print an int of 400 digits."""
    text = repr(value)
    return text if len(text) <= 12 else f"{text[:6]}...({len(text)} chars)"


@pytest.fixture
def fake() -> FakeCompute:
    return FakeCompute(time_scale=50.0, rebuild_seconds=2.0)


def client(fake: FakeCompute, **options: Any) -> AsyncEcsClient:
    options.setdefault("settings", FAST)
    return AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), **options
    )


def request(fake: FakeCompute) -> RebuildRequest:
    return RebuildRequest(image_ref=fake.images["ubuntu-24.04"])


# -- settings ------------------------------------------------------------------------------------

BAD_SETTINGS = [
    ("poll_interval", "1"),  # a string: it used to fail with TypeError on the first poll
    ("poll_interval", 0),
    ("poll_interval", -1),
    ("poll_interval", math.nan),
    ("poll_interval", math.inf),
    ("poll_interval", 10**400),  # too large for a float
    ("poll_first_delay", math.nan),
    ("poll_interval_max", 0.0),
    ("poll_growth", 0.5),  # intervals would shrink to nothing
    ("poll_jitter", 1.0),
    ("poll_jitter", 2.0),
    ("poll_jitter", -0.1),
    ("wait_timeout", math.nan),
    ("wait_timeout", -1),
    ("request_timeout", 0),
    ("connect_timeout", math.inf),
    ("max_connections", True),  # a bool is not a count here
    ("max_connections", 0),
    ("max_connections", 2.0),
    ("max_in_flight", 0),
    ("retry_attempts", -1),
    ("retry_budget", math.nan),
    ("retry_after_cap", -1),
    ("max_requests_per_second", 0),
    ("max_requests_per_second", math.nan),
    ("pacing_floor", 0),
    ("pacing_decrease", 0),
    ("pacing_decrease", 1.5),
    ("fleet_threshold", 0),
    ("fleet_poll_interval", 0),
    ("list_page_size", 0),
    ("list_max_pages", 0),
    ("max_answer_bytes", 0),
    ("reconcile_settle", "1"),
    ("allow_http_from_catalog", "yes"),
]


@pytest.mark.parametrize(
    ("name", "value"), BAD_SETTINGS, ids=[f"{n}={short(v)}" for n, v in BAD_SETTINGS]
)
def test_a_bad_setting_is_refused_when_the_settings_are_made(name: str, value: object) -> None:
    with pytest.raises(InvalidRequest, match=f"ClientSettings.{name} must be") as raised:
        ClientSettings(**{name: value})
    assert raised.value.field == name
    assert len(str(raised.value)) < 200  # a huge int is not printed whole
    # Changing one setting of an existing object is checked the same way.
    with pytest.raises(InvalidRequest):
        attrs.evolve(ClientSettings(), **{name: value})


def test_the_values_that_make_sense_at_the_edges_are_taken() -> None:
    settings = ClientSettings(
        wait_timeout=math.inf,  # no deadline, as timeout=math.inf
        max_requests_per_second=None,
        fleet_poll_interval=None,
        poll_first_delay=0,
        poll_interval=5,  # an int where seconds are asked
        poll_growth=1,
        poll_jitter=0.0,
        retry_attempts=0,
        reconcile_settle=0.0,
        pacing_decrease=1.0,
        retry_after_default=0.0,
    )
    assert settings.wait_timeout == math.inf
    assert settings.poll_interval == 5


@pytest.mark.anyio
async def test_settings_that_are_not_client_settings_are_refused(fake: FakeCompute) -> None:
    with pytest.raises(InvalidRequest) as raised:
        client(fake, settings={"poll_interval": 1})
    assert raised.value.field == "settings"
    assert fake.requests == []


@pytest.mark.anyio
async def test_wait_timeout_inf_waits_without_a_deadline(fake: FakeCompute) -> None:
    server_id = fake.add_server()
    settings = attrs.evolve(FAST, wait_timeout=math.inf)
    async with client(fake, settings=settings) as ecs:
        await ecs.rebuild(server_id, request(fake))
        done = await ecs.wait_for_rebuild(server_id)
    assert done.image_id == fake.images["ubuntu-24.04"]


# -- timeouts ------------------------------------------------------------------------------------

BAD_TIMEOUTS = [math.nan, -1, -0.5, 10**400, "5", True]
Call = Callable[[AsyncEcsClient, str, RebuildRequest, object], Awaitable[object]]


async def _rebuild_stream(ecs: AsyncEcsClient, sid: str, req: RebuildRequest, t: object) -> None:
    async with ecs.rebuild_stream([sid], req, timeout=t) as outcomes:  # type: ignore[arg-type]  # the wrong type is the point
        async for _ in outcomes:
            pass


TIMED_CALLS: dict[str, Call] = {
    "rebuild_and_wait": lambda ecs, sid, req, t: ecs.rebuild_and_wait(sid, req, timeout=t),  # type: ignore[arg-type]  # the wrong type is the point
    "wait_for_rebuild": lambda ecs, sid, req, t: ecs.wait_for_rebuild(sid, timeout=t),  # type: ignore[arg-type]  # the wrong type is the point
    "rebuild_many": lambda ecs, sid, req, t: ecs.rebuild_many([sid], req, timeout=t),  # type: ignore[arg-type]  # the wrong type is the point
    "rebuild_stream": _rebuild_stream,
}


@pytest.mark.anyio
@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=short)
@pytest.mark.parametrize("call", sorted(TIMED_CALLS))
async def test_a_bad_timeout_is_refused_before_anything_is_sent(
    fake: FakeCompute, call: str, timeout: object
) -> None:
    server_id = fake.add_server()
    async with client(fake) as ecs:
        with pytest.raises(InvalidRequest) as raised:
            await TIMED_CALLS[call](ecs, server_id, request(fake), timeout)
    assert raised.value.field == "timeout"
    assert len(str(raised.value)) < 200
    assert fake.requests == []


@pytest.mark.anyio
async def test_a_timeout_of_inf_is_no_deadline(fake: FakeCompute) -> None:
    server_id = fake.add_server()
    async with client(fake) as ecs:
        done = await ecs.rebuild_and_wait(server_id, request(fake), timeout=math.inf)
    assert done.image_id == fake.images["ubuntu-24.04"]
    assert fake.rebuilds_accepted(server_id) == 1


# -- callbacks, report, before -------------------------------------------------------------------


async def _async_callback(event: RebuildEvent) -> None:
    raise AssertionError("never called")


BAD_CALLBACKS = [5, "print", _async_callback]


@pytest.mark.anyio
@pytest.mark.parametrize("callback", BAD_CALLBACKS, ids=["int", "str", "async"])
async def test_a_callback_that_cannot_be_called_plainly_is_refused_before_the_post(
    fake: FakeCompute, callback: Any
) -> None:
    server_id = fake.add_server()
    req = request(fake)
    async with client(fake) as ecs:
        calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("on_event", lambda: ecs.rebuild_and_wait(server_id, req, on_event=callback)),
            ("on_event", lambda: ecs.wait_for_rebuild(server_id, on_event=callback)),
            ("on_event", lambda: ecs.rebuild_many([server_id], req, on_event=callback)),
            ("on_outcome", lambda: ecs.rebuild_many([server_id], req, on_outcome=callback)),
        ]
        for field, call in calls:
            with pytest.raises(InvalidRequest) as raised:
                await call()
            assert raised.value.field == field
        with pytest.raises(InvalidRequest):
            async with ecs.rebuild_stream([server_id], req, on_event=callback):
                pass
        # The client is still usable: the refused calls left nothing behind.
        await ecs.rebuild_and_wait(server_id, req)
    assert fake.rebuilds_accepted(server_id) == 1


@pytest.mark.anyio
async def test_a_bulk_run_checks_its_report_and_servers_read_before(fake: FakeCompute) -> None:
    server_id, other = fake.add_servers(2)
    async with client(fake) as ecs:
        read = await ecs.get_server(other)
        fake.stats.reset()
        bad: list[tuple[str, dict[str, Any]]] = [
            ("report", {"report": 5}),
            ("report", {"report": {}}),
            ("before", {"before": 5}),
            ("before", {"before": {server_id: 5}}),
            ("before", {"before": {server_id: read}}),  # another server's read
        ]
        for field, options in bad:
            with pytest.raises(InvalidRequest) as raised:
                await ecs.rebuild_many([server_id], request(fake), **options)
            assert raised.value.field == field, options
    assert sum(fake.stats.requests.values()) == 0
    assert isinstance(read, Server)


# -- since, status, checkpoints, dialect ---------------------------------------------------------


@pytest.mark.anyio
async def test_a_naive_since_is_refused_and_says_to_give_a_timezone(fake: FakeCompute) -> None:
    server_id = fake.add_server()
    async with client(fake) as ecs:
        with pytest.raises(InvalidRequest, match="timezone") as raised:
            await ecs.wait_for_rebuild(server_id, since=datetime(2026, 1, 1), timeout=1)
        assert raised.value.field == "since"
        with pytest.raises(InvalidRequest):
            await ecs.wait_for_rebuild(server_id, since="yesterday", timeout=1)  # type: ignore[arg-type]  # the wrong type is the point
    assert fake.requests == []


@pytest.mark.anyio
async def test_an_aware_since_in_any_timezone_is_taken(fake: FakeCompute) -> None:
    server_id = fake.add_server()
    async with client(fake) as ecs:
        accepted = await ecs.rebuild(server_id, request(fake))
        assert accepted.updated is not None
        since = accepted.updated.astimezone(timezone(timedelta(hours=8)))
        done = await ecs.wait_for_rebuild(server_id, since=since, timeout=60)
    assert done.image_id == fake.images["ubuntu-24.04"]


@pytest.mark.anyio
async def test_a_status_that_is_no_server_status_is_refused_naming_the_valid_ones(
    fake: FakeCompute,
) -> None:
    fake.add_server(name="web-1")
    stopped = fake.add_server(name="web-2", status="SHUTOFF")
    async with client(fake) as ecs:
        with pytest.raises(InvalidRequest) as raised:
            await ecs.find_servers(status="NOPE")
        assert fake.requests == []
        found = await ecs.find_servers(status="shutoff")  # any case
    assert raised.value.field == "status"
    assert "ACTIVE" in str(raised.value)
    assert "SHUTOFF" in str(raised.value)
    assert [server.id for server in found] == [stopped]


@pytest.mark.anyio
async def test_checkpoints_in_any_order_are_sorted_and_a_repeated_one_counts_once(
    fake: FakeCompute,
) -> None:
    ids = fake.add_servers(4)
    given = RolloutPolicy(checkpoints=(0.5, 0.25, 0.5), max_unavailable=1)
    ordered = RolloutPolicy(checkpoints=(0.25, 0.5), max_unavailable=1)
    async with client(fake) as ecs:
        plan = await ecs.plan_rollout(ids, request(fake), policy=given)
        expected = await ecs.plan_rollout(ids, request(fake), policy=ordered)
    assert given.checkpoints == (0.25, 0.5)
    assert plan.checkpoints == expected.checkpoints == ((0.25, 1), (0.5, 2))


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["nova", "NOVA", " Nova ", NOVA])
async def test_the_dialect_may_be_named_in_any_case(fake: FakeCompute, name: Any) -> None:
    server_id = fake.add_server()
    long_name = RebuildRequest(image_ref=fake.images["ubuntu-24.04"], name="n" * 255)
    async with client(fake, dialect=name) as nova, client(fake, dialect="ecs") as ecs:
        assert nova.dialect is NOVA
        assert ecs.dialect is ECS
        # The rules are the dialect's: Nova takes a 255-character name, ECS at most 254.
        prepared = await nova.prepare(server_id, long_name)
        with pytest.raises(InvalidRequest) as raised:
            await ecs.prepare(server_id, long_name)
    assert prepared["body"]["rebuild"]["name"] == "n" * 255
    assert raised.value.field == "name"
    assert fake.rebuilds_accepted(server_id) == 0


@pytest.mark.parametrize("name", ["klingon", "", 5, None])
def test_an_unknown_dialect_is_refused_by_the_client_and_the_fake(name: Any) -> None:
    fake = FakeCompute()
    with pytest.raises(InvalidRequest) as raised:
        client(fake, dialect=name)
    assert raised.value.field == "dialect"
    with pytest.raises(ValueError, match="dialect"):
        FakeCompute(dialect=name)


@pytest.mark.parametrize("name", ["NOVA", "Nova", NOVA])
def test_the_fake_takes_the_dialect_as_the_client_does(name: Any) -> None:
    assert "nova" in repr(FakeCompute(dialect=name))
