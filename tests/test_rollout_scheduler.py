"""The rollout scheduler's decisions, table by table: pure, no event loop, no clock."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecs_rebuild_async import (
    InvalidRequest,
    RebuildRequest,
    RolloutPhase,
    RolloutPolicy,
    Server,
    ServerStatus,
)
from ecs_rebuild_async._models import ImageRef
from ecs_rebuild_async._rollout import RolloutScheduler, matches, plan_rollout, restore_request

IMAGE = "70a5e0a4-0000-4000-8000-00000000000b"
OLD = "70a5e0a4-0000-4000-8000-00000000000a"


def ids(count: int) -> list[str]:
    return [f"s{index}" for index in range(count)]


@attrs.frozen
class Run:
    waves: list[list[str]]
    stopped_reason: str | None
    never_started: tuple[str, ...]
    checkpoints: list[tuple[float, int]]
    phase: RolloutPhase


def simulate(
    policy: RolloutPolicy,
    servers: Sequence[str],
    *,
    concurrency: int = 50,
    failing: Sequence[str] = (),
    answers: Sequence[bool] = (),
) -> Run:
    """Drive the scheduler as the bulk runner does, a whole wave finishing at a time; each
    due checkpoint gets the next of ``answers`` (True when they run out)."""
    scheduler = RolloutScheduler(policy, servers, concurrency=concurrency)
    waves: list[list[str]] = []
    checkpoints: list[tuple[float, int]] = []
    replies = list(answers)
    for _ in range(len(servers) * 3 + 10):  # bounded: every step starts or resolves something
        if scheduler.over:
            break
        due = scheduler.state.checkpoint_due
        if due is not None:
            checkpoints.append((due, len(waves)))
            scheduler.resolve_checkpoint(replies.pop(0) if replies else True)
            continue
        wave = scheduler.take_startable()
        assert wave, "the scheduler neither started anything nor ended"
        waves.append(wave)
        for server_id in wave:
            failed = server_id in failing
            scheduler.finished(server_id, ok=not failed, submitted=True)
    assert scheduler.over
    return Run(
        waves,
        scheduler.state.stopped_reason,
        scheduler.never_started,
        checkpoints,
        scheduler.state.phase,
    )


# (policy, fleet, concurrency, failing, answers) -> (waves, stopped?, never started)
TABLE = [
    pytest.param(
        RolloutPolicy(),
        5,
        2,
        (),
        (),
        [["s0", "s1"], ["s2", "s3"], ["s4"]],
        None,
        (),
        id="default: concurrency alone",
    ),
    pytest.param(
        RolloutPolicy(max_unavailable=2),
        5,
        50,
        (),
        (),
        [["s0", "s1"], ["s2", "s3"], ["s4"]],
        None,
        (),
        id="max_unavailable as a count",
    ),
    pytest.param(
        RolloutPolicy(max_unavailable=0.25),
        8,
        50,
        (),
        (),
        [["s0", "s1"], ["s2", "s3"], ["s4", "s5"], ["s6", "s7"]],
        None,
        (),
        id="max_unavailable as a fraction",
    ),
    pytest.param(
        RolloutPolicy(max_unavailable=0.1),
        5,
        50,
        (),
        (),
        [["s0"], ["s1"], ["s2"], ["s3"], ["s4"]],
        None,
        (),
        id="a fraction below one server still allows one",
    ),
    pytest.param(
        RolloutPolicy(canary=2, max_unavailable=3),
        6,
        50,
        (),
        (),
        [["s0", "s1"], ["s2", "s3", "s4"], ["s5"]],
        None,
        (),
        id="the canary goes first, alone",
    ),
    pytest.param(
        RolloutPolicy(canary=2),
        6,
        50,
        ("s1",),
        (),
        [["s0", "s1"]],
        "canary s1 did not pass",
        ("s2", "s3", "s4", "s5"),
        id="a failing canary stops the run",
    ),
    pytest.param(
        RolloutPolicy(max_failures=2),
        6,
        1,
        ("s0", "s2", "s3", "s4"),
        (),
        [["s0"], ["s1"], ["s2"], ["s3"]],
        "3 failures, more than max_failures (2)",
        ("s4", "s5"),
        id="max_failures=2 stops at the third failure",
    ),
    pytest.param(
        RolloutPolicy(max_failures=0.2),
        10,
        1,
        ("s0", "s1", "s2"),
        (),
        [["s0"], ["s1"], ["s2"]],
        "3 failures, more than max_failures (2)",
        tuple(f"s{i}" for i in range(3, 10)),
        id="max_failures as a fraction",
    ),
    pytest.param(
        RolloutPolicy(max_failures=0),
        4,
        2,
        ("s1",),
        (),
        [["s0", "s1"]],
        "1 failure, more than max_failures (0)",
        ("s2", "s3"),
        id="no failure allowed",
    ),
    pytest.param(
        RolloutPolicy(max_unavailable=2),
        6,
        50,
        ("s0",),
        (),
        [["s0", "s1"], ["s2"], ["s3"], ["s4"], ["s5"]],
        None,
        (),
        id="a failed server keeps counting as unavailable",
    ),
    pytest.param(
        RolloutPolicy(max_unavailable=2),
        6,
        50,
        ("s0", "s1"),
        (),
        [["s0", "s1"]],
        "2 failed servers fill max_unavailable (2)",
        ("s2", "s3", "s4", "s5"),
        id="failures that fill max_unavailable stop the run",
    ),
    pytest.param(
        RolloutPolicy(checkpoints=(0.5,)),
        6,
        2,
        (),
        (True,),
        [["s0", "s1"], ["s2"], ["s3", "s4"], ["s5"]],
        None,
        (),
        id="a checkpoint caps the wave before it",
    ),
    pytest.param(
        RolloutPolicy(checkpoints=(0.25, 0.5)),
        8,
        50,
        (),
        (True, False),
        [["s0", "s1"], ["s2", "s3"]],
        "stopped at checkpoint 50%",
        ("s4", "s5", "s6", "s7"),
        id="a checkpoint's no stops the run",
    ),
]


@pytest.mark.parametrize(
    ("policy", "fleet", "concurrency", "failing", "answers", "waves", "reason", "unstarted"),
    TABLE,
)
def test_the_scheduler_decides(
    policy: RolloutPolicy,
    fleet: int,
    concurrency: int,
    failing: tuple[str, ...],
    answers: tuple[bool, ...],
    waves: list[list[str]],
    reason: str | None,
    unstarted: tuple[str, ...],
) -> None:
    run = simulate(policy, ids(fleet), concurrency=concurrency, failing=failing, answers=answers)
    assert run.waves == waves
    assert run.stopped_reason == reason
    assert run.never_started == unstarted
    assert run.phase is (RolloutPhase.DONE if reason is None else RolloutPhase.STOPPED)


def test_checkpoints_are_due_after_their_share_of_the_fleet_finished() -> None:
    run = simulate(RolloutPolicy(checkpoints=(0.3, 0.6), max_unavailable=2), ids(10))
    # 30 % of 10 is 3 servers, 60 % is 6: the waves are cut there and the pause follows them.
    assert run.waves == [["s0", "s1"], ["s2"], ["s3", "s4"], ["s5"], ["s6", "s7"], ["s8", "s9"]]
    assert run.checkpoints == [(0.3, 2), (0.6, 4)]


def test_the_state_records_every_decision() -> None:
    scheduler = RolloutScheduler(
        RolloutPolicy(canary=1, max_failures=1, checkpoints=(0.5,)), ids(4), concurrency=10
    )
    state = scheduler.state
    assert (state.phase, state.canary, state.canary_passed) == (RolloutPhase.CANARY, ("s0",), False)
    assert scheduler.take_startable() == ["s0"]
    assert scheduler.take_startable() == []  # nothing else while the canary runs
    scheduler.finished("s0", ok=True, submitted=True)
    assert (state.phase, state.canary_passed) == (RolloutPhase.ROLLING, True)
    assert scheduler.take_startable() == ["s1"]  # up to the checkpoint at 2 of 4
    scheduler.finished("s1", ok=False, submitted=True)
    assert (state.failures, state.down, state.budget_left) == (1, 1, 0)
    assert (state.phase, state.checkpoint_due) == (RolloutPhase.PAUSED, 0.5)
    assert scheduler.progress().finished == 2
    scheduler.resolve_checkpoint(True)
    assert state.checkpoints_passed == [0.5]
    assert scheduler.take_startable() == ["s2", "s3"]
    scheduler.finished("s2", ok=False, submitted=False)
    assert state.stopped_reason == "2 failures, more than max_failures (1)"
    assert state.down == 1  # a rebuild never sent leaves its server serving
    assert not scheduler.over  # s3 is still in flight
    scheduler.finished("s3", ok=True, submitted=True)
    assert scheduler.over
    scheduler.begin_rollback(2)
    scheduler.rolled_back()
    assert (state.phase, state.rollback_total, state.rollback_finished) == (
        RolloutPhase.ROLLING_BACK,
        2,
        1,
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"max_unavailable": 0},
        {"max_unavailable": 1.5},
        {"max_unavailable": "10%"},
        {"max_unavailable": True},
        {"max_unavailable": float("nan")},
        {"max_failures": -1},
        {"max_failures": 2.0},
        {"max_failures": -0.5},
        {"max_unavailable": 0.0},
        {"canary": -1},
        {"canary": 1.0},
        {"warmup": -1},
        {"warmup": float("inf")},
        {"health_interval": 0},
        {"checkpoints": (0.0,)},
        {"checkpoints": (1.0,)},
        {"checkpoints": "0.5"},
        {"checkpoints": (0.5, "x")},
        {"checkpoint_delay": -0.1},
        {"health_check": "curl"},
        {"health_check": lambda server: True},
        {"on_checkpoint": 1},
        {"skip_matching": 1},
        {"rollback": "yes"},
    ],
)
def test_a_bad_policy_is_refused_when_made(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        RolloutPolicy(**bad)  # type: ignore[arg-type]  # wrong values on purpose
    assert caught.value.field == next(iter(bad))


def test_async_callables_of_every_shape_are_accepted() -> None:
    async def check(server: Server) -> bool:
        return True

    class Probe:
        async def __call__(self, server: Server) -> bool:
            return True

    assert RolloutPolicy(health_check=functools.partial(check)).health_check is not None
    assert RolloutPolicy(health_check=Probe(), on_checkpoint=Probe()).health_check is not None


def test_checkpoints_are_sorted_and_deduplicated() -> None:
    assert RolloutPolicy(checkpoints=[0.5, 0.1, 0.5]).checkpoints == (0.1, 0.5)


def server(**fields: object) -> Server:
    values: dict[str, object] = {
        "id": "s0",
        "status": ServerStatus.ACTIVE,
        "name": "web-1",
        "image": ImageRef(OLD),
        "metadata": {"role": "web"},
        "key_name": "ops",
        "description": "front",
        "access_ipv4": "",
        "access_ipv6": "",
    }
    values.update(fields)
    return Server(**values)  # type: ignore[arg-type]  # test values of the right types


@pytest.mark.parametrize(
    ("shown", "request_", "expected"),
    [
        (server(image=ImageRef(IMAGE)), RebuildRequest(image_ref=IMAGE), True),
        (server(), RebuildRequest(image_ref=IMAGE), False),
        (server(image=None), RebuildRequest(image_ref=IMAGE), False),
        (server(image=ImageRef(IMAGE)), RebuildRequest(image_ref=IMAGE, name="web-1"), True),
        (server(image=ImageRef(IMAGE)), RebuildRequest(image_ref=IMAGE, name="web-2"), False),
        (
            server(image=ImageRef(IMAGE)),
            RebuildRequest(image_ref=IMAGE, metadata={"role": "web"}),
            True,
        ),
        (server(image=ImageRef(IMAGE)), RebuildRequest(image_ref=IMAGE, metadata={}), False),
        (server(image=ImageRef(IMAGE)), RebuildRequest(image_ref=IMAGE, key_name=None), False),
        (
            server(image=ImageRef(IMAGE), description=None),
            RebuildRequest(image_ref=IMAGE, description="front"),
            False,
        ),
        # user_data is never shown: it cannot be compared, and does not stop a match.
        (server(image=ImageRef(IMAGE)), RebuildRequest(image_ref=IMAGE, user_data="x"), True),
    ],
)
def test_matches(shown: Server, request_: RebuildRequest, expected: bool) -> None:
    assert matches(shown, request_) is expected


def test_the_rollback_request_restores_what_the_request_changed() -> None:
    before = server()
    forward = RebuildRequest(
        image_ref=IMAGE,
        name="web-new",
        metadata={"role": "new"},
        key_name=None,
        description="changed",
        user_data="#!/bin/sh",
    )
    back = restore_request(before, forward)
    assert back == RebuildRequest(
        image_ref=OLD, name="web-1", metadata={"role": "web"}, key_name="ops", description="front"
    )
    assert restore_request(before, RebuildRequest(image_ref=IMAGE)) == RebuildRequest(image_ref=OLD)
    with pytest.raises(InvalidRequest):
        restore_request(server(image=None), forward)
    # A description the server did not have is removed again; an empty address is left alone.
    back = restore_request(
        server(description=None),
        RebuildRequest(image_ref=IMAGE, description="x", access_ipv4="10.0.0.9"),
    )
    assert back == RebuildRequest(image_ref=OLD, description=None)


def test_the_plan_lists_the_canary_the_waves_and_the_checkpoints() -> None:
    request = RebuildRequest(image_ref=IMAGE)
    servers = ids(10)
    policy = RolloutPolicy(canary=2, max_unavailable=3, checkpoints=(0.5,))
    plan = plan_rollout(
        policy, servers, dict.fromkeys(servers, request), concurrency=50, skipped=("x",)
    )
    assert plan.canary == ("s0", "s1")
    assert plan.waves == (("s0", "s1"), ("s2", "s3", "s4"), ("s5", "s6", "s7"), ("s8", "s9"))
    assert plan.checkpoints == ((0.5, 2),)
    assert plan.skipped == ("x",)
    assert plan.max_unavailable == 3
    assert set(plan.requests) == set(servers)


def test_a_checkpoint_inside_the_canary_pauses_it_and_the_canary_goes_on() -> None:
    run = simulate(RolloutPolicy(canary=3, checkpoints=(0.1,)), ids(10))
    assert run.waves == [["s0"], ["s1", "s2"], [f"s{i}" for i in range(3, 10)]]
    assert run.checkpoints == [(0.1, 1)]


@settings(max_examples=300, deadline=None)
@given(
    fleet=st.integers(0, 12),
    concurrency=st.integers(1, 6),
    max_unavailable=st.one_of(st.none(), st.integers(1, 5), st.floats(0.01, 1.0)),
    canary=st.integers(0, 5),
    max_failures=st.one_of(st.none(), st.integers(0, 4), st.floats(0.0, 1.0)),
    checkpoints=st.lists(st.floats(0.01, 0.99), max_size=3),
    failing=st.sets(st.integers(0, 11)),
    answers=st.lists(st.booleans(), max_size=3),
)
def test_every_rollout_ends_and_keeps_its_limits(
    fleet: int,
    concurrency: int,
    max_unavailable: int | float | None,
    canary: int,
    max_failures: int | float | None,
    checkpoints: list[float],
    failing: set[int],
    answers: list[bool],
) -> None:
    policy = RolloutPolicy(
        max_unavailable=max_unavailable,
        canary=canary,
        max_failures=max_failures,
        checkpoints=checkpoints,
    )
    servers = ids(fleet)
    bad = [f"s{i}" for i in failing]
    run = simulate(policy, servers, concurrency=concurrency, failing=bad, answers=answers)
    started = [sid for wave in run.waves for sid in wave]
    # Every server is started once or never; the never-started are exactly the rest.
    assert sorted(started + list(run.never_started)) == sorted(servers)
    limit = policy.unavailable_limit(fleet)
    down = 0
    for wave in run.waves:
        # concurrency bounds the rebuilds in flight; max_unavailable those and the failed.
        assert len(wave) <= concurrency
        assert limit is None or len(wave) + down <= limit
        down += sum(sid in bad for sid in wave)
    width = min(concurrency, limit or concurrency)
    if canary:
        first = run.waves[0] if run.waves else []
        assert set(first) <= set(servers[:canary])
    budget = policy.failure_budget(fleet)
    failures = sum(sid in bad for sid in started)
    if run.stopped_reason is None:
        assert run.never_started == ()
        assert budget is None or failures <= budget
    elif budget is not None and failures > budget:
        # Stopped on its budget: at most a wave's worth more than the budget was started.
        assert failures <= budget + width
