"""The shared poller under odd service behaviour: no usable Date, a page cap below the page
size, endless next chains, an unreadable record in the listing, another server's body.

Every test drives the fake's frozen clock (``time_scale=0``) from a task of its own, which
moves it on only after the client has polled again: every server state lasts at least one full
tick of the poller, whatever the machine's speed, and the waits can only finish if that task,
and so the event loop, keeps running.
"""

from __future__ import annotations

import faulthandler
import functools
import logging
import math
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from ecs_rebuild_async import (
    AsyncEcsClient,
    ClientSettings,
    InvalidRequest,
    RebuildFailed,
    RebuildOutcome,
    RebuildRequest,
    RebuildTimeout,
    ResponseError,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]
REQUEST = RebuildRequest(image_ref=NEW_IMAGE)
FAST = {
    "poll_first_delay": 0.01,
    "poll_interval": 0.02,
    "poll_interval_max": 0.05,
    "backoff_initial": 0.001,
    "reconcile_settle": 0.01,
}
# Seconds of real time: far beyond what any test needs, so reaching it is a failure.
DEADLINE = 60.0


@pytest.fixture(autouse=True)
def _no_silent_hang() -> Iterator[None]:
    # A frozen event loop cannot fire any deadline, not even the test's own: end the run with
    # every thread's traceback instead of hanging.
    faulthandler.dump_traceback_later(600, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@asynccontextmanager
async def client_for(fake: FakeCompute, **settings: Any) -> AsyncIterator[AsyncEcsClient]:
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=fake.transport(),
        settings=ClientSettings(**{**FAST, **settings}),
    ) as ecs:
        yield ecs


class Stepper:
    """Moves the frozen fake clock on by ``step`` fake seconds, each time after every watched
    server has been polled again: once each wait's poll has fallen due (``poll_interval_max``,
    jitter included, since the last step) and a whole tick of the poller has run since."""

    def __init__(self, fake: FakeCompute, ecs: AsyncEcsClient, step: float = 0.5) -> None:
        self.fake = fake
        self.ecs = ecs
        self.step = step
        self.steps = 0
        self._settle = FAST["poll_interval_max"] * 1.2
        self._waiting: list[tuple[int, anyio.Event]] = []

    async def reached(self, steps: int) -> None:
        """Return once the clock has been moved on ``steps`` times."""
        if self.steps < steps:
            event = anyio.Event()
            self._waiting.append((steps, event))
            await event.wait()

    async def run(self) -> None:
        while True:
            await anyio.sleep(self._settle)
            seen = self.ecs.stats["poll_ticks"]
            while True:
                await anyio.sleep(0.002)
                # A tick is counted as it starts: two more means one whole tick in between.
                if self.ecs.stats["poll_ticks"] >= seen + 2:
                    break
            self.fake.advance(self.step)
            self.steps += 1
            for steps, event in self._waiting:
                if steps <= self.steps:
                    event.set()


@asynccontextmanager
async def stepping(
    fake: FakeCompute, ecs: AsyncEcsClient, step: float = 0.5
) -> AsyncIterator[Stepper]:
    stepper = Stepper(fake, ecs, step)
    async with anyio.create_task_group() as group:
        group.start_soon(stepper.run)
        try:
            yield stepper
        finally:
            group.cancel_scope.cancel()


def rebuilt_truly(fake: FakeCompute, server_id: str, status: str = "ACTIVE") -> bool:
    truth = fake.truth(server_id)
    return (
        truth.status == status
        and truth.task_state is None
        and truth.image_id == NEW_IMAGE
        and truth.rebuilds == 1
    )


def listing_pages(fake: FakeCompute) -> int:
    return fake.stats.requests[("GET", "servers_detail")]


# -- case 1: no usable Date ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("date_header", ["missing", "garbage"])
async def test_without_a_date_the_poller_never_blocks_and_waits_end_at_their_deadline(
    date_header: str,
) -> None:
    # Frozen clock, nothing moves it: the servers stay in REBUILD, so every wait must end in
    # RebuildTimeout at its deadline, with the event loop serving others all along.
    fake = FakeCompute(time_scale=0, date_header=date_header)  # type: ignore[arg-type]
    ids = fake.add_servers(3)
    heartbeats = 0
    ended: list[float] = []

    async def heartbeat() -> None:
        nonlocal heartbeats
        while True:
            await anyio.sleep(0.01)
            heartbeats += 1

    async with client_for(fake) as ecs:
        for server_id in ids:
            await ecs.rebuild(server_id, REQUEST)
        started = anyio.current_time()

        async def wait(server_id: str) -> None:
            with pytest.raises(RebuildTimeout):
                await ecs.wait_for_rebuild(server_id, timeout=0.5)
            ended.append(anyio.current_time() - started)

        async with anyio.create_task_group() as group:
            group.start_soon(heartbeat)
            async with anyio.create_task_group() as waits:
                for server_id in ids:
                    waits.start_soon(wait, server_id)
            group.cancel_scope.cancel()
        stats = ecs.stats
    assert len(ended) == 3
    # The deadline, plus the final read's own budget (1 s at least), plus slack for a busy box.
    assert max(ended) < 0.5 + 1.0 + 5.0
    assert heartbeats >= 1
    assert stats["poll_listings"] >= 1  # the shared poller served them, not single reads alone
    assert stats["poll_ticks"] < 10_000  # it slept between ticks instead of spinning


@pytest.mark.anyio
@pytest.mark.parametrize("date_header", ["missing", "garbage"])
async def test_without_a_date_a_fleet_is_proven_by_observation(date_header: str) -> None:
    fake = FakeCompute(
        time_scale=0, rebuild_seconds=3, date_header=date_header, accepted_body="stale"
    )  # type: ignore[arg-type]
    ids = fake.add_servers(8)
    stopped = fake.add_server(name="stopped", status="SHUTOFF")
    async with client_for(fake) as ecs, stepping(fake, ecs) as stepper:
        outcomes = await ecs.rebuild_many([*ids, stopped], REQUEST, timeout=DEADLINE)
        stats = ecs.stats
    assert [o.ok for o in outcomes] == [True] * 9, [o.error for o in outcomes]
    assert all(rebuilt_truly(fake, server_id) for server_id in ids)
    assert rebuilt_truly(fake, stopped, "SHUTOFF")
    assert stepper.steps >= 6  # the rebuilds took their 3 fake seconds: the clock task ran
    assert stats["poll_listings"] >= 1


@pytest.mark.anyio
@pytest.mark.parametrize("date_header", ["service", "missing"])
@pytest.mark.parametrize("updated", ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59"])
async def test_a_record_from_the_end_of_time_does_not_carry_listings_past_changes(
    date_header: str, updated: str
) -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=3, date_header=date_header)  # type: ignore[arg-type]
    ids = fake.add_servers(6)
    fake.corrupt_record(fake.add_server(name="bystander"), {"updated": updated})
    async with client_for(fake) as ecs, stepping(fake, ecs) as stepper:
        outcomes = await ecs.rebuild_many(ids, REQUEST, timeout=DEADLINE)
        stats = ecs.stats
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert all(rebuilt_truly(fake, server_id) for server_id in ids)
    # Seen by the listings, a few ticks after the 3 s rebuild, not by a recheck a minute on.
    assert stepper.steps < 40
    assert stats["poll_single_reads"] == 0


# -- case 2: a page cap below list_page_size ---------------------------------------------------


@pytest.mark.anyio
async def test_a_page_cap_below_the_page_size_is_followed_by_next_links() -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=3, max_limit=10)
    fake.add_servers(15, prefix="bystander")
    ids = fake.add_servers(25)
    async with client_for(fake, list_page_size=1000) as ecs, stepping(fake, ecs) as stepper:
        start = fake.now()
        outcomes = await ecs.rebuild_many(ids, REQUEST, timeout=DEADLINE)
        fake_seconds = fake.now() - start
        stats = ecs.stats
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert all(rebuilt_truly(fake, server_id) for server_id in ids)
    # Seen finishing by the listings, not at the deadline: a few ticks past the 3 s rebuild.
    assert fake_seconds < 30, fake_seconds
    assert stepper.steps < 60
    assert stats["poll_listings"] >= 2
    # Every listing of the 25 changed servers took 3 capped pages.
    assert listing_pages(fake) >= 3 * stats["poll_listings"]


@pytest.mark.anyio
async def test_find_servers_reads_past_a_capped_page() -> None:
    # The name filter is a regular expression to Nova: a name with a dot lists every server.
    fake = FakeCompute(time_scale=0, max_limit=3)
    wanted = fake.add_server(name="web.1")
    fake.add_servers(10)
    async with client_for(fake) as ecs:
        found = await ecs.find_servers(exact_name="web.1")
    assert [server.id for server in found] == [wanted]
    assert listing_pages(fake) == 4  # 11 servers, 3 a page


# -- case 7: one unreadable record in the shared listing ---------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("fields", [{"metadata": {"count": 3}}, {"id": 17}, {"status": None}])
async def test_an_unreadable_record_of_another_server_fails_no_wait(
    fields: dict[str, Any],
) -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=3)
    ids = fake.add_servers(4)
    unrelated = fake.add_server(name="unrelated")
    async with client_for(fake) as ecs, stepping(fake, ecs):
        # The unrelated server is rebuilt too (nobody waits for it): it changes all along, so
        # every changes-since listing shows its unreadable record (spoilt once its rebuild,
        # which reads it first, was accepted).
        await ecs.rebuild(unrelated, REQUEST)
        fake.corrupt_record(unrelated, fields)
        outcomes = await ecs.rebuild_many(ids, REQUEST, timeout=DEADLINE)
        stats = ecs.stats
    assert [o.ok for o in outcomes] == [True] * 4, [o.error for o in outcomes]
    assert all(rebuilt_truly(fake, server_id) for server_id in ids)
    assert stats["poll_listings"] >= 1


@pytest.mark.anyio
async def test_an_unreadable_record_fails_only_its_own_wait_with_a_typed_error() -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=3)
    ids = fake.add_servers(4)
    async with client_for(fake) as ecs:
        for server_id in ids:
            await ecs.rebuild(server_id, REQUEST)
        # After the rebuilds were accepted, one record turns unreadable, in its own GET too.
        fake.corrupt_record(ids[0])
        results: dict[str, object] = {}

        async def wait(server_id: str) -> None:
            try:
                results[server_id] = await ecs.wait_for_rebuild(server_id, timeout=DEADLINE)
            except Exception as exc:  # the test inspects what each wait raised
                results[server_id] = exc

        async with stepping(fake, ecs), anyio.create_task_group() as group:
            for server_id in ids:
                group.start_soon(wait, server_id)
    assert isinstance(results[ids[0]], ResponseError)
    assert "cannot read the server" in str(results[ids[0]])
    for server_id in ids[1:]:
        assert getattr(results[server_id], "id", None) == server_id, results[server_id]
        assert rebuilt_truly(fake, server_id)


@pytest.mark.anyio
async def test_a_record_unreadable_in_listings_alone_is_read_on_its_own() -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=3)
    ids = fake.add_servers(4)
    fake.corrupt_record(ids[1], listings_only=True)
    async with client_for(fake) as ecs, stepping(fake, ecs):
        outcomes = await ecs.rebuild_many(ids, REQUEST, timeout=DEADLINE)
        stats = ecs.stats
    assert [o.ok for o in outcomes] == [True] * 4, [o.error for o in outcomes]
    assert rebuilt_truly(fake, ids[1])
    assert stats["poll_single_reads"] >= 1
    assert fake.stats.requests[("GET", "server")] >= 1


# -- case 14: another server's body --------------------------------------------------------------


@pytest.mark.anyio
async def test_another_servers_body_is_a_typed_error_never_that_server() -> None:
    fake = FakeCompute(time_scale=0)
    mine, other = fake.add_servers(2)
    async with client_for(fake) as ecs:
        await ecs.rebuild(mine, REQUEST)
        fake.faults.rate("other_server", 1.0, method="GET", route="server")
        with pytest.raises(ResponseError, match=other):
            await ecs.get_server(mine)
        with pytest.raises(ResponseError, match="another server"):
            await ecs.wait_for_rebuild(mine, timeout=DEADLINE)
    assert fake.stats.faults["other_server"] >= 2


@pytest.mark.anyio
async def test_a_passing_mix_up_is_read_again_and_never_taken_for_the_server() -> None:
    fake = FakeCompute(time_scale=0)
    mine, _ = fake.add_servers(2)
    async with client_for(fake) as ecs:
        fake.faults.script("GET", "server", ["other_server", "other_server"])
        server = await ecs.get_server(mine)
    assert server.id == mine
    assert fake.stats.faults["other_server"] == 2
    assert fake.stats.requests[("GET", "server")] == 3


@pytest.mark.anyio
async def test_another_servers_body_fails_only_the_wait_it_was_read_for() -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=3)
    ids = fake.add_servers(4)
    # The listing cannot show ids[0], so its wait reads it alone and gets ids[1]'s body.
    async with client_for(fake) as ecs:
        for server_id in ids:
            await ecs.rebuild(server_id, REQUEST)
        # Spoilt once the rebuilds (each read first) were accepted.
        fake.corrupt_record(ids[0], listings_only=True)
        fake.faults.rate("other_server", 1.0, method="GET", route="server")
        results: dict[str, object] = {}

        async def wait(server_id: str) -> None:
            try:
                results[server_id] = await ecs.wait_for_rebuild(server_id, timeout=DEADLINE)
            except Exception as exc:  # the test inspects what each wait raised
                results[server_id] = exc

        async with stepping(fake, ecs), anyio.create_task_group() as group:
            for server_id in ids:
                group.start_soon(wait, server_id)
    assert isinstance(results[ids[0]], ResponseError)
    for server_id in ids[1:]:
        assert getattr(results[server_id], "id", None) == server_id, results[server_id]


# -- issue: endless next chains --------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("paging", ["ignore_marker", "next_to_self"])
async def test_endless_next_chains_stop_and_the_waits_still_end_true(
    paging: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=3, max_limit=5, paging=paging)  # type: ignore[arg-type]
    ids = fake.add_servers(12)
    caplog.set_level(logging.WARNING, logger="ecs_rebuild_async")
    async with client_for(fake) as ecs, stepping(fake, ecs):
        for server_id in ids:
            await ecs.rebuild(server_id, REQUEST)
        pages_before = listing_pages(fake)
        async with anyio.create_task_group() as group:
            for server_id in ids:
                group.start_soon(
                    functools.partial(ecs.wait_for_rebuild, timeout=DEADLINE), server_id
                )
        stats = ecs.stats
    assert all(rebuilt_truly(fake, server_id) for server_id in ids)
    assert stats["poll_listings"] == 0  # no listing ended...
    # ... each stopped at the first page that did not move on (at most 3 pages), and after
    # three such listings the poller reads servers on their own.
    assert listing_pages(fake) - pages_before <= 3 * 3
    messages = [record.getMessage() for record in caplog.records]
    assert any("does not move on" in m or "repeats" in m for m in messages), messages
    assert any("from now on" in m for m in messages), messages


@pytest.mark.anyio
async def test_a_listing_longer_than_list_max_pages_is_abandoned() -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=3, max_limit=5)
    ids = fake.add_servers(12)
    async with client_for(fake, list_max_pages=2) as ecs, stepping(fake, ecs):
        outcomes = await ecs.rebuild_many(ids, REQUEST, timeout=DEADLINE)
        stats = ecs.stats
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert stats["poll_listings"] == 0
    assert stats["poll_single_reads"] >= len(ids)


def test_list_max_pages_must_be_at_least_one() -> None:
    with pytest.raises(InvalidRequest, match="list_max_pages must be an int of 1 or more"):
        ClientSettings(list_max_pages=0)


# -- all of it at once ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_many_waits_under_every_fault_at_once_end_true_and_by_their_deadline() -> None:
    fake = FakeCompute(
        time_scale=0,
        rebuild_seconds=3,
        read_lag=1.0,  # reads show the state from before the rebuild for a fake second
        date_header="missing",
        max_limit=7,
        accepted_body="stale",
        seed=7,
    )
    ok_ids = fake.add_servers(40)
    stopped = fake.add_servers(4, prefix="stopped", status="SHUTOFF")
    failing = fake.add_servers(4, prefix="failing", fail=True)
    bystanders = fake.add_servers(3, prefix="bystander")
    fake.corrupt_record(ok_ids[5], listings_only=True)  # a watched one, unreadable in listings
    targets = [*ok_ids, *stopped, *failing]
    ended: dict[str, float] = {}
    timeout = DEADLINE

    async with client_for(fake) as ecs, stepping(fake, ecs) as stepper:
        for server_id in bystanders[:2]:  # changing all along, so every listing shows them
            await ecs.rebuild(server_id, REQUEST)  # reads it first: spoilt once accepted
        fake.corrupt_record(bystanders[0])  # metadata {"count": 3}: unreadable, with its id
        fake.corrupt_record(bystanders[1], {"id": 17})  # unreadable, and its id too
        started = anyio.current_time()

        def record(outcome: RebuildOutcome) -> None:
            ended[outcome.server_id] = anyio.current_time() - started

        outcomes = await ecs.rebuild_many(
            targets, REQUEST, concurrency=20, timeout=timeout, on_outcome=record
        )
        stats = ecs.stats
    by_id = {o.server_id: o for o in outcomes}
    assert len(outcomes) == len(targets)
    for server_id in ok_ids:
        assert by_id[server_id].ok, by_id[server_id].error
        assert rebuilt_truly(fake, server_id)
    for server_id in stopped:
        assert by_id[server_id].ok, by_id[server_id].error
        assert rebuilt_truly(fake, server_id, "SHUTOFF")
    for server_id in failing:
        assert not by_id[server_id].ok
        assert isinstance(by_id[server_id].error, RebuildFailed)
        assert fake.truth(server_id).status == "ERROR"
    assert all(fake.rebuilds_accepted(server_id) == 1 for server_id in targets)
    final_budget = max(1.0, min(10.0, timeout * 0.1)) if math.isfinite(timeout) else 10.0
    assert max(ended.values()) < timeout + final_budget
    assert stepper.steps >= 6
    assert stats["poll_listings"] >= 1


@pytest.mark.anyio
async def test_waits_cancelled_mid_tick_leave_the_others_served() -> None:
    # Half the waits are cancelled at different points of the run (one of them may be the
    # waiter that happens to be ticking, in the middle of its listing or reads); the others
    # still end true.
    fake = FakeCompute(time_scale=0, rebuild_seconds=6, max_limit=3, date_header="missing")
    ids = fake.add_servers(10)
    fake.corrupt_record(fake.add_server(name="bystander"), {"id": 17})
    results: dict[str, object] = {}
    async with client_for(fake) as ecs:
        for server_id in ids:
            await ecs.rebuild(server_id, REQUEST)
        async with stepping(fake, ecs) as stepper:

            async def wait(server_id: str, cancel_at_step: int | None) -> None:
                with anyio.CancelScope() as scope:
                    if cancel_at_step is not None:

                        async def cancel_later() -> None:
                            await stepper.reached(cancel_at_step)
                            scope.cancel()

                        group.start_soon(cancel_later)
                    results[server_id] = await ecs.wait_for_rebuild(server_id, timeout=DEADLINE)
                    return
                results[server_id] = "cancelled"

            async with anyio.create_task_group() as group:
                for index, server_id in enumerate(ids):
                    group.start_soon(wait, server_id, index if index % 2 else None)
    for index, server_id in enumerate(ids):
        if index % 2:  # cancelled by step 9, before its 6 s (12 steps) rebuild could end
            assert results[server_id] == "cancelled"
        else:
            assert getattr(results[server_id], "id", None) == server_id, results[server_id]
            assert rebuilt_truly(fake, server_id)


# -- random fleets under random combinations ---------------------------------------------------


def _random_world(seed: int) -> tuple[FakeCompute, dict[str, str], set[str], str]:
    """A fake with a random mix of the faults the poller must survive: (the fake, the state
    each target must end in, the targets whose rebuild fails, what was drawn)."""
    rng = random.Random(seed)
    rebuild_seconds = rng.choice([3.0, 6.0])
    drawn: dict[str, Any] = {
        # Shorter than the rebuild by a step or more: a REBUILD is always there to be seen.
        "read_lag": rng.choice([0.0, 1.0, rebuild_seconds - 1.0]),
        "date_header": rng.choice(["service", "missing", "garbage"]),
        "date_skew": rng.choice([0.0, -90.0]),  # a Date behind the compute hosts' clocks
        "max_limit": rng.choice([3, 7, 1000]),
        "paging": rng.choice(["nova", "nova", "ignore_marker", "next_to_self"]),
    }
    fake = FakeCompute(
        time_scale=0, rebuild_seconds=rebuild_seconds, accepted_body="stale", seed=seed, **drawn
    )
    expected: dict[str, str] = {}
    for server_id in fake.add_servers(rng.randint(3, 25)):
        expected[server_id] = "ACTIVE"
    for server_id in fake.add_servers(rng.randint(0, 3), prefix="stopped", status="SHUTOFF"):
        expected[server_id] = "SHUTOFF"
    failing = set(fake.add_servers(rng.randint(0, 3), prefix="failing", fail=True))
    expected.update(dict.fromkeys(failing, "ERROR"))
    bystander = fake.add_server(name="bystander")
    if rng.random() < 0.5:
        drawn["bad bystander"] = rng.choice([None, {"id": 17}])
        fake.corrupt_record(bystander, drawn["bad bystander"])
    if rng.random() < 0.5:
        drawn["bad in listings"] = 1
        fake.corrupt_record(rng.choice(list(expected)), listings_only=True)
    if rng.random() < 0.3:
        drawn["other_server"] = 0.1
        fake.faults.rate("other_server", 0.1, method="GET", route="server")
    described = " ".join(f"{key}={value}" for key, value in drawn.items())
    return fake, expected, failing, described


@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(6))
async def test_random_fleets_under_random_faults_end_true_and_in_time(
    seed: int, figures: list[str]
) -> None:
    fake, expected, failing, described = _random_world(seed)
    targets = list(expected)
    timeout = DEADLINE
    ended: dict[str, float] = {}
    async with client_for(fake) as ecs, stepping(fake, ecs):
        started = anyio.current_time()

        def record(outcome: RebuildOutcome) -> None:
            ended[outcome.server_id] = anyio.current_time() - started

        outcomes = await ecs.rebuild_many(
            targets, REQUEST, concurrency=len(targets), timeout=timeout, on_outcome=record
        )
        stats = ecs.stats
    assert [o.server_id for o in outcomes] == targets  # one outcome per server, in order
    mixed_up = 0
    for outcome in outcomes:
        server_id = outcome.server_id
        assert fake.rebuilds_accepted(server_id) == 1  # never twice
        if outcome.ok:
            assert server_id not in failing
            assert rebuilt_truly(fake, server_id, expected[server_id]), outcome
        elif server_id in failing:
            assert isinstance(outcome.error, RebuildFailed), outcome
        else:
            # The one way a healthy server's wait may fail here: its own read was answered with
            # another server's body.
            assert isinstance(outcome.error, ResponseError), outcome
            assert "another server" in str(outcome.error)
            mixed_up += 1
    final_budget = max(1.0, min(10.0, timeout * 0.1))
    assert max(ended.values()) < timeout + final_budget
    figures.append(
        f"poller[{seed}] {described}: {len(targets)} waits, "
        f"{sum(o.ok for o in outcomes)} ok, {len(failing)} failed, {mixed_up} mixed-up reads; "
        f"listings {stats['poll_listings']}, single reads {stats['poll_single_reads']}, "
        f"pages {listing_pages(fake)}"
    )
