"""The shared poller's lead passes on: waits sleep until their own server changes, and whoever
leaves (done, timed out, cancelled at any point, the waiter that was ticking among them) leaves
a tick coming for every wait still in flight."""

from __future__ import annotations

import functools
import math
import random

import anyio
import pytest

from ecs_rebuild_async import (
    AsyncEcsClient,
    ClientSettings,
    RebuildRequest,
    RebuildTimeout,
    ServerStatus,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute, InjectedFault

NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]
REQUEST = RebuildRequest(image_ref=NEW_IMAGE)
SETTINGS = ClientSettings(
    poll_first_delay=0.01,
    poll_interval=0.02,
    poll_interval_max=0.05,
    fleet_poll_interval=0.02,
    backoff_initial=0.001,
    reconcile_settle=0.01,
)
# Seconds of real time far beyond what any wait here needs: reaching it is a failure.
DEADLINE = 60.0


async def wait_into(
    results: dict[str, object], ecs: AsyncEcsClient, server_id: str, timeout: float
) -> None:
    """Wait for ``server_id``; its Server, or the RebuildTimeout it ended in, into ``results``."""
    try:
        results[server_id] = await ecs.wait_for_rebuild(server_id, timeout=timeout)
    except RebuildTimeout as exc:
        results[server_id] = exc


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_waits_cancelled_at_random_points_leave_the_others_a_tick(seed: int) -> None:
    rng = random.Random(seed)
    # Rebuilds of 3 fake seconds at 20x: 0.15 s of real time each, started over 0.3 s, so that
    # the lead changes hands many times (it passes on whenever the leader's server changes).
    fake = FakeCompute(time_scale=20, rebuild_seconds=3, seed=seed)
    ids = fake.add_servers(60, prefix=f"handover-{seed}")
    fake.advance(30)
    finished: dict[str, object] = {}
    cancelled: dict[str, float] = {}  # server -> seconds from its cancellation to its end
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=SETTINGS
    ) as ecs:

        async def one(server_id: str, cancel_after: float | None) -> None:
            await anyio.sleep(rng.uniform(0, 0.3))
            await ecs.rebuild(server_id, REQUEST)
            if cancel_after is None:
                finished[server_id] = await ecs.wait_for_rebuild(server_id, timeout=DEADLINE)
                return
            with anyio.CancelScope() as scope:
                scope.deadline = anyio.current_time() + cancel_after
                await ecs.wait_for_rebuild(server_id, timeout=DEADLINE)
            if scope.cancelled_caught:
                cancelled[server_id] = anyio.current_time() - scope.deadline
            else:
                finished[server_id] = True

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as group:
                for index, server_id in enumerate(ids):
                    # Every other wait is cancelled somewhere between its first tick and its
                    # rebuild's end: some while they sleep, some while they lead a tick.
                    after = rng.uniform(0.0, 0.2) if index % 2 else None
                    group.start_soon(one, server_id, after)

    kept = ids[::2]
    for server_id in kept:
        server = finished[server_id]
        assert getattr(server, "status", None) is ServerStatus.ACTIVE, server_id
        assert fake.truth(server_id).image_id == NEW_IMAGE
    assert set(finished) | set(cancelled) == set(ids)
    # A cancelled wait ends at its cancellation, not at a tick's end or a later one.
    assert max(cancelled.values(), default=0.0) < 5.0
    assert all(fake.rebuilds_accepted(sid) == 1 for sid in ids)


@pytest.mark.anyio
async def test_a_wait_that_times_out_while_leading_hands_the_ticks_on() -> None:
    # One rebuild never ends (its wait leads, then times out); the others, which began after
    # it and sleep while it ticks, must still be served after it has gone.
    fake = FakeCompute(time_scale=20, rebuild_seconds=3, seed=7)
    stuck, *others = fake.add_servers(8, prefix="lead")
    fake.advance(30)
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=SETTINGS
    ) as ecs:
        await ecs.rebuild(stuck, RebuildRequest(image_ref=fake.slow_image))
        results: dict[str, object] = {}
        wait = functools.partial(wait_into, results, ecs)

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as group:
                group.start_soon(wait, stuck, 0.1)
                await anyio.sleep(0.03)  # the stuck wait is ticking by now
                for server_id in others:
                    await ecs.rebuild(server_id, REQUEST)
                    group.start_soon(wait, server_id, math.inf)

    assert isinstance(results[stuck], RebuildTimeout)
    for server_id in others:
        assert getattr(results[server_id], "status", None) is ServerStatus.ACTIVE, server_id


@pytest.mark.anyio
async def test_a_wait_that_joins_a_leader_asleep_for_a_long_interval_is_looked_at_in_time() -> None:
    # A waits alone for a rebuild that never ends: its next read is 20 s away. B joins just
    # after one of A's reads, for a rebuild that ends at once; B's first look is due at once,
    # and must not wait out A's interval (nor end at its own deadline, by its last read).
    fake = FakeCompute(slow_spawn_seconds=1e7)
    slow = fake.add_server()
    fast = fake.add_server(rebuild_seconds=0.01)
    settings = ClientSettings(poll_first_delay=0.05, poll_interval=20, poll_interval_max=20)
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=settings
    ) as ecs:
        await ecs.rebuild(slow, RebuildRequest(image_ref=fake.slow_image))
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as group:
                group.start_soon(ecs.wait_for_rebuild, slow)
                await anyio.sleep(0.5)  # A has read its server and sleeps out its interval
                started = anyio.current_time()
                server = await ecs.rebuild_and_wait(
                    fast, RebuildRequest(image_ref=NEW_IMAGE), timeout=15
                )
                took = anyio.current_time() - started
                group.cancel_scope.cancel()
    assert server.status is ServerStatus.ACTIVE
    assert fake.truth(fast).image_id == NEW_IMAGE
    # Waiting out A's interval would take 20 s; the deadline's last read, 15 s.
    assert took < 10.0, took


@pytest.mark.anyio
async def test_a_slow_listing_leaves_same_image_rebuilds_proven_at_their_deadline() -> None:
    # One listing answer takes 6 s (within request_timeout): no tick comes for anyone
    # meanwhile. Rebuilds to the image each server already runs, ended at once, can only be
    # proven by a tick or their instance actions: at its deadline each wait reads its server
    # and asks its instance actions, and ends done, not "looks rebuilt".
    fake = FakeCompute()
    ids = [fake.add_server(rebuild_seconds=0.01) for _ in range(6)]
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=SETTINGS
    ) as ecs:
        for server_id in ids:
            await ecs.rebuild(server_id, RebuildRequest(image_ref=fake.default_image))
        slow = InjectedFault("latency", seconds=6, real=True)
        fake.faults.script("GET", "servers_detail", [slow])
        results: dict[str, object] = {}
        wait = functools.partial(wait_into, results, ecs)

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as group:
                for index, server_id in enumerate(ids):
                    group.start_soon(wait, server_id, 12.0 if index == 0 else 1.5)
    for server_id in ids:
        assert getattr(results[server_id], "status", None) is ServerStatus.ACTIVE, results
        assert fake.rebuilds_accepted(server_id) == 1
