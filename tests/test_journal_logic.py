"""The journal's pure logic, without an event loop: where each server stands after its
events, who may take a run over, fingerprints that keep no secret, stored outcomes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ecs_rebuild_async import (
    Conflict,
    EcsError,
    OutcomeKind,
    RebuildFailed,
    RebuildOutcome,
    RebuildOutcomeUnknown,
    RebuildRequest,
    RebuildTimeout,
    ServerError,
    TransportError,
)
from ecs_rebuild_async._journal import (
    Event,
    EventKind,
    Owner,
    Stage,
    fingerprint,
    new_salt,
    outcome_from_record,
    outcome_to_record,
    replay,
    request_from_body,
    strip_secrets,
)
from ecs_rebuild_async._journal.ownership import STALE_AFTER, owner_gone
from ecs_rebuild_async._serde import request_to_wire

S = "9168b536-cd40-4630-b43f-b259807c6e87"
T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(seconds=30)
IMAGE = "70a5e0a4-0000-4000-8000-00000000000b"


def intent(attempt: int, at: datetime | None = T0) -> Event:
    return Event(EventKind.INTENT, S, attempt=attempt, service_time=at)


def accepted(attempt: int) -> Event:
    return Event(EventKind.ACCEPTED, S, attempt=attempt, service_time=T1, request_id="req-1")


def not_sent(attempt: int) -> Event:
    return Event(EventKind.NOT_SENT, S, attempt=attempt)


def unclear(attempt: int) -> Event:
    return Event(EventKind.UNCLEAR, S, attempt=attempt)


def outcome() -> Event:
    record = outcome_to_record(RebuildOutcome(S, True, OutcomeKind.OK, submitted=True))
    return Event(EventKind.OUTCOME, S, outcome=record)


@pytest.mark.parametrize(
    ("events", "stage", "sent_after"),
    [
        ([], None, None),
        # Written before the POST, nothing after: it may have been on the wire.
        ([intent(1)], Stage.IN_DOUBT, T0),
        ([intent(1), unclear(1)], Stage.IN_DOUBT, T0),
        ([intent(1), accepted(1)], Stage.ACCEPTED, None),
        ([intent(1), not_sent(1)], Stage.NOT_STARTED, None),
        # Proven not carried out, then sent again and died: only the second is in doubt.
        ([intent(1), not_sent(1), intent(2, T1)], Stage.IN_DOUBT, T1),
        # Two attempts in doubt: any rebuild since the first counts.
        ([intent(1), unclear(1), intent(2, T1)], Stage.IN_DOUBT, T0),
        # An attempt without the service's time: the judgement has no bound either.
        ([intent(1), intent(2, None)], Stage.IN_DOUBT, None),
        ([intent(1), unclear(1), intent(2), accepted(2)], Stage.ACCEPTED, None),
        ([intent(1), accepted(1), outcome()], Stage.FINISHED, None),
        # An outcome ends it, whatever came before.
        ([intent(1), outcome()], Stage.FINISHED, None),
    ],
)
def test_replay_tells_where_a_server_stands(
    events: list[Event], stage: Stage | None, sent_after: datetime | None
) -> None:
    progress = replay(events)
    if stage is None:
        assert S not in progress
        return
    assert progress[S].stage is stage
    assert progress[S].sent_after == sent_after
    if stage is Stage.ACCEPTED:
        assert progress[S].accepted_at == T1
    assert progress[S].attempts == max(e.attempt for e in events)


def _owner(host: str = "h1", pid: int = 100, beat: float = 1000.0) -> Owner:
    return Owner(token="t", pid=pid, host=host, started_at=900.0, heartbeat_at=beat)


@pytest.mark.parametrize(
    ("owner", "host", "now", "alive", "gone"),
    [
        (_owner(), "h1", 1001.0, True, False),  # alive here, beating: in use
        (_owner(), "h1", 1001.0, False, True),  # its pid is dead: gone at once
        (_owner(), "h1", 1000.0 + STALE_AFTER + 1, True, True),  # a reused pid, stale
        (_owner(host="h2"), "h1", 1001.0, False, False),  # elsewhere: the heartbeat decides
        (_owner(host="h2"), "h1", 1000.0 + STALE_AFTER + 1, True, True),
    ],
)
def test_owner_gone_table(owner: Owner, host: str, now: float, alive: bool, gone: bool) -> None:
    assert owner_gone(owner, host=host, now=now, pid_alive=lambda _: alive) is gone


def test_fingerprint_keeps_no_secret_and_tells_requests_apart() -> None:
    salt = new_salt()
    secret = RebuildRequest(image_ref=IMAGE, admin_pass="s3cret-pass", user_data="#!/bin/sh\n")
    wire = request_to_wire(secret)
    body, removed = strip_secrets(wire)
    assert removed == ("adminPass", "user_data")
    assert "s3cret-pass" not in repr(body)
    assert wire["rebuild"]["user_data"] not in repr(body)
    same = fingerprint(salt, wire)
    assert same == fingerprint(salt, request_to_wire(secret))
    assert "s3cret-pass" not in same
    other_pass = RebuildRequest(image_ref=IMAGE, admin_pass="other", user_data="#!/bin/sh\n")
    other_data = RebuildRequest(image_ref=IMAGE, admin_pass="s3cret-pass", user_data="x")
    no_pass = RebuildRequest(image_ref=IMAGE, user_data="#!/bin/sh\n")
    prints = {fingerprint(salt, request_to_wire(r)) for r in (other_pass, other_data, no_pass)}
    assert same not in prints
    assert len(prints) == 3
    # Keyed by the journal's own salt: the same request prints differently elsewhere.
    assert fingerprint(new_salt(), wire) != same


def test_a_stored_body_with_its_secrets_given_again_is_the_same_request() -> None:
    salt = new_salt()
    request = RebuildRequest(
        image_ref=IMAGE,
        name="web-1",
        metadata={"role": "web"},
        admin_pass="s3cret-pass",
        key_name=None,
        user_data=b"\x00binary",
        description="d",
    )
    wire = request_to_wire(request)
    body, _ = strip_secrets(wire)
    again = request_from_body(body, admin_pass="s3cret-pass", user_data=b"\x00binary")
    assert request_to_wire(again) == wire
    assert fingerprint(salt, request_to_wire(again)) == fingerprint(salt, wire)
    wrong = request_from_body(body, admin_pass="s3cret-pass", user_data=b"other")
    assert fingerprint(salt, request_to_wire(wrong)) != fingerprint(salt, wire)


@pytest.mark.parametrize(
    "error",
    [
        RebuildFailed("went to ERROR", server=None, fault=None),
        RebuildTimeout("not done in 60 s", server=None),
        RebuildOutcomeUnknown("cannot tell", server=None, evidence=("a",)),
        Conflict("locked", status=409, code="conflictingRequest", request_id="req-9"),
        ServerError("boom", status=500),
        TransportError("reset"),
        EcsError("other"),
    ],
)
def test_outcomes_come_back_from_the_journal_as_they_were(error: EcsError) -> None:
    original = RebuildOutcome(S, False, OutcomeKind.ERROR, error=error, submitted=True)
    back = outcome_from_record(S, outcome_to_record(original))
    assert type(back.error) is type(error)
    assert str(back.error) == str(error)
    assert (back.server_id, back.ok, back.kind, back.submitted) == (
        S,
        False,
        OutcomeKind.ERROR,
        True,
    )


def test_an_error_echoing_a_secret_is_stored_masked() -> None:
    error = Conflict("adminPass s3cret-pass is not allowed", status=409)
    record = outcome_to_record(
        RebuildOutcome(S, False, OutcomeKind.CONFLICT, error=error), secrets=["s3cret-pass"]
    )
    assert "s3cret-pass" not in repr(record)
