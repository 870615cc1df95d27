"""Durable rollouts through the public API: a journal records a rollout's policy and decisions,
and a resume goes on from them: after a stop on the failure budget (nothing restarted unless
asked), during a rollback (no server rolled back twice, a rebuild back that may have been sent
reconciled), and after a cancellation (a checkpoint answered is not asked again)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from ecs_rebuild_async import (
    NOVA,
    AsyncEcsClient,
    BulkReport,
    ClientSettings,
    InvalidRequest,
    JournalMismatch,
    OutcomeKind,
    RebuildOutcome,
    RebuildRequest,
    RolloutPhase,
    RolloutPolicy,
    RolloutProgress,
    Server,
    TokenAuth,
)
from ecs_rebuild_async.cli import main
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

pytestmark = pytest.mark.anyio

NEW = DEFAULT_IMAGES["ubuntu-24.04"]
OLD = DEFAULT_IMAGES["ubuntu-22.04"]
REQUEST = RebuildRequest(image_ref=NEW)
FAST = ClientSettings(
    poll_first_delay=0.01,
    poll_interval=0.02,
    poll_interval_max=0.05,
    backoff_initial=0.001,
    reconcile_settle=0.01,
)


@asynccontextmanager
async def client(
    fake: FakeCompute, settings: ClientSettings = FAST
) -> AsyncIterator[AsyncEcsClient]:
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=fake.transport(),
        settings=settings,
        dialect=NOVA,  # a server in ERROR can be rebuilt back
    ) as ecs:
        yield ecs


def requests_sent(fake: FakeCompute) -> int:
    return sum(fake.stats.requests.values())


def kinds(outcomes: list[RebuildOutcome]) -> list[OutcomeKind]:
    return [outcome.kind for outcome in outcomes]


async def audit(journal: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``ecs-rebuild journal show --json`` (the command runs its own event loop: a thread)."""
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, ["journal", "show", str(journal), "--json"])
    assert code == 0
    record: dict[str, Any] = json.loads(capsys.readouterr().out)
    return record


@asynccontextmanager
async def clock_turning(
    fake: FakeCompute,
    *,
    cancel: anyio.CancelScope | None = None,
    when: Callable[[], bool] = lambda: False,
) -> AsyncIterator[None]:
    """The fake's frozen clock moves one second at each turn: every rebuild takes the same
    number of turns however busy the machine is. Before each turn, ``when()`` is asked:
    once it holds, ``cancel`` is cancelled (the world stands still while it is asked)."""
    async with anyio.create_task_group() as group:

        async def turn() -> None:
            while True:
                if cancel is not None and when():
                    cancel.cancel()
                await anyio.sleep(0.005)
                fake.advance(1.0)

        group.start_soon(turn)
        yield
        group.cancel_scope.cancel()


async def cancel_when(scope: anyio.CancelScope, reached: Callable[[], bool]) -> None:
    for _ in range(4000):  # bounded: 20 s of looks
        if reached():
            scope.cancel()
            return
        await anyio.sleep(0.005)
    raise AssertionError("the run never got there")


def fleet(fake: FakeCompute, count: int, failing: frozenset[int] = frozenset()) -> list[str]:
    """``count`` servers; those at the ``failing`` places go to ERROR when rebuilt with NEW."""
    return [
        fake.add_server(name=f"web-{i}", fail_image=NEW if i in failing else None)
        for i in range(count)
    ]


def health_of(fake: FakeCompute) -> Callable[[Server], Any]:
    async def check(server: Server) -> bool:
        return fake.health(server.id)

    return check


async def test_the_journal_records_the_policy_and_a_resume_needs_the_same_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCompute(time_scale=50)
    ids = fake.add_servers(5)
    journal = tmp_path / "rollout.sqlite"
    policy = RolloutPolicy(canary=1, max_failures=1, checkpoints=(0.5,), max_unavailable=2)
    async with client(fake) as ecs:
        first = await ecs.rebuild_many(ids, REQUEST, policy=policy, journal=journal)
        assert kinds(first) == [OutcomeKind.OK] * 5
        fake.stats.reset()
        # A policy without code is rebuilt from the journal; the same call again works too.
        report = BulkReport()
        resumed = await ecs.resume(journal, report=report)
        again = await ecs.rebuild_many(ids, REQUEST, policy=policy, journal=journal)
        assert requests_sent(fake) == 0
        assert kinds(resumed) == kinds(again) == [OutcomeKind.OK] * 5
        assert report.rollout is not None
        assert report.rollout.phase is RolloutPhase.DONE
        assert (report.rollout.canary_passed, report.rollout.checkpoints_passed) == (True, [0.5])
        with pytest.raises(JournalMismatch, match=r"max_failures: 1 there, 2 here"):
            await ecs.resume(journal, policy=RolloutPolicy(canary=1, max_failures=2))
        with pytest.raises(JournalMismatch, match="records a rollout: give its policy again"):
            await ecs.rebuild_many(ids, REQUEST, journal=journal)
        plain = tmp_path / "plain.sqlite"
        await ecs.rebuild_many(ids, REQUEST, journal=plain)
        with pytest.raises(JournalMismatch, match="without a rollout policy"):
            await ecs.rebuild_many(ids, REQUEST, policy=policy, journal=plain)
    assert fake.stats.requests[("POST", "rebuild")] == 5  # the plain run's only
    assert all(fake.rebuilds_accepted(s) == 2 for s in ids)
    record = await audit(journal, capsys)
    assert record["run"]["policy"] == {
        "canary": 1,
        "checkpoint_delay": 0.0,
        "checkpoints": [0.5],
        "health_check": False,
        "health_interval": 5.0,
        "health_timeout": 10.0,
        "max_failures": 1,
        "max_unavailable": 2,
        "on_checkpoint": False,
        "rollback": False,
        "skip_matching": False,
        "warmup": 300.0,
    }
    changes = [(entry["change"], entry["phase"]) for entry in record["rollout"]]
    assert changes == [
        ("began", "canary"),
        ("phase", "rolling"),  # the canary passed
        ("phase", "paused"),  # 50 % of 5: after 3
        ("checkpoint", "rolling"),
        ("phase", "done"),
        ("ended", "done"),
        ("ended", "done"),  # the resume, and the same call again
        ("ended", "done"),
    ]


async def test_after_a_stop_on_the_budget_a_resume_starts_nothing_unless_asked(
    tmp_path: Path,
) -> None:
    fake = FakeCompute(time_scale=50)
    ids = fleet(fake, 10, failing=frozenset({2, 5}))
    fake.set_health(ids[1], False)  # rebuilt, never healthy: a failure
    policy = RolloutPolicy(max_failures=1, health_check=health_of(fake), warmup=0.1,
                           health_interval=0.02)  # fmt: skip
    journal = tmp_path / "rollout.sqlite"
    stop = "2 failures, more than max_failures (1)"
    async with client(fake) as ecs:
        first = await ecs.rebuild_many(ids, REQUEST, policy=policy, journal=journal, concurrency=1)
        expected = [OutcomeKind.OK, OutcomeKind.UNHEALTHY, OutcomeKind.FAILED]
        assert kinds(first) == expected + [OutcomeKind.SKIPPED] * 7
        assert all(o.reason == f"not started: {stop}" for o in first[3:])
        fake.stats.reset()

        # The health check is code: the journal cannot give it back.
        with pytest.raises(JournalMismatch, match="health_check"):
            await ecs.resume(journal)
        report = BulkReport()
        resumed = await ecs.resume(journal, policy=policy, report=report)
        assert requests_sent(fake) == 0  # reported from the journal, stop reason and all
        assert [(o.kind, o.reason) for o in resumed] == [(o.kind, o.reason) for o in first]
        assert isinstance(resumed[2].error, type(first[2].error))
        assert report.stopped_reason == stop
        assert report.rollout is not None
        assert (report.rollout.failures, report.rollout.budget_left) == (2, 0)
        assert report.submitted == set(ids[:3])

        with pytest.raises(InvalidRequest, match="rolls back"):
            await ecs.resume(journal, continue_stopped=True, policy=RolloutPolicy(rollback=True))
        # Asked to go on: the stopped ones start, and the budget goes on from what was used,
        # so the next failure stops the rollout again.
        report = BulkReport()
        going_on = await ecs.resume(journal, policy=policy, continue_stopped=True, report=report)
        again = "3 failures, more than max_failures (1)"
        assert (
            kinds(going_on)
            == expected + [OutcomeKind.OK] * 2 + [OutcomeKind.FAILED] + [OutcomeKind.SKIPPED] * 4
        )
        assert all(o.reason == f"not started: {again}" for o in going_on[6:])
        assert report.rollout is not None
        assert (report.rollout.restarts, report.stopped_reason) == (1, again)
        fake.stats.reset()
        final = await ecs.resume(journal, policy=policy)
        assert requests_sent(fake) == 0
    assert [(o.kind, o.reason) for o in final] == [(o.kind, o.reason) for o in going_on]
    assert [fake.rebuilds_accepted(s) for s in ids] == [1] * 6 + [0] * 4


async def test_a_rollback_cut_short_is_resumed_and_rolls_no_server_back_twice(
    tmp_path: Path,
) -> None:
    fake = FakeCompute(time_scale=0, dialect="nova", rebuild_seconds=10.0)
    ids = fleet(fake, 8, failing=frozenset({4}))
    policy = RolloutPolicy(max_failures=0, rollback=True, max_unavailable=1)
    journal = tmp_path / "rollout.sqlite"
    report = BulkReport()
    scope = anyio.CancelScope()

    def third_being_rolled_back() -> bool:
        state = report.rollout
        return (
            state is not None
            and state.phase is RolloutPhase.ROLLING_BACK
            and state.rollback_finished == 2
            and len(report.rollback_submitted) == 3
        )

    async with client(fake) as ecs:
        async with clock_turning(fake, cancel=scope, when=third_being_rolled_back):
            with scope:
                await ecs.rebuild_many(
                    ids, REQUEST, policy=policy, journal=journal, report=report, timeout=600
                )
        assert scope.cancelled_caught
        # Three rebuilt back (in no set order: the rollback's tasks start as the loop likes).
        rolled_back = {s for s in ids if fake.rebuilds_accepted(s) == 2}
        assert rolled_back == report.rollback_submitted
        assert len(rolled_back) == 3
        assert rolled_back <= set(ids[:5])
        resumed_report = BulkReport()
        async with clock_turning(fake):
            resumed = await ecs.resume(journal, report=resumed_report, timeout=600)
    assert kinds(resumed) == [OutcomeKind.ROLLED_BACK] * 5 + [OutcomeKind.SKIPPED] * 3
    for server_id in ids[:5]:
        # Rebuilt, then rebuilt back once: the third's rebuild back was waited for, not sent.
        assert fake.rebuild_images(server_id) == [NEW, OLD]
        assert fake.truth(server_id).image_id == OLD
    assert all(fake.rebuilds_accepted(s) == 0 for s in ids[5:])
    state = resumed_report.rollout
    assert state is not None
    assert (state.rollback_total, state.rollback_finished) == (5, 5)
    assert state.stopped_reason == "1 failure, more than max_failures (0)"
    assert resumed_report.rollback_submitted == set(ids[:5])
    assert all(o.reason and o.reason.endswith(state.stopped_reason) for o in resumed[:5])


@pytest.mark.parametrize("fault", ["lost", "500"])
async def test_a_rebuild_back_that_may_have_been_sent_is_reconciled_not_sent_again(
    tmp_path: Path, fault: str
) -> None:
    fake = FakeCompute(time_scale=50, dialect="nova")
    ids = fleet(fake, 4, failing=frozenset({1}))
    policy = RolloutPolicy(max_failures=0, rollback=True, max_unavailable=1)
    journal = tmp_path / "rollout.sqlite"
    report = BulkReport()

    def when_it_stops(outcome: RebuildOutcome) -> None:
        if outcome.kind is OutcomeKind.FAILED:
            # The first rebuild back gets no clear answer: lost (carried out) or a 500 (not
            # carried out); nothing proves which before the process stops.
            fake.faults.script("POST", "rebuild", [fault])

    # A long pause before reconciling: the run is cancelled while the POST is in doubt.
    hesitant = ClientSettings(poll_first_delay=0.01, poll_interval=0.02, reconcile_settle=3600)
    async with client(fake, hesitant) as ecs:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(cancel_when, scope, lambda: bool(report.rollback_submitted))
                await ecs.rebuild_many(
                    ids,
                    REQUEST,
                    policy=policy,
                    journal=journal,
                    report=report,
                    on_outcome=when_it_stops,
                )
        (in_doubt,) = report.rollback_submitted  # one at a time (max_unavailable)
        assert fake.rebuilds_accepted(in_doubt) == (2 if fault == "lost" else 1)
    async with client(fake) as ecs:
        resumed = await ecs.resume(journal)
    assert kinds(resumed) == [OutcomeKind.ROLLED_BACK] * 2 + [OutcomeKind.SKIPPED] * 2
    # Sent again only when proven not carried out: each server is rebuilt back exactly once.
    for server_id in ids[:2]:
        assert fake.rebuild_images(server_id) == [NEW, OLD]
        assert fake.truth(server_id).image_id == OLD


async def test_cancelled_at_a_checkpoint_then_resumed_asks_only_what_was_not_answered(
    tmp_path: Path,
) -> None:
    fake = FakeCompute(time_scale=50)
    ids = fake.add_servers(8)
    journal = tmp_path / "rollout.sqlite"
    asked: list[float] = []
    paused = anyio.Event()

    async def answer_once(progress: RolloutProgress) -> bool:
        asked.append(progress.checkpoint)
        if progress.checkpoint == 0.75:
            paused.set()
            await anyio.sleep_forever()  # the operator walks away; Ctrl-C follows
        return True

    policy = RolloutPolicy(canary=1, checkpoints=(0.25, 0.75), on_checkpoint=answer_once)
    report = BulkReport()
    async with client(fake) as ecs:
        async with anyio.create_task_group() as group:

            async def interrupt() -> None:
                await paused.wait()
                group.cancel_scope.cancel()

            group.start_soon(interrupt)
            await ecs.rebuild_many(ids, REQUEST, policy=policy, journal=journal, report=report)
        assert asked == [0.25, 0.75]
        assert [fake.rebuilds_accepted(s) for s in ids] == [1] * 6 + [0] * 2
        assert report.rollout is not None
        assert report.rollout.phase is RolloutPhase.PAUSED

        async def go_on(progress: RolloutProgress) -> bool:
            asked.append(progress.checkpoint)
            return True

        again = RolloutPolicy(canary=1, checkpoints=(0.25, 0.75), on_checkpoint=go_on)
        with pytest.raises(JournalMismatch, match="on_checkpoint"):
            await ecs.resume(journal)
        resumed_report = BulkReport()
        resumed = await ecs.resume(journal, policy=again, report=resumed_report)
    assert asked == [0.25, 0.75, 0.75]  # 25 % was answered before the Ctrl-C: not asked again
    assert kinds(resumed) == [OutcomeKind.OK] * 8
    assert all(fake.rebuilds_accepted(s) == 1 for s in ids)
    state = resumed_report.rollout
    assert state is not None
    assert (state.canary_passed, state.checkpoints_passed) == (True, [0.25, 0.75])


async def test_cancelled_while_rolling_then_resumed_each_server_rebuilt_once(
    tmp_path: Path,
) -> None:
    fake = FakeCompute(time_scale=0, rebuild_seconds=10.0)
    ids = fake.add_servers(12)
    skipped = fake.add_server(name="already", image_id=NEW)
    journal = tmp_path / "rollout.sqlite"
    servers = [skipped, *ids]
    policy = RolloutPolicy(canary=2, max_unavailable=3, skip_matching=True)
    report = BulkReport()
    scope = anyio.CancelScope()

    def three_under_way_after_the_canary() -> bool:
        return report.finished >= 4 and len(report.submitted - report.outcomes.keys()) == 3

    async with client(fake) as ecs:
        async with clock_turning(fake, cancel=scope, when=three_under_way_after_the_canary):
            with scope:
                await ecs.rebuild_many(
                    servers, REQUEST, policy=policy, journal=journal, report=report, timeout=600
                )
        assert scope.cancelled_caught
        in_flight = report.submitted - set(report.outcomes)
        assert len(in_flight) == 3

        def about_skipped() -> int:
            return sum(skipped in request.path for request in fake.requests)

        read_before = about_skipped()
        resumed_report = BulkReport()
        async with clock_turning(fake):
            resumed = await ecs.resume(journal, report=resumed_report, timeout=600)
    # The server skipped as matching is not read again; the rest rebuilt once each.
    assert about_skipped() == read_before
    assert resumed[0].kind is OutcomeKind.SKIPPED
    assert resumed[0].reason == "already matches"
    assert kinds(resumed[1:]) == [OutcomeKind.OK] * 12
    assert fake.rebuilds_accepted(skipped) == 0
    assert all(fake.rebuilds_accepted(s) == 1 for s in ids)
    state = resumed_report.rollout
    assert state is not None
    assert (state.total, state.skipped_matching, state.canary_passed) == (12, 1, True)
    assert state.phase is RolloutPhase.DONE


async def test_a_rollout_journal_holds_no_secret(tmp_path: Path) -> None:
    fake = FakeCompute(time_scale=50, dialect="nova")
    ids = fleet(fake, 4, failing=frozenset({2}))
    password, marker = "correct-horse-battery", "the-user-data-marker"
    request = RebuildRequest(image_ref=NEW, admin_pass=password, user_data=f"#!/bin/sh\n{marker}\n")
    policy = RolloutPolicy(max_failures=0, rollback=True, canary=1, checkpoints=(0.5,))
    journal = tmp_path / "rollout.sqlite"
    async with client(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            ids, request, policy=policy, journal=journal, concurrency=1
        )
        again = await ecs.resume(journal, policy=policy, admin_pass=password,
                                 user_data=request.user_data)  # fmt: skip
    assert kinds(outcomes) == [OutcomeKind.ROLLED_BACK] * 3 + [OutcomeKind.SKIPPED]
    assert kinds(again) == kinds(outcomes)
    encoded = request.encoded_user_data()
    assert isinstance(encoded, str)
    contents = journal_files(tmp_path, journal.name)
    assert journal.name in contents
    for name, content in contents.items():  # the database, its write-ahead log, shared memory
        for secret in (password, marker, encoded, fake.token):
            assert secret.encode() not in content, (name, secret[:8])


def journal_files(folder: Path, name: str) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.name.startswith(name)}


async def test_a_resume_with_bad_arguments_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    fake = FakeCompute(time_scale=50)
    ids = fake.add_servers(2)
    journal = tmp_path / "rollout.sqlite"

    async def not_plain(outcome: RebuildOutcome) -> None:
        return None

    async with client(fake) as ecs:
        with anyio.CancelScope() as scope:
            await ecs.rebuild_many(ids, REQUEST, policy=RolloutPolicy(canary=1), journal=journal,
                                   concurrency=1, on_outcome=lambda _: scope.cancel())  # fmt: skip
        fake.stats.reset()
        bad: list[dict[str, Any]] = [
            {"continue_stopped": "yes"},
            {"concurrency": 0},
            {"policy": "canary=1"},
            {"on_outcome": not_plain},
            {"report": {}},
        ]
        for arguments in bad:
            with pytest.raises(InvalidRequest) as caught:
                await ecs.resume(journal, **arguments)
            assert caught.value.field == next(iter(arguments))
        assert requests_sent(fake) == 0
        outcomes = await ecs.resume(journal)
    assert kinds(outcomes) == [OutcomeKind.OK] * 2
    assert all(fake.rebuilds_accepted(s) == 1 for s in ids)
