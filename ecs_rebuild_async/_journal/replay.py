"""Where each server of a journaled run stands, from its events (pure: no I/O, no clock)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

import attrs

from .records import FORWARD, RESTARTED, BeforeRecord, Event, EventKind, OutcomeRecord

__all__ = ["Progress", "Stage", "never_started", "replay"]


def never_started(outcome: OutcomeRecord) -> bool:
    """The outcome of a server a rollout's stop left unstarted (skipped, nothing sent)."""
    return outcome.kind == "skipped" and not outcome.ok and not outcome.submitted


class Stage(enum.Enum):
    #: Nothing was sent, or every attempt is proven not carried out: proceed as new.
    NOT_STARTED = "not started"
    #: An attempt may have been on the wire and nothing proves what became of it: reconcile.
    IN_DOUBT = "in doubt"
    #: The service accepted a rebuild: wait for it, never send another.
    ACCEPTED = "accepted"
    #: The outcome is recorded: report it, send nothing.
    FINISHED = "finished"


@attrs.frozen
class Progress:
    stage: Stage = Stage.NOT_STARTED
    #: The highest attempt number written (the next POST is attempt ``attempts + 1``).
    attempts: int = 0
    #: IN_DOUBT: the earliest service-time bound of an attempt not proven either way
    #: (None when that attempt had no service time: reconciliation then judges without one).
    sent_after: datetime | None = None
    #: ACCEPTED: the service's time of the acceptance.
    accepted_at: datetime | None = None
    #: The service accepted a rebuild of this phase (or reconciliation proved one), whatever
    #: became of it.
    accepted: bool = False
    outcome: OutcomeRecord | None = None
    #: What the server showed before its first attempt of this phase.
    before: BeforeRecord | None = None


def replay(events: Iterable[Event], *, phase: str = FORWARD) -> dict[str, Progress]:
    """Each server's :class:`Progress` in ``phase``, given the events in the order written."""
    intents: dict[str, dict[int, Event]] = {}
    resolved: dict[str, set[int]] = {}
    accepted: dict[str, Event] = {}
    outcomes: dict[str, OutcomeRecord] = {}
    attempts: dict[str, int] = {}
    befores: dict[str, Event] = {}
    for event in events:
        server = event.server_id
        if event.kind is EventKind.ROLLOUT and event.rollout is not None:
            if event.rollout.change == RESTARTED and phase == FORWARD:
                # The servers the stop left unstarted are started after all: not finished.
                outcomes = {s: o for s, o in outcomes.items() if not never_started(o)}
            continue
        if server is None or event.phase != phase:
            continue
        if event.kind is EventKind.INTENT:
            intents.setdefault(server, {})[event.attempt] = event
            attempts[server] = max(attempts.get(server, 0), event.attempt)
            befores.setdefault(server, event)
        elif event.kind is EventKind.NOT_SENT:
            resolved.setdefault(server, set()).add(event.attempt)
        elif event.kind is EventKind.ACCEPTED:
            accepted.setdefault(server, event)
        elif event.kind is EventKind.OUTCOME and event.outcome is not None:
            # The last one: a later run may restart what an earlier one skipped (and says so).
            outcomes[server] = event.outcome
    result: dict[str, Progress] = {}
    for server in set(intents) | set(accepted) | set(outcomes):
        before = befores.get(server)
        common = Progress(
            attempts=attempts.get(server, 0),
            before=None if before is None else before.before,
            accepted=server in accepted,
        )
        if server in outcomes:
            result[server] = attrs.evolve(common, stage=Stage.FINISHED, outcome=outcomes[server])
        elif server in accepted:
            result[server] = attrs.evolve(
                common, stage=Stage.ACCEPTED, accepted_at=accepted[server].service_time
            )
        else:
            doubtful = [
                intent
                for attempt, intent in intents.get(server, {}).items()
                if attempt not in resolved.get(server, set())
            ]
            if not doubtful:
                result[server] = common
                continue
            bounds = [intent.service_time for intent in doubtful]
            known = [bound for bound in bounds if bound is not None]
            # One attempt without a time bound makes the whole judgement one without a bound.
            bound = min(known) if known and len(known) == len(bounds) else None
            result[server] = attrs.evolve(common, stage=Stage.IN_DOUBT, sent_after=bound)
    return result
