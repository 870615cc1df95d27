"""Rebuild and wait: single-server scenarios against the in-process fake service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import anyio
import pytest

from ecs_rebuild_async import (
    NOVA,
    AsyncEcsClient,
    ClientSettings,
    Conflict,
    InvalidRequest,
    RebuildEvent,
    RebuildFailed,
    RebuildRequest,
    RebuildTimeout,
    Server,
    ServerStatus,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

OLD_IMAGE = DEFAULT_IMAGES["ubuntu-22.04"]
NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]

FAST = {
    "poll_first_delay": 0.02,
    "poll_interval": 0.05,
    "poll_interval_max": 0.1,
    "backoff_initial": 0.001,
    "retry_after_cap": 0.05,
    "reconcile_settle": 0.01,
}


@asynccontextmanager
async def client_for(fake: FakeCompute, **options: Any) -> AsyncIterator[AsyncEcsClient]:
    settings = ClientSettings(**{**FAST, **options.pop("settings", {})})
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=fake.transport(),
        settings=settings,
        **options,
    ) as ecs:
        yield ecs


def posts(fake: FakeCompute) -> int:
    return fake.stats.requests[("POST", "rebuild")]


def total_requests(fake: FakeCompute) -> int:
    return sum(fake.stats.requests.values())


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), timezone.utc)


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition()`` holds (bounded, so a bug cannot hang)."""
    for _ in range(2000):
        if condition():
            return
        await anyio.sleep(0.005)
    raise AssertionError("the condition never held")


def aged_fake(**options: Any) -> FakeCompute:
    """A fast fake whose servers were last changed well before any rebuild of the test."""
    options.setdefault("time_scale", 40)
    return FakeCompute(**options)


@pytest.mark.anyio
async def test_active_server_ends_active_with_the_new_fields() -> None:
    fake = aged_fake()
    sid = fake.add_server(name="web-1", metadata={"old": "1"})
    fake.advance(10)
    request = RebuildRequest(image_ref=NEW_IMAGE, name="web-1b", metadata={"role": "web"})
    async with client_for(fake) as ecs:
        done = await ecs.rebuild_and_wait(sid, request, timeout=30)
    truth = fake.truth(sid)
    assert done.status is ServerStatus.ACTIVE
    assert done.task_state is None
    assert done.image is not None
    assert done.image.id == NEW_IMAGE
    assert done.name == "web-1b"
    assert dict(done.metadata or {}) == {"role": "web"}
    assert (truth.status, truth.task_state, truth.image_id) == ("ACTIVE", None, NEW_IMAGE)
    assert (truth.name, truth.metadata) == ("web-1b", {"role": "web"})
    assert fake.rebuilds_accepted(sid) == 1


@pytest.mark.anyio
async def test_stopped_server_ends_shutoff_not_at_powering_off() -> None:
    # A frozen clock stepped only after each read, so that every phase is seen.
    fake = FakeCompute(time_scale=0, rebuild_seconds=2.0)
    sid = fake.add_server(name="stopped", status="SHUTOFF")
    fake.advance(10)
    events: list[RebuildEvent] = []

    async def step_clock() -> None:
        while True:
            seen = fake.stats.requests[("GET", "server")]
            await until(lambda: fake.stats.requests[("GET", "server")] > seen)  # noqa: B023  # read at once, in this iteration
            fake.advance(0.4)

    async with client_for(fake) as ecs, anyio.create_task_group() as group:
        group.start_soon(step_clock)
        done = await ecs.rebuild_and_wait(
            sid, RebuildRequest(image_ref=NEW_IMAGE), timeout=30, on_event=events.append
        )
        group.cancel_scope.cancel()
    assert done.status is ServerStatus.SHUTOFF
    assert done.task_state is None
    assert fake.truth(sid).status == "SHUTOFF"
    powering_off = [e for e in events if e.task_state == "powering-off"]
    assert powering_off, [(e.phase, e.status, e.task_state) for e in events]
    assert all(e.status is ServerStatus.ACTIVE and e.phase != "done" for e in powering_off)
    assert events[-1].phase == "done"
    assert events[-1].status is ServerStatus.SHUTOFF
    assert [e.phase for e in events].count("done") == 1


@pytest.mark.anyio
async def test_stale_202_and_lagging_reads_do_not_end_the_wait() -> None:
    # The 202 body says ACTIVE (no task), and reads lag behind by 3 s: for that time they still
    # show the old image, ACTIVE and settled, although the rebuild itself takes only 0.5 s.
    fake = aged_fake(accepted_body="stale", read_lag=3.0, rebuild_seconds=0.5)
    sid = fake.add_server(name="lagging")
    fake.advance(10)
    events: list[RebuildEvent] = []
    async with client_for(fake) as ecs:
        before_send = fake.now()
        done = await ecs.rebuild_and_wait(
            sid, RebuildRequest(image_ref=NEW_IMAGE), timeout=30, on_event=events.append
        )
    assert done.image is not None
    assert done.image.id == NEW_IMAGE
    assert done.status is ServerStatus.ACTIVE
    assert done.task_state is None
    assert done.updated is not None
    assert done.updated >= utc(before_send)
    truth = fake.truth(sid)
    assert (truth.status, truth.task_state, truth.image_id) == ("ACTIVE", None, NEW_IMAGE)
    assert fake.rebuilds_accepted(sid) == 1
    assert events[-1].phase == "done"


@pytest.mark.anyio
async def test_stale_reads_after_rebuild_are_not_taken_as_done() -> None:
    fake = aged_fake(accepted_body="stale", read_lag=3.0, rebuild_seconds=0.5)
    sid = fake.add_server(name="lagging")
    fake.advance(10)
    async with client_for(fake) as ecs:
        before_send = fake.now()
        accepted = await ecs.rebuild(sid, RebuildRequest(image_ref=NEW_IMAGE))
        # what the service shows right now: settled, and (for reads) still the old image
        assert accepted.status is ServerStatus.ACTIVE
        assert accepted.task_state is None
        lagging = await ecs.get_server(sid)
        assert lagging.image is not None
        assert lagging.image.id == OLD_IMAGE
        assert lagging.status is ServerStatus.ACTIVE
        assert lagging.task_state is None
        done = await ecs.wait_for_rebuild(sid, timeout=30)
    assert done.image is not None
    assert done.image.id == NEW_IMAGE
    assert done.updated is not None
    assert done.updated >= utc(before_send)
    assert fake.truth(sid).status == "ACTIVE"
    assert fake.rebuilds_accepted(sid) == 1


@pytest.mark.anyio
async def test_error_carries_the_fault_message() -> None:
    fake = aged_fake()
    sid = fake.add_server(name="doomed", fail=True)
    async with client_for(fake) as ecs:
        with pytest.raises(RebuildFailed) as caught:
            await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=NEW_IMAGE), timeout=30)
    truth = fake.truth(sid)
    assert truth.status == "ERROR"
    assert truth.fault
    error = caught.value
    assert error.fault is not None
    assert error.fault.message == truth.fault
    assert truth.fault in str(error)
    assert error.server is not None
    assert error.server.status is ServerStatus.ERROR


@pytest.mark.anyio
async def test_deleted_during_the_wait_fails_naming_the_server() -> None:
    fake = aged_fake(rebuild_seconds=600)
    sid = fake.add_server(name="short-lived")

    async with client_for(fake) as ecs:
        await ecs.rebuild(sid, RebuildRequest(image_ref=NEW_IMAGE))

        async def delete_after_a_read() -> None:
            seen = fake.stats.requests[("GET", "server")]
            await until(lambda: fake.stats.requests[("GET", "server")] > seen)
            fake.delete_server(sid)

        async with anyio.create_task_group() as group:
            group.start_soon(delete_after_a_read)
            with pytest.raises(RebuildFailed) as caught:
                await ecs.wait_for_rebuild(sid, timeout=30)
    assert sid in str(caught.value)
    assert fake.truth(sid).deleted


@pytest.mark.anyio
async def test_deadline_makes_a_final_read_and_carries_the_last_server() -> None:
    fake = aged_fake(rebuild_seconds=100_000)
    sid = fake.add_server(name="slow")
    async with client_for(fake) as ecs:
        reads_before = fake.stats.requests[("GET", "server")]
        with pytest.raises(RebuildTimeout) as caught:
            await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=NEW_IMAGE), timeout=0.2)
    error = caught.value
    assert error.server is not None
    assert error.server.id == sid
    assert error.server.status is ServerStatus.REBUILD
    assert sid in str(error)
    # the read before the send, and at least the final read at the deadline
    assert fake.stats.requests[("GET", "server")] - reads_before >= 2
    assert fake.truth(sid).status == "REBUILD"


@pytest.mark.anyio
async def test_finishing_by_the_final_read_is_success() -> None:
    # The rebuild finishes while the wait sleeps past its deadline: the last read finds it done.
    fake = aged_fake(time_scale=0)
    sid = fake.add_server(name="just-in-time")
    async with client_for(fake, settings={"poll_first_delay": 5.0}) as ecs:
        await ecs.rebuild(sid, RebuildRequest(image_ref=NEW_IMAGE))
        fake.advance(0.5)  # the rebuild shows as started...
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:

                async def finish_at_deadline() -> None:
                    await anyio.sleep(0.1)
                    fake.advance(5)  # ...and ends before the final read

                group.start_soon(finish_at_deadline)
                done = await ecs.wait_for_rebuild(sid, timeout=0.2)
    assert done.status is ServerStatus.ACTIVE
    assert done.image is not None
    assert done.image.id == NEW_IMAGE
    assert fake.truth(sid).status == "ACTIVE"


@pytest.mark.anyio
async def test_cancelled_wait_leaves_nothing_running(anyio_backend: str) -> None:
    fake = aged_fake(rebuild_seconds=100_000)
    ids = fake.add_servers(3)
    tasks_before = asyncio.all_tasks() if anyio_backend == "asyncio" else set()
    async with client_for(fake) as ecs:
        for sid in ids:
            await ecs.rebuild(sid, RebuildRequest(image_ref=NEW_IMAGE))
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                for sid in ids:
                    group.start_soon(ecs.wait_for_rebuild, sid)
                await until(lambda: fake.stats.requests[("GET", "servers_detail")] >= 2)
                scope.cancel()
        assert scope.cancelled_caught
        after_cancel = total_requests(fake)
        await anyio.sleep(0.3)
        assert total_requests(fake) == after_cancel
        if anyio_backend == "asyncio":
            assert asyncio.all_tasks() <= tasks_before | {asyncio.current_task()}
        # the client still works after the cancellation
        server = await ecs.get_server(ids[0])
        assert server.status is ServerStatus.REBUILD


@pytest.mark.anyio
@pytest.mark.parametrize("read_lag", [0.0, 3.0])
async def test_lost_post_answer_never_rebuilds_twice(read_lag: float) -> None:
    fake = aged_fake(read_lag=read_lag, rebuild_seconds=1.0)
    sid = fake.add_server(name="lost")
    fake.advance(10)
    fake.faults.script("POST", "rebuild", ["lost"])
    async with client_for(fake) as ecs:
        done = await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=NEW_IMAGE), timeout=30)
    assert fake.stats.faults["lost"] == 1
    assert posts(fake) == 1
    assert fake.rebuilds_accepted(sid) == 1
    assert done.status is ServerStatus.ACTIVE
    assert done.image is not None
    assert done.image.id == NEW_IMAGE
    assert fake.truth(sid).status == "ACTIVE"


@pytest.mark.anyio
async def test_conflicts_are_typed_with_their_state() -> None:
    fake = aged_fake(rebuild_seconds=100_000)
    busy = fake.add_server(name="busy")
    locked = fake.add_server(name="locked", locked=True)
    request = RebuildRequest(image_ref=NEW_IMAGE)
    async with client_for(fake) as ecs:
        await ecs.rebuild(busy, request)
        with pytest.raises(Conflict) as running:
            await ecs.rebuild(busy, request)
        with pytest.raises(Conflict) as lock:
            await ecs.rebuild_and_wait(locked, request)
    assert running.value.state is not None
    assert "task_state" in running.value.state
    assert running.value.status == 409
    assert lock.value.state == "locked"
    assert fake.rebuilds_accepted(busy) == 1
    assert fake.rebuilds_accepted(locked) == 0


@pytest.mark.anyio
async def test_ecs_refuses_an_error_server_before_sending() -> None:
    fake = aged_fake()
    sid = fake.add_server(name="broken", status="ERROR")
    async with client_for(fake) as ecs:
        with pytest.raises(InvalidRequest) as caught:
            await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=NEW_IMAGE))
    assert "ERROR" in str(caught.value)
    assert posts(fake) == 0
    assert fake.rebuilds_accepted(sid) == 0


@pytest.mark.anyio
async def test_nova_rebuilds_an_error_server_to_active() -> None:
    fake = aged_fake(dialect="nova")
    sid = fake.add_server(name="broken", status="ERROR")
    fake.advance(10)
    events: list[RebuildEvent] = []
    async with client_for(fake, dialect=NOVA) as ecs:
        done = await ecs.rebuild_and_wait(
            sid, RebuildRequest(image_ref=NEW_IMAGE), timeout=30, on_event=events.append
        )
    assert done.status is ServerStatus.ACTIVE
    assert fake.truth(sid).status == "ACTIVE"
    assert fake.rebuilds_accepted(sid) == 1
    assert "failed" not in [e.phase for e in events]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("server_id", "fields"),
    [
        ("", {}),
        ("a/b", {}),
        ("ok", {"name": "x" * 300}),
        ("ok", {"metadata": {"k": "v" * 300}}),
        ("ok", {"preserve_ephemeral": True}),
    ],
)
async def test_bad_input_is_refused_before_any_rebuild_is_sent(
    server_id: str, fields: dict[str, Any]
) -> None:
    fake = aged_fake()
    real = fake.add_server(name="target")
    target = real if server_id == "ok" else server_id
    async with client_for(fake) as ecs:
        with pytest.raises(InvalidRequest):
            await ecs.rebuild(target, RebuildRequest(image_ref=NEW_IMAGE, **fields))
        with pytest.raises(InvalidRequest):
            await ecs.rebuild_and_wait(target, RebuildRequest(image_ref=NEW_IMAGE, **fields))
    assert posts(fake) == 0
    assert fake.stats.requests[("GET", "server")] == 0
    assert fake.rebuilds_accepted(real) == 0


def test_malformed_image_id_is_refused_on_construction() -> None:
    with pytest.raises(InvalidRequest):
        RebuildRequest(image_ref="not an image id")


@pytest.mark.anyio
async def test_wait_for_rebuild_after_rebuild() -> None:
    fake = aged_fake()
    sid = fake.add_server(name="two-step")
    fake.advance(10)
    async with client_for(fake) as ecs:
        accepted = await ecs.rebuild(sid, RebuildRequest(image_ref=NEW_IMAGE, name="renamed"))
        assert accepted.id == sid
        done = await ecs.wait_for_rebuild(sid, timeout=30)
    assert done.status is ServerStatus.ACTIVE
    assert done.task_state is None
    assert done.name == "renamed"
    assert done.image is not None
    assert done.image.id == NEW_IMAGE
    assert fake.truth(sid).status == "ACTIVE"
    assert fake.rebuilds_accepted(sid) == 1


@pytest.mark.anyio
async def test_on_event_sees_submitted_running_done() -> None:
    fake = aged_fake(rebuild_seconds=4.0)
    sid = fake.add_server(name="watched")
    fake.advance(10)
    events: list[RebuildEvent] = []
    async with client_for(fake) as ecs:
        done: Server = await ecs.rebuild_and_wait(
            sid, RebuildRequest(image_ref=NEW_IMAGE), timeout=30, on_event=events.append
        )
    phases = [e.phase for e in events]
    assert phases[0] == "submitted"
    assert phases[-1] == "done"
    assert "running" in phases
    assert phases.count("done") == 1
    assert all(e.server_id == sid for e in events)
    assert events[-1].status is done.status is ServerStatus.ACTIVE
    running = [e for e in events if e.phase == "running"]
    assert all(e.status is ServerStatus.REBUILD for e in running)
