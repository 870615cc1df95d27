"""The rebuild state machine: from each observation of a server, is its rebuild done yet?

Pure, like h11: no I/O, no clock, no event loop. A :class:`RebuildTracker` is immutable;
:meth:`RebuildTracker.observe` takes one ``Server`` as read from the service and returns the next
tracker and a :class:`Verdict`. The waiting, the deadline and the logging belong to the caller.

Completion is proven, not assumed. A rebuild is DONE only when a read shows the server settled
(``task_state`` null) in the stable state it must return to (the ``vm_state`` it keeps while
rebuilding, else the state read before: ACTIVE, or SHUTOFF for a stopped server) *and* one of
the proofs in :data:`RULES` shows that this read comes from after this rebuild. A read that
could be from before the rebuild (a lagging replica, an eventually consistent listing, the same
whole second as the acceptance) never ends a wait. The 202 body never ends one either.

The rules compare times written by different clocks: ``updated`` (the database's, whole
seconds) and the service's ``Date`` (its gateway's). Each rule says how much skew between them
it tolerates (``Rule.skew``); the README's rule table is this table, checked by a test.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Final

import attrs

from ._errors import RebuildFailed
from ._models import RebuildEvent, Server, ServerStatus

__all__ = [
    "REBUILD_TASK_STATES",
    "RULES",
    "ActionFinding",
    "Phase",
    "RebuildTracker",
    "Rule",
    "Verdict",
    "judge_actions",
    "shows_rebuild",
]

#: The task states Nova's compute manager moves through while rebuilding (nova/objects/fields.py).
REBUILD_TASK_STATES: Final = frozenset(
    {"rebuilding", "rebuild_block_device_mapping", "rebuild_spawning"}
)

_ACTIVE = ServerStatus.ACTIVE
_SHUTOFF = ServerStatus.SHUTOFF
_EITHER_STABLE: Final = frozenset({_ACTIVE, _SHUTOFF})
_SECOND: Final = timedelta(seconds=1)


class Phase(str, enum.Enum):
    """Where a rebuild stands, as far as the observations so far prove."""

    PENDING = "pending"  # accepted, but no proof yet that it started
    RUNNING = "running"  # proven started, not settled yet
    DONE = "done"  # settled in the former stable state, after proof that it ran
    FAILED = "failed"  # ERROR, DELETED or gone

    @property
    def terminal(self) -> bool:
        return self is Phase.DONE or self is Phase.FAILED


@attrs.frozen
class Verdict:
    """What one observation means. ``error`` is set exactly when ``phase`` is FAILED.

    ``ignored`` is true when the observation was a stale read and changed nothing; a caller that
    reports progress can skip it.
    """

    phase: Phase
    reason: str
    error: RebuildFailed | None = None
    ignored: bool = False
    #: The server looks finished (its stable state, no task) but nothing proves the read is
    #: from after this rebuild: a wait that ends on it must not say the rebuild did not finish.
    unproven: bool = False

    @property
    def terminal(self) -> bool:
        return self.phase.terminal


@attrs.frozen
class Rule:
    """One rule of the lifecycle, as the README's table states it.

    ``kind`` is ``"done"`` (a proof that a settled read comes from after this rebuild: any one
    of them ends the wait) or ``"stale"`` (the read may be from before: it is ignored).
    """

    name: str
    kind: str
    says: str
    skew: str


#: Every rule the tracker applies, in the order it tries them. The README's table is this one.
RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "other-image",
        "stale",
        "the read shows an image other than the one the rebuild asked for (Nova saves the new "
        "image before it answers 202)",
        "any: compares no times",
    ),
    Rule(
        "older-than-seen",
        "stale",
        "its `updated` is older than that of a read already taken in",
        "any between `Date` and the compute clock: compares `updated` times only",
    ),
    Rule(
        "settled-before-acceptance",
        "stale",
        "it is settled (no task, not REBUILD) and its `updated` is before the second the "
        "service accepted the "
        "rebuild (the `Date` of the 202), while no read has shown the rebuild running",
        "a `Date` ahead of the compute clock discards settled reads until one read shows the "
        "rebuild running; from then on the rule no longer applies",
    ),
    Rule(
        "new-image",
        "done",
        "it shows the requested image, and the read before the rebuild showed another one",
        "any: compares no times",
    ),
    Rule(
        "seen-running",
        "done",
        "a read (a poll, or the 202 body) showed this rebuild running (status REBUILD or a "
        "rebuild task_state), and this read's `updated` is later than the earliest such read's",
        "any between `Date` and the compute clock: compares `updated` times only",
    ),
    Rule(
        "changed-after-acceptance",
        "done",
        "its `updated` is later than the whole second the service accepted the rebuild (the "
        "`Date` of the 202) and later than that of the read before the rebuild",
        "a `Date` ahead of the compute clock by less than the rebuild's duration minus 1 s "
        "(beyond, `seen-running` proves it); behind it, the read before guards",
    ),
    Rule(
        "instance-action",
        "done",
        "the server's instance actions show a rebuild started after the whole second of the "
        "read before the rebuild, whose `compute_rebuild_instance` event finished with "
        "`Success` (read only when the read is settled and no other rule holds: a rebuild to "
        "the image the server already ran that ended within the second it was accepted)",
        "any: compares database times only",
    ),
)


def _utc(value: datetime | None) -> datetime | None:
    # The wire times are UTC ("...Z"); a naive time is read as UTC rather than compared with an
    # aware one, which would raise TypeError.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _later(first: datetime | None, second: datetime | None) -> datetime | None:
    if first is None:
        return second
    if second is None:
        return first
    return max(first, second)


def _earlier(first: datetime | None, second: datetime | None) -> datetime | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)


def _whole_second(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(microsecond=0)


def _image_of(server: Server | None) -> str | None:
    image = server.image_id if server is not None else None
    return image.lower() if image else None


def _targets_from(before: Server | None) -> frozenset[ServerStatus]:
    """The stable state the server must come back to: the one it had before the rebuild."""
    if before is None:
        # Unknown: accept whichever stable state it settles in, unless a read of the running
        # rebuild names it (its vm_state). The client reads ``before`` for this reason.
        return _EITHER_STABLE
    if before.status is _SHUTOFF or before.vm_state == "stopped":
        return frozenset({_SHUTOFF})
    if before.status in (_ACTIVE, ServerStatus.ERROR) or before.vm_state in ("active", "error"):
        # Nova rebuilds an ERROR server back to ACTIVE (ECS refuses it with 409).
        return frozenset({_ACTIVE})
    return _EITHER_STABLE


#: The stable state a rebuild returns to, by the vm_state the server keeps while rebuilding.
#: Nova keeps the vm_state the server had when the rebuild was accepted, so this is evidence
#: from the moment of the POST and overrides a state read earlier (a fleet's listing).
_TARGET_OF_VM_STATE: Final = {
    "stopped": frozenset({_SHUTOFF}),
    "active": frozenset({_ACTIVE}),
}


def shows_rebuild(server: Server) -> bool:
    """Whether this read shows a rebuild running (status REBUILD or a rebuild task_state)."""
    return server.status is ServerStatus.REBUILD or server.task_state in REBUILD_TASK_STATES


class _Kind(enum.Enum):
    """The status of an observation, relative to the rebuild's target."""

    REBUILD = "rebuild"
    TARGET = "target"  # the stable state the rebuild must end in
    SETTLING = "settling"  # ACTIVE or SHUTOFF but not the target: a stopped server powering off
    ERROR = "error"
    DELETED = "deleted"
    UNRECOGNISED = "unrecognised"  # a status the machine does not expect during a rebuild


def _kind(status: ServerStatus, targets: frozenset[ServerStatus]) -> _Kind:
    if status is ServerStatus.REBUILD:
        return _Kind.REBUILD
    if status in targets or status is _SHUTOFF:
        # A rebuild never passes through SHUTOFF: settled there (after proof), it has ended,
        # even when the state read before said ACTIVE (the server was stopped before the POST,
        # and no read showed the vm_state it kept while rebuilding). ACTIVE is not like that:
        # a stopped server shows it for a moment before powering off.
        return _Kind.TARGET
    if status in _EITHER_STABLE:
        return _Kind.SETTLING
    if status is ServerStatus.ERROR:
        return _Kind.ERROR
    if status is ServerStatus.DELETED:
        return _Kind.DELETED
    return _Kind.UNRECOGNISED


@attrs.frozen(kw_only=True)
class RebuildTracker:
    """What is known about one rebuild so far. Immutable: every method returns a new tracker.

    Build one with :meth:`start` once the service has accepted the rebuild (202).
    """

    server_id: str
    #: The stable states that end the rebuild: {ACTIVE}, {SHUTOFF}, or both when unknown.
    targets: frozenset[ServerStatus]
    #: When the service accepted the rebuild (its ``Date`` header, UTC), or None when unknown.
    accepted_at: datetime | None = None
    #: The image the rebuild asked for (lower case), or None when not known.
    image: str | None = None
    #: The image the read before the rebuild showed (lower case), or None.
    before_image: str | None = None
    #: True once any observation proved that this rebuild ran. Never goes back to False.
    started: bool = False
    #: The earliest ``updated`` of a read that showed this rebuild running.
    running_since: datetime | None = None
    #: The server was in ERROR before the rebuild, so an ERROR read without proof is that old state.
    error_before: bool = False
    #: ``updated`` of the read taken before the rebuild: a read with the same time proves nothing.
    before_updated: datetime | None = None
    #: The newest ``updated`` seen; anything older is a stale read.
    newest: datetime | None = None
    #: The last observation that was not ignored (the 202 body or ``before`` until then).
    last: Server | None = None
    #: The terminal verdict, once reached; every later observation returns it unchanged.
    final: Verdict | None = None
    #: The instance actions showed this rebuild's compute event finished with success.
    action_finished: bool = False

    @classmethod
    def start(
        cls,
        server_id: str,
        *,
        before: Server | None,
        accepted_at: datetime | None,
        accepted: Server | None = None,
        image: str | None = None,
    ) -> RebuildTracker:
        """Begin tracking a rebuild the service accepted.

        ``before`` is the server as read before the rebuild was sent (None when unknown),
        ``accepted_at`` the ``Date`` of the 202 answer, ``accepted`` the server in its body and
        ``image`` the image the request names. The body can prove the rebuild started (it
        usually shows REBUILD) but never that it finished: the first verdict comes from
        :meth:`observe`.
        """
        before_updated = _utc(before.updated) if before is not None else None
        tracker = cls(
            server_id=server_id,
            targets=_targets_from(before),
            accepted_at=_utc(accepted_at),
            image=image.lower() if image else None,
            before_image=_image_of(before),
            error_before=before is not None and before.status is ServerStatus.ERROR,
            before_updated=before_updated,
            newest=before_updated,
            last=before,
        )
        if accepted is None or tracker._stale_reason(accepted) is not None:
            return tracker
        return tracker._absorb(accepted)

    def knowing_it_finished(self) -> RebuildTracker:
        """This tracker, told that the instance actions show this rebuild finished with success
        (see :func:`judge_actions`, and the ``instance-action`` rule)."""
        return attrs.evolve(self, started=True, action_finished=True)

    def knowing_acceptance(self, accepted_at: datetime) -> RebuildTracker:
        """This tracker, told when the service accepted the rebuild (if it did not know)."""
        if self.accepted_at is not None:
            return self
        return attrs.evolve(self, accepted_at=_utc(accepted_at))

    # -- what is known -------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        if self.final is not None:
            return self.final.phase
        return Phase.RUNNING if self.started else Phase.PENDING

    @property
    def terminal(self) -> bool:
        return self.final is not None

    def proof(self, server: Server) -> str | None:
        """The name of the first ``done`` rule that shows ``server`` is from after this
        rebuild, or None. (Whether it is settled in the target is the table's business.)"""
        for rule, holds in _PROOFS:
            if holds(self, server):
                return rule
        return None

    def _stale_reason(self, server: Server) -> str | None:
        for rule, why in _STALENESS:
            reason = why(self, server)
            if reason is not None:
                return f"stale ({rule}): {reason}"
        return None

    def _absorb(self, server: Server) -> RebuildTracker:
        """Take in what an accepted (not stale) observation proves."""
        updated = _utc(server.updated)
        rebuilding = shows_rebuild(server)
        targets = self.targets
        if rebuilding and server.vm_state in _TARGET_OF_VM_STATE:
            targets = _TARGET_OF_VM_STATE[server.vm_state]
        elif rebuilding and server.vm_state == "error" and len(targets) > 1:
            targets = frozenset({_ACTIVE})  # an ERROR server is rebuilt back to ACTIVE
        proof = rebuilding or self.proof(server) is not None
        return attrs.evolve(
            self,
            targets=targets,
            started=self.started or proof,
            running_since=_earlier(self.running_since, updated if rebuilding else None),
            newest=_later(self.newest, updated),
            last=server,
        )

    # -- transitions ---------------------------------------------------------------------

    def observe(self, server: Server) -> tuple[RebuildTracker, Verdict]:
        """Judge one read of the server. Never raises for any server state.

        Raises ValueError only when ``server`` is a different server (a caller's mistake).
        """
        if server.id != self.server_id:
            raise ValueError(
                f"observation of server {server.id} given to the tracker of {self.server_id}"
            )
        if self.final is not None:
            return self, self.final
        # A deletion cannot be undone, so no read showing it is stale.
        if server.status is not ServerStatus.DELETED:
            stale = self._stale_reason(server)
            if stale is not None:
                return self, Verdict(self.phase, stale, ignored=True)
        tracker = self._absorb(server)
        kind = _kind(server.status, tracker.targets)
        verdict = _TABLE[kind, server.task_state is None](tracker, server)
        if verdict.phase.terminal:
            tracker = attrs.evolve(tracker, final=verdict)
        return tracker, verdict

    def observe_missing(self) -> tuple[RebuildTracker, Verdict]:
        """The server is gone (404): the rebuild failed."""
        if self.final is not None:
            return self, self.final
        message = f"server {self.server_id} was not found during its rebuild (deleted)"
        verdict = Verdict(
            Phase.FAILED,
            "not found",
            RebuildFailed(message, server=self.last, fault=None),
        )
        return attrs.evolve(self, final=verdict), verdict

    def event(self, server: Server, elapsed: float) -> RebuildEvent:
        """A progress event for ``server`` at the tracker's current phase (seconds ``elapsed``)."""
        return RebuildEvent(
            server_id=self.server_id,
            phase=self.phase.value,
            status=server.status,
            task_state=server.task_state,
            vm_state=server.vm_state,
            progress=server.progress,
            updated=server.updated,
            elapsed=elapsed,
        )


# -- the rules ---------------------------------------------------------------------------
# One function per row of RULES. A staleness rule returns why the read is stale, or None.


def _other_image(tracker: RebuildTracker, server: Server) -> str | None:
    shown = _image_of(server)
    if tracker.image is None or shown is None or shown == tracker.image:
        return None
    return f"shows image {shown}, not the requested {tracker.image}"


def _older_than_seen(tracker: RebuildTracker, server: Server) -> str | None:
    updated = _utc(server.updated)
    if updated is None or tracker.newest is None or updated >= tracker.newest:
        return None
    return f"updated {updated.isoformat()} is older than {tracker.newest.isoformat()}"


def _settled_before_acceptance(tracker: RebuildTracker, server: Server) -> str | None:
    updated = _utc(server.updated)
    floor = _whole_second(tracker.accepted_at)
    if (
        server.task_state is not None
        or shows_rebuild(server)
        or updated is None
        or floor is None
        or updated >= floor
        or tracker.running_since is not None
    ):
        return None
    # After the 202 the task_state stays set until the rebuild ends, so a settled server last
    # changed before the acceptance is a read from before the rebuild (on a clock that agrees).
    return (
        f"settled at {updated.isoformat()}, before the rebuild was accepted at {floor.isoformat()}"
    )


def _new_image(tracker: RebuildTracker, server: Server) -> bool:
    shown = _image_of(server)
    return (
        tracker.image is not None
        and tracker.before_image is not None
        and tracker.before_image != tracker.image
        and shown == tracker.image
    )


def _seen_running(tracker: RebuildTracker, server: Server) -> bool:
    updated = _utc(server.updated)
    return (
        tracker.running_since is not None
        and updated is not None
        and updated > tracker.running_since
    )


def _changed_after_acceptance(tracker: RebuildTracker, server: Server) -> bool:
    # ``updated`` and ``Date`` have whole-second precision: a change in the very second of the
    # acceptance may be from before it, so only a later second counts.
    updated = _utc(server.updated)
    floor = _whole_second(tracker.accepted_at)
    if updated is None or floor is None or updated < floor + _SECOND:
        return False
    return tracker.before_updated is None or updated > tracker.before_updated


def _finished_by_action(tracker: RebuildTracker, server: Server) -> bool:
    return tracker.action_finished


_STALENESS: Final[tuple[tuple[str, Callable[[RebuildTracker, Server], str | None]], ...]] = (
    ("other-image", _other_image),
    ("older-than-seen", _older_than_seen),
    ("settled-before-acceptance", _settled_before_acceptance),
)
_PROOFS: Final[tuple[tuple[str, Callable[[RebuildTracker, Server], bool]], ...]] = (
    ("new-image", _new_image),
    ("seen-running", _seen_running),
    ("changed-after-acceptance", _changed_after_acceptance),
    ("instance-action", _finished_by_action),
)


# -- the table ---------------------------------------------------------------------------
# Each handler sees the tracker *after* the observation's proof has been taken in, and returns
# the verdict; the tracker records a terminal verdict itself.

_Handler = Callable[[RebuildTracker, Server], Verdict]


def _waiting(tracker: RebuildTracker, reason: str) -> Verdict:
    return Verdict(tracker.phase, reason)


def _rebuilding(tracker: RebuildTracker, server: Server) -> Verdict:
    if server.vm_state == "error":
        # Nova keeps status REBUILD with vm_state error until the task_state clears; only then
        # does the status become ERROR and the fault appear.
        return _waiting(tracker, f"rebuilding ({server.task_state}), vm_state error: failing")
    return _waiting(tracker, f"rebuilding ({server.task_state})")


def _settled_in_target(tracker: RebuildTracker, server: Server) -> Verdict:
    proof = tracker.proof(server)
    if proof is not None:
        return Verdict(Phase.DONE, f"{server.status} with no task after the rebuild ({proof})")
    return Verdict(
        tracker.phase,
        f"{server.status} with no task, but no proof yet that the read is from after it",
        unproven=True,
    )


def _busy(tracker: RebuildTracker, server: Server) -> Verdict:
    # Any task (powering-off after rebuilding a stopped server, for one) means not finished.
    return _waiting(tracker, f"{server.status} with task_state {server.task_state}")


def _settling(tracker: RebuildTracker, server: Server) -> Verdict:
    wanted = " or ".join(sorted(str(status) for status in tracker.targets))
    return _waiting(tracker, f"{server.status}, waiting for {wanted}")


def _errored(tracker: RebuildTracker, server: Server) -> Verdict:
    if tracker.error_before and not tracker.started:
        # A server rebuilt from ERROR (Nova allows it) shows its old ERROR until a read proves
        # the rebuild ran; failing on it would report the old fault as this rebuild's.
        return _waiting(tracker, "ERROR as before the rebuild, no proof yet that it started")
    fault = server.fault
    detail = fault.message if fault is not None and fault.message else "no fault given"
    message = f"server {tracker.server_id} went to ERROR during its rebuild: {detail}"
    return Verdict(Phase.FAILED, "ERROR", RebuildFailed(message, server=server, fault=fault))


def _deleted(tracker: RebuildTracker, server: Server) -> Verdict:
    message = f"server {tracker.server_id} was deleted during its rebuild"
    return Verdict(
        Phase.FAILED, "DELETED", RebuildFailed(message, server=server, fault=server.fault)
    )


def _unrecognised(tracker: RebuildTracker, server: Server) -> Verdict:
    # Not a verdict the machine can prove either way: keep waiting until the deadline, and say
    # so in the same words for every read of that status, so that a caller can log it once.
    return _waiting(tracker, f"unknown status {server.status}")


#: (kind of status, task_state is None) -> handler. Every key is present.
_TABLE: Final[dict[tuple[_Kind, bool], _Handler]] = {
    (_Kind.REBUILD, True): _rebuilding,
    (_Kind.REBUILD, False): _rebuilding,
    (_Kind.TARGET, True): _settled_in_target,
    (_Kind.TARGET, False): _busy,
    (_Kind.SETTLING, True): _settling,
    (_Kind.SETTLING, False): _busy,
    (_Kind.ERROR, True): _errored,
    (_Kind.ERROR, False): _busy,  # e.g. ERROR while "deleting": wait for what comes next
    (_Kind.DELETED, True): _deleted,
    (_Kind.DELETED, False): _deleted,
    (_Kind.UNRECOGNISED, True): _unrecognised,
    (_Kind.UNRECOGNISED, False): _unrecognised,
}


# -- reconciliation: was a request without a clear answer carried out? -------------------


class ActionFinding(enum.Enum):
    """What a server's instance actions say about a rebuild request without a clear answer."""

    OURS = "ours"  # a rebuild that started after the read taken before the request
    NONE = "none"  # no rebuild that could be this request's
    AMBIGUOUS = "ambiguous"  # a rebuild that may be this request's or an earlier one


def judge_actions(
    actions: list[tuple[str, datetime | None]], before_updated: datetime | None
) -> tuple[ActionFinding, datetime | None]:
    """Judge ``(action name, start time)`` records against the read taken before the request.

    ``before_updated`` is the server's ``updated`` in that read. An earlier rebuild started
    before the server's last change that read showed, so before the next whole second; a
    rebuild started at or after that second is this request's (no other rebuild can be accepted
    while one runs). A rebuild inside that second may be either: ambiguous. Both are times of the
    database, so no skew with the service's ``Date`` matters. Without ``before_updated`` any
    rebuild is ambiguous. Returns the finding and the start of the rebuild found.
    """
    bound = _whole_second(_utc(before_updated))
    ambiguous = False
    for name, started in actions:
        if name != "rebuild":
            continue
        started = _utc(started)
        if started is None or bound is None:
            return ActionFinding.AMBIGUOUS, started
        if started >= bound + _SECOND:
            return ActionFinding.OURS, started
        ambiguous = ambiguous or started >= bound
    return (ActionFinding.AMBIGUOUS if ambiguous else ActionFinding.NONE), None
