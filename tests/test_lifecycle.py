"""The rebuild state machine, driven with observations alone: no event loop, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecs_rebuild_async._errors import RebuildFailed
from ecs_rebuild_async._lifecycle import REBUILD_TASK_STATES, Phase, RebuildTracker, Verdict
from ecs_rebuild_async._models import Fault, Server, ServerStatus

SID = "9168b536-cd40-4630-b43f-b259807c6e87"
ACCEPTED = datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc)
OLD = ACCEPTED - timedelta(minutes=5)

A = ServerStatus.ACTIVE
R = ServerStatus.REBUILD
E = ServerStatus.ERROR
OFF = ServerStatus.SHUTOFF


def at(seconds: float) -> datetime:
    return ACCEPTED + timedelta(seconds=seconds)


def srv(
    status: ServerStatus | str,
    task_state: str | None = None,
    *,
    updated: datetime | None = None,
    vm_state: str | None = None,
    fault: Fault | None = None,
) -> Server:
    return Server(
        id=SID,
        status=ServerStatus(status),
        task_state=task_state,
        vm_state=vm_state,
        updated=updated,
        fault=fault,
    )


ACTIVE_BEFORE = srv(A, updated=OLD, vm_state="active")
STOPPED_BEFORE = srv(OFF, updated=OLD, vm_state="stopped")
ERROR_BEFORE = srv(E, updated=OLD, vm_state="error", fault=Fault("old failure", code=500))


def run(tracker: RebuildTracker, *servers: Server) -> tuple[RebuildTracker, list[Verdict]]:
    verdicts = []
    for server in servers:
        tracker, verdict = tracker.observe(server)
        verdicts.append(verdict)
    return tracker, verdicts


def phases(verdicts: Sequence[Verdict]) -> list[Phase]:
    return [verdict.phase for verdict in verdicts]


def start(
    before: Server | None = ACTIVE_BEFORE,
    accepted: Server | None = None,
    accepted_at: datetime | None = ACCEPTED,
) -> RebuildTracker:
    return RebuildTracker.start(SID, before=before, accepted_at=accepted_at, accepted=accepted)


# -- success -------------------------------------------------------------------------------


def test_rebuild_seen_then_active_is_done() -> None:
    tracker, verdicts = run(
        start(),
        srv(R, "rebuilding", updated=at(0)),
        srv(R, "rebuild_spawning", updated=at(1)),
        srv(A, updated=at(2)),
    )
    assert phases(verdicts) == [Phase.RUNNING, Phase.RUNNING, Phase.DONE]
    assert verdicts[-1].error is None
    assert tracker.terminal
    assert tracker.phase is Phase.DONE


def test_first_read_already_active_after_acceptance_is_done() -> None:
    # A poller that starts late never sees REBUILD; the updated time is the proof.
    _, verdicts = run(start(), srv(A, updated=at(1)))
    assert phases(verdicts) == [Phase.DONE]


def test_active_with_old_updated_is_pending() -> None:
    tracker, verdicts = run(start(), srv(A, updated=OLD))
    assert phases(verdicts) == [Phase.PENDING]
    assert not tracker.started


def test_active_without_any_time_is_pending_until_proof() -> None:
    _, verdicts = run(start(), srv(A), srv(R, "rebuilding"), srv(A))
    assert phases(verdicts) == [Phase.PENDING, Phase.RUNNING, Phase.DONE]


def test_rebuild_202_body_proves_start_but_not_completion() -> None:
    tracker = start(accepted=srv(R, "rebuilding", updated=at(0)))
    assert tracker.started
    assert tracker.phase is Phase.RUNNING
    _, verdicts = run(tracker, srv(A, updated=at(1)))
    assert phases(verdicts) == [Phase.DONE]


def test_active_202_body_alone_is_not_completion() -> None:
    tracker = start(accepted=srv(A, updated=at(0)))
    assert tracker.phase is not Phase.DONE
    assert not tracker.terminal


def test_stale_active_202_body_and_lagging_reads_wait_for_proof() -> None:
    # A replica behind the primary shows the state from before the rebuild, body included.
    tracker = start(accepted=srv(A, updated=OLD))
    assert tracker.phase is Phase.PENDING
    tracker, verdicts = run(tracker, srv(A, updated=OLD), srv(A, updated=OLD))
    assert phases(verdicts) == [Phase.PENDING, Phase.PENDING]
    tracker, verdicts = run(tracker, srv(R, "rebuilding", updated=at(0)), srv(A, updated=at(3)))
    assert phases(verdicts) == [Phase.RUNNING, Phase.DONE]


def test_lagging_read_after_rebuild_seen_is_not_done() -> None:
    # The old ACTIVE state, read after REBUILD was seen, must not pass for the end of it.
    tracker = start(accepted=srv(R, "rebuilding", updated=at(0)))
    tracker, verdicts = run(tracker, srv(A, updated=OLD))
    assert phases(verdicts) == [Phase.RUNNING]
    assert verdicts[0].ignored
    assert "stale" in verdicts[0].reason
    assert not tracker.terminal


def test_settled_read_older_than_acceptance_is_stale_without_earlier_times() -> None:
    # No before, no body: only the acceptance time tells the old state apart.
    tracker = RebuildTracker.start(SID, before=None, accepted_at=ACCEPTED, accepted=None)
    tracker, verdicts = run(tracker, srv(R, "rebuilding"), srv(A, updated=at(-60)))
    assert phases(verdicts) == [Phase.RUNNING, Phase.RUNNING]
    assert verdicts[1].ignored


def test_stopped_server_passes_through_active_powering_off() -> None:
    tracker, verdicts = run(
        start(before=STOPPED_BEFORE),
        srv(R, "rebuilding", updated=at(0), vm_state="stopped"),
        srv(A, updated=at(1), vm_state="active"),
        srv(A, "powering-off", updated=at(1), vm_state="active"),
        srv(OFF, updated=at(2), vm_state="stopped"),
    )
    assert phases(verdicts) == [Phase.RUNNING, Phase.RUNNING, Phase.RUNNING, Phase.DONE]
    assert "powering-off" in verdicts[2].reason
    assert tracker.targets == frozenset({OFF})


def test_stopped_server_known_only_by_vm_state() -> None:
    tracker = start(before=srv("SOMETHING_NEW", updated=OLD, vm_state="stopped"))
    assert tracker.targets == frozenset({OFF})


def test_unknown_before_accepts_either_stable_state() -> None:
    for end in (A, OFF):
        tracker = start(before=None)
        assert tracker.targets == frozenset({A, OFF})
        _, verdicts = run(tracker, srv(R, "rebuilding", updated=at(0)), srv(end, updated=at(2)))
        assert phases(verdicts) == [Phase.RUNNING, Phase.DONE]


def test_active_server_that_ends_shutoff_is_not_done() -> None:
    _, verdicts = run(start(), srv(R, "rebuilding", updated=at(0)), srv(OFF, updated=at(2)))
    assert phases(verdicts) == [Phase.RUNNING, Phase.RUNNING]
    assert "waiting for ACTIVE" in verdicts[1].reason


# -- second precision ----------------------------------------------------------------------


def test_updated_in_the_second_of_acceptance_counts_as_proof() -> None:
    accepted_at = ACCEPTED.replace(microsecond=900_000)
    tracker = start(accepted_at=accepted_at)
    _, verdicts = run(tracker, srv(A, updated=ACCEPTED))
    assert phases(verdicts) == [Phase.DONE]


def test_updated_the_second_before_acceptance_is_not_proof() -> None:
    accepted_at = ACCEPTED.replace(microsecond=900_000)
    tracker = start(accepted_at=accepted_at)
    tracker, verdicts = run(tracker, srv(A, updated=at(-1)))
    assert phases(verdicts) == [Phase.PENDING]
    assert not tracker.started


def test_same_time_as_the_read_before_is_not_proof() -> None:
    # The read before the rebuild was in the second of the acceptance: that time proves nothing.
    before = srv(A, updated=ACCEPTED, vm_state="active")
    tracker, verdicts = run(start(before=before), srv(A, updated=ACCEPTED))
    assert phases(verdicts) == [Phase.PENDING]
    _, verdicts = run(tracker, srv(A, updated=at(1)))
    assert phases(verdicts) == [Phase.DONE]


def test_naive_times_are_read_as_utc() -> None:
    naive = ACCEPTED.replace(tzinfo=None)
    tracker = start(accepted_at=naive)
    _, verdicts = run(tracker, srv(A, updated=naive + timedelta(seconds=1)))
    assert phases(verdicts) == [Phase.DONE]


# -- failure -------------------------------------------------------------------------------


def test_error_with_fault_fails_with_its_message() -> None:
    fault = Fault("No valid host was found.", code=500)
    tracker, verdicts = run(
        start(),
        srv(R, "rebuild_spawning", updated=at(0), vm_state="error"),
        srv(E, updated=at(1), vm_state="error", fault=fault),
    )
    assert phases(verdicts) == [Phase.RUNNING, Phase.FAILED]
    assert "failing" in verdicts[0].reason
    error = verdicts[1].error
    assert isinstance(error, RebuildFailed)
    assert "No valid host was found." in str(error)
    assert error.fault is fault
    assert error.server is not None
    assert error.server.status is E
    assert tracker.final == verdicts[1]


def test_error_without_fault_still_fails() -> None:
    _, verdicts = run(start(), srv(E, updated=at(1)))
    error = verdicts[0].error
    assert isinstance(error, RebuildFailed)
    assert error.fault is None
    assert "no fault given" in str(error)


def test_rebuild_from_error_ignores_the_old_error() -> None:
    tracker, verdicts = run(
        start(before=ERROR_BEFORE, accepted_at=None),
        srv(E, vm_state="error", fault=ERROR_BEFORE.fault),
        srv(R, "rebuilding", vm_state="error"),
        srv(A, vm_state="active"),
    )
    assert phases(verdicts) == [Phase.PENDING, Phase.RUNNING, Phase.DONE]
    assert "ERROR as before" in verdicts[0].reason
    assert tracker.targets == frozenset({A})


def test_rebuild_from_error_with_old_updated_is_pending() -> None:
    _, verdicts = run(start(before=ERROR_BEFORE), srv(E, updated=OLD, vm_state="error"))
    assert phases(verdicts) == [Phase.PENDING]


def test_rebuild_from_error_that_fails_again_is_failed() -> None:
    fault = Fault("Image fails to spawn", code=500)
    _, verdicts = run(
        start(before=ERROR_BEFORE),
        srv(E, updated=at(2), vm_state="error", fault=fault),
    )
    assert phases(verdicts) == [Phase.FAILED]
    assert verdicts[0].error is not None
    assert verdicts[0].error.fault is fault


def test_error_after_rebuild_fails() -> None:
    _, verdicts = run(start(), srv(R, "rebuilding"), srv(E, fault=Fault("boom")))
    assert phases(verdicts) == [Phase.RUNNING, Phase.FAILED]


def test_error_while_a_task_is_set_keeps_waiting() -> None:
    _, verdicts = run(start(), srv(R, "rebuilding"), srv(E, "deleting", vm_state="error"))
    assert phases(verdicts) == [Phase.RUNNING, Phase.RUNNING]


@pytest.mark.parametrize("task_state", [None, "deleting"])
def test_deleted_fails(task_state: str | None) -> None:
    # Even a DELETED read older than what was seen counts: a deletion cannot be undone.
    tracker = start(accepted=srv(R, "rebuilding", updated=at(5)))
    tracker, verdicts = run(tracker, srv(ServerStatus.DELETED, task_state, updated=at(0)))
    assert phases(verdicts) == [Phase.FAILED]
    assert isinstance(verdicts[0].error, RebuildFailed)
    assert "deleted" in str(verdicts[0].error)
    assert tracker.terminal


def test_missing_fails_and_names_it() -> None:
    tracker, _ = run(start(), srv(R, "rebuilding", updated=at(0)))
    tracker, verdict = tracker.observe_missing()
    assert verdict.phase is Phase.FAILED
    assert isinstance(verdict.error, RebuildFailed)
    assert "not found" in str(verdict.error)
    assert SID in str(verdict.error)
    assert verdict.error.server is not None
    assert verdict.error.server.status is R
    assert tracker.phase is Phase.FAILED


# -- waiting -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["HARD_REBOOT_PLUS", "PAUSED", "SUSPENDED", "UNKNOWN"])
def test_unknown_status_keeps_waiting_and_says_so(status: str) -> None:
    _, verdicts = run(start(), srv(R, "rebuilding"), srv(status))
    assert phases(verdicts) == [Phase.RUNNING, Phase.RUNNING]
    assert f"unknown status {status}" in verdicts[1].reason


def test_unknown_status_before_proof_is_pending() -> None:
    _, verdicts = run(start(), srv("SOMETHING_NEW"))
    assert phases(verdicts) == [Phase.PENDING]
    assert "unknown status SOMETHING_NEW" in verdicts[0].reason


def test_stale_read_after_a_newer_one_is_ignored() -> None:
    tracker, verdicts = run(
        start(),
        srv(R, "rebuild_spawning", updated=at(3)),
        srv(R, "rebuilding", updated=at(1)),
    )
    assert phases(verdicts) == [Phase.RUNNING, Phase.RUNNING]
    assert verdicts[1].ignored
    assert verdicts[1].reason.startswith("stale")
    assert tracker.last is not None
    assert tracker.last.task_state == "rebuild_spawning"


def test_terminal_verdict_is_sticky() -> None:
    tracker, verdicts = run(start(), srv(A, updated=at(1)))
    assert verdicts[0].phase is Phase.DONE
    again, verdict = tracker.observe(srv(E, updated=at(9)))
    assert again is tracker
    assert verdict == verdicts[0]
    assert tracker.observe_missing() == (tracker, verdicts[0])


def test_observation_of_another_server_is_refused() -> None:
    other = Server(id="another", status=A)
    with pytest.raises(ValueError, match="another"):
        start().observe(other)


def test_tracker_is_not_changed_by_observe() -> None:
    tracker = start()
    tracker.observe(srv(R, "rebuilding", updated=at(0)))
    assert not tracker.started
    assert tracker.phase is Phase.PENDING


def test_event_reports_the_observation_and_phase() -> None:
    tracker, _ = run(start(), srv(R, "rebuilding", updated=at(0)))
    server = srv(R, "rebuild_spawning", updated=at(1), vm_state="active")
    event = tracker.event(server, 1.5)
    assert event.server_id == SID
    assert event.phase == "running"
    assert event.status is R
    assert event.task_state == "rebuild_spawning"
    assert event.vm_state == "active"
    assert event.updated == at(1)
    assert event.elapsed == 1.5


# -- properties ----------------------------------------------------------------------------

# Few distinct values, so that the interesting collisions (same second, older than the last
# read, before the acceptance) come up often; now and then any status at all.
LIKELY_STATUSES = ["ACTIVE", "SHUTOFF", "REBUILD", "ERROR"]
STATUSES = [*(status.value for status in ServerStatus), "SOMETHING_NEW"]
TASK_STATES = [None, *sorted(REBUILD_TASK_STATES), "powering-off", "deleting", "image_snapshot"]
VM_STATES = [None, "active", "stopped", "error", "deleted"]
OFFSETS = [-300, -1, 0, 1, 2, 5]
times = st.one_of(st.none(), st.sampled_from(OFFSETS).map(at))

observations = st.builds(
    srv,
    st.one_of(st.sampled_from(LIKELY_STATUSES), st.sampled_from(STATUSES)),
    st.one_of(st.none(), st.sampled_from(TASK_STATES)),
    updated=times,
    vm_state=st.sampled_from(VM_STATES),
    fault=st.one_of(st.none(), st.builds(Fault, st.text(max_size=20))),
)
befores = st.one_of(
    st.none(),
    st.builds(
        srv,
        st.sampled_from(["ACTIVE", "SHUTOFF", "ERROR", "PAUSED"]),
        updated=st.one_of(st.none(), st.sampled_from([-300, -1, 0]).map(at)),
        vm_state=st.sampled_from(VM_STATES),
    ),
)
accepted_ats = st.one_of(
    st.none(),
    st.sampled_from([0, 1, 500_000, 999_999]).map(lambda us: ACCEPTED.replace(microsecond=us)),
)


def proves(server: Server, accepted_at: datetime | None) -> bool:
    """A deliberately simple, independent statement of what can prove a rebuild ran."""
    if server.status is R or server.task_state in REBUILD_TASK_STATES:
        return True
    if server.updated is None or accepted_at is None:
        return False
    return server.updated >= accepted_at.replace(microsecond=0)


@settings(max_examples=300, deadline=None)
@given(
    before=befores,
    accepted=st.one_of(st.none(), observations),
    accepted_at=accepted_ats,
    reads=st.lists(st.one_of(observations, st.none()), max_size=12),
)
def test_properties_of_any_sequence(
    before: Server | None,
    accepted: Server | None,
    accepted_at: datetime | None,
    reads: list[Server | None],
) -> None:
    tracker = RebuildTracker.start(SID, before=before, accepted_at=accepted_at, accepted=accepted)
    assert not tracker.terminal  # the 202 body never decides anything
    proof_seen = accepted is not None and proves(accepted, accepted_at)
    newest = None
    previous = tracker.phase
    for read in reads:  # None stands for a 404
        was_terminal = tracker.terminal
        if read is None:
            tracker, verdict = tracker.observe_missing()
        else:
            tracker, verdict = tracker.observe(read)
        assert isinstance(verdict, Verdict)
        assert verdict.phase is tracker.phase
        assert (verdict.error is not None) == (verdict.phase is Phase.FAILED)
        if was_terminal:
            assert verdict.phase is previous  # terminal is final
            continue
        if previous is Phase.RUNNING:
            assert verdict.phase is not Phase.PENDING  # proof is never forgotten
        if read is not None and not verdict.ignored:
            proof_seen = proof_seen or proves(read, accepted_at)
        if verdict.phase is Phase.DONE:
            assert read is not None
            assert read.task_state is None
            assert read.status in tracker.targets
            if before is not None and before.status is OFF:
                assert read.status is OFF
            if before is not None and before.status is A and before.vm_state != "stopped":
                assert read.status is A
            assert proof_seen
            if read.updated is not None and newest is not None:
                assert read.updated >= newest  # never a read older than one already seen
            if read.updated is not None and accepted_at is not None:
                assert read.updated >= accepted_at.replace(microsecond=0)
        if verdict.phase is Phase.FAILED:
            assert read is None or read.status in (E, ServerStatus.DELETED)
            assert isinstance(verdict.error, RebuildFailed)
        if read is not None and read.updated is not None and not verdict.ignored:
            newest = read.updated if newest is None else max(newest, read.updated)
        previous = verdict.phase


@settings(max_examples=300, deadline=None)
@given(
    before=befores,
    accepted=st.one_of(st.none(), observations),
    accepted_at=accepted_ats,
    reads=st.lists(observations, max_size=8),
    late=observations,
)
def test_a_read_older_than_one_seen_changes_nothing(
    before: Server | None,
    accepted: Server | None,
    accepted_at: datetime | None,
    reads: list[Server],
    late: Server,
) -> None:
    tracker = RebuildTracker.start(SID, before=before, accepted_at=accepted_at, accepted=accepted)
    seen = [server.updated for server in (before, accepted) if server is not None]
    for read in reads:
        tracker, verdict = tracker.observe(read)
        if not verdict.ignored:
            seen.append(read.updated)
    known = [updated for updated in seen if updated is not None]
    after, verdict = tracker.observe(late)
    if tracker.terminal or late.status is ServerStatus.DELETED:
        return
    if late.updated is not None and known and late.updated < max(known):
        assert verdict.ignored
        assert verdict.reason.startswith("stale")
        assert after is tracker
        assert verdict.phase is tracker.phase
