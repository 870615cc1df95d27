"""Rollout decisions: which servers may start now, whether the failure budget is spent, which
checkpoint is due, what to roll back, and whether a server already matches the request.

Pure, like the lifecycle: no I/O, no clock, no event loop. The bulk runner asks a
:class:`RolloutScheduler` what to do and tells it what happened; every decision the scheduler
makes is recorded in its :class:`RolloutState`, an attrs model that a journal can store as it is.
The waiting, the health checks, the callbacks and the requests belong to the runner.

A rollout that an earlier process drove is taken up again with :meth:`RolloutScheduler.restore`:
the scheduler is given, in order, what that process recorded (each server that finished, each
checkpoint answered, each restart after a stop) and makes every decision again, so that the
canary, the failure budget, the checkpoints and the stop come out as they were. A policy is
recorded as :func:`describe_policy` says (its callables only as set or not: they are code).
"""

from __future__ import annotations

import enum
import inspect
import json
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from ._errors import InvalidRequest
from ._models import UNSET, RebuildRequest, Server

__all__ = [
    "CODE_SETTINGS",
    "CheckpointAnswered",
    "Finished",
    "HealthCheck",
    "CheckpointCallback",
    "HistoryItem",
    "Restarted",
    "RolloutPhase",
    "RolloutPlan",
    "RolloutPolicy",
    "RolloutProgress",
    "RolloutScheduler",
    "RolloutState",
    "describe_policy",
    "matches",
    "plan_rollout",
    "policy_differences",
    "policy_from_description",
    "restore_request",
    "UNRESTORABLE_FIELDS",
]

#: ``async (Server) -> bool``: True when the rebuilt server serves again.
HealthCheck = Callable[[Server], Awaitable[bool]]
#: ``async (RolloutProgress) -> bool``: True to go on past a checkpoint, False to stop.
CheckpointCallback = Callable[["RolloutProgress"], Awaitable[bool]]

#: Request fields a rollback cannot put back, because a server never shows them.
UNRESTORABLE_FIELDS: tuple[str, ...] = (
    "user_data",
    "admin_pass",
    "personality",
    "preserve_ephemeral",
    "trusted_image_certificates",
    "disk_config",
)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_share(value: object, name: str, *, minimum: int) -> int | float | None:
    """A count (an int of at least ``minimum``) or a fraction of the fleet (a float up to 1,
    above 0; or 0 itself when ``minimum`` is 0)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < minimum:
            raise InvalidRequest(f"{name} must be at least {minimum}, got {value}", field=name)
        return value
    # A fraction of 0 means none, which is a budget (no failure allowed) but not a pace.
    if isinstance(value, float) and math.isfinite(value):
        above_lowest = value > 0.0 or (value == 0.0 and minimum == 0)
        if above_lowest and value <= 1.0:
            return value
    raise InvalidRequest(
        f"{name} is a count (an int) or a fraction of the fleet (a float above 0, at most 1), "
        f"got {value!r:.40}",
        field=name,
    )


def _check_seconds(value: object, name: str, *, positive: bool = False) -> float:
    if not _is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]  # a number, by the check before
        raise InvalidRequest(f"{name} must be a number of seconds, got {value!r:.40}", field=name)
    seconds = float(value)  # type: ignore[arg-type]  # checked to be a number just above
    if seconds < 0 or (positive and seconds == 0):
        raise InvalidRequest(
            f"{name} must be {'more than' if positive else 'at least'} 0, got {value}", field=name
        )
    return seconds


def _check_callable(value: object, name: str) -> None:
    """An async function (or an object whose ``__call__`` is one), or None: a plain function
    would fail at its first call, long after the rollout began."""
    if value is None:
        return
    call = getattr(value, "__call__", None)  # noqa: B004  # an async __call__ counts too
    if not (inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(call)):
        raise InvalidRequest(f"{name} must be an async function or None", field=name)


def _check_checkpoints(value: object) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidRequest("checkpoints must be a sequence of fractions", field="checkpoints")
    found: set[float] = set()
    for item in value:
        if not _is_number(item) or not 0.0 < float(item) < 1.0:
            raise InvalidRequest(
                f"a checkpoint is a fraction of the fleet above 0 and below 1, got {item!r:.40}",
                field="checkpoints",
            )
        found.add(float(item))
    return tuple(sorted(found))


@attrs.frozen(kw_only=True)
class RolloutPolicy:
    """How a fleet is rolled: pacing, a canary, a failure budget, health gates, checkpoints,
    skipping servers that already match, and rolling back when the rollout stops.

    Counts are ints; fractions of the fleet are floats (``0.1`` is 10 %). Every value is
    checked when the policy is made (``InvalidRequest`` names the field), so a bad policy
    fails before anything is sent. The default policy changes nothing: every server is
    rebuilt, ``concurrency`` at a time.
    """

    #: Servers not serving at once: being rebuilt, warming up, or failed. None: no limit
    #: beyond ``concurrency``. A fraction is rounded down, and is at least 1.
    max_unavailable: int | float | None = None
    #: The first N servers are rebuilt, and pass their health gate, before any other starts.
    canary: int = 0
    #: Once more servers than this have failed, nothing more is started. None: no budget.
    #: A fraction is rounded down (0.1 of 15 servers allows 1 failure; the second stops).
    max_failures: int | float | None = None
    #: Run after a server's rebuild is proven done, retried for ``warmup`` seconds.
    health_check: HealthCheck | None = None
    warmup: float = 300.0
    #: Seconds between two tries of the health check.
    health_interval: float = 5.0
    #: Seconds one try may take; a try that takes longer has failed.
    health_timeout: float = 10.0
    #: Fractions of the fleet after which the rollout pauses.
    checkpoints: tuple[float, ...] = attrs.field(default=(), converter=_check_checkpoints)
    #: Asked at each checkpoint: True goes on, False stops. None: wait ``checkpoint_delay``.
    on_checkpoint: CheckpointCallback | None = None
    checkpoint_delay: float = 0.0
    #: A server already on the image, and matching the request's visible fields, is skipped.
    skip_matching: bool = False
    #: When the rollout stops (canary, budget, checkpoint), rebuild back what it rebuilt.
    rollback: bool = False

    def __attrs_post_init__(self) -> None:
        _check_share(self.max_unavailable, "max_unavailable", minimum=1)
        _check_share(self.max_failures, "max_failures", minimum=0)
        if not isinstance(self.canary, int) or isinstance(self.canary, bool) or self.canary < 0:
            raise InvalidRequest(
                f"canary must be a count of 0 or more, got {self.canary!r:.40}", field="canary"
            )
        _check_callable(self.health_check, "health_check")
        _check_callable(self.on_checkpoint, "on_checkpoint")
        object.__setattr__(self, "warmup", _check_seconds(self.warmup, "warmup"))
        object.__setattr__(
            self,
            "health_interval",
            _check_seconds(self.health_interval, "health_interval", positive=True),
        )
        object.__setattr__(
            self,
            "health_timeout",
            _check_seconds(self.health_timeout, "health_timeout", positive=True),
        )
        object.__setattr__(
            self, "checkpoint_delay", _check_seconds(self.checkpoint_delay, "checkpoint_delay")
        )
        for name in ("skip_matching", "rollback"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidRequest(f"{name} must be True or False", field=name)

    def unavailable_limit(self, fleet: int) -> int | None:
        """``max_unavailable`` as a count of servers, for a fleet of ``fleet`` servers."""
        value = self.max_unavailable
        if value is None or isinstance(value, int):
            return value
        return max(1, math.floor(value * fleet))

    def failure_budget(self, fleet: int) -> int | None:
        """How many failures are allowed before the rollout stops (``max_failures`` as a count)."""
        value = self.max_failures
        if value is None or isinstance(value, int):
            return value
        return math.floor(value * fleet + 1e-9)

    def checkpoint_counts(self, fleet: int) -> tuple[tuple[float, int], ...]:
        """Each checkpoint and the number of finished servers at which it is due."""
        counts: list[tuple[float, int]] = []
        for fraction in self.checkpoints:
            count = max(1, math.ceil(fraction * fleet - 1e-9))
            if count < fleet and (not counts or counts[-1][1] < count):
                counts.append((fraction, count))
        return tuple(counts)


#: The policy's settings that are code (async callables): a description says only whether
#: each is set, so a run that had one must be given it again to be continued.
CODE_SETTINGS: tuple[str, ...] = ("health_check", "on_checkpoint")


def describe_policy(policy: RolloutPolicy) -> dict[str, Any]:
    """The policy as JSON-ready data: every setting as it is (a tuple as a list), and each of
    :data:`CODE_SETTINGS` as True when one is set. No callable is kept."""
    description: dict[str, Any] = {}
    for field in attrs.fields(RolloutPolicy):
        value = getattr(policy, field.name)
        if field.name in CODE_SETTINGS:
            value = value is not None
        elif isinstance(value, tuple):
            value = list(value)
        description[field.name] = value
    return description


def _shown(value: object) -> str:
    # JSON tells a count (1) from a fraction (1.0), which Python's == does not.
    return json.dumps(value, sort_keys=True)


def policy_differences(recorded: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """The settings in which two descriptions differ, as ``name: A there, B here``."""
    found: list[str] = []
    for name in sorted(set(recorded) | set(given)):
        there, here = recorded.get(name), given.get(name)
        if _shown(there) == _shown(here):
            continue
        if name in CODE_SETTINGS:
            there, here = ("set" if there else "not set"), ("set" if here else "not set")
        else:
            there, here = _shown(there), _shown(here)
        found.append(f"{name}: {there} there, {here} here")
    return found


def policy_from_description(
    description: Mapping[str, Any],
    *,
    health_check: HealthCheck | None = None,
    on_checkpoint: CheckpointCallback | None = None,
) -> RolloutPolicy:
    """The policy a description records, with its code given again: ``health_check`` and
    ``on_checkpoint`` exactly when the description says they were set. InvalidRequest (naming
    the setting) when one is missing or not wanted, or when the description is not a policy's.
    """
    code = {"health_check": health_check, "on_checkpoint": on_checkpoint}
    for name, given in code.items():
        if bool(description.get(name)) != (given is not None):
            raise InvalidRequest(
                f"the recorded policy has a {name}, which a journal cannot store (it is code): "
                "give it again"
                if given is None
                else f"the recorded policy has no {name}: give none",
                field=name,
            )
    settings: dict[str, Any] = {}  # the settings that are data
    names = {field.name for field in attrs.fields(RolloutPolicy)}
    for name, value in description.items():
        if name not in names:
            raise InvalidRequest(f"a rollout policy has no setting {name!r}", field=name)
        if name not in CODE_SETTINGS:
            settings[name] = tuple(value) if name == "checkpoints" else value
    return RolloutPolicy(**settings, health_check=health_check, on_checkpoint=on_checkpoint)


class RolloutPhase(str, enum.Enum):
    """Where a rollout stands."""

    CANARY = "canary"
    ROLLING = "rolling"
    PAUSED = "paused"  # at a checkpoint
    STOPPED = "stopped"  # on its failure budget, a failed canary, or a checkpoint's no
    ROLLING_BACK = "rolling_back"
    DONE = "done"


@attrs.frozen
class RolloutProgress:
    """The rollout so far, as given to ``on_checkpoint``."""

    checkpoint: float
    finished: int
    total: int
    succeeded: int
    failures: int
    budget_left: int | None


@attrs.define
class RolloutState:
    """Every decision a rollout made so far: the record a journal keeps of it.

    ``total`` counts the servers to rebuild (not those skipped as already matching).
    """

    total: int = 0
    phase: RolloutPhase = RolloutPhase.ROLLING
    canary: tuple[str, ...] = ()
    canary_passed: bool = False
    skipped_matching: int = 0
    started: int = 0
    finished: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failures: int = 0
    #: Failed servers whose rebuild was sent: they count as unavailable.
    down: int = 0
    failure_budget: int | None = None
    max_unavailable: int | None = None
    checkpoints_passed: list[float] = attrs.field(factory=list)
    checkpoint_due: float | None = None
    stopped_reason: str | None = None
    #: Times a stopped rollout was continued on request (``continue_stopped``).
    restarts: int = 0
    rollback_total: int = 0
    rollback_finished: int = 0

    @property
    def budget_left(self) -> int | None:
        """Failures still allowed before the rollout stops (None: no budget)."""
        if self.failure_budget is None:
            return None
        return max(self.failure_budget - self.failures, 0)

    @property
    def unavailable(self) -> int:
        return self.in_flight + self.down


@attrs.frozen
class Finished:
    """History: a server's rebuild (and health gate) ended."""

    server_id: str
    ok: bool
    submitted: bool


@attrs.frozen
class CheckpointAnswered:
    """History: the checkpoint at ``checkpoint`` was answered (go on, or stop)."""

    checkpoint: float
    go_on: bool


@attrs.frozen
class Restarted:
    """History: a stopped rollout was continued on request."""


#: What a rollout recorded, in order, for :meth:`RolloutScheduler.restore` to go on from.
HistoryItem = Finished | CheckpointAnswered | Restarted


class RolloutScheduler:
    """Decides, from what happened so far, what the bulk runner may do next.

    The runner calls :meth:`take_startable` for the servers to start now, reports each end
    with :meth:`finished`, answers a due checkpoint with :meth:`resolve_checkpoint`, and, when
    the rollout stopped and the policy says so, rolls back what it rebuilt.
    """

    def __init__(
        self, policy: RolloutPolicy, server_ids: Sequence[str], *, concurrency: int
    ) -> None:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise InvalidRequest("concurrency must be at least 1", field="concurrency")
        fleet = len(server_ids)
        self.policy = policy
        self._concurrency = concurrency
        self._pending: deque[str] = deque(server_ids)
        # The servers not started yet: a restored run starts some out of order, and the queue
        # passes over those.
        self._unstarted = set(server_ids)
        self._canary_left = set(server_ids[: policy.canary])
        self._checkpoints = deque(policy.checkpoint_counts(fleet))
        self.state = RolloutState(
            total=fleet,
            phase=RolloutPhase.CANARY if self._canary_left else RolloutPhase.ROLLING,
            canary=tuple(server_ids[: policy.canary]),
            canary_passed=not self._canary_left,
            failure_budget=policy.failure_budget(fleet),
            max_unavailable=policy.unavailable_limit(fleet),
        )
        self._settle()

    @property
    def width(self) -> int:
        """How many servers may be out of service at once."""
        limit = self.state.max_unavailable
        return self._concurrency if limit is None else min(self._concurrency, limit)

    @property
    def never_started(self) -> tuple[str, ...]:
        return tuple(s for s in self._pending if s in self._unstarted)

    @classmethod
    def restore(
        cls,
        policy: RolloutPolicy,
        server_ids: Sequence[str],
        *,
        concurrency: int,
        history: Iterable[HistoryItem] = (),
        in_flight: Iterable[str] = (),
    ) -> RolloutScheduler:
        """The scheduler of a rollout of ``server_ids`` taken up again: every decision made
        again from ``history`` (what the rollout recorded, in order), then ``in_flight`` (the
        servers started and not finished) counted as running. The same policy and servers give
        the same canary, budget, checkpoints passed and stop as the first time."""
        scheduler = cls(policy, server_ids, concurrency=concurrency)
        for item in history:
            if isinstance(item, Finished):
                if scheduler._take(item.server_id):
                    scheduler.finished(item.server_id, ok=item.ok, submitted=item.submitted)
            elif isinstance(item, CheckpointAnswered):
                if scheduler.state.checkpoint_due == item.checkpoint:
                    scheduler.resolve_checkpoint(item.go_on)
            else:
                scheduler.restart()
        for server_id in in_flight:
            scheduler._take(server_id)
        return scheduler

    def _take(self, server_id: str) -> bool:
        """Count one server as started, out of the queue's order (for :meth:`restore`)."""
        if server_id not in self._unstarted:
            return False
        self._unstarted.discard(server_id)
        self.state.started += 1
        self.state.in_flight += 1
        return True

    @property
    def over(self) -> bool:
        """Nothing more will start and nothing is in flight."""
        state = self.state
        return state.in_flight == 0 and state.phase in (RolloutPhase.DONE, RolloutPhase.STOPPED)

    def take_startable(self) -> list[str]:
        """The servers to start now (recorded as started)."""
        state = self.state
        if state.phase not in (RolloutPhase.CANARY, RolloutPhase.ROLLING):
            return []
        room = self._room()
        if state.phase is RolloutPhase.CANARY:
            room = min(room, len(self._canary_left) - state.in_flight)
        if self._checkpoints:
            room = min(room, self._checkpoints[0][1] - state.started)
        chosen: list[str] = []
        while room > 0 and self._unstarted:
            server_id = self._pending.popleft()
            if server_id in self._unstarted:
                self._unstarted.discard(server_id)
                chosen.append(server_id)
                room -= 1
        state.started += len(chosen)
        state.in_flight += len(chosen)
        self._settle()
        return chosen

    def finished(self, server_id: str, *, ok: bool, submitted: bool) -> None:
        """One server's rebuild (and health gate) ended."""
        state = self.state
        state.in_flight -= 1
        state.finished += 1
        if ok:
            state.succeeded += 1
        else:
            state.failures += 1
            if submitted:
                state.down += 1
        if server_id in self._canary_left:
            self._canary_left.discard(server_id)
            if not ok:
                self.stop(f"canary {server_id} did not pass")
        if not ok and state.failure_budget is not None and state.failures > state.failure_budget:
            count = state.failures
            self.stop(
                f"{count} {'failure' if count == 1 else 'failures'}, more than max_failures "
                f"({state.failure_budget})"
            )
        self._settle()

    def resolve_checkpoint(self, go_on: bool) -> None:
        """The answer to the due checkpoint: go on, or stop."""
        state = self.state
        fraction = state.checkpoint_due
        if fraction is None:
            return
        state.checkpoint_due = None
        state.checkpoints_passed.append(fraction)
        self._checkpoints.popleft()
        if go_on:
            state.phase = RolloutPhase.CANARY if self._canary_left else RolloutPhase.ROLLING
        else:
            self.stop(f"stopped at checkpoint {fraction:.0%}")
        self._settle()

    def progress(self) -> RolloutProgress:
        state = self.state
        return RolloutProgress(
            checkpoint=state.checkpoint_due or 0.0,
            finished=state.finished,
            total=state.total,
            succeeded=state.succeeded,
            failures=state.failures,
            budget_left=state.budget_left,
        )

    def stop(self, reason: str) -> None:
        """Start nothing more; the first reason is the one kept."""
        state = self.state
        if state.phase is not RolloutPhase.STOPPED:
            state.phase = RolloutPhase.STOPPED
            state.stopped_reason = reason

    def restart(self) -> bool:
        """Continue a stopped rollout (asked for explicitly): the servers the stop left
        unstarted may start. What the rollout used stays used: its failures still count against
        the budget, so a rollout stopped on its budget stops again at its next failure; the
        checkpoints passed stay passed. False when the rollout was not stopped."""
        state = self.state
        if state.phase is not RolloutPhase.STOPPED:
            return False
        state.phase = RolloutPhase.CANARY if self._canary_left else RolloutPhase.ROLLING
        state.stopped_reason = None
        state.restarts += 1
        self._settle()
        return True

    def begin_rollback(self, count: int) -> None:
        self.state.phase = RolloutPhase.ROLLING_BACK
        self.state.rollback_total = count

    def rolled_back(self) -> None:
        self.state.rollback_finished += 1

    def _room(self) -> int:
        """How many more may start: ``concurrency`` bounds rebuilds in flight, and
        ``max_unavailable`` bounds those in flight plus the failed ones."""
        state = self.state
        room = self._concurrency - state.in_flight
        if state.max_unavailable is not None:
            room = min(room, state.max_unavailable - state.unavailable)
        return room

    def _settle(self) -> None:
        """Move on from the canary, to a due checkpoint, to done, or stop when stuck."""
        state = self.state
        if state.phase is RolloutPhase.CANARY and not self._canary_left:
            state.canary_passed = True
            state.phase = RolloutPhase.ROLLING
        if state.phase not in (RolloutPhase.CANARY, RolloutPhase.ROLLING) or state.in_flight:
            return
        if self._checkpoints and state.finished >= self._checkpoints[0][1] and self._unstarted:
            # Due even in the middle of the canary (a checkpoint below the canary's size).
            state.phase = RolloutPhase.PAUSED
            state.checkpoint_due = self._checkpoints[0][0]
        elif state.phase is RolloutPhase.CANARY:
            return
        elif not self._unstarted:
            state.phase = RolloutPhase.DONE
        elif self._room() <= 0:
            # Failed servers fill every place max_unavailable allows: nothing can start again.
            down = state.down
            self.stop(
                f"{down} failed {'server fills' if down == 1 else 'servers fill'} "
                f"max_unavailable ({self.width})"
            )


# -- whether a server already matches, and what puts it back --------------------------------


def matches(server: Server, request: RebuildRequest) -> bool:
    """The server is on the requested image and shows every other field the request sets.

    Fields a server never shows (user_data, adminPass, personality...) cannot be compared and
    are not; a field the server does not show at this microversion (None) does not match.
    """
    if server.image_id is None or server.image_id != request.image_ref:
        return False
    pairs: list[tuple[object, object]] = [
        (request.name, server.name),
        (request.description, server.description),
        (request.hostname, server.hostname),
        (request.access_ipv4, server.access_ipv4 or ""),
        (request.access_ipv6, server.access_ipv6 or ""),
        (request.key_name, server.key_name),
    ]
    if request.metadata is not UNSET:
        pairs.append((dict(request.metadata), dict(server.metadata)))
    return all(wanted is UNSET or wanted == shown for wanted, shown in pairs)


def restore_request(before: Server, request: RebuildRequest) -> RebuildRequest:
    """The rebuild that puts ``before`` back: its former image, and every field ``request``
    changed that ``before`` shows. Raises InvalidRequest when there is no image to go back to."""
    if before.image_id is None:
        raise InvalidRequest(
            f"server {before.id} showed no image before the rollout (booted from a volume?): "
            "it cannot be rebuilt back"
        )
    fields: dict[str, Any] = {"image_ref": before.image_id}
    if request.name is not UNSET and before.name is not None:
        fields["name"] = before.name
    if request.metadata is not UNSET:
        fields["metadata"] = dict(before.metadata)
    if request.key_name is not UNSET:
        fields["key_name"] = before.key_name  # None removes the key pair the rollout set
    if request.description is not UNSET:
        # The request needed 2.19, so the read before it showed the description: None there
        # is a server without one, and null removes the description the rollout set.
        fields["description"] = before.description
    # An empty address or hostname cannot be sent back (the service refuses ""): left as is.
    if request.hostname is not UNSET and before.hostname:
        fields["hostname"] = before.hostname
    if request.access_ipv4 is not UNSET and before.access_ipv4:
        fields["access_ipv4"] = before.access_ipv4
    if request.access_ipv6 is not UNSET and before.access_ipv6:
        fields["access_ipv6"] = before.access_ipv6
    return RebuildRequest(**fields)


# -- the plan ---------------------------------------------------------------------------------


@attrs.frozen
class RolloutPlan:
    """What a rollout would do if every server passed: nothing is sent to make it.

    ``waves`` are the groups the pacing allows to be out of service together (the canary's
    first); ``checkpoints`` pairs each checkpoint with the number of waves before it.
    """

    skipped: tuple[str, ...]
    canary: tuple[str, ...]
    waves: tuple[tuple[str, ...], ...]
    checkpoints: tuple[tuple[float, int], ...]
    requests: Mapping[str, RebuildRequest]
    max_unavailable: int | None
    failure_budget: int | None


def plan_rollout(
    policy: RolloutPolicy,
    server_ids: Sequence[str],
    requests: Mapping[str, RebuildRequest],
    *,
    concurrency: int,
    skipped: Sequence[str] = (),
) -> RolloutPlan:
    """Run the scheduler as if every server passed, wave by wave."""
    scheduler = RolloutScheduler(policy, server_ids, concurrency=concurrency)
    waves: list[tuple[str, ...]] = []
    checkpoints: list[tuple[float, int]] = []
    while not scheduler.over:
        due = scheduler.state.checkpoint_due
        if due is not None:
            checkpoints.append((due, len(waves)))
            scheduler.resolve_checkpoint(True)
            continue
        wave = scheduler.take_startable()
        if not wave:  # cannot happen when every server passes; never loop forever
            break
        waves.append(tuple(wave))
        for server_id in wave:
            scheduler.finished(server_id, ok=True, submitted=True)
    return RolloutPlan(
        skipped=tuple(skipped),
        canary=scheduler.state.canary,
        waves=tuple(waves),
        checkpoints=tuple(checkpoints),
        requests=dict(requests),
        max_unavailable=scheduler.state.max_unavailable,
        failure_budget=scheduler.state.failure_budget,
    )
