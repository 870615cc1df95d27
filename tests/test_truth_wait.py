"""Truth under adversity: a wait says ok only when this rebuild ran and finished, a rebuild is
sent at most once, and every call ends by its deadline, whatever the service does.

Each test drives the public API against ``FakeCompute`` (at the HTTP boundary) with an odd but
legal behaviour of the service: a lagging read in the same second as the acceptance, a skewed
``Date``, a 2xx with a bad body, a 5xx after the service acted, a server stopped between the
fleet's listing and its rebuild, a caller who cancels.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import attrs
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecs_rebuild_async import (
    AsyncEcsClient,
    BulkReport,
    ClientSettings,
    InvalidRequest,
    OutcomeKind,
    RebuildOutcome,
    RebuildOutcomeUnknown,
    RebuildRequest,
    RebuildTimeout,
    ServerStatus,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute, InjectedFault

IMAGE_A = DEFAULT_IMAGES["ubuntu-22.04"]
IMAGE_B = DEFAULT_IMAGES["ubuntu-24.04"]

FAST = {
    "poll_first_delay": 0.02,
    "poll_interval": 0.05,
    "poll_interval_max": 0.1,
    "backoff_initial": 0.001,
    "retry_after_cap": 0.05,
    "reconcile_settle": 0.01,
}
# A guard around calls that must end by their own deadline: far beyond any of them.
GUARD = 30.0


class SkewedDate(httpx.AsyncBaseTransport):
    """The fake behind a gateway whose clock (its ``Date``) runs ``skew`` seconds ahead, or
    (``skew=None``) that strips ``Date`` from every answer."""

    def __init__(self, inner: httpx.AsyncBaseTransport, skew: float | None) -> None:
        self._inner = inner
        self._skew = skew

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        date = response.headers.get("date")
        if self._skew is None:
            del response.headers["date"]
        elif date:
            shifted = email.utils.parsedate_to_datetime(date) + timedelta(seconds=self._skew)
            response.headers["date"] = email.utils.format_datetime(shifted, usegmt=True)
        return response


@asynccontextmanager
async def client_for(
    fake: FakeCompute, *, skew: float | None = 0.0, **settings: Any
) -> AsyncIterator[AsyncEcsClient]:
    transport: httpx.AsyncBaseTransport = fake.transport()
    if skew != 0.0:
        transport = SkewedDate(transport, skew)
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=transport,
        settings=ClientSettings(**{**FAST, **settings}),
    ) as ecs:
        yield ecs


def posts(fake: FakeCompute) -> int:
    return fake.stats.requests[("POST", "rebuild")]


def server_reads(fake: FakeCompute) -> int:
    return fake.stats.requests[("GET", "server")]


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition()`` holds (bounded, so a bug cannot hang)."""
    for _ in range(4000):
        if condition():
            return
        await anyio.sleep(0.005)
    raise AssertionError("the condition never held")


async def step_after_each_read(fake: FakeCompute, seconds: float) -> None:
    """On a frozen clock, move the fake ``seconds`` on after every read of a server: each
    read sees the next step of the rebuild, whatever the speed of the machine."""
    while True:
        seen = server_reads(fake) + fake.stats.requests[("GET", "servers_detail")]
        await until(
            lambda: server_reads(fake) + fake.stats.requests[("GET", "servers_detail")] > seen  # noqa: B023  # read at once, in this iteration
        )
        fake.advance(seconds)


async def stop(fake: FakeCompute, server_id: str) -> int:
    """``os-stop`` the server through the fake's API, as another client would."""
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        answer = await http.post(
            f"{fake.compute_url}/servers/{server_id}/action",
            json={"os-stop": None},
            headers={"X-Auth-Token": fake.token},
        )
    return answer.status_code


def finished_on(fake: FakeCompute, server_id: str, status: str, image: str) -> bool:
    truth = fake.truth(server_id)
    return (truth.status, truth.task_state, truth.image_id) == (status, None, image)


# -- 3: reconciliation never takes an earlier rebuild for this one ------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("two_step", [False, True])
async def test_a_5xx_not_carried_out_is_not_proven_by_an_earlier_rebuild(two_step: bool) -> None:
    fake = FakeCompute(time_scale=40, rebuild_seconds=2)
    sid = fake.add_server(image_id=IMAGE_A)
    fake.advance(30)
    async with client_for(fake) as first:
        await first.rebuild_and_wait(sid, RebuildRequest(image_ref=IMAGE_A), timeout=GUARD)
    fake.advance(20)
    # A gateway answers 503 to the next rebuild, which never reaches the service; a fresh
    # client (no service time known from before) reconciles it.
    fake.faults.script("POST", "rebuild", ["503"])
    async with client_for(fake) as fresh:
        request = RebuildRequest(image_ref=IMAGE_B)
        if two_step:
            await fresh.rebuild(sid, request)
            done = await fresh.wait_for_rebuild(sid, timeout=GUARD)
        else:
            done = await fresh.rebuild_and_wait(sid, request, timeout=GUARD)
    # Proven not carried out (the listed rebuild is the earlier one), sent once more, and the
    # wait ended on the image this call asked for.
    assert fake.rebuilds_accepted(sid) == 2
    assert done.image_id == IMAGE_B
    assert finished_on(fake, sid, "ACTIVE", IMAGE_B)


@pytest.mark.anyio
async def test_an_earlier_rebuild_in_the_same_second_makes_the_outcome_unknown() -> None:
    # The earlier rebuild ended in the very second of the read before this request: a rebuild
    # in the instance actions might be either. Unknown, never ok and never sent again.
    fake = FakeCompute(time_scale=0, rebuild_seconds=0.2)
    sid = fake.add_server(image_id=IMAGE_A)
    fake.advance(30 + 0.1 + math.ceil(fake.now()) - fake.now())  # a tenth into a second
    async with client_for(fake) as ecs:
        await ecs.rebuild(sid, RebuildRequest(image_ref=IMAGE_A))
        fake.advance(0.3)  # finished within the same second
        assert finished_on(fake, sid, "ACTIVE", IMAGE_A)
        fake.faults.script("POST", "rebuild", ["503"])
        with pytest.raises(RebuildOutcomeUnknown) as caught:
            await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=IMAGE_B), timeout=GUARD)
    assert fake.rebuilds_accepted(sid) == 1
    assert any("cannot be told apart" in line for line in caught.value.evidence)


# -- 4: a read that could be from before the rebuild never ends a wait --------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("image", [IMAGE_B, IMAGE_A], ids=["new-image", "same-image"])
async def test_a_lagging_read_in_the_second_of_acceptance_does_not_end_the_wait(
    image: str,
) -> None:
    # Frozen clock: the server last changed in the very instant its rebuild is accepted, and a
    # lagging replica serves the old ACTIVE state (that second's ``updated``) for 3 s.
    fake = FakeCompute(time_scale=0, rebuild_seconds=2, read_lag=3)
    fake.advance(0.05 + math.ceil(fake.now()) - fake.now())  # the read before and the POST
    sid = fake.add_server(image_id=IMAGE_A)  # then fall in the second of this change
    async with client_for(fake) as ecs, anyio.create_task_group() as group:
        group.start_soon(step_after_each_read, fake, 0.25)
        with anyio.fail_after(GUARD):
            done = await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=image), timeout=60)
        group.cancel_scope.cancel()
    assert done.image_id == image
    assert done.status is ServerStatus.ACTIVE
    assert done.task_state is None
    # The wait ended only once the service's record shows this rebuild finished.
    assert fake.stats.responses[202] == 1
    assert finished_on(fake, sid, "ACTIVE", image)
    assert done.updated is not None
    assert done.updated.timestamp() >= int(fake.truth(sid).updated_at)


# -- 5 and 9: the state to return to comes from evidence close to the POST ---------------------


@pytest.mark.anyio
async def test_a_server_stopped_after_the_fleet_listing_ends_shutoff_ok() -> None:
    fake = FakeCompute(time_scale=40, rebuild_seconds=2)
    ids = fake.add_servers(2, image_id=IMAGE_A, rebuild_seconds=20)  # 0.5 s of real time
    fake.advance(30)
    stopped: list[tuple[str, int]] = []

    async def stop_the_other_once_one_is_sent() -> None:
        # One at a time: while the first is rebuilt, the other is stopped by someone else.
        await until(lambda: posts(fake) >= 1)
        other = next(sid for sid in ids if fake.rebuilds_accepted(sid) == 0)
        stopped.append((other, await stop(fake, other)))

    async with client_for(fake) as ecs, anyio.create_task_group() as group:
        group.start_soon(stop_the_other_once_one_is_sent)
        with anyio.fail_after(GUARD):
            outcomes = await ecs.rebuild_many(
                ids, RebuildRequest(image_ref=IMAGE_B), concurrency=1, timeout=20
            )
    assert [status for _, status in stopped] == [202]
    assert fake.stats.requests[("GET", "servers_detail")] >= 1  # the fleet was listed first
    (other, _), by_id = stopped[0], {outcome.server_id: outcome for outcome in outcomes}
    assert all(outcome.ok for outcome in outcomes), outcomes
    assert by_id[other].server is not None
    assert by_id[other].server.status is ServerStatus.SHUTOFF
    assert finished_on(fake, other, "SHUTOFF", IMAGE_B)
    (first,) = set(ids) - {other}
    assert finished_on(fake, first, "ACTIVE", IMAGE_B)


@pytest.mark.anyio
async def test_rebuild_then_wait_on_a_stopped_server_is_not_fooled_by_its_brief_active() -> None:
    # Nova shows ACTIVE with no task for a moment before powering-off; at 2.60 the 202 body has
    # no vm_state. The first read of the wait lands on that moment.
    fake = FakeCompute(time_scale=0, rebuild_seconds=2)
    sid = fake.add_server(status="SHUTOFF", image_id=IMAGE_A)
    fake.advance(30)
    async with client_for(fake) as ecs:
        await ecs.rebuild(sid, RebuildRequest(image_ref=IMAGE_B))
        fake.advance(2.0)
        assert fake.truth(sid).status == "ACTIVE"  # the brief step
        async with anyio.create_task_group() as group:
            group.start_soon(step_after_each_read, fake, 0.1)
            with anyio.fail_after(GUARD):
                done = await ecs.wait_for_rebuild(sid, timeout=60)
            group.cancel_scope.cancel()
    assert done.status is ServerStatus.SHUTOFF
    assert finished_on(fake, sid, "SHUTOFF", IMAGE_B)


# -- 6: any 2xx is an acceptance ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["empty_2xx", "truncated_2xx", "html_2xx"])
async def test_a_2xx_with_a_bad_body_is_an_acceptance(kind: str) -> None:
    fake = FakeCompute(time_scale=40, rebuild_seconds=2)
    single = fake.add_server(image_id=IMAGE_A)
    fleet = fake.add_servers(3, image_id=IMAGE_A)
    fake.advance(30)
    request = RebuildRequest(image_ref=IMAGE_B)
    async with client_for(fake) as ecs:
        fake.faults.script("POST", "rebuild", [kind])
        done = await ecs.rebuild_and_wait(single, request, timeout=GUARD)
        assert done.image_id == IMAGE_B
        fake.faults.script("POST", "rebuild", [kind, kind, kind])
        report = BulkReport()
        outcomes = await ecs.rebuild_many(fleet, request, timeout=GUARD, report=report)
    assert fake.stats.faults[kind] == 4
    assert [outcome.kind for outcome in outcomes] == [OutcomeKind.OK] * 3
    assert all(outcome.submitted for outcome in outcomes)
    assert report.submitted == set(fleet)
    for sid in [single, *fleet]:
        assert fake.rebuilds_accepted(sid) == 1
        assert finished_on(fake, sid, "ACTIVE", IMAGE_B)


# -- 8: the service's Date runs ahead of (or behind) the compute clock --------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("skew", [3600.0, 30.0, -3600.0])
@pytest.mark.parametrize("image", [IMAGE_A, IMAGE_B], ids=["same-image", "new-image"])
async def test_a_rebuild_seen_running_then_settled_is_ok_whatever_the_skew(
    skew: float, image: str
) -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=4)
    sid = fake.add_server(image_id=IMAGE_A)
    fake.advance(30)
    async with client_for(fake, skew=skew) as ecs, anyio.create_task_group() as group:
        group.start_soon(step_after_each_read, fake, 0.5)
        with anyio.fail_after(GUARD):
            done = await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=image), timeout=60)
        group.cancel_scope.cancel()
    assert done.image_id == image
    assert finished_on(fake, sid, "ACTIVE", image)
    assert fake.rebuilds_accepted(sid) == 1


# -- 10: a rebuild that may have been accepted counts as submitted --------------------------------


@pytest.mark.anyio
async def test_cancelled_while_reconciling_a_5xx_carried_out_counts_as_submitted() -> None:
    fake = FakeCompute(time_scale=40, rebuild_seconds=2)
    sid = fake.add_server(image_id=IMAGE_A)
    fake.advance(30)
    # The read before passes; the POST is carried out and answered 500; the reconciliation's
    # read hangs until the run is cancelled.
    fake.faults.script("GET", "server", [None, InjectedFault("latency", seconds=3600, real=True)])
    fake.faults.script("POST", "rebuild", ["500_after"])
    report = BulkReport()
    async with client_for(fake) as ecs:
        with anyio.move_on_after(GUARD) as guard:
            async with anyio.create_task_group() as group:
                group.start_soon(
                    lambda: ecs.rebuild_many(
                        [sid], RebuildRequest(image_ref=IMAGE_B), report=report
                    )
                )
                await until(lambda: server_reads(fake) >= 2)
                group.cancel_scope.cancel()
    assert not guard.cancelled_caught
    assert fake.rebuilds_accepted(sid) == 1
    assert report.submitted == {sid}


# -- 11: cancellation keeps what a timeout keeps -------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["wait_for_rebuild", "rebuild_and_wait"])
async def test_a_cancelled_wait_keeps_the_acceptance_for_the_next_wait(how: str) -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=2)
    sid = fake.add_server(image_id=IMAGE_A)
    fake.advance(30)
    request = RebuildRequest(image_ref=IMAGE_B)
    async with client_for(fake) as ecs:
        if how == "wait_for_rebuild":
            await ecs.rebuild(sid, request)

        async def wait() -> None:
            if how == "wait_for_rebuild":
                await ecs.wait_for_rebuild(sid, timeout=60)
            else:
                await ecs.rebuild_and_wait(sid, request, timeout=60)

        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            # Cancelled by the caller after the rebuild was accepted and seen running.
            await until(lambda: posts(fake) == 1 and server_reads(fake) >= 3)
            group.cancel_scope.cancel()
        fake.advance(10)  # finished meanwhile, unobserved
        with anyio.fail_after(GUARD):
            done = await ecs.wait_for_rebuild(sid, timeout=2)
    assert done.image_id == IMAGE_B
    assert finished_on(fake, sid, "ACTIVE", IMAGE_B)
    assert posts(fake) == 1


@pytest.mark.anyio
async def test_without_the_acceptance_a_finished_rebuild_cannot_be_proven() -> None:
    # The counterpart of the test above: a wait that knows nothing of the rebuild cannot tell
    # a finished one from no rebuild at all, so it must not say ok.
    fake = FakeCompute(time_scale=0, rebuild_seconds=2)
    sid = fake.add_server(image_id=IMAGE_A)
    fake.advance(30)
    sent_at = datetime.fromtimestamp(int(fake.now()), timezone.utc)
    async with client_for(fake) as sender:
        await sender.rebuild(sid, RebuildRequest(image_ref=IMAGE_B))
    fake.advance(10)
    async with client_for(fake) as other:
        with pytest.raises(RebuildTimeout):
            await other.wait_for_rebuild(sid, timeout=0.2)
        # Given the service time of the request, the same wait proves it.
        done = await other.wait_for_rebuild(sid, timeout=2, since=sent_at)
    assert done.image_id == IMAGE_B


# -- 12: a bad timeout is refused before anything is sent ---------------------------------------


BAD_TIMEOUTS = ["30", math.nan, -1, True, [30]]


@pytest.mark.anyio
@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=repr)
async def test_a_bad_timeout_is_refused_before_anything_is_sent(timeout: Any) -> None:
    fake = FakeCompute(time_scale=40)
    sid = fake.add_server(image_id=IMAGE_A)
    request = RebuildRequest(image_ref=IMAGE_B)
    async with client_for(fake) as ecs:
        with pytest.raises(InvalidRequest, match="timeout"):
            await ecs.rebuild_and_wait(sid, request, timeout=timeout)
        with pytest.raises(InvalidRequest, match="timeout"):
            await ecs.wait_for_rebuild(sid, timeout=timeout)
        with pytest.raises(InvalidRequest, match="timeout"):
            await ecs.rebuild_many([sid, sid + "x"], request, timeout=timeout)
    assert sum(fake.stats.requests.values()) == 0


# -- 13: timeout bounds the whole call ----------------------------------------------------------


@pytest.mark.anyio
async def test_timeout_bounds_a_retry_after_pause_before_the_post() -> None:
    fake = FakeCompute(time_scale=40)
    sid = fake.add_server(image_id=IMAGE_A)
    fake.faults.script("POST", "rebuild", [InjectedFault("429", retry_after="3600")])
    async with client_for(fake, retry_after_cap=3600.0) as ecs:
        with anyio.fail_after(GUARD), pytest.raises(RebuildTimeout, match="nothing was sent"):
            await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=IMAGE_B), timeout=0.5)
    assert fake.rebuilds_accepted(sid) == 0


@pytest.mark.anyio
async def test_a_timed_out_call_names_the_timeout_it_was_given() -> None:
    fake = FakeCompute(time_scale=0)  # frozen: the rebuild never ends
    sid = fake.add_server(image_id=IMAGE_A)
    async with client_for(fake) as ecs:
        with anyio.fail_after(GUARD), pytest.raises(RebuildTimeout) as caught:
            await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=IMAGE_B), timeout=2)
    # Whether the deadline caught the wait or (on a very slow machine) the request before it,
    # the error names the timeout the caller gave, not what was left of it.
    assert re.search(r"\b2s\b", str(caught.value)), str(caught.value)
    assert caught.value.server is not None
    if posts(fake):
        assert caught.value.server.status is ServerStatus.REBUILD


@pytest.mark.anyio
async def test_timeout_bounds_the_read_before() -> None:
    fake = FakeCompute(time_scale=40)
    sid = fake.add_server(image_id=IMAGE_A)
    fake.faults.script("GET", "server", [InjectedFault("latency", seconds=3600, real=True)])
    report = BulkReport()
    async with client_for(fake) as ecs:
        with anyio.fail_after(GUARD):
            outcomes = await ecs.rebuild_many(
                [sid], RebuildRequest(image_ref=IMAGE_B), timeout=0.5, report=report
            )
    assert outcomes[0].kind is OutcomeKind.TIMED_OUT
    assert not outcomes[0].submitted
    assert posts(fake) == 0


@pytest.mark.anyio
async def test_timeout_bounds_the_reconciliation_and_says_unknown() -> None:
    fake = FakeCompute(time_scale=40)
    sid = fake.add_server(image_id=IMAGE_A)
    fake.faults.script("GET", "server", [None, InjectedFault("latency", seconds=3600, real=True)])
    fake.faults.script("POST", "rebuild", ["lost"])
    report = BulkReport()
    async with client_for(fake) as ecs:
        with anyio.fail_after(GUARD):
            outcomes = await ecs.rebuild_many(
                [sid], RebuildRequest(image_ref=IMAGE_B), timeout=10, report=report
            )
    assert outcomes[0].kind is OutcomeKind.UNKNOWN
    assert outcomes[0].submitted
    assert report.submitted == {sid}
    assert fake.rebuilds_accepted(sid) == 1


# -- the adversarial property: random fleets under random combinations of all of it -------------

PROPERTY_TIMEOUT = 2.0  # each server's whole rebuild, in real seconds
FINAL_READ_BUDGET = 1.0  # the wait's one last read at the deadline (max(1, 10 % of timeout))
SCHEDULING_SLACK = 5.0  # generous: only a wait that ignores its deadline can exceed it


@attrs.frozen
class Scenario:
    stopped: tuple[bool, ...]  # which servers start SHUTOFF
    durations: tuple[float, ...]  # fake seconds of each server's rebuild
    same_image: tuple[bool, ...]  # rebuilt onto the image it has
    stop_target: int | None  # a server stopped by someone else while the run goes on
    concurrency: int
    read_lag: float
    skew: float | None  # None: no Date header at all
    max_limit: int
    faults: tuple[tuple[str, float], ...]  # (kind, probability) on the rebuild POST
    read_faults: float  # probability of a 503 on any read
    seed: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    size = draw(st.integers(2, 5))
    skew = draw(st.sampled_from([0.0, 30.0, -30.0, 3600.0, -3600.0, None]))
    post_faults = st.tuples(
        st.sampled_from(
            ["lost", "500", "503", "500_after", "503_after", "empty_2xx", "html_2xx", "429"]
        ),
        st.sampled_from([0.2, 0.5]),
    )
    return Scenario(
        stopped=tuple(draw(st.lists(st.booleans(), min_size=size, max_size=size))),
        durations=tuple(
            draw(st.lists(st.sampled_from([2.0, 4.0, 8.0]), min_size=size, max_size=size))
        ),
        same_image=tuple(draw(st.lists(st.booleans(), min_size=size, max_size=size))),
        stop_target=draw(st.one_of(st.none(), st.integers(0, size - 1))),
        # Without a Date, waits run one at a time: the shared poller's listings need the
        # service's time until the poller's own fix for a missing Date is in.
        concurrency=1 if skew is None else draw(st.sampled_from([1, size])),
        read_lag=draw(st.sampled_from([0.0, 1.0, 3.0])),
        skew=skew,
        max_limit=draw(st.sampled_from([1000, 2])),
        faults=tuple(draw(st.lists(post_faults, max_size=3))),
        read_faults=draw(st.sampled_from([0.0, 0.1])),
        seed=draw(st.integers(0, 2**16)),
    )


def fault_hook(scenario: Scenario) -> Callable[[str, str], InjectedFault | str | None]:
    rng = random.Random(scenario.seed)

    def pick(method: str, route: str) -> InjectedFault | str | None:
        if method == "POST" and route == "rebuild":
            for kind, probability in scenario.faults:
                if rng.random() < probability:
                    return InjectedFault("429", retry_after="1") if kind == "429" else kind
        reads = ("server", "servers_detail", "instance_actions")
        if method == "GET" and route in reads and rng.random() < scenario.read_faults:
            return "503"
        return None

    return pick


async def run_scenario(scenario: Scenario, totals: Counter[str]) -> None:
    fake = FakeCompute(time_scale=20, read_lag=scenario.read_lag, max_limit=scenario.max_limit)
    ids = [
        fake.add_server(
            name=f"p-{index}",
            status="SHUTOFF" if stopped else "ACTIVE",
            image_id=IMAGE_A,
            rebuild_seconds=duration,
        )
        for index, (stopped, duration) in enumerate(
            zip(scenario.stopped, scenario.durations, strict=True)
        )
    ]
    fake.advance(30)
    wanted = {
        sid: IMAGE_A if same else IMAGE_B
        for sid, same in zip(ids, scenario.same_image, strict=True)
    }
    expected = {
        sid: "SHUTOFF" if stopped else "ACTIVE"
        for sid, stopped in zip(ids, scenario.stopped, strict=True)
    }
    fake.faults.hook = fault_hook(scenario)
    truth_at_outcome: dict[str, tuple[str, str | None, str, int]] = {}

    def record(outcome: RebuildOutcome) -> None:
        truth = fake.truth(outcome.server_id)
        truth_at_outcome[outcome.server_id] = (
            truth.status,
            truth.task_state,
            truth.image_id,
            fake.rebuilds_accepted(outcome.server_id),
        )

    async def stop_someone() -> None:
        # Someone else stops a server once the run has sent its first rebuild: between the
        # fleet's listing and that server's own rebuild, if it has not been sent yet.
        assert scenario.stop_target is not None
        target = ids[scenario.stop_target]
        await until(lambda: posts(fake) >= 1)
        if fake.rebuilds_accepted(target) or fake.truth(target).status != "ACTIVE":
            return
        status = await stop(fake, target)
        totals[f"stops answered {status}"] += 1
        if status == 202:
            expected[target] = "SHUTOFF"

    requests = [(sid, RebuildRequest(image_ref=wanted[sid])) for sid in ids]
    report = BulkReport()
    started = anyio.current_time()
    async with client_for(fake, skew=scenario.skew) as ecs, anyio.create_task_group() as group:
        if scenario.stop_target is not None:
            group.start_soon(stop_someone)
        with anyio.fail_after(60):
            outcomes = await ecs.rebuild_many(
                requests,
                concurrency=scenario.concurrency,
                timeout=PROPERTY_TIMEOUT,
                on_outcome=record,
                report=report,
            )
        group.cancel_scope.cancel()
    elapsed = anyio.current_time() - started

    # One outcome per server, and the report agrees.
    assert [outcome.server_id for outcome in outcomes] == ids
    assert report.outcomes.keys() == set(ids)
    rounds = math.ceil(len(ids) / scenario.concurrency)
    # Every wait ended within its deadline plus the final read's budget.
    bound = rounds * (PROPERTY_TIMEOUT + FINAL_READ_BUDGET) + SCHEDULING_SLACK
    assert elapsed <= bound, (elapsed, bound)
    totals["runs"] += 1
    totals["servers"] += len(ids)
    for outcome in outcomes:
        sid = outcome.server_id
        totals[f"outcome {outcome.kind.value}"] += 1
        # Never two accepted rebuilds for one call.
        assert fake.rebuilds_accepted(sid) <= 1, outcome
        if fake.rebuilds_accepted(sid):
            assert outcome.submitted, outcome  # accepted, so it says it was submitted
        if not outcome.ok:
            continue
        # No ok unless the service's record shows this rebuild finished in the right state.
        status, task_state, image, accepted = truth_at_outcome[sid]
        assert (status, task_state, image, accepted) == (expected[sid], None, wanted[sid], 1), (
            outcome,
            scenario,
        )
        assert outcome.server is not None
        assert outcome.server.status.value == expected[sid]
        assert outcome.server.image_id == wanted[sid]
    if scenario.skew is None:
        totals["runs without Date"] += 1
    for kind, count in fake.stats.faults.items():
        totals[f"fault {kind}"] += count
    totals["max seconds over the deadline"] = max(
        totals["max seconds over the deadline"],
        math.ceil(max(0.0, elapsed - rounds * PROPERTY_TIMEOUT)),
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_adversarial_fleets_never_get_a_false_ok(backend: str, figures: list[str]) -> None:
    totals: Counter[str] = Counter()

    @settings(
        max_examples=12,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(scenario=scenarios())
    def check(scenario: Scenario) -> None:
        anyio.run(run_scenario, scenario, totals, backend=backend)

    check()
    assert totals["runs"] >= 12
    assert totals["outcome ok"] > 0
    summary = ", ".join(f"{key}={value}" for key, value in sorted(totals.items()))
    figures.append(f"adversarial[{backend}]: {summary}")


@pytest.mark.anyio
async def test_a_same_image_rebuild_ended_unseen_in_its_second_is_proven_by_instance_action() -> (
    None
):
    """A rebuild to the image the server already runs, ended within the second it was accepted
    and never seen running by a read, leaves no trace a read can show: the instance actions
    prove it (the rebuild that began after the read before, its compute event a Success)."""
    fake = FakeCompute(time_scale=0, rebuild_seconds=0.3)
    server_id = fake.add_server(image_id=IMAGE_A)
    fake.advance(math.ceil(fake.now()) - fake.now() + 0.05)  # early in a whole second
    async with client_for(fake) as ecs:
        await ecs.rebuild(server_id, RebuildRequest(image_ref=IMAGE_A))
        fake.advance(0.3)  # ended, in the same second, before any read
        with anyio.fail_after(GUARD):
            done = await ecs.wait_for_rebuild(server_id, timeout=5)
    assert fake.truth(server_id).rebuilds == 1
    assert done.status is ServerStatus.ACTIVE
    assert done.task_state is None
    assert fake.stats.requests[("GET", "instance_action")] >= 1


@pytest.mark.anyio
async def test_the_same_rebuild_without_readable_events_is_not_called_unfinished() -> None:
    """The same rebuild where the instance actions show no events (below 2.51): the wait ends
    at its deadline, never with a false ok, and its error says what is known."""
    fake = FakeCompute(time_scale=0, rebuild_seconds=0.3)
    server_id = fake.add_server(image_id=IMAGE_A)
    fake.advance(math.ceil(fake.now()) - fake.now() + 0.05)  # early in a whole second
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=fake.transport(),
        microversion="2.50",
        settings=ClientSettings(**FAST),
    ) as ecs:
        await ecs.rebuild(server_id, RebuildRequest(image_ref=IMAGE_A))
        fake.advance(0.3)  # ended, in the same second, before any read
        with anyio.fail_after(GUARD), pytest.raises(RebuildTimeout) as caught:
            await ecs.wait_for_rebuild(server_id, timeout=1)
    assert fake.truth(server_id).rebuilds == 1
    assert "did not finish" not in str(caught.value)
    assert "looks rebuilt (ACTIVE/None)" in str(caught.value)
    assert caught.value.server is not None
    assert caught.value.server.status is ServerStatus.ACTIVE


@pytest.mark.anyio
async def test_rebuild_and_wait_says_the_same_when_its_rebuild_cannot_be_proven() -> None:
    """rebuild_and_wait names the timeout the caller gave, and keeps what is known: a server
    that looks rebuilt is not called unfinished."""
    fake = FakeCompute(time_scale=0, rebuild_seconds=0.3)
    server_id = fake.add_server(image_id=IMAGE_A)
    fake.advance(math.ceil(fake.now()) - fake.now() + 0.05)  # early in a whole second
    caught: list[RebuildTimeout] = []
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=fake.transport(),
        microversion="2.50",  # instance actions without events: nothing else can prove it
        settings=ClientSettings(**FAST),
    ) as ecs:

        async def rebuild_and_wait() -> None:
            try:
                await ecs.rebuild_and_wait(server_id, RebuildRequest(image_ref=IMAGE_A), timeout=1)
            except RebuildTimeout as exc:
                caught.append(exc)

        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as group:
                group.start_soon(rebuild_and_wait)
                while fake.truth(server_id).rebuilds == 0:  # noqa: ASYNC110 - the fake sets no event
                    await anyio.sleep(0.001)
                fake.advance(0.3)  # ended, in the same second, before the wait's first read
    assert fake.truth(server_id).rebuilds == 1
    assert len(caught) == 1
    message = str(caught[0])
    assert "did not finish" not in message
    assert "looks rebuilt (ACTIVE/None)" in message
    assert "within 1s" in message
