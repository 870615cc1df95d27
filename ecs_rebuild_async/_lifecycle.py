"""The rebuild state machine: from each observation of a server, is its rebuild done yet?

Pure, like h11: no I/O, no clock, no event loop. A :class:`RebuildTracker` is immutable;
:meth:`RebuildTracker.observe` takes one ``Server`` as read from the service and returns the next
tracker and a :class:`Verdict`. The waiting, the deadline and the logging belong to the caller.

Completion is proven, not assumed. A rebuild is DONE only when the server has settled
(``task_state`` null) in the stable state it had before the rebuild (ACTIVE, or SHUTOFF for a
stopped server) *and* there is proof that this rebuild ran: status REBUILD or a rebuild
task_state seen in some observation, or an ``updated`` time at or after the moment the service
accepted the request (its ``Date`` header). The 202 body may supply that proof, but it is never
itself taken as the final state.

Reads may be stale (a lagging replica, an eventually consistent listing). Nova sets task_state
``rebuilding`` before it answers 202, so a settled server whose ``updated`` is older than the
acceptance is a read from before the rebuild; and a read older than one already seen is ignored.
Both rules compare times written by different hosts' clocks, which is why they only ever make the
machine wait longer, never declare success.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Final

import attrs

from ._errors import RebuildFailed
from ._models import RebuildEvent, Server, ServerStatus

__all__ = ["REBUILD_TASK_STATES", "Phase", "RebuildTracker", "Verdict", "shows_rebuild"]

#: The task states Nova's compute manager moves through while rebuilding (nova/objects/fields.py).
REBUILD_TASK_STATES: Final = frozenset(
    {"rebuilding", "rebuild_block_device_mapping", "rebuild_spawning"}
)

_ACTIVE = ServerStatus.ACTIVE
_SHUTOFF = ServerStatus.SHUTOFF
_EITHER_STABLE: Final = frozenset({_ACTIVE, _SHUTOFF})


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

    @property
    def terminal(self) -> bool:
        return self.phase.terminal


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


def _targets_from(before: Server | None) -> frozenset[ServerStatus]:
    """The stable state the server must come back to: the one it had before the rebuild."""
    if before is None:
        # Unknown: accept whichever stable state it settles in. A stopped server shows a brief
        # ACTIVE with task_state null before ``powering-off``, so callers should pass ``before``.
        return _EITHER_STABLE
    if before.status is _SHUTOFF or before.vm_state == "stopped":
        return frozenset({_SHUTOFF})
    if before.status in (_ACTIVE, ServerStatus.ERROR) or before.vm_state in ("active", "error"):
        # Nova rebuilds an ERROR server back to ACTIVE (ECS refuses it with 409).
        return frozenset({_ACTIVE})
    return _EITHER_STABLE


#: The stable state a rebuild returns to, by the vm_state the server keeps while rebuilding.
_TARGET_OF_VM_STATE: Final = {
    "stopped": frozenset({_SHUTOFF}),
    "active": frozenset({_ACTIVE}),
    "error": frozenset({_ACTIVE}),
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
    if status in targets:
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
    #: True once any observation proved that this rebuild ran. Never goes back to False.
    started: bool = False
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

    @classmethod
    def start(
        cls,
        server_id: str,
        *,
        before: Server | None,
        accepted_at: datetime | None,
        accepted: Server | None = None,
    ) -> RebuildTracker:
        """Begin tracking a rebuild the service accepted.

        ``before`` is the server as read before the rebuild was sent (None when unknown),
        ``accepted_at`` the ``Date`` of the 202 answer, and ``accepted`` the server in its body.
        The body can prove the rebuild started (it usually shows REBUILD) but never that it
        finished: the first verdict comes from :meth:`observe`.
        """
        accepted_at = _utc(accepted_at)
        before_updated = _utc(before.updated) if before is not None else None
        tracker = cls(
            server_id=server_id,
            targets=_targets_from(before),
            accepted_at=accepted_at,
            error_before=before is not None and before.status is ServerStatus.ERROR,
            before_updated=before_updated,
            newest=before_updated,
            last=before,
        )
        if accepted is None:
            return tracker
        return tracker._absorb(accepted)

    # -- what is known -------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        if self.final is not None:
            return self.final.phase
        return Phase.RUNNING if self.started else Phase.PENDING

    @property
    def terminal(self) -> bool:
        return self.final is not None

    @property
    def _accepted_floor(self) -> datetime | None:
        # ``updated`` and the Date header both have whole-second precision (Nova truncates its
        # times), so a change in the same second as the acceptance must count as after it.
        if self.accepted_at is None:
            return None
        return self.accepted_at.replace(microsecond=0)

    def _changed_after_acceptance(self, updated: datetime | None) -> bool:
        floor = self._accepted_floor
        if updated is None or floor is None or updated < floor:
            return False
        # Within one second the read taken before the rebuild may carry the same time as the
        # acceptance; a read with that very time may still be the old state.
        return self.before_updated is None or updated > self.before_updated

    def _stale_reason(self, server: Server) -> str | None:
        updated = _utc(server.updated)
        if updated is None:
            return None  # nothing to judge it by
        if self.newest is not None and updated < self.newest:
            return f"stale: updated {updated.isoformat()} is older than {self.newest.isoformat()}"
        floor = self._accepted_floor
        if server.task_state is None and floor is not None and updated < floor:
            # After the 202 the task_state stays set until the rebuild ends, so a settled server
            # last changed before the acceptance is a read from before the rebuild.
            return (
                f"stale: settled at {updated.isoformat()}, before the rebuild was accepted"
                f" at {floor.isoformat()}"
            )
        return None

    def _absorb(self, server: Server) -> RebuildTracker:
        """Take in what an accepted (not stale) observation proves."""
        updated = _utc(server.updated)
        rebuilding = shows_rebuild(server)
        proof = rebuilding or self._changed_after_acceptance(updated)
        targets = self.targets
        if rebuilding and len(targets) > 1 and server.vm_state in _TARGET_OF_VM_STATE:
            # The state before was not read, but while a rebuild runs the server keeps the
            # vm_state it had (stopped, active or error): that names the state to return to.
            targets = _TARGET_OF_VM_STATE[server.vm_state]
        return attrs.evolve(
            self,
            targets=targets,
            started=self.started or proof,
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
        kind = _kind(server.status, self.targets)
        # A deletion cannot be undone, so no read showing it is stale.
        if kind is not _Kind.DELETED:
            stale = self._stale_reason(server)
            if stale is not None:
                return self, Verdict(self.phase, stale, ignored=True)
        tracker = self._absorb(server)
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
    if tracker.started:
        return Verdict(Phase.DONE, f"{server.status} with no task after the rebuild")
    return _waiting(tracker, f"{server.status} with no task, but no proof yet that it was rebuilt")


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
