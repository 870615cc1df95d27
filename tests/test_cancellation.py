"""Cancelling a bulk run at any point: nothing left running, no connection left open, and the
report of submitted rebuilds is exactly what the service accepted."""

from __future__ import annotations

import asyncio
import random

import anyio
import pytest

from ecs_rebuild_async import (
    AsyncEcsClient,
    BulkReport,
    ClientSettings,
    RebuildRequest,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute, InjectedFault

NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]
SEEDS = [1, 2, 3, 4]
FAST = ClientSettings(
    poll_first_delay=0.02,
    poll_interval=0.05,
    poll_interval_max=0.1,
    backoff_initial=0.001,
    retry_after_cap=0.05,
    pacing_recovery=50.0,
    request_timeout=5.0,
    reconcile_settle=0.01,
)


def accepted_ids(fake: FakeCompute, ids: list[str]) -> set[str]:
    return {sid for sid in ids if fake.rebuilds_accepted(sid) == 1}


def running_tasks() -> set[object]:
    """Every asyncio task (the test runner's own included); empty under trio."""
    try:
        return set(asyncio.all_tasks())
    except RuntimeError:  # no asyncio loop in this thread: running under trio
        return set()


def fake_with_faults(seed: int) -> tuple[FakeCompute, list[str]]:
    fake = FakeCompute(time_scale=50, rebuild_seconds=5, read_lag=1, seed=seed)
    ids = fake.add_servers(40, prefix=f"cancel-{seed}")
    fake.advance(30)
    fake.faults.rate("503", 0.05, route="server")
    fake.faults.rate("429", 0.03, method="POST", route="rebuild", retry_after="1")
    fake.faults.rate("latency", 0.1, seconds=0.5)
    return fake, ids


@pytest.mark.anyio
@pytest.mark.parametrize("seed", SEEDS)
async def test_cancelled_bulk_run_over_tcp_leaves_nothing_behind(seed: int) -> None:
    rng = random.Random(seed)
    baseline = running_tasks()
    fake, ids = fake_with_faults(seed)
    report = BulkReport()
    cancel_after = rng.uniform(0.0, 0.4)
    async with fake.serve_tcp():
        async with AsyncEcsClient(
            fake.compute_url, auth=TokenAuth(fake.token), settings=FAST
        ) as ecs:
            with anyio.move_on_after(cancel_after) as scope:
                await ecs.rebuild_many(
                    ids, RebuildRequest(image_ref=NEW_IMAGE), concurrency=10, report=report
                )
        # The run was really cut short (a 40-server run takes longer than the cut).
        assert scope.cancelled_caught
        assert report.finished < len(ids)
        # Every rebuild the service accepted is in the report, and nothing else.
        assert report.submitted == accepted_ids(fake, ids)
        assert all(fake.rebuilds_accepted(sid) <= 1 for sid in ids)
        # The client closed its connections: the server sees each close once it reads it.
        for _ in range(500):  # at most 5 s
            if fake.open_connections == 0:
                break
            await anyio.sleep(0.01)
        assert fake.open_connections == 0
        # Only the fake's own server tasks may still run; they end with serve_tcp.
        leftovers = {t for t in running_tasks() - baseline if "serve" not in repr(t)}
        assert leftovers == set()
    assert running_tasks() - baseline == set()


@pytest.mark.anyio
@pytest.mark.parametrize("seed", SEEDS)
async def test_cancelled_bulk_run_in_process_reports_what_was_submitted(seed: int) -> None:
    rng = random.Random(seed * 7919)
    baseline = running_tasks()
    fake, ids = fake_with_faults(seed)
    fake.faults.rate("lost", 0.05, method="POST", route="rebuild")
    report = BulkReport()
    cancel_after = rng.uniform(0.0, 0.3)
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=FAST
    ) as ecs:
        with anyio.move_on_after(cancel_after) as scope:
            await ecs.rebuild_many(
                ids, RebuildRequest(image_ref=NEW_IMAGE), concurrency=8, report=report
            )
    assert scope.cancelled_caught
    assert report.submitted == accepted_ids(fake, ids)
    assert all(fake.rebuilds_accepted(sid) <= 1 for sid in ids)
    for sid, outcome in report.outcomes.items():
        assert outcome.submitted == (sid in report.submitted) or not outcome.ok
    assert running_tasks() - baseline == set()


@pytest.mark.anyio
async def test_cancelling_a_stream_midway_stops_the_run_and_reports_it() -> None:
    baseline = running_tasks()
    fake = FakeCompute(time_scale=50, rebuild_seconds=5, seed=5)
    ids = fake.add_servers(30, prefix="stream")
    fake.advance(30)
    fake.faults.script("GET", "servers_detail", [InjectedFault("latency", seconds=0.5)])
    report = BulkReport()
    received = 0
    async with (
        AsyncEcsClient(
            fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=FAST
        ) as ecs,
        ecs.rebuild_stream(
            ids, RebuildRequest(image_ref=NEW_IMAGE), concurrency=5, report=report
        ) as outcomes,
    ):
        async for _ in outcomes:
            received += 1
            if received == 3:
                break
    assert received == 3
    assert report.finished < len(ids)
    assert report.submitted == accepted_ids(fake, ids)
    assert running_tasks() - baseline == set()
