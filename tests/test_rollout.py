"""Rolling a fleet through the public API, on the fake service: canary, failure budget,
pacing, health gates, checkpoints, skip-matching, rollback, the plan, and cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from ecs_rebuild_async import (
    NOVA,
    AsyncEcsClient,
    BulkReport,
    ClientSettings,
    InvalidRequest,
    MicroversionError,
    OutcomeKind,
    RebuildOutcome,
    RebuildRequest,
    RolloutPhase,
    RolloutPolicy,
    RolloutProgress,
    Server,
    ServerStatus,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

NEW = DEFAULT_IMAGES["ubuntu-24.04"]
OLD = DEFAULT_IMAGES["ubuntu-22.04"]
OTHER = DEFAULT_IMAGES["centos-9"]
REQUEST = RebuildRequest(image_ref=NEW)
FAST = ClientSettings(
    poll_first_delay=0.01,
    poll_interval=0.02,
    poll_interval_max=0.05,
    backoff_initial=0.001,
    retry_after_cap=0.05,
    reconcile_settle=0.01,
)


@asynccontextmanager
async def client_for(fake: FakeCompute, **options: Any) -> AsyncIterator[AsyncEcsClient]:
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=fake.transport(),
        settings=FAST,
        **options,
    ) as ecs:
        yield ecs


def posts(fake: FakeCompute) -> int:
    return fake.stats.requests[("POST", "rebuild")]


def kinds(outcomes: list[RebuildOutcome]) -> list[OutcomeKind]:
    return [outcome.kind for outcome in outcomes]


def health_of(fake: FakeCompute) -> Any:
    async def check(server: Server) -> bool:
        return fake.health(server.id)

    return check


@pytest.mark.anyio
async def test_a_failing_canary_stops_the_run_with_only_the_canary_touched() -> None:
    fake = FakeCompute(time_scale=50)
    canary = [fake.add_server(name="c0"), fake.add_server(name="c1", fail_image=NEW)]
    rest = fake.add_servers(6, prefix="rest")
    report = BulkReport()
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            [*canary, *rest], REQUEST, policy=RolloutPolicy(canary=2), report=report, timeout=30
        )
    assert kinds(outcomes) == [OutcomeKind.OK, OutcomeKind.FAILED] + [OutcomeKind.SKIPPED] * 6
    assert [fake.rebuilds_accepted(sid) for sid in canary + rest] == [1, 1] + [0] * 6
    assert posts(fake) == 2
    assert report.stopped_reason == f"canary {canary[1]} did not pass"
    assert all(o.reason == f"not started: {report.stopped_reason}" for o in outcomes[2:])
    assert report.rollout is not None
    assert not report.rollout.canary_passed
    assert report.finished == report.total == 8
    assert report.submitted == set(canary)


@pytest.mark.anyio
async def test_a_passing_canary_lets_the_rest_roll() -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(6)
    report = BulkReport()
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            servers, REQUEST, policy=RolloutPolicy(canary=2), report=report, timeout=30
        )
    assert kinds(outcomes) == [OutcomeKind.OK] * 6
    assert report.rollout is not None
    assert report.rollout.canary_passed
    assert report.rollout.phase is RolloutPhase.DONE
    assert report.stopped_reason is None
    assert all(fake.truth(sid).image_id == NEW for sid in servers)


@pytest.mark.anyio
async def test_max_failures_two_stops_after_the_third_failure_and_sends_nothing_later() -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(10, fail_image=NEW)
    report = BulkReport()
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            servers,
            REQUEST,
            concurrency=1,
            policy=RolloutPolicy(max_failures=2),
            report=report,
            timeout=30,
        )
        sent = posts(fake)
        fake.advance(60)
        await anyio.sleep(0.1)  # nothing of the run is left to send anything
    assert kinds(outcomes) == [OutcomeKind.FAILED] * 3 + [OutcomeKind.SKIPPED] * 7
    assert sent == posts(fake) == 3
    assert report.stopped_reason == "3 failures, more than max_failures (2)"
    assert report.rollout is not None
    assert report.rollout.budget_left == 0


@pytest.mark.anyio
async def test_in_flight_rebuilds_finish_when_the_budget_is_spent() -> None:
    # The fake's clock stands still until all four rebuilds were accepted, so however slow the
    # machine, the failure comes while the other three are in flight.
    fake = FakeCompute(time_scale=0)
    bad = fake.add_server(name="bad", fail_image=NEW, rebuild_seconds=0.5)
    slow = fake.add_servers(3, prefix="slow", rebuild_seconds=3.0)
    later = fake.add_servers(4, prefix="later")
    outcomes: list[RebuildOutcome] = []

    async def roll(ecs: AsyncEcsClient) -> None:
        outcomes.extend(
            await ecs.rebuild_many(
                [bad, *slow, *later],
                REQUEST,
                concurrency=4,
                policy=RolloutPolicy(max_failures=0),
                timeout=30,
            )
        )

    async with client_for(fake) as ecs, anyio.create_task_group() as group:
        group.start_soon(roll, ecs)
        with anyio.fail_after(10):
            while posts(fake) < 4:  # noqa: ASYNC110 - the fake sets no event on a request
                await anyio.sleep(0.005)
            while not outcomes:
                fake.advance(0.25)
                await anyio.sleep(0.03)
    # All four started together; the failure stops new starts, the three in flight finish ok.
    assert (
        kinds(outcomes) == [OutcomeKind.FAILED] + [OutcomeKind.OK] * 3 + [OutcomeKind.SKIPPED] * 4
    )
    assert posts(fake) == 4
    assert all(fake.truth(sid).image_id == NEW for sid in slow)


@pytest.mark.anyio
async def test_max_unavailable_is_never_exceeded() -> None:
    fake = FakeCompute(time_scale=50, rebuild_seconds=10.0, jitter=0.5)  # 0.1 to 0.3 s each
    servers = fake.add_servers(24)
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            servers, REQUEST, concurrency=50, policy=RolloutPolicy(max_unavailable=0.125)
        )
    assert kinds(outcomes) == [OutcomeKind.OK] * 24
    assert fake.max_rebuilding == 3  # 12.5 % of 24, reached and never passed


@pytest.mark.anyio
async def test_failed_servers_keep_counting_as_unavailable() -> None:
    fake = FakeCompute(time_scale=50)
    broken = fake.add_servers(3, prefix="broken", fail_image=NEW)
    fine = fake.add_servers(5, prefix="fine")
    report = BulkReport()
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            [*broken, *fine], REQUEST, policy=RolloutPolicy(max_unavailable=3), report=report
        )
    # Three failed servers fill the three places: the rollout cannot go on, and says so.
    assert kinds(outcomes) == [OutcomeKind.FAILED] * 3 + [OutcomeKind.SKIPPED] * 5
    assert report.stopped_reason == "3 failed servers fill max_unavailable (3)"
    assert posts(fake) == 3


@pytest.mark.anyio
async def test_unhealthy_servers_count_against_the_budget() -> None:
    fake = FakeCompute(time_scale=50)
    fine = fake.add_server(name="fine")
    sick = fake.add_servers(2, prefix="sick", health=False)
    rest = fake.add_servers(3, prefix="rest")
    report = BulkReport()
    policy = RolloutPolicy(
        max_failures=1, health_check=health_of(fake), warmup=0.1, health_interval=0.02
    )
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            [fine, *sick, *rest], REQUEST, concurrency=1, policy=policy, report=report, timeout=30
        )
    assert (
        kinds(outcomes)
        == [OutcomeKind.OK, OutcomeKind.UNHEALTHY, OutcomeKind.UNHEALTHY]
        + [OutcomeKind.SKIPPED] * 3
    )
    assert outcomes[1].reason == "the health check did not pass within 0.1 s"
    assert outcomes[1].server is not None
    assert outcomes[1].server.image_id == NEW
    assert report.stopped_reason == "2 failures, more than max_failures (1)"
    assert posts(fake) == 3


@pytest.mark.anyio
async def test_a_server_that_turns_healthy_within_its_warmup_is_ok() -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(3)
    # Each server's check fails twice, then passes: counted in tries, not in time, so a slow
    # machine cannot make the first try already pass.
    tries: dict[str, list[bool]] = {server_id: [] for server_id in servers}

    async def check(server: Server) -> bool:
        tries[server.id].append(len(tries[server.id]) >= 2)
        return tries[server.id][-1]

    policy = RolloutPolicy(health_check=check, warmup=60, health_interval=0.02)
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(servers, REQUEST, policy=policy, timeout=30)
    assert kinds(outcomes) == [OutcomeKind.OK] * 3
    assert all(each == [False, False, True] for each in tries.values())


@pytest.mark.anyio
async def test_a_health_check_that_raises_is_a_failed_try() -> None:
    fake = FakeCompute(time_scale=50)
    server_id = fake.add_server()

    async def check(server: Server) -> bool:
        raise ConnectionError("refused")

    policy = RolloutPolicy(health_check=check, warmup=0.05, health_interval=0.01)
    async with client_for(fake) as ecs:
        (outcome,) = await ecs.rebuild_many([server_id], REQUEST, policy=policy, timeout=30)
    assert outcome.kind is OutcomeKind.UNHEALTHY
    assert outcome.reason is not None
    assert "ConnectionError" in outcome.reason


@pytest.mark.anyio
@pytest.mark.parametrize("answer", [True, False])
async def test_a_checkpoint_pauses_until_the_callback_answers(answer: bool) -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(8)
    report = BulkReport()
    asked = anyio.Event()
    release = anyio.Event()
    progress: list[RolloutProgress] = []

    async def on_checkpoint(seen: RolloutProgress) -> bool:
        progress.append(seen)
        asked.set()
        await release.wait()
        return answer

    policy = RolloutPolicy(checkpoints=(0.5,), on_checkpoint=on_checkpoint)
    results: list[list[RebuildOutcome]] = []
    async with client_for(fake) as ecs, anyio.create_task_group() as group:

        async def run() -> None:
            results.append(await ecs.rebuild_many(servers, REQUEST, policy=policy, report=report))

        group.start_soon(run)
        await asked.wait()
        fake.advance(30)  # time passes at the checkpoint; nothing new starts
        for _ in range(5):
            await anyio.sleep(0.02)
            assert posts(fake) == 4
        assert report.rollout is not None
        assert report.rollout.phase is RolloutPhase.PAUSED
        release.set()
    assert progress == [RolloutProgress(0.5, 4, 8, 4, 0, None)]
    (outcomes,) = results
    if answer:
        assert kinds(outcomes) == [OutcomeKind.OK] * 8
        assert report.rollout.checkpoints_passed == [0.5]
        assert posts(fake) == 8
    else:
        assert kinds(outcomes) == [OutcomeKind.OK] * 4 + [OutcomeKind.SKIPPED] * 4
        assert report.stopped_reason == "stopped at checkpoint 50%"
        assert posts(fake) == 4


@pytest.mark.anyio
async def test_a_checkpoint_without_a_callback_waits_its_delay() -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(4)
    report = BulkReport()
    policy = RolloutPolicy(checkpoints=(0.25, 0.5), checkpoint_delay=0.01)
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(servers, REQUEST, policy=policy, report=report)
    assert kinds(outcomes) == [OutcomeKind.OK] * 4
    assert report.rollout is not None
    assert report.rollout.checkpoints_passed == [0.25, 0.5]


@pytest.mark.anyio
async def test_skip_matching_sends_nothing_for_matching_servers() -> None:
    fake = FakeCompute(time_scale=50)
    done = fake.add_servers(3, prefix="web", image_id=NEW)
    renamed = fake.add_server(name="other", image_id=NEW)  # right image, other name
    old = fake.add_servers(2, prefix="old")
    request = RebuildRequest(image_ref=NEW, metadata={})
    report = BulkReport()
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            [*done, renamed, *old],
            request,
            policy=RolloutPolicy(skip_matching=True),
            report=report,
        )
        by_name = await ecs.rebuild_many(
            [*done, renamed],
            RebuildRequest(image_ref=NEW, name="web-0"),
            policy=RolloutPolicy(skip_matching=True),
        )
    assert kinds(outcomes) == [OutcomeKind.SKIPPED] * 4 + [OutcomeKind.OK] * 2
    assert all(o.ok for o in outcomes)  # a server that already matches is as asked
    assert report.rollout is not None
    assert (report.rollout.skipped_matching, report.rollout.total) == (4, 2)
    assert all(o.reason == "already matches" and not o.submitted for o in outcomes[:4])
    assert [fake.rebuilds_accepted(sid) for sid in [*done, renamed]] == [0, 1, 1, 1]
    # web-0 already has the name; the others do not (a second request, same image).
    assert kinds(by_name) == [OutcomeKind.SKIPPED] + [OutcomeKind.OK] * 3
    assert posts(fake) == 2 + 3


@pytest.mark.anyio
async def test_rollback_restores_every_rebuilt_server_and_rebuilds_each_exactly_twice() -> None:
    fake = FakeCompute(time_scale=50, dialect="nova")
    formers = [OLD, OTHER, OLD, OTHER]
    rebuilt = [
        fake.add_server(name=f"web-{i}", image_id=image, metadata={"v": "1"})
        for i, image in enumerate(formers[:3])
    ]
    broken = fake.add_server(name="web-3", image_id=OTHER, metadata={"v": "1"}, fail_image=NEW)
    untouched = fake.add_servers(3, prefix="later")
    report = BulkReport()
    seen: list[RebuildOutcome] = []
    request = RebuildRequest(image_ref=NEW, name="new", metadata={"v": "2"})
    async with client_for(fake, dialect=NOVA) as ecs:
        outcomes = await ecs.rebuild_many(
            [*rebuilt, broken, *untouched],
            request,
            concurrency=1,
            policy=RolloutPolicy(max_failures=0, rollback=True),
            report=report,
            on_outcome=seen.append,
            timeout=30,
        )
    assert kinds(outcomes) == [OutcomeKind.ROLLED_BACK] * 4 + [OutcomeKind.SKIPPED] * 3
    for sid, former in zip([*rebuilt, broken], formers, strict=True):
        truth = fake.truth(sid)
        assert fake.rebuild_images(sid) == [NEW, former]
        assert fake.rebuilds_accepted(sid) == 2
        assert (truth.image_id, truth.status, truth.metadata) == (former, "ACTIVE", {"v": "1"})
        assert truth.name == f"web-{[*rebuilt, broken].index(sid)}"
    assert all(fake.rebuilds_accepted(sid) == 0 for sid in untouched)
    assert report.rollout is not None
    assert report.rollout.phase is RolloutPhase.ROLLING_BACK
    assert (report.rollout.rollback_total, report.rollout.rollback_finished) == (4, 4)
    assert report.rollback_submitted == report.submitted == {*rebuilt, broken}
    assert (
        outcomes[0].reason == f"rebuilt back to image {OLD}: 1 failure, more than max_failures (0)"
    )
    # Each rolled-back server was received twice by on_outcome: forward, then rolled back.
    assert [o.kind for o in seen if o.server_id == rebuilt[0]] == [
        OutcomeKind.OK,
        OutcomeKind.ROLLED_BACK,
    ]


@pytest.mark.anyio
async def test_a_rollback_that_cannot_run_says_so() -> None:
    # ECS cannot rebuild a server in ERROR: the failed one cannot be rolled back.
    fake = FakeCompute(time_scale=50)
    fine = fake.add_server(name="fine")
    broken = fake.add_server(name="broken", fail_image=NEW)
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            [fine, broken],
            REQUEST,
            concurrency=1,
            policy=RolloutPolicy(max_failures=0, rollback=True),
            timeout=30,
        )
    assert kinds(outcomes) == [OutcomeKind.ROLLED_BACK, OutcomeKind.ROLLBACK_FAILED]
    assert isinstance(outcomes[1].error, InvalidRequest)
    assert fake.rebuilds_accepted(fine) == 2
    assert fake.rebuilds_accepted(broken) == 1
    assert fake.truth(fine).image_id == OLD


@pytest.mark.anyio
async def test_rollback_after_a_checkpoint_says_stop() -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(4)

    async def stop(progress: RolloutProgress) -> bool:
        return False

    policy = RolloutPolicy(checkpoints=(0.5,), on_checkpoint=stop, rollback=True)
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(servers, REQUEST, policy=policy, timeout=30)
    assert kinds(outcomes) == [OutcomeKind.ROLLED_BACK] * 2 + [OutcomeKind.SKIPPED] * 2
    assert [fake.rebuilds_accepted(sid) for sid in servers] == [2, 2, 0, 0]


@pytest.mark.anyio
async def test_the_plan_sends_no_rebuild() -> None:
    fake = FakeCompute(time_scale=50)
    matching = fake.add_servers(2, prefix="done", image_id=NEW)
    servers = fake.add_servers(10)
    policy = RolloutPolicy(canary=2, max_unavailable=3, checkpoints=(0.5,), skip_matching=True)
    async with client_for(fake) as ecs:
        plan = await ecs.plan_rollout([*matching, *servers], REQUEST, policy=policy)
        with pytest.raises(InvalidRequest):
            await ecs.plan_rollout(servers, None, policy=policy)
    assert posts(fake) == 0
    assert plan.skipped == tuple(matching)
    assert plan.canary == tuple(servers[:2])
    assert plan.waves == (
        tuple(servers[:2]),
        tuple(servers[2:5]),
        tuple(servers[5:8]),
        tuple(servers[8:]),
    )
    assert plan.checkpoints == ((0.5, 2),)
    assert all(plan.requests[sid] is REQUEST for sid in servers)


@pytest.mark.anyio
async def test_find_servers_filters_on_the_service_and_the_client() -> None:
    fake = FakeCompute(time_scale=50)
    web = fake.add_servers(3, prefix="web", metadata={"tier": "front"}, tags=("prod",))
    fake.add_servers(2, prefix="db", metadata={"tier": "back"}, tags=("prod",))
    other = fake.add_server(name="web-x", image_id=OTHER, status="SHUTOFF")
    async with client_for(fake) as ecs:
        by_name = await ecs.find_servers(name="^web-[0-9]$")
        by_image = await ecs.find_servers(image=OTHER)
        by_status = await ecs.find_servers(status="shutoff")
        by_meta = await ecs.find_servers(metadata={"tier": "front"}, tags=["prod"])
        combined = await ecs.find_servers(name="web", status=ServerStatus.ACTIVE)
        with pytest.raises(InvalidRequest):
            await ecs.find_servers(name="(")
        with pytest.raises(InvalidRequest):
            await ecs.find_servers(metadata={"a": 1})  # type: ignore[dict-item]  # on purpose
    assert {s.id for s in by_name} == set(web)
    assert [s.id for s in by_image] == [other] == [s.id for s in by_status]
    assert {s.id for s in by_meta} == set(web) == {s.id for s in combined}
    assert fake.stats.requests[("GET", "servers_detail")] == 5


@pytest.mark.anyio
async def test_find_servers_by_tag_needs_2_26() -> None:
    fake = FakeCompute(time_scale=50, max_version="2.25")
    fake.add_server()
    async with client_for(fake) as ecs:
        with pytest.raises(MicroversionError):
            await ecs.find_servers(tags=["prod"])
    assert fake.stats.requests[("GET", "servers_detail")] == 0


@pytest.mark.anyio
async def test_rebuild_stream_rolls_with_a_policy() -> None:
    fake = FakeCompute(time_scale=50)
    servers = [fake.add_server(name="bad", fail_image=NEW), *fake.add_servers(3)]
    report = BulkReport()
    received: list[RebuildOutcome] = []
    async with (
        client_for(fake) as ecs,
        ecs.rebuild_stream(
            servers, REQUEST, policy=RolloutPolicy(canary=1), report=report, timeout=30
        ) as stream,
    ):
        async for outcome in stream:
            received.append(outcome)
    assert [o.kind for o in received] == [OutcomeKind.FAILED] + [OutcomeKind.SKIPPED] * 3
    assert report.stopped_reason == f"canary {servers[0]} did not pass"


@pytest.mark.anyio
async def test_a_bad_policy_fails_before_anything_is_sent() -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(2)
    async with client_for(fake) as ecs:
        with pytest.raises(InvalidRequest):
            await ecs.rebuild_many(servers, REQUEST, policy={"canary": 1})  # type: ignore[arg-type]  # on purpose
        with pytest.raises(InvalidRequest):
            await ecs.rebuild_many(servers, REQUEST, policy=RolloutPolicy(), concurrency=0)
    assert posts(fake) == 0
    assert fake.stats.requests[("GET", "servers_detail")] == 0


@pytest.mark.anyio
async def test_repeated_ids_leave_a_report_that_agrees_with_the_outcomes() -> None:
    fake = FakeCompute(time_scale=50)
    a, b = fake.add_servers(2)
    report = BulkReport()
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many([a, b, a, a], REQUEST, report=report, timeout=30)
    assert kinds(outcomes) == [OutcomeKind.OK, OutcomeKind.OK] + [OutcomeKind.INVALID] * 2
    assert report.outcomes[a] is outcomes[0]
    assert report.outcomes[b] is outcomes[1]
    assert report.total == report.finished == 2
    assert report.repeated == [a, a]
    assert report.submitted == {a, b}
    assert fake.rebuilds_accepted(a) == 1


async def never_healthy_yet(server: Server) -> bool:
    await anyio.sleep_forever()
    return True  # pragma: no cover - never reached


async def never_answers(progress: RolloutProgress) -> bool:
    await anyio.sleep_forever()
    return True  # pragma: no cover - never reached


def _in_canary(report: BulkReport) -> bool:
    state = report.rollout
    return state is not None and state.phase is RolloutPhase.CANARY and len(report.submitted) == 2


def _rolling(report: BulkReport) -> bool:
    state = report.rollout
    return (
        state is not None
        and state.phase is RolloutPhase.ROLLING
        and report.finished >= 3
        and len(report.submitted) > report.finished
    )


def _warming_up(report: BulkReport) -> bool:
    return len(report.submitted) == 2


def _paused(report: BulkReport) -> bool:
    return report.rollout is not None and report.rollout.phase is RolloutPhase.PAUSED


def _rolling_back(report: BulkReport) -> bool:
    state = report.rollout
    return (
        state is not None
        and state.phase is RolloutPhase.ROLLING_BACK
        and len(report.rollback_submitted) >= 2
    )


PHASES = {
    "canary": (RolloutPolicy(canary=2), _in_canary),
    "rolling": (RolloutPolicy(max_unavailable=2), _rolling),
    "warming up": (RolloutPolicy(health_check=never_healthy_yet, max_unavailable=2), _warming_up),
    "paused at a checkpoint": (
        RolloutPolicy(checkpoints=(0.5,), on_checkpoint=never_answers),
        _paused,
    ),
    "rolling back": (
        RolloutPolicy(max_failures=0, rollback=True, max_unavailable=1),
        _rolling_back,
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("phase", list(PHASES))
async def test_cancelling_in_any_phase_stops_cleanly_with_the_report_true(phase: str) -> None:
    policy, reached = PHASES[phase]
    fake = FakeCompute(time_scale=50, dialect="nova", rebuild_seconds=20.0)  # 0.4 s each
    # Three servers roll, the fourth fails (a rollback then has three to put back), two more.
    servers = fake.add_servers(3, prefix="web")
    servers.append(fake.add_server(name="bad", fail_image=NEW))
    servers.extend(fake.add_servers(2, prefix="more"))
    report = BulkReport()
    got_there = False
    async with client_for(fake, dialect=NOVA) as ecs:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    nonlocal got_there
                    for _ in range(2000):  # bounded: 2000 looks at the report
                        if reached(report):
                            got_there = True
                            scope.cancel()
                            return
                        await anyio.sleep(0.005)

                group.start_soon(watch)
                await ecs.rebuild_many(servers, REQUEST, policy=policy, report=report, timeout=60)
        assert got_there, f"the run never reached the phase {phase!r}"
        sent = posts(fake)
        fake.advance(120)
        await anyio.sleep(0.05)
    assert posts(fake) == sent  # nothing of the run is left behind to send anything
    accepted = {sid: fake.rebuilds_accepted(sid) for sid in servers}
    assert report.submitted == {sid for sid, count in accepted.items() if count >= 1}
    assert report.rollback_submitted == {sid for sid, count in accepted.items() if count == 2}
    for sid, outcome in report.outcomes.items():
        truth = fake.truth(sid)
        if sid in report.rollback_submitted and outcome.kind is not OutcomeKind.ROLLED_BACK:
            # Its rollback was sent and had not finished: the image is already the former one.
            assert truth.image_id == OLD
        elif outcome.kind is OutcomeKind.OK:
            assert truth.image_id == NEW
        elif outcome.kind is OutcomeKind.ROLLED_BACK:
            assert truth.image_id == OLD
            assert accepted[sid] == 2
        else:
            assert outcome.kind in (OutcomeKind.FAILED, OutcomeKind.SKIPPED)
    # Some had not finished, and no outcome is made up for them.
    state = report.rollout
    assert state is not None
    if phase == "rolling back":
        assert state.rollback_finished < state.rollback_total
        assert state.rollback_finished == sum(
            o.kind is OutcomeKind.ROLLED_BACK for o in report.outcomes.values()
        )
    else:
        assert len(report.outcomes) < report.total


@pytest.mark.anyio
async def test_a_health_check_that_hangs_ends_with_its_warmup() -> None:
    fake = FakeCompute(time_scale=50)
    server_id = fake.add_server()
    policy = RolloutPolicy(
        health_check=never_healthy_yet, warmup=0.05, health_interval=0.01, health_timeout=0.02
    )
    async with client_for(fake) as ecs:
        with anyio.fail_after(30):  # a bound far above the warmup and the try's timeout
            (outcome,) = await ecs.rebuild_many([server_id], REQUEST, policy=policy, timeout=30)
    assert outcome.kind is OutcomeKind.UNHEALTHY
    assert outcome.reason == (
        "the health check did not pass within 0.05 s (last try: no answer in 0.02 s)"
    )


@pytest.mark.anyio
async def test_rollback_restores_the_fields_the_request_changed() -> None:
    fake = FakeCompute(time_scale=50)
    fake.add_keypair("ops")
    fake.add_keypair("new-key")
    fine = fake.add_server(name="web-1", key_name="ops", metadata={"v": "1"})
    broken = fake.add_server(name="web-2", fail_image=NEW)
    request = RebuildRequest(
        image_ref=NEW, name="renamed", key_name="new-key", metadata={}, user_data="#!/bin/sh"
    )
    policy = RolloutPolicy(max_failures=0, rollback=True)
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            [fine, broken], request, concurrency=1, policy=policy, timeout=30
        )
    assert outcomes[0].kind is OutcomeKind.ROLLED_BACK
    truth = fake.truth(fine)
    assert (truth.image_id, truth.name, truth.key_name, truth.metadata) == (
        OLD,
        "web-1",
        "ops",
        {"v": "1"},
    )


@pytest.mark.anyio
async def test_an_on_checkpoint_that_raises_stops_the_run_and_raises_as_it_is() -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(4)

    async def broken(progress: RolloutProgress) -> bool:
        raise LookupError("a bug in the caller's callback")

    report = BulkReport()
    async with client_for(fake) as ecs:
        with pytest.raises(LookupError):
            await ecs.rebuild_many(
                servers,
                REQUEST,
                policy=RolloutPolicy(checkpoints=(0.5,), on_checkpoint=broken),
                report=report,
            )
    assert posts(fake) == 2
    assert report.submitted == set(servers[:2])


@pytest.mark.anyio
async def test_cancelling_while_reading_for_skip_matching_sends_nothing() -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(3)
    fake.faults.rate("latency", 1.0, method="GET", route="server", seconds=30.0)
    report = BulkReport()
    async with client_for(fake) as ecs:
        with anyio.move_on_after(0.2):
            await ecs.rebuild_many(
                servers, REQUEST, policy=RolloutPolicy(skip_matching=True), report=report
            )
    assert posts(fake) == 0
    assert report.submitted == set()
    assert report.outcomes == {}


@pytest.mark.anyio
async def test_find_servers_by_exact_name_with_the_other_conditions() -> None:
    fake = FakeCompute(time_scale=50)
    one = fake.add_server(name="web-1")
    fake.add_server(name="web-10")
    stopped = fake.add_server(name="web-1", status="SHUTOFF")  # names need not be unique
    async with client_for(fake) as ecs:
        both = await ecs.find_servers(exact_name="web-1")
        active = await ecs.find_servers(exact_name="web-1", status="ACTIVE")
        with pytest.raises(InvalidRequest):
            await ecs.find_servers(exact_name="")
    assert {s.id for s in both} == {one, stopped}
    assert [s.id for s in active] == [one]
