"""A rollout taken up again: the scheduler restored from what a rollout recorded decides as
the first one did, and a policy's recorded description gives the same policy back. Pure: no
event loop, no clock."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecs_rebuild_async import InvalidRequest, RolloutPhase, RolloutPolicy, Server
from ecs_rebuild_async._rollout import (
    CheckpointAnswered,
    Finished,
    HistoryItem,
    Restarted,
    RolloutScheduler,
    describe_policy,
    policy_differences,
    policy_from_description,
)


def ids(count: int) -> list[str]:
    return [f"s{index}" for index in range(count)]


@attrs.define
class Driver:
    """Drives a scheduler as the bulk runner does; one choice per step picks which server in
    flight finishes (and whether a stopped rollout is continued). Records the history a
    journal keeps."""

    scheduler: RolloutScheduler
    bad: frozenset[str]
    answers: Sequence[bool]
    in_flight: list[str] = attrs.Factory(list)
    history: list[HistoryItem] = attrs.Factory(list)
    trace: list[object] = attrs.Factory(list)
    answered: int = 0

    def step(self, choice: int) -> bool:
        """One step; False once the rollout is over."""
        scheduler = self.scheduler
        if scheduler.state.phase is RolloutPhase.STOPPED and choice % 5 == 0:
            self.trace.append(("restart", scheduler.restart()))
            self.history.append(Restarted())
            return True
        if scheduler.over:
            return False
        due = scheduler.state.checkpoint_due
        if due is not None:
            answer = self.answers[self.answered] if self.answered < len(self.answers) else True
            self.answered += 1
            scheduler.resolve_checkpoint(answer)
            self.history.append(CheckpointAnswered(due, answer))
            self.trace.append(("checkpoint", due, answer))
            return True
        started = scheduler.take_startable()
        self.trace.append(("started", started))
        self.in_flight.extend(started)
        if not self.in_flight:
            return False
        server_id = self.in_flight.pop(choice % len(self.in_flight))
        ok = server_id not in self.bad
        submitted = ok or choice % 3 != 0
        scheduler.finished(server_id, ok=ok, submitted=submitted)
        self.history.append(Finished(server_id, ok, submitted))
        self.trace.append(("finished", server_id, ok))
        return True


def _state(scheduler: RolloutScheduler) -> dict[str, object]:
    return {**attrs.asdict(scheduler.state), "never_started": scheduler.never_started}


@settings(max_examples=150, deadline=None)
@given(
    fleet=st.integers(0, 12),
    concurrency=st.integers(1, 5),
    max_unavailable=st.one_of(st.none(), st.integers(1, 4), st.floats(0.01, 1.0)),
    canary=st.integers(0, 4),
    max_failures=st.one_of(st.none(), st.integers(0, 3), st.floats(0.0, 1.0)),
    checkpoints=st.lists(st.floats(0.01, 0.99), max_size=3),
    failing=st.sets(st.integers(0, 11)),
    answers=st.lists(st.booleans(), max_size=3),
    choices=st.lists(st.integers(0, 10_000), min_size=60, max_size=60),
    cut=st.integers(0, 59),
)
def test_a_restored_rollout_decides_as_the_first_one_did(
    fleet: int,
    concurrency: int,
    max_unavailable: int | float | None,
    canary: int,
    max_failures: int | float | None,
    checkpoints: list[float],
    failing: set[int],
    answers: list[bool],
    choices: list[int],
    cut: int,
) -> None:
    policy = RolloutPolicy(
        max_unavailable=max_unavailable,
        canary=canary,
        max_failures=max_failures,
        checkpoints=checkpoints,
    )
    servers = ids(fleet)
    bad = frozenset(f"s{i}" for i in failing)
    live = Driver(RolloutScheduler(policy, servers, concurrency=concurrency), bad, answers)
    steps = iter(choices)
    for choice in choices[:cut]:
        next(steps)
        if not live.step(choice):
            break
    # The process dies here; another takes the rollout up from what was recorded.
    restored = Driver(
        RolloutScheduler.restore(
            policy,
            servers,
            concurrency=concurrency,
            history=live.history,
            in_flight=live.in_flight,
        ),
        bad,
        answers,
        in_flight=list(live.in_flight),
        answered=live.answered,
    )
    assert _state(restored.scheduler) == _state(live.scheduler)
    live.trace.clear()
    for choice in steps:
        going = live.step(choice)
        assert restored.step(choice) == going
        if not going:
            break
    assert restored.trace == live.trace
    assert _state(restored.scheduler) == _state(live.scheduler)


def test_a_restored_rollout_keeps_its_canary_budget_and_checkpoint_answers() -> None:
    policy = RolloutPolicy(canary=1, max_failures=1, checkpoints=(0.3,))  # 2 of 6
    history: list[HistoryItem] = [
        Finished("s0", True, True),
        Finished("s1", False, True),
        CheckpointAnswered(0.3, True),
        Finished("s2", False, False),
    ]
    scheduler = RolloutScheduler.restore(
        policy, ids(6), concurrency=10, history=history, in_flight=["s3"]
    )
    state = scheduler.state
    assert state.canary_passed
    assert state.checkpoints_passed == [0.3]
    assert (state.failures, state.down, state.budget_left) == (2, 1, 0)
    assert state.stopped_reason == "2 failures, more than max_failures (1)"
    assert (state.started, state.in_flight, state.finished) == (4, 1, 3)
    assert scheduler.never_started == ("s4", "s5")
    assert scheduler.take_startable() == []  # stopped: nothing more starts
    scheduler.finished("s3", ok=True, submitted=True)
    assert scheduler.over


def test_continuing_a_rollout_stopped_on_its_budget_stops_at_its_next_failure() -> None:
    scheduler = RolloutScheduler(RolloutPolicy(max_failures=1), ids(6), concurrency=1)
    for server_id in ("s0", "s1"):
        assert scheduler.take_startable() == [server_id]
        scheduler.finished(server_id, ok=False, submitted=True)
    assert scheduler.over
    assert scheduler.state.stopped_reason == "2 failures, more than max_failures (1)"
    # Continued on request: the budget is not refilled.
    assert scheduler.restart()
    state = scheduler.state
    assert (state.phase, state.stopped_reason, state.restarts) == (RolloutPhase.ROLLING, None, 1)
    assert (state.failures, state.budget_left) == (2, 0)
    assert scheduler.take_startable() == ["s2"]
    scheduler.finished("s2", ok=True, submitted=True)
    assert scheduler.take_startable() == ["s3"]
    scheduler.finished("s3", ok=False, submitted=True)
    assert state.stopped_reason == "3 failures, more than max_failures (1)"
    assert scheduler.never_started == ("s4", "s5")
    assert scheduler.restart()  # continued again: the next failure stops it again
    assert scheduler.state.restarts == 2
    # A rollout that is not stopped has nothing to continue.
    fresh = RolloutScheduler(RolloutPolicy(), ids(2), concurrency=1)
    assert not fresh.restart()


def test_continuing_after_a_failed_canary_finishes_the_canary_first() -> None:
    scheduler = RolloutScheduler(RolloutPolicy(canary=2), ids(5), concurrency=1)
    assert scheduler.take_startable() == ["s0"]
    scheduler.finished("s0", ok=False, submitted=True)
    assert scheduler.over
    assert scheduler.state.stopped_reason == "canary s0 did not pass"
    assert scheduler.restart()
    assert scheduler.state.phase is RolloutPhase.CANARY
    assert scheduler.take_startable() == ["s1"]
    assert scheduler.take_startable() == []  # the rest waits for the canary
    scheduler.finished("s1", ok=True, submitted=True)
    assert scheduler.state.phase is RolloutPhase.ROLLING
    # Continued past its failure on request: the canary's phase ends when the rest passes.
    assert (scheduler.state.canary_passed, scheduler.state.failures) == (True, 1)


async def _check(server: Server) -> bool:
    return True


async def _ask(progress: object) -> bool:
    return True


POLICIES = [
    RolloutPolicy(),
    RolloutPolicy(max_unavailable=0.25, canary=2, max_failures=1, checkpoints=(0.5, 0.2)),
    RolloutPolicy(max_failures=0.1, skip_matching=True, rollback=True, warmup=60.0),
    RolloutPolicy(health_check=_check, on_checkpoint=_ask, checkpoints=(0.5,)),
]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_described_policy_comes_back_as_it_was(policy: RolloutPolicy) -> None:
    description = describe_policy(policy)
    assert all(
        isinstance(value, (int, float, bool, list, type(None))) for value in description.values()
    )
    code = {
        "health_check": _check if policy.health_check else None,
        "on_checkpoint": _ask if policy.on_checkpoint else None,
    }
    assert policy_from_description(description, **code) == policy  # type: ignore[arg-type]  # the two callables by name
    assert policy_differences(description, describe_policy(policy)) == []


def test_a_description_tells_code_counts_from_fractions_and_needs_its_code() -> None:
    recorded = describe_policy(RolloutPolicy(max_failures=1, health_check=_check))
    assert recorded["health_check"] is True
    given = describe_policy(RolloutPolicy(max_failures=1.0))
    assert policy_differences(recorded, given) == [
        "health_check: set there, not set here",
        "max_failures: 1 there, 1.0 here",
    ]
    with pytest.raises(InvalidRequest, match="cannot store") as missing:
        policy_from_description(recorded)
    assert missing.value.field == "health_check"
    with pytest.raises(InvalidRequest, match="has no on_checkpoint"):
        policy_from_description(recorded, health_check=_check, on_checkpoint=_ask)
    with pytest.raises(InvalidRequest, match="no setting 'speed'"):
        policy_from_description({"speed": 3})
