"""Fleet rebuilds: rebuild_many and rebuild_stream against the in-process fake service."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import httpx
import pytest

from ecs_rebuild_async import (
    AsyncEcsClient,
    BulkReport,
    ClientSettings,
    InvalidRequest,
    OutcomeKind,
    RebuildOutcome,
    RebuildRequest,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute, InjectedFault

NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]
OTHER_IMAGE = DEFAULT_IMAGES["centos-9"]
REQUEST = RebuildRequest(image_ref=NEW_IMAGE)

FAST = {
    "poll_first_delay": 0.02,
    "poll_interval": 0.05,
    "poll_interval_max": 0.1,
    "backoff_initial": 0.001,
    "retry_after_cap": 0.05,
    "reconcile_settle": 0.01,
}


@attrs.frozen
class Seen:
    """One request as the fake received it, at the fake's time."""

    at: float
    method: str
    path: str
    status: int


class RecordingTransport(httpx.AsyncBaseTransport):
    """The fake's transport, recording each answered request (its fake time and status)."""

    def __init__(self, fake: FakeCompute) -> None:
        self._fake = fake
        self._inner = fake.transport()
        self.seen: list[Seen] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        at = self._fake.now()
        response = await self._inner.handle_async_request(request)
        self.seen.append(Seen(at, request.method, request.url.path, response.status_code))
        return response

    def server_gets(self) -> Counter[str]:
        """GET /servers/{id} per server id (lists and actions excluded)."""
        found: Counter[str] = Counter()
        for seen in self.seen:
            parts = seen.path.rstrip("/").split("/")
            is_read = seen.method == "GET" and len(parts) >= 2 and parts[-2] == "servers"
            if is_read and parts[-1] != "detail":
                found[parts[-1]] += 1
        return found

    def posts_by_server(self) -> dict[str, list[Seen]]:
        found: dict[str, list[Seen]] = defaultdict(list)
        for seen in self.seen:
            if seen.method == "POST" and seen.path.endswith("/action"):
                found[seen.path.split("/")[-2]].append(seen)
        return found


@asynccontextmanager
async def client_for(
    fake: FakeCompute, transport: httpx.AsyncBaseTransport | None = None, **settings: Any
) -> AsyncIterator[AsyncEcsClient]:
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=transport or fake.transport(),
        settings=ClientSettings(**{**FAST, **settings}),
    ) as ecs:
        yield ecs


def posts(fake: FakeCompute) -> int:
    return fake.stats.requests[("POST", "rebuild")]


def accepted(fake: FakeCompute, ids: list[str]) -> dict[str, int]:
    return {sid: fake.rebuilds_accepted(sid) for sid in ids}


@pytest.mark.anyio
async def test_500_servers_one_outcome_each_in_order_matching_the_truth() -> None:
    fake = FakeCompute(time_scale=40, rebuild_seconds=2.0, jitter=0.3)
    expected: dict[str, OutcomeKind] = {}
    for sid in fake.add_servers(440, prefix="ok"):
        expected[sid] = OutcomeKind.OK
    for sid in fake.add_servers(20, prefix="bad", fail=True):
        expected[sid] = OutcomeKind.FAILED
    for sid in fake.add_servers(20, prefix="locked", locked=True):
        expected[sid] = OutcomeKind.CONFLICT
    for _ in range(20):
        expected[str(uuid.uuid4())] = OutcomeKind.NOT_FOUND
    ids = list(expected)
    random.Random(7).shuffle(ids)
    present = [sid for sid in ids if expected[sid] is not OutcomeKind.NOT_FOUND]
    recording = RecordingTransport(fake)

    async with client_for(fake, recording) as ecs:
        outcomes = await ecs.rebuild_many(ids, REQUEST, concurrency=100, timeout=60)
        client_stats = ecs.stats

    assert [o.server_id for o in outcomes] == ids
    assert [o.kind for o in outcomes] == [expected[sid] for sid in ids]
    for outcome in outcomes:
        kind = expected[outcome.server_id]
        assert outcome.ok is (kind is OutcomeKind.OK)
        if kind is OutcomeKind.NOT_FOUND:
            assert outcome.error is not None
            assert not outcome.submitted
            continue
        truth = fake.truth(outcome.server_id)
        if kind is OutcomeKind.OK:
            assert outcome.server is not None
            assert outcome.error is None
            assert (truth.status, truth.task_state, truth.image_id) == ("ACTIVE", None, NEW_IMAGE)
            assert truth.rebuilds == 1
            assert outcome.submitted
        elif kind is OutcomeKind.FAILED:
            assert truth.status == "ERROR"
            assert truth.rebuilds == 1
            assert outcome.error is not None
            assert truth.fault is not None
            assert truth.fault in str(outcome.error)
        else:
            assert truth.rebuilds == 0
            assert not outcome.submitted
            assert getattr(outcome.error, "state", None) == "locked"
    assert posts(fake) == 480  # once each, the missing ids never reach the POST

    # One shared poller: listings per tick, not one GET per server per tick.
    listings = fake.stats.requests[("GET", "servers_detail")]
    assert listings > 0
    assert client_stats["poll_listings"] > 0
    gets_of_present = sum(recording.server_gets()[sid] for sid in present)
    assert gets_of_present < len(present) // 10
    assert fake.stats.requests[("GET", "server")] < len(ids) * max(2, client_stats["poll_ticks"])


@pytest.mark.anyio
async def test_429_storm_slows_the_pace_and_every_server_completes() -> None:
    scale = 20.0
    fake = FakeCompute(time_scale=scale, rebuild_seconds=1.0)
    ids = fake.add_servers(40)
    draws = random.Random(3)
    attempts = 0

    def storm(method: str, route: str) -> InjectedFault | None:
        # POST attempts 6 to 65 are refused with 429 (Retry-After: 1) four times in five.
        nonlocal attempts
        if (method, route) != ("POST", "rebuild"):
            return None
        attempts += 1
        if 5 < attempts <= 65 and draws.random() < 0.8:
            return InjectedFault("429", retry_after="1")
        return None

    fake.faults.hook = storm
    recording = RecordingTransport(fake)
    cap = FAST["retry_after_cap"]
    async with client_for(
        fake, recording, retry_attempts=30, pacing_floor=50.0, pacing_recovery=5.0
    ) as ecs:
        outcomes = await ecs.rebuild_many(ids, REQUEST, concurrency=40, timeout=60)
        client_stats = ecs.stats

    assert fake.stats.faults["429"] > 0
    assert client_stats["rate_limited"] >= fake.stats.faults["429"]
    assert [o.kind for o in outcomes] == [OutcomeKind.OK] * len(ids)
    assert accepted(fake, ids) == dict.fromkeys(ids, 1)
    # After each 429 a server's next attempt waits at least the (capped) Retry-After: the
    # pace fell instead of the retries hammering the service.
    gaps = []
    for tries in recording.posts_by_server().values():
        for refused, retry in itertools.pairwise(tries):
            assert refused.status == 429
            gaps.append(retry.at - refused.at)
        assert tries[-1].status == 202
    assert gaps, "the storm refused no rebuild"
    assert min(gaps) >= 0.95 * cap * scale


@pytest.mark.anyio
async def test_cancel_halfway_reports_exactly_what_was_submitted() -> None:
    fake = FakeCompute(time_scale=40, rebuild_seconds=2.0, jitter=0.5)
    ids = fake.add_servers(200)
    report = BulkReport()
    arrived: list[RebuildOutcome] = []

    with anyio.CancelScope() as scope:

        def on_outcome(outcome: RebuildOutcome) -> None:
            arrived.append(outcome)
            if len(arrived) == 40:
                scope.cancel()

        async with client_for(fake) as ecs:
            await ecs.rebuild_many(
                ids, REQUEST, concurrency=25, timeout=60, on_outcome=on_outcome, report=report
            )
    assert scope.cancelled_caught
    posts_at_cancel = posts(fake)
    await anyio.sleep(0.2)
    assert posts(fake) == posts_at_cancel

    counts = accepted(fake, ids)
    assert max(counts.values()) == 1
    assert report.submitted == {sid for sid, n in counts.items() if n == 1}
    assert 40 <= len(report.submitted) < len(ids)
    assert report.total == len(ids)
    # waits that the same poll tick finished may still report, but nothing after the cancel
    assert 40 <= len(arrived) < len(ids)
    assert {o.server_id for o in arrived} <= report.submitted
    assert {o.server_id for o in arrived} == set(report.outcomes)


@pytest.mark.anyio
async def test_per_server_requests_as_pairs() -> None:
    fake = FakeCompute(time_scale=40)
    first, second = fake.add_servers(2)
    pairs = [
        (first, RebuildRequest(image_ref=NEW_IMAGE, name="first-b")),
        (second, RebuildRequest(image_ref=OTHER_IMAGE, name="second-b", metadata={"k": "v"})),
    ]
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(pairs, timeout=30)
    assert [(o.server_id, o.kind) for o in outcomes] == [
        (first, OutcomeKind.OK),
        (second, OutcomeKind.OK),
    ]
    one, two = fake.truth(first), fake.truth(second)
    assert (one.image_id, one.name) == (NEW_IMAGE, "first-b")
    assert (two.image_id, two.name, two.metadata) == (OTHER_IMAGE, "second-b", {"k": "v"})
    assert outcomes[1].server is not None
    assert outcomes[1].server.name == "second-b"


@pytest.mark.anyio
async def test_pairs_mixed_with_bare_ids_need_a_default_request() -> None:
    fake = FakeCompute(time_scale=40)
    first, second = fake.add_servers(2)
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            [(first, RebuildRequest(image_ref=NEW_IMAGE)), second], timeout=30
        )
        with pytest.raises(InvalidRequest):
            await ecs.rebuild_many([(first, "not a request")], timeout=30)  # type: ignore[list-item]  # wrong type on purpose
    assert [o.kind for o in outcomes] == [OutcomeKind.OK, OutcomeKind.INVALID]
    assert accepted(fake, [first, second]) == {first: 1, second: 0}


@pytest.mark.anyio
async def test_duplicates_get_one_invalid_outcome_without_a_second_post() -> None:
    fake = FakeCompute(time_scale=40)
    a, b = fake.add_servers(2)
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many([a, b, a], REQUEST, timeout=30)
    assert [o.server_id for o in outcomes] == [a, b, a]
    assert [o.kind for o in outcomes] == [OutcomeKind.OK, OutcomeKind.OK, OutcomeKind.INVALID]
    assert isinstance(outcomes[2].error, InvalidRequest)
    assert not outcomes[2].submitted
    assert accepted(fake, [a, b]) == {a: 1, b: 1}
    assert posts(fake) == 2


@pytest.mark.anyio
async def test_rebuild_stream_delivers_every_outcome() -> None:
    fake = FakeCompute(time_scale=40, jitter=0.5)
    ids = fake.add_servers(30)
    seen: list[RebuildOutcome] = []
    async with (
        client_for(fake) as ecs,
        ecs.rebuild_stream(ids, REQUEST, concurrency=10, timeout=30) as stream,
    ):
        async for outcome in stream:
            seen.append(outcome)
    assert sorted(o.server_id for o in seen) == sorted(ids)
    assert all(o.kind is OutcomeKind.OK for o in seen)
    assert accepted(fake, ids) == dict.fromkeys(ids, 1)


@pytest.mark.anyio
async def test_leaving_the_stream_early_cancels_the_rest() -> None:
    fake = FakeCompute(time_scale=40, jitter=0.5)
    ids = fake.add_servers(100)
    report = BulkReport()
    received = 0
    async with client_for(fake) as ecs:
        async with ecs.rebuild_stream(
            ids, REQUEST, concurrency=10, timeout=30, report=report
        ) as stream:
            async for _ in stream:
                received += 1
                if received == 5:
                    break
        requests_at_exit = sum(fake.stats.requests.values())
        await anyio.sleep(0.2)
        assert sum(fake.stats.requests.values()) == requests_at_exit
    counts = accepted(fake, ids)
    assert max(counts.values()) == 1
    assert report.submitted == {sid for sid, n in counts.items() if n == 1}
    assert len(report.submitted) < len(ids)
    assert report.finished < len(ids)


class UserBug(Exception):
    pass


@pytest.mark.anyio
async def test_an_exception_in_on_outcome_propagates() -> None:
    fake = FakeCompute(time_scale=40)
    ids = fake.add_servers(10)

    def on_outcome(outcome: RebuildOutcome) -> None:
        raise UserBug(f"cannot handle {outcome.server_id}")

    async with client_for(fake) as ecs:
        with pytest.raises(UserBug):
            await ecs.rebuild_many(ids, REQUEST, concurrency=5, timeout=30, on_outcome=on_outcome)
        before = sum(fake.stats.requests.values())
        await anyio.sleep(0.2)
        assert sum(fake.stats.requests.values()) == before
    assert max(accepted(fake, ids).values()) == 1


@pytest.mark.anyio
async def test_many_waits_that_do_not_know_when_their_rebuild_began_share_listings() -> None:
    """A fresh client waiting on a fleet rebuilt by someone else: listings, not a GET each.

    The waits are not told when the rebuilds began, so each proves its rebuild by seeing it run
    (REBUILD): the rebuilds last long enough for that.
    """
    # The fake's clock stands still until the listings have shown every rebuild running, so
    # however slow the machine, no rebuild ends unseen.
    fake = FakeCompute(time_scale=0, rebuild_seconds=60.0)
    ids = fake.add_servers(60)
    async with client_for(fake) as submitter:
        for server_id in ids:
            await submitter.rebuild(server_id, REQUEST)
    recording = RecordingTransport(fake)
    async with client_for(fake, transport=recording) as ecs:
        results: dict[str, str] = {}

        async def wait(server_id: str) -> None:
            server = await ecs.wait_for_rebuild(server_id, timeout=30)
            results[server_id] = server.image_id or ""

        async with anyio.create_task_group() as group:
            for server_id in ids:
                group.start_soon(wait, server_id)
            with anyio.fail_after(20):
                while ecs.stats["poll_listings"] < 3:  # noqa: ASYNC110 - a count, no event
                    await anyio.sleep(0.01)
            fake.advance(61.0)
    assert results == dict.fromkeys(ids, NEW_IMAGE)
    assert all(fake.truth(server_id).status == "ACTIVE" for server_id in ids)
    assert sum(recording.server_gets().values()) < len(ids) // 10
    assert ecs.stats["poll_listings"] > 0


@pytest.mark.anyio
async def test_a_request_shared_by_a_fleet_is_checked_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeCompute(time_scale=40, rebuild_seconds=1.0)
    ids = fake.add_servers(30)
    request = RebuildRequest(image_ref=NEW_IMAGE, admin_pass="not-used-on-ecs")
    with caplog.at_level("WARNING", logger="ecs_rebuild_async"):
        async with client_for(fake) as ecs:
            outcomes = await ecs.rebuild_many(ids, request)
    assert [outcome.ok for outcome in outcomes] == [True] * len(ids)
    warnings = [r for r in caplog.records if "adminPass" in r.getMessage()]
    assert len(warnings) == 1
