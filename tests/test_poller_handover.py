"""The shared poller's lead passes on: waits sleep until their own server changes, and whoever
leaves (done, timed out, cancelled at any point, the waiter that was ticking among them) leaves
a tick coming for every wait still in flight."""

from __future__ import annotations

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
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

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

        async def wait(server_id: str, timeout: float) -> None:
            try:
                results[server_id] = await ecs.wait_for_rebuild(server_id, timeout=timeout)
            except RebuildTimeout as exc:
                results[server_id] = exc

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
