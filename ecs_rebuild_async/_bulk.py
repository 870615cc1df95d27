"""Bounded bulk work: one outcome per server, whatever happens to the others, rolled as a
rollout policy says, and recorded in a journal when one is given.

Takes callables that read a server's state before the run and rebuild and wait for one
server; runs them for many, as the pure :class:`~._rollout.RolloutScheduler` allows (pacing,
canary, failure budget, checkpoints), gates each rebuilt server on its health check, and rolls
back when the rollout stops and the policy asks for it. Each server's typed error becomes its
:class:`RebuildOutcome`. An error that is not the library's (a bug) is not swallowed: it
cancels the run and propagates.

Every change of the run's state happens in one method of :class:`BulkRun`, and a
:class:`RunJournal` (when given) records it there, before what follows it is done:

* ``_schedule``: the servers to roll are chosen (skip-matching) and the scheduler is made, or
  restored from what the journal recorded (the rollout began; or a stopped one continued);
* ``_finished``: a server's rebuild and health gate ended; the scheduler counted it (outcome,
  and the rollout's canary, budget and stop decided in :class:`~._rollout.RolloutState`);
* ``_checkpoint``: a checkpoint was answered (passed, or stopped);
* ``_skip_unstarted``: the servers never started got their ``skipped`` outcome;
* ``_roll_back`` and ``_roll_back_one``: the rollback began, and a server's rebuild back ended.

The requests themselves (intent, acceptance) are journaled by the ``run_one`` callables.
``_record`` is where every outcome lands (the report, the caller's callback).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

import anyio
import anyio.abc
import attrs

from . import _telemetry
from ._errors import (
    BadRequest,
    ClientClosed,
    Conflict,
    EcsError,
    InvalidRequest,
    MicroversionError,
    NotFound,
    RebuildFailed,
    RebuildOutcomeUnknown,
    RebuildTimeout,
)
from ._models import OutcomeKind, RebuildOutcome, RebuildRequest, Server
from ._rollout import (
    CheckpointAnswered,
    HistoryItem,
    Restarted,
    RolloutPhase,
    RolloutPlan,
    RolloutPolicy,
    RolloutScheduler,
    RolloutState,
    matches,
    plan_rollout,
    restore_request,
)

__all__ = [
    "BulkReport",
    "BulkRun",
    "Restored",
    "RunJournal",
    "check_run_options",
    "normalize_targets",
    "plan_bulk",
    "outcome_kind",
    "run_bulk",
]

logger = logging.getLogger("ecs_rebuild_async")

#: Called once a rebuild was accepted (True; a lost answer counts as accepted), or when that
#: lost request proves not carried out and its second sending is refused (False).
MarkSubmitted = Callable[[bool], None]
#: Rebuild one server and wait until it is proven done; ``before`` is its state before the
#: run (None: read it first).
RunOne = Callable[[str, RebuildRequest, Server | None, MarkSubmitted], Awaitable[Server]]
#: Read one server's state before the run (from a listing of the fleet or one GET).
ReadBefore = Callable[[str], Awaitable[Server]]
OutcomeCallback = Callable[[RebuildOutcome], object]

_NO_POLICY = RolloutPolicy()


@attrs.frozen
class Restored:
    """What a journal recorded of a run, for the bulk runner to go on from.

    ``outcomes``: each server's outcome (its rebuild's); ``history``: what the rollout's
    scheduler was told, in order (see :meth:`~._rollout.RolloutScheduler.restore`);
    ``in_flight``: the servers whose rebuild was accepted, or may have been, with no outcome
    yet; ``rollbacks`` and ``rollback_sent``: the outcomes of the rebuilds back, and the servers
    whose rebuild back was accepted (or may have been); ``began``: the rollout's servers were
    chosen (skip-matching is not done again).
    """

    began: bool = False
    outcomes: Mapping[str, RebuildOutcome] = attrs.Factory(dict)
    history: Sequence[HistoryItem] = ()
    in_flight: Sequence[str] = ()
    rollbacks: Mapping[str, RebuildOutcome] = attrs.Factory(dict)
    rollback_sent: frozenset[str] = frozenset()


class RunJournal(Protocol):
    """What the bulk runner needs of a durable record of its run (``_durable`` keeps one).

    Each write returns once it is durable, and writes are kept in the order they are made:
    the runner makes each one right after the decision it records, so that a later run can
    make the same decisions again.
    """

    def restored(self) -> Restored:
        """What earlier drivers of this run recorded (nothing, for a new run)."""
        ...

    def before_of(self, server_id: str) -> Server | None:
        """The server as it was read just before its rebuild was sent (for a rollback)."""
        ...

    async def record(
        self,
        outcomes: Sequence[RebuildOutcome],
        *,
        rollback: bool = False,
        state: RolloutState | None = None,
    ) -> None:
        """Outcomes (of rebuilds, or of rebuilds back); ``state``: the rollout's after them."""
        ...

    async def rollout(
        self,
        state: RolloutState,
        decision: CheckpointAnswered | Restarted | None = None,
        *,
        ended: bool = False,
    ) -> None:
        """The rollout's state: its first, a ``decision`` made, a change of phase since the
        last record (nothing is written otherwise), or its last (``ended``)."""
        ...


_NOTHING_RECORDED = Restored()


def _matched(outcome: RebuildOutcome | None) -> bool:
    """Skipped because the server already matched its request (proven by a read)."""
    return outcome is not None and outcome.kind is OutcomeKind.SKIPPED and outcome.ok


@attrs.define
class BulkReport:
    """Live record of a bulk run, readable while it runs and after it was cancelled.

    ``total`` counts the distinct servers of the run; ``submitted`` holds those whose rebuild
    the service accepted (or may have accepted, when the answer was lost); ``outcomes`` the
    finished ones, by server id; ``repeated`` the ids listed more than once (rebuilt once).
    ``rollout`` is the rollout's state (phase, canary, budget used, checkpoints passed,
    rollback progress); ``rollback_submitted`` the servers whose rebuild back was accepted.
    """

    total: int = 0
    submitted: set[str] = attrs.field(factory=set)
    outcomes: dict[str, RebuildOutcome] = attrs.field(factory=dict)
    repeated: list[str] = attrs.field(factory=list)
    rollout: RolloutState | None = None
    rollback_submitted: set[str] = attrs.field(factory=set)

    @property
    def finished(self) -> int:
        return len(self.outcomes)

    @property
    def stopped_reason(self) -> str | None:
        """Why the rollout stopped early (a failed canary, the failure budget, a checkpoint);
        None when it did not."""
        return None if self.rollout is None else self.rollout.stopped_reason

    def counts(self) -> dict[str, int]:
        """How many outcomes of each kind so far."""
        result: dict[str, int] = {}
        for outcome in self.outcomes.values():
            result[outcome.kind.value] = result.get(outcome.kind.value, 0) + 1
        return result


_KINDS: tuple[tuple[type[EcsError], OutcomeKind], ...] = (
    (RebuildFailed, OutcomeKind.FAILED),
    (RebuildTimeout, OutcomeKind.TIMED_OUT),
    (RebuildOutcomeUnknown, OutcomeKind.UNKNOWN),
    (Conflict, OutcomeKind.CONFLICT),
    (NotFound, OutcomeKind.NOT_FOUND),
    (InvalidRequest, OutcomeKind.INVALID),
    (MicroversionError, OutcomeKind.INVALID),
    (BadRequest, OutcomeKind.INVALID),
)


def outcome_kind(error: EcsError) -> OutcomeKind:
    for cls, kind in _KINDS:
        if isinstance(error, cls):
            return kind
    return OutcomeKind.ERROR


def normalize_targets(
    servers: Iterable[str | tuple[str, RebuildRequest]], request: RebuildRequest | None
) -> list[tuple[str, RebuildRequest | None]]:
    """``servers`` as (server id, request) pairs; a bare id takes ``request``."""
    if isinstance(servers, (str, bytes)):
        raise InvalidRequest("servers must be a list of ids, not one string", field="servers")
    targets: list[tuple[str, RebuildRequest | None]] = []
    for item in servers:
        if isinstance(item, str):
            targets.append((item, request))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            if not isinstance(item[1], RebuildRequest):
                raise InvalidRequest(f"the request for server {item[0]!r} is not a RebuildRequest")
            targets.append((item[0], item[1]))
        else:
            raise InvalidRequest(
                f"servers must be ids or (id, RebuildRequest) pairs, got {type(item).__name__}"
            )
    return targets


def check_run_options(concurrency: object, policy: object) -> None:
    """InvalidRequest for a bad ``concurrency`` or ``policy``, before anything is read or sent."""
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise InvalidRequest("concurrency must be at least 1", field="concurrency")
    if policy is not None and not isinstance(policy, RolloutPolicy):
        raise InvalidRequest("policy must be a RolloutPolicy", field="policy")


def _error_outcome(server_id: str, error: EcsError, submitted: bool) -> RebuildOutcome:
    # The client closed before this server finished (its rebuild still waiting for its turn,
    # or its wait): interrupted, as by a cancellation; ``submitted`` says which.
    closed = isinstance(error, ClientClosed)
    return RebuildOutcome(
        server_id=server_id,
        ok=False,
        kind=OutcomeKind.CANCELLED if closed else outcome_kind(error),
        server=getattr(error, "server", None),
        error=error,
        submitted=submitted,
    )


class BulkRun:
    """One bulk run: the scheduler's decisions carried out, and every outcome recorded."""

    def __init__(
        self,
        targets: Sequence[tuple[str, RebuildRequest | None]],
        run_one: RunOne,
        *,
        concurrency: int,
        report: BulkReport,
        on_outcome: OutcomeCallback | None = None,
        policy: RolloutPolicy | None = None,
        read_before: ReadBefore | None = None,
        roll_back_one: RunOne | None = None,
        journal: RunJournal | None = None,
        continue_stopped: bool = False,
    ) -> None:
        check_run_options(concurrency, policy)
        self._targets = targets
        self._run_one = run_one
        self._mark_submitted = self._submitted  # bound once, shared by every server in flight
        self._run_back = roll_back_one or run_one
        self._read_before = read_before
        self._concurrency = concurrency
        self._policy = policy or _NO_POLICY
        # A plain run (no policy) records no rollout state: only its servers' outcomes.
        self._rolls = policy is not None
        self._journal = journal
        self._restored = _NOTHING_RECORDED if journal is None else journal.restored()
        self._continue_stopped = continue_stopped
        self.report = report
        self._on_outcome = on_outcome
        self._results: list[RebuildOutcome | None] = [None] * len(targets)
        self._index: dict[str, int] = {}
        self._requests: dict[str, RebuildRequest] = {}
        self._befores: dict[str, Server] = {}
        self._callback_errors: list[BaseException] = []
        self._wake = anyio.Event()
        self._group: anyio.abc.TaskGroup | None = None
        self.scheduler: RolloutScheduler | None = None

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> list[RebuildOutcome]:
        """Every server's outcome, in the order given (a repeated id: ``invalid`` again)."""
        to_roll = self._sort_targets()
        try:
            scheduler, resumed = await self._schedule(to_roll)
            if not self._callback_errors:
                async with anyio.create_task_group() as group:
                    self._group = group
                    for server_id in resumed:
                        # Accepted (or maybe) by an earlier driver: its rebuild goes on.
                        group.start_soon(self._one, scheduler, server_id, True)
                    await self._drive(scheduler, group)
            if not self._callback_errors:
                await self._skip_unstarted(scheduler)
                if scheduler.state.phase is RolloutPhase.STOPPED and self._policy.rollback:
                    await self._roll_back(scheduler)
                if self._journal is not None and self._rolls:
                    await self._journal.rollout(scheduler.state, ended=True)
        except anyio.get_cancelled_exc_class():
            logger.warning(
                "bulk rebuild cancelled: %d of %d servers had their rebuild submitted",
                len(self.report.submitted),
                self.report.total,
            )
            raise
        if self._callback_errors:
            raise self._callback_errors[0]
        return [outcome for outcome in self._results if outcome is not None]

    def _sort_targets(self) -> list[str]:
        """The distinct servers with a request, in order; repeats, missing requests and the
        outcomes a journal recorded settled now."""
        to_roll: list[str] = []
        report = self.report
        for index, (server_id, request) in enumerate(self._targets):
            if server_id in self._index:
                # The same server twice would race its own rebuild: no second POST. The list
                # says so at the repeat's place; the report keeps the server's real outcome.
                error = InvalidRequest(f"server {server_id!r} is listed more than once")
                self._results[index] = RebuildOutcome(
                    server_id, False, OutcomeKind.INVALID, error=error
                )
                report.repeated.append(server_id)
                continue
            self._index[server_id] = index
            if request is not None:
                self._requests[server_id] = request
                to_roll.append(server_id)
        report.total = len(self._index)
        recorded = self._restored.outcomes
        for server_id in self._index:
            known = recorded.get(server_id)
            if known is not None:
                # Finished in an earlier run of the same journal: reported as it was recorded.
                if known.submitted:
                    report.submitted.add(server_id)
                self._record(known)
            elif server_id not in self._requests:
                error = InvalidRequest(f"no RebuildRequest given for server {server_id!r}")
                self._record(_error_outcome(server_id, error, False))
        return to_roll

    async def _schedule(self, to_roll: list[str]) -> tuple[RolloutScheduler, list[str]]:
        """The scheduler, with the servers it rolls chosen; restored from the journal when it
        records the rollout already. Also the servers an earlier driver left in flight."""
        restored, journal = self._restored, self._journal
        if restored.began or not self._policy.skip_matching:
            # Chosen once, when the rollout began: the same servers, whatever they show now.
            to_run = [s for s in to_roll if not _matched(restored.outcomes.get(s))]
        else:
            to_run = await self._skip_matching([s for s in to_roll if s not in restored.outcomes])
        rolled = set(to_run)
        resumed = [s for s in restored.in_flight if s in rolled and s not in restored.outcomes]
        scheduler = RolloutScheduler.restore(
            self._policy,
            to_run,
            concurrency=self._concurrency,
            history=restored.history,
            in_flight=resumed,
        )
        scheduler.state.skipped_matching = sum(
            _matched(self.report.outcomes.get(s)) for s in to_roll
        )
        self.scheduler = scheduler
        self.report.rollout = scheduler.state
        if journal is not None and self._rolls:
            if self._continue_stopped and scheduler.restart():
                # Written before any server the stop had left is sent.
                await journal.rollout(scheduler.state, Restarted())
            elif not restored.began:
                await journal.rollout(scheduler.state)
        return scheduler, resumed

    async def _skip_matching(self, server_ids: list[str]) -> list[str]:
        """Read every server first; those already matching their request are skipped."""
        limiter = anyio.CapacityLimiter(self._concurrency)

        async def read(server_id: str) -> None:
            # A server that cannot be read is not skipped: its own run reports the error.
            async with limiter:
                with contextlib.suppress(EcsError):
                    await self._before(server_id)

        async with anyio.create_task_group() as group:
            for server_id in server_ids:
                group.start_soon(read, server_id)
        remaining: list[str] = []
        skipped: list[RebuildOutcome] = []
        for server_id in server_ids:
            before = self._befores.get(server_id)
            if before is not None and matches(before, self._requests[server_id]):
                skipped.append(
                    # ok: the server is as asked, proven by this read; nothing was sent.
                    RebuildOutcome(
                        server_id,
                        True,
                        OutcomeKind.SKIPPED,
                        server=before,
                        reason="already matches",
                    )
                )
            else:
                remaining.append(server_id)
        _telemetry.skipped(len(skipped))
        await self._land(skipped)
        return remaining

    async def _drive(self, scheduler: RolloutScheduler, group: anyio.abc.TaskGroup) -> None:
        """Start what the scheduler allows, answer its checkpoints, until nothing is left."""
        while not self._callback_errors:
            for server_id in scheduler.take_startable():
                self._started(server_id)
                group.start_soon(self._one, scheduler, server_id)
            _telemetry.rollout_progress(scheduler.state)
            if scheduler.state.checkpoint_due is not None:
                await self._checkpoint(scheduler)
                continue
            if scheduler.over:
                return
            if scheduler.state.in_flight == 0:
                # Nothing runs, nothing may start, nothing is due: waiting would hang forever.
                raise RuntimeError(f"the rollout cannot go on: {scheduler.state!r}")
            await self._wake.wait()
            self._wake = anyio.Event()

    async def _before(self, server_id: str) -> Server | None:
        """The server's state now (from the fleet's listing while it is fresh, else a read),
        kept for a rollback (the image to go back to) and for skip-matching."""
        if self._read_before is None:
            return None
        before = await self._read_before(server_id)
        if self._policy.rollback or self._policy.skip_matching:
            self._befores[server_id] = before
        return before

    async def _one(
        self, scheduler: RolloutScheduler, server_id: str, resumed: bool = False
    ) -> None:
        request = self._requests[server_id]
        # One span and one outcome metric per server, its read before and its health gate
        # included (a server not found, or unhealthy, is an outcome too).
        with _telemetry.rebuild(server_id, outcome_kind) as traced:
            try:
                # Read when it starts, not when the run did: the state to return to is
                # evidence taken close to the request (a rollout may start a server hours
                # after the first). A rebuild an earlier driver sent has its read recorded.
                before = None if resumed else await self._before(server_id)
                mark = functools.partial(self._mark_submitted, server_id)  # no closure
                running = self._run_one(server_id, request, before, mark)
                # Not kept here while the server is waited for: the wait keeps what it needs.
                del before
                server = await running
            except EcsError as error:
                outcome = _error_outcome(server_id, error, server_id in self.report.submitted)
            else:
                outcome = await self._health_gate(server_id, server)
            traced.ended(outcome.kind.value, outcome.error, failed=not outcome.ok)
        await self._finished(scheduler, outcome)

    async def _health_gate(self, server_id: str, server: Server) -> RebuildOutcome:
        """ok once the policy's health check passes; unhealthy when it never does in time."""
        check = self._policy.health_check
        if check is None:
            return RebuildOutcome(server_id, True, OutcomeKind.OK, server=server, submitted=True)
        warmup = self._policy.warmup
        deadline = anyio.current_time() + warmup
        last_error = ""
        while True:
            healthy = False
            # A try that takes longer than health_timeout failed (a probe that hangs).
            with anyio.move_on_after(self._policy.health_timeout) as one_try:
                try:
                    healthy = bool(await check(server))
                except Exception as exc:
                    # A probe that cannot connect fails, as a probe does; it is tried again.
                    last_error = f" (last try: {type(exc).__name__})"
            if one_try.cancelled_caught:
                last_error = f" (last try: no answer in {self._policy.health_timeout:g} s)"
            if healthy:
                return RebuildOutcome(
                    server_id, True, OutcomeKind.OK, server=server, submitted=True
                )
            left = deadline - anyio.current_time()
            if left <= 0:
                break
            await anyio.sleep(min(self._policy.health_interval, left))
        return RebuildOutcome(
            server_id,
            False,
            OutcomeKind.UNHEALTHY,
            server=server,
            submitted=True,
            reason=f"the health check did not pass within {warmup:g} s{last_error}",
        )

    async def _checkpoint(self, scheduler: RolloutScheduler) -> None:
        """Pause at a due checkpoint until its callback answers (or for the delay)."""
        callback = self._policy.on_checkpoint
        if callback is None:
            await anyio.sleep(self._policy.checkpoint_delay)
            go_on = True
        else:
            try:
                go_on = bool(await callback(scheduler.progress()))
            except Exception as exc:
                # The caller's own bug: stop the run (in-flight ones too) and raise it as it is.
                self._fail_with(exc)
                return
        fraction = scheduler.state.checkpoint_due
        scheduler.resolve_checkpoint(go_on)
        if self._journal is not None and fraction is not None:
            # Before any server past the checkpoint starts: a resume does not ask again.
            await self._journal.rollout(scheduler.state, CheckpointAnswered(fraction, go_on))

    # -- rolling back ----------------------------------------------------------------------

    async def _roll_back(self, scheduler: RolloutScheduler) -> None:
        """Rebuild back every server this run rebuilt (or may have), as paced as the rollout;
        a server whose rebuild back a journal recorded as ended is not rebuilt back again."""
        candidates = [
            server_id
            for server_id in self._index
            if (outcome := self.report.outcomes.get(server_id)) is not None and outcome.submitted
        ]
        scheduler.begin_rollback(len(candidates))
        _telemetry.rollout_progress(scheduler.state)
        if self._journal is not None:
            await self._journal.rollout(scheduler.state)
        restored = self._restored
        limiter = anyio.CapacityLimiter(scheduler.width)
        async with anyio.create_task_group() as group:
            self._group = group
            for server_id in candidates:
                done = restored.rollbacks.get(server_id)
                if done is None:
                    group.start_soon(self._roll_back_one, scheduler, server_id, limiter)
                    continue
                if server_id in restored.rollback_sent:
                    self.report.rollback_submitted.add(server_id)
                scheduler.rolled_back()
                self._record(done)

    async def _roll_back_one(
        self, scheduler: RolloutScheduler, server_id: str, limiter: anyio.CapacityLimiter
    ) -> None:
        forward = self.report.outcomes[server_id]
        reason = scheduler.state.stopped_reason
        async with limiter:
            with _telemetry.rollback(server_id, outcome_kind) as traced:
                try:
                    before = self._befores.get(server_id)
                    if before is None and self._journal is not None:
                        before = self._journal.before_of(server_id)
                    if before is None:
                        raise InvalidRequest(
                            f"server {server_id}'s state before the run is unknown"
                        )
                    back = restore_request(before, self._requests[server_id])
                    # The state to return from is read anew: the forward rebuild changed it.
                    server = await self._run_back(
                        server_id,
                        back,
                        None,
                        lambda sent: self._rollback_submitted(server_id, sent),
                    )
                except EcsError as error:
                    outcome = RebuildOutcome(
                        server_id,
                        False,
                        OutcomeKind.ROLLBACK_FAILED,
                        server=forward.server,
                        error=error,
                        submitted=True,
                        reason=(
                            f"rebuilding it back failed ({type(error).__name__}) after: {reason}"
                        ),
                    )
                else:
                    outcome = RebuildOutcome(
                        server_id,
                        False,
                        OutcomeKind.ROLLED_BACK,
                        server=server,
                        submitted=True,
                        reason=f"rebuilt back to image {back.image_ref}: {reason}",
                    )
                traced.ended(outcome.kind.value, outcome.error)
        scheduler.rolled_back()
        await self._land([outcome], rollback=True)

    # -- the transitions -------------------------------------------------------------------

    def _started(self, server_id: str) -> None:
        logger.debug("rollout: starting %s", server_id, extra={"server_id": server_id})

    def _submitted(self, server_id: str, submitted: bool) -> None:
        if submitted:
            self.report.submitted.add(server_id)
        else:
            self.report.submitted.discard(server_id)

    def _rollback_submitted(self, server_id: str, submitted: bool) -> None:
        if submitted:
            self.report.rollback_submitted.add(server_id)
        else:
            self.report.rollback_submitted.discard(server_id)

    async def _finished(self, scheduler: RolloutScheduler, outcome: RebuildOutcome) -> None:
        scheduler.finished(outcome.server_id, ok=outcome.ok, submitted=outcome.submitted)
        # Journaled in the order the scheduler counted them (nothing awaited in between), so
        # that a later run counts them in the same order.
        await self._land([outcome])
        self._wake.set()

    async def _skip_unstarted(self, scheduler: RolloutScheduler) -> None:
        reason = scheduler.state.stopped_reason
        skipped = [
            RebuildOutcome(server_id, False, OutcomeKind.SKIPPED, reason=f"not started: {reason}")
            for server_id in scheduler.never_started
            if server_id not in self.report.outcomes  # a journal's are reported already
        ]
        _telemetry.skipped(len(skipped))
        await self._land(skipped)

    async def _land(self, outcomes: list[RebuildOutcome], *, rollback: bool = False) -> None:
        """Outcomes journaled (when a journal is kept), then recorded: an outcome the caller
        sees is one a crash cannot lose."""
        if self._journal is not None and outcomes:
            state = self.scheduler.state if self._rolls and self.scheduler else None
            await self._journal.record(outcomes, rollback=rollback, state=state)
        for outcome in outcomes:
            self._record(outcome)

    def _record(self, outcome: RebuildOutcome) -> None:
        self._results[self._index[outcome.server_id]] = outcome
        self.report.outcomes[outcome.server_id] = outcome
        if self._on_outcome is not None and not self._callback_errors:
            try:
                self._on_outcome(outcome)
            except Exception as exc:
                # The caller's own bug: stop the run and raise it as it is, once.
                self._fail_with(exc)

    def _fail_with(self, error: Exception) -> None:
        self._callback_errors.append(error)
        if self._group is not None:
            self._group.cancel_scope.cancel()


async def plan_bulk(
    targets: Sequence[tuple[str, RebuildRequest | None]],
    policy: RolloutPolicy,
    *,
    check_request: Callable[[RebuildRequest], Awaitable[object]],
    read_state: Callable[[str], Awaitable[Server | None]],
    concurrency: int,
) -> RolloutPlan:
    """What a run of ``targets`` under ``policy`` would do, sending no rebuild: every request
    is checked (``check_request`` raises on bad input), and, for skip-matching, every server
    is read (``read_state``: None for a server that cannot be found)."""
    requests: dict[str, RebuildRequest] = {}
    for server_id, request in targets:
        if request is None:
            raise InvalidRequest(f"no RebuildRequest given for server {server_id!r}")
        await check_request(request)
        requests.setdefault(server_id, request)
    skipped: list[str] = []
    if policy.skip_matching:
        for server_id, request in requests.items():
            state = await read_state(server_id)
            if state is not None and matches(state, request):
                skipped.append(server_id)
    to_run = [server_id for server_id in requests if server_id not in skipped]
    return plan_rollout(
        policy,
        to_run,
        {server_id: requests[server_id] for server_id in to_run},
        concurrency=concurrency,
        skipped=skipped,
    )


async def run_bulk(
    targets: Sequence[tuple[str, RebuildRequest | None]],
    run_one: RunOne,
    *,
    concurrency: int,
    report: BulkReport,
    on_outcome: OutcomeCallback | None = None,
    policy: RolloutPolicy | None = None,
    read_before: ReadBefore | None = None,
    roll_back_one: RunOne | None = None,
    journal: RunJournal | None = None,
    continue_stopped: bool = False,
) -> list[RebuildOutcome]:
    """Run ``run_one`` for every target as ``policy`` allows; outcomes in order.

    With a ``journal``, every outcome and every rollout decision is recorded there, and what
    it recorded before is gone on from: outcomes reported as they are, the rollout's state
    restored, rebuilds in flight continued (``run_one`` continues them; ``roll_back_one``,
    the rebuilds back). ``continue_stopped`` continues a rollout that stopped.
    """
    run = BulkRun(
        targets,
        run_one,
        concurrency=concurrency,
        report=report,
        on_outcome=on_outcome,
        policy=policy,
        read_before=read_before,
        roll_back_one=roll_back_one,
        journal=journal,
        continue_stopped=continue_stopped,
    )
    # One span per run (journaled or not), with its counts and its rollout's phases.
    with _telemetry.fleet(report):
        return await run.run()
