"""Durable bulk runs: the bulk runner's side of the journal.

Before each POST the intent is written (server, attempt, the service's time before sending);
after it, the acceptance (request id, service time) or the proof that it was not carried out,
or that its answer was unclear; at the end the outcome. A rollout's own state is written as it
changes: the policy with the run, then its decisions (see ``_bulk.RunJournal``). A run opened
again on the same journal (after a crash, a Ctrl-C, a stop) reports finished servers from the
journal, restores the rollout's state, waits for the accepted rebuilds (and rebuilds back),
reconciles the ones whose POST may have been on the wire (the rules of a lost answer), and
starts the rest. Takes callables, not the client.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import anyio
import attrs

from ._bulk import Restored
from ._errors import (
    EcsError,
    InvalidRequest,
    JournalInUse,
    JournalMismatch,
    RebuildOutcomeUnknown,
    ServerError,
    ServiceError,
    TransportError,
)
from ._journal import (
    BEGAN,
    CHECKPOINT,
    ENDED,
    FORWARD,
    PHASE,
    RESTARTED,
    ROLLBACK,
    Event,
    EventKind,
    JournalState,
    JournalStore,
    Progress,
    RequestRecord,
    RolloutRecord,
    RunRecord,
    ServerRecord,
    SqliteJournal,
    Stage,
    before_record,
    fingerprint,
    never_started,
    new_salt,
    outcome_from_record,
    outcome_to_record,
    read_journal,
    replay,
    request_from_body,
    server_from_before,
    strip_secrets,
)
from ._models import UNSET, RebuildOutcome, RebuildRequest, Server, Unset
from ._rebuild import Accepted, Operations, reconcile_in_doubt
from ._rollout import (
    CheckpointAnswered,
    Finished,
    HistoryItem,
    Restarted,
    RolloutPolicy,
    RolloutState,
    describe_policy,
    policy_differences,
    policy_from_description,
)
from ._serde import converter, request_to_wire
from ._version import __version__

__all__ = [
    "DurableRun",
    "audit",
    "JournalStore",
    "PostWithId",
    "described",
    "journal_at",
    "journaled_run",
    "open_durable",
    "recorded_policy",
]

logger = logging.getLogger("ecs_rebuild_async")

#: POST a rebuild: (202 body's Server, the service's Date, the request id).
PostWithId = Callable[
    [str, RebuildRequest], Awaitable[tuple[Server | None, datetime | None, str | None]]
]
#: Rebuild one server and wait for it (the client's own flow), given its state before, the
#: operations to send with (journaled), and what to call once the service accepted it.
Rebuild = Callable[
    [
        str,
        RebuildRequest,
        Server,
        Callable[[bool], None],
        Operations,
        Callable[[Accepted], Awaitable[None]],
    ],
    Awaitable[Server],
]
#: Wait for an accepted rebuild to be proven finished (the server's state before, if known).
Wait = Callable[[str, RebuildRequest, Server | None, Accepted], Awaitable[Server]]

#: Seconds between heartbeats of the driving process (see ``ownership.STALE_AFTER``).
HEARTBEAT_INTERVAL = 5.0

_NO_REQUEST = "none"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _secrets_of(request: RebuildRequest | None) -> list[str]:
    if request is None:
        return []
    found = [request.admin_pass] if isinstance(request.admin_pass, str) else []
    encoded = request.encoded_user_data()
    if isinstance(encoded, str):
        found.append(encoded)
    if isinstance(request.user_data, str):
        found.append(request.user_data)
    return found


def _fingerprints(
    salt: str, targets: Sequence[tuple[str, RebuildRequest | None]]
) -> tuple[list[str], dict[str, RequestRecord]]:
    """Each target's request fingerprint, and one stored record per distinct request."""
    cache: dict[Any, str] = {}
    by_object: dict[int, str] = {}
    records: dict[str, RequestRecord] = {}
    prints: list[str] = []
    for _, request in targets:
        if request is None:
            prints.append(_NO_REQUEST)
            continue
        known = by_object.get(id(request))
        if known is None:
            wire = request_to_wire(request)
            known = fingerprint(salt, wire, cache=cache)
            by_object[id(request)] = known
            if known not in records:
                body, removed = strip_secrets(wire)
                records[known] = RequestRecord(known, body, removed)
        prints.append(known)
    return prints, records


def described(policy: RolloutPolicy | None) -> dict[str, Any] | None:
    """What a journal records of a policy (None: a plain run; the default policy is one)."""
    if policy is None or policy == RolloutPolicy():
        return None
    return describe_policy(policy)


def _check_same_policy(
    recorded: Mapping[str, Any] | None, given: Mapping[str, Any] | None, name: str
) -> None:
    if recorded is None and given is None:
        return
    if recorded is None:
        raise JournalMismatch(
            f"the journal {name} records a run without a rollout policy, and this call gives "
            "one; use a new journal file for a new run"
        )
    if given is None:
        raise JournalMismatch(
            f"the journal {name} records a rollout: give its policy again (resume() rebuilds "
            "a policy without a health check or on_checkpoint from the journal)"
        )
    differences = policy_differences(recorded, given)
    if differences:
        raise JournalMismatch(
            f"the journal {name} records another rollout policy ({'; '.join(differences)}); "
            "a run goes on under the policy it began with (a new run needs a new journal file)"
        )


def recorded_policy(run: RunRecord, name: str) -> RolloutPolicy | None:
    """The policy a run recorded, when it needs no code (a health check, an on_checkpoint)."""
    if run.policy is None:
        return None
    try:
        return policy_from_description(run.policy)
    except InvalidRequest as exc:
        raise JournalMismatch(
            f"the journal {name} records a rollout whose policy has code ({exc.field}), which "
            "a journal does not store: give the same policy again (resume(..., policy=...))"
        ) from None


def _check_same_run(
    state: JournalState,
    targets: Sequence[tuple[str, RebuildRequest | None]],
    prints: Sequence[str],
    endpoint: str | None,
    name: str,
    policy: Mapping[str, Any] | None,
) -> None:
    run = state.run
    if run.endpoint and endpoint and run.endpoint.rstrip("/") != endpoint.rstrip("/"):
        raise JournalMismatch(
            f"the journal {name} records a run on another endpoint ({run.endpoint})"
        )
    _check_same_policy(run.policy, policy, name)
    recorded = {s.server_id: s.fingerprint for s in state.servers}
    given = {server_id: fp for (server_id, _), fp in zip(targets, prints, strict=True)}
    if recorded.keys() != given.keys():
        missing = sorted(recorded.keys() - given.keys())
        extra = sorted(given.keys() - recorded.keys())
        raise JournalMismatch(
            f"the journal {name} records a run of {len(recorded)} other servers: "
            f"{len(missing)} of them are not in this call (e.g. {missing[:3]}), "
            f"{len(extra)} servers of this call are not in it (e.g. {extra[:3]}); "
            "use a new journal file for a new run"
        )
    differing = sorted(s for s, fp in given.items() if recorded[s] != fp)
    if differing:
        secret = any(
            state.requests.get(recorded[s], RequestRecord("", {})).secret_fields for s in differing
        )
        hint = (
            " (its adminPass or user_data must be given again, and be the same)" if secret else ""
        )
        raise JournalMismatch(
            f"the journal {name} records another request for {len(differing)} servers "
            f"(e.g. {differing[:3]}){hint}; use a new journal file for a new run"
        )


def journal_at(path: str | os.PathLike[str]) -> JournalStore:
    """The store of a journal file (SQLite)."""
    return SqliteJournal(path)


def journaled_run(
    path: str | os.PathLike[str],
    *,
    admin_pass: str | Unset = UNSET,
    user_data: str | bytes | Unset | None = UNSET,
) -> tuple[list[str | tuple[str, RebuildRequest]], RunRecord]:
    """The servers and requests a journal records, with the secrets given again."""
    state = read_journal(path)
    given = {"adminPass": admin_pass is not UNSET, "user_data": user_data is not UNSET}
    requests: dict[str, RebuildRequest] = {}
    for print_, record in state.requests.items():
        missing = [field for field in record.secret_fields if not given[field]]
        if missing:
            raise JournalMismatch(
                f"the run's request was sent with {' and '.join(missing)}, which the journal "
                "does not store: give it again to resume"
            )
        requests[print_] = request_from_body(
            record.body,
            admin_pass=admin_pass if "adminPass" in record.secret_fields else UNSET,
            user_data=user_data if "user_data" in record.secret_fields else UNSET,
        )
    targets: list[str | tuple[str, RebuildRequest]] = [
        (s.server_id, requests[s.fingerprint]) if s.fingerprint in requests else s.server_id
        for s in state.servers
    ]
    return targets, state.run


async def open_durable(
    store: JournalStore,
    targets: Sequence[tuple[str, RebuildRequest | None]],
    *,
    name: str,
    endpoint: str | None,
    concurrency: int,
    timeout: float | None,
    policy: RolloutPolicy | None = None,
    continue_stopped: bool = False,
) -> DurableRun:
    """Claim the journal and create its run, or check that it records this very run."""
    # A server listed twice is reported invalid by the bulk runner: the run is its first listing.
    first: dict[str, RebuildRequest | None] = {}
    for server_id, request in targets:
        first.setdefault(server_id, request)
    targets = list(first.items())
    state = await store.claim()
    try:
        salt = new_salt() if state is None else state.run.salt
        # scrypt over each distinct secret takes tens of milliseconds: not on the event loop.
        prints, requests = await anyio.to_thread.run_sync(_fingerprints, salt, targets)
        description = described(policy)
        if state is None:
            run = RunRecord(
                run_id=new_salt()[:32],
                created_at=_now(),
                salt=salt,
                endpoint=endpoint,
                library_version=__version__,
                concurrency=concurrency,
                timeout=timeout,
                policy=description,
            )
            servers = [
                ServerRecord(position, server_id, fp)
                for position, ((server_id, _), fp) in enumerate(zip(targets, prints, strict=True))
            ]
            await store.create(run, servers, list(requests.values()))
            state = JournalState(run=run, servers=tuple(servers), requests=requests, events=())
        else:
            _check_same_run(state, targets, prints, endpoint, name, description)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await store.release()
        raise
    secrets = [s for _, request in targets for s in _secrets_of(request)]
    return DurableRun(store, state, secrets=secrets, continue_stopped=continue_stopped)


def _phase_key(state: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a change of phase changes (a record is written when it does)."""
    return (state.get("phase"), state.get("checkpoint_due"), state.get("stopped_reason"))


@attrs.define
class _Attempts:
    """Per server and phase: attempts written so far, and whether an acceptance is recorded."""

    count: int = 0
    accepted_recorded: bool = False


class DurableRun:
    """One journaled run, claimed by this process: the bulk runner's ``RunJournal``.

    A server has up to two phases in a run: FORWARD (its rebuild) and ROLLBACK (its rebuild
    back, when a rollout stops and rolls back); each has its own attempts and outcome.
    ``continue_stopped``: the servers a rollout's stop left unstarted are not reported as
    finished, so that a restarted rollout starts them.
    """

    def __init__(
        self,
        store: JournalStore,
        state: JournalState,
        *,
        secrets: list[str],
        continue_stopped: bool = False,
    ) -> None:
        self.store = store
        self.state = state
        self._progress: dict[str, dict[str, Progress]] = {
            phase: replay(state.events, phase=phase) for phase in (FORWARD, ROLLBACK)
        }
        self._secrets = sorted(set(secrets), key=len, reverse=True)
        self._attempts: dict[tuple[str, str], _Attempts] = {
            (phase, server): _Attempts(p.attempts, p.stage in (Stage.ACCEPTED, Stage.FINISHED))
            for phase, progress in self._progress.items()
            for server, p in progress.items()
        }
        self._continue_stopped = continue_stopped
        rollouts = [e.rollout for e in state.events if e.rollout is not None]
        self._began = bool(rollouts)
        self._last_phase = None if not rollouts else _phase_key(rollouts[-1].state)
        self._befores: dict[str, Server] = {}
        self._phase_of: dict[str, str] = {}
        self._lost: JournalInUse | None = None

    # -- what the journal already says --

    def progress(self, server_id: str, phase: str = FORWARD) -> Progress:
        return self._progress[phase].get(server_id, Progress())

    def stage(self, server_id: str, phase: str = FORWARD) -> Stage:
        return self.progress(server_id, phase).stage

    def not_started(self, server_ids: Sequence[str]) -> list[str]:
        return [s for s in server_ids if self.stage(s) is Stage.NOT_STARTED]

    def restored(self) -> Restored:
        """What earlier drivers of this run recorded, as the bulk runner goes on from it."""
        forward, back = self._progress[FORWARD], self._progress[ROLLBACK]
        outcomes = {
            server: outcome_from_record(server, p.outcome)
            for server, p in forward.items()
            if p.stage is Stage.FINISHED
            and p.outcome is not None
            and not (self._continue_stopped and never_started(p.outcome))
        }
        history: list[HistoryItem] = []
        for event in self.state.events:
            record = event.rollout
            if record is not None and record.change == CHECKPOINT and record.checkpoint is not None:
                history.append(CheckpointAnswered(record.checkpoint, bool(record.go_on)))
            elif record is not None and record.change == RESTARTED:
                history.append(Restarted())
            elif (
                event.kind is EventKind.OUTCOME
                and event.phase == FORWARD
                and event.server_id is not None
                and event.outcome is not None
                and event.outcome.kind != "skipped"  # not started, or already matching
            ):
                history.append(Finished(event.server_id, event.outcome.ok, event.outcome.submitted))
        in_doubt = (Stage.ACCEPTED, Stage.IN_DOUBT)
        return Restored(
            began=self._began,
            outcomes=outcomes,
            history=history,
            in_flight=[
                s.server_id for s in self.state.servers if self.stage(s.server_id) in in_doubt
            ],
            rollbacks={
                server: outcome_from_record(server, p.outcome)
                for server, p in back.items()
                if p.stage is Stage.FINISHED and p.outcome is not None
            },
            rollback_sent=frozenset(
                server for server, p in back.items() if p.accepted or p.stage is Stage.IN_DOUBT
            ),
        )

    def before_of(self, server_id: str) -> Server | None:
        """The server as it was before an earlier driver sent its rebuild (from the journal)."""
        record = self.progress(server_id).before
        return None if record is None else server_from_before(server_id, record)

    # -- writing --

    async def _append(self, events: Sequence[Event], *, shield: bool = False) -> None:
        # Nothing is awaited before the store takes the events: they keep the order in which
        # the runner made its decisions.
        now = _now()
        stamped = [attrs.evolve(event, recorded_at=now) for event in events]
        if shield:
            # Written even if the run is being cancelled: the answer it records is real.
            with anyio.CancelScope(shield=True):
                await self.store.append(stamped)
        else:
            await self.store.append(stamped)

    def _outcome_event(self, outcome: RebuildOutcome, phase: str) -> Event:
        record = outcome_to_record(outcome, secrets=self._secrets)
        old = self._progress[phase].get(outcome.server_id, Progress())
        self._progress[phase][outcome.server_id] = attrs.evolve(
            old, stage=Stage.FINISHED, outcome=record
        )
        return Event(EventKind.OUTCOME, outcome.server_id, outcome=record, phase=phase)

    def _rollout_event(
        self,
        state: RolloutState,
        decision: CheckpointAnswered | Restarted | None = None,
        *,
        ended: bool = False,
    ) -> Event | None:
        data = converter.unstructure(state)
        key = _phase_key(data)
        if isinstance(decision, CheckpointAnswered):
            record = RolloutRecord(
                CHECKPOINT, data, checkpoint=decision.checkpoint, go_on=decision.go_on
            )
        elif isinstance(decision, Restarted):
            record = RolloutRecord(RESTARTED, data)
        elif ended:
            record = RolloutRecord(ENDED, data)
        elif not self._began:
            record = RolloutRecord(BEGAN, data)
        elif key != self._last_phase:
            record = RolloutRecord(PHASE, data)
        else:
            return None
        self._began, self._last_phase = True, key
        return Event(EventKind.ROLLOUT, rollout=record)

    async def record(
        self,
        outcomes: Sequence[RebuildOutcome],
        *,
        rollback: bool = False,
        state: RolloutState | None = None,
    ) -> None:
        """Outcomes, and the rollout's phase when they changed it, in one commit."""
        phase = ROLLBACK if rollback else FORWARD
        events = [self._outcome_event(outcome, phase) for outcome in outcomes]
        change = None if state is None else self._rollout_event(state)
        await self._append([*events, *([change] if change else [])], shield=True)

    async def rollout(
        self,
        state: RolloutState,
        decision: CheckpointAnswered | Restarted | None = None,
        *,
        ended: bool = False,
    ) -> None:
        """The rollout's state, when there is something to say (see ``RunJournal``)."""
        event = self._rollout_event(state, decision, ended=ended)
        if event is not None:
            await self._append([event], shield=True)

    async def _record_accepted(
        self, server_id: str, accepted: Accepted, *, request_id: str | None, detail: str | None
    ) -> None:
        phase = self._phase_of.get(server_id, FORWARD)
        attempts = self._attempts.setdefault((phase, server_id), _Attempts())
        if attempts.accepted_recorded:
            return
        attempts.accepted_recorded = True
        await self._append(
            [
                Event(
                    EventKind.ACCEPTED,
                    server_id,
                    attempt=attempts.count,
                    service_time=accepted.accepted_at,
                    request_id=request_id,
                    detail=detail,
                    phase=phase,
                )
            ],
            shield=True,
        )

    def operations(
        self, base: Operations, post: PostWithId, service_now: Callable[[], datetime | None]
    ) -> Operations:
        # ``service_now`` gives the intent its service-time bound (for the audit record).
        """``base`` with every POST journaled: the intent before, what became of it after."""

        async def journaled_post(
            server_id: str, request: RebuildRequest
        ) -> tuple[Server | None, datetime | None]:
            phase = self._phase_of.get(server_id, FORWARD)
            attempts = self._attempts.setdefault((phase, server_id), _Attempts())
            bound = service_now()
            if bound is None:
                # The intent needs the service's time; one read gives it.
                await base.get_server(server_id)
                bound = service_now()
            attempts.count += 1
            attempt = attempts.count
            before = self._befores.get(server_id)
            await self._append(
                [
                    Event(
                        EventKind.INTENT,
                        server_id,
                        attempt=attempt,
                        service_time=bound,
                        before=None if before is None else before_record(before),
                        phase=phase,
                    )
                ]
            )
            try:
                server, date, request_id = await post(server_id, request)
            except EcsError as exc:
                await self._append(
                    [self._after_failure(server_id, attempt, exc, phase)], shield=True
                )
                raise
            await self._record_accepted(
                server_id, Accepted(server, date), request_id=request_id, detail=None
            )
            return server, date

        return Operations(
            post_rebuild=journaled_post,
            get_server=base.get_server,
            list_actions=base.list_actions,
        )

    def _after_failure(self, server_id: str, attempt: int, exc: EcsError, phase: str) -> Event:
        request_id = getattr(exc, "request_id", None)
        detail = str(exc)
        for secret in self._secrets:
            detail = detail.replace(secret, "***")
        if isinstance(exc, TransportError) and not exc.maybe_sent:
            kind = EventKind.NOT_SENT  # nothing left this machine
        elif isinstance(exc, ServiceError) and not isinstance(exc, ServerError):
            kind = EventKind.NOT_SENT  # a 4xx refusal: the service did not carry it out
        else:
            kind = EventKind.UNCLEAR  # lost, 5xx, an unreadable answer: reconciled later
        return Event(
            kind, server_id, attempt=attempt, request_id=request_id, detail=detail, phase=phase
        )

    # -- running one server --

    async def run_one(
        self,
        server_id: str,
        request: RebuildRequest,
        mark_submitted: Callable[[bool], None],
        *,
        before: Server | None,
        read: Callable[[str], Awaitable[Server]],
        rebuild: Rebuild,
        wait: Wait,
        ops: Operations,
        settle: float,
        rollback: bool = False,
    ) -> Server:
        """Rebuild one server, or back (``rollback``), or continue what an earlier driver
        began: wait for a rebuild it had accepted, reconcile one that may have been on the
        wire. The outcome is the bulk runner's to record (after its health gate)."""
        self._phase_of[server_id] = ROLLBACK if rollback else FORWARD
        return await self._continue(
            server_id, request, mark_submitted, before, read, rebuild, wait, ops, settle
        )

    async def _continue(
        self,
        server_id: str,
        request: RebuildRequest,
        track: Callable[[bool], None],
        before: Server | None,
        read: Callable[[str], Awaitable[Server]],
        rebuild: Rebuild,
        wait: Wait,
        ops: Operations,
        settle: float,
    ) -> Server:
        phase = self._phase_of.get(server_id, FORWARD)
        progress = self.progress(server_id, phase)
        recorded_before = (
            None if progress.before is None else server_from_before(server_id, progress.before)
        )
        if progress.stage is Stage.ACCEPTED:
            track(True)
            logger.info("resuming the wait for %s (accepted before)", server_id)
            accepted = Accepted(None, progress.accepted_at)
            return await wait(server_id, request, recorded_before, accepted)
        if progress.stage is Stage.IN_DOUBT:
            track(True)
            cause = TransportError(
                "the process that sent this rebuild stopped before its answer was recorded"
            )
            self._befores[server_id] = recorded_before or await read(server_id)
            try:
                accepted = await reconcile_in_doubt(
                    ops, server_id, request, before=recorded_before, cause=cause, settle=settle
                )
            except RebuildOutcomeUnknown:
                raise
            except EcsError:
                track(False)  # proven not carried out, and its second sending was refused
                raise
            await self._record_accepted(server_id, accepted, request_id=None, detail="reconciled")
            return await wait(server_id, request, recorded_before, accepted)
        if before is None:
            before = await read(server_id)
        self._befores[server_id] = before

        async def accepted_now(accepted: Accepted) -> None:
            # Recorded by the journaled POST already, unless reconciliation proved it.
            await self._record_accepted(server_id, accepted, request_id=None, detail="reconciled")

        return await rebuild(server_id, request, before, track, ops, accepted_now)

    # -- ownership --

    async def keep_alive(self, interval: float = HEARTBEAT_INTERVAL) -> None:
        """Beat until cancelled; stops quietly (``lost`` is set) if another process took the
        run over."""
        while True:
            await anyio.sleep(interval)
            try:
                await self.store.heartbeat()
            except JournalInUse as exc:
                self._lost = exc
                return

    @property
    def lost(self) -> JournalInUse | None:
        return self._lost

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.store.release()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def audit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A journal's audit record as JSON-ready data: the run, the rollout's recorded states, and
    for every server each request sent (phase, attempt, the service time before it, what
    became of it, its request id and the service's time of the answer), and its outcome (a
    rollback's, when it was rebuilt back). Read without taking the run over."""
    state = read_journal(path)
    run = state.run
    sent: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    outcomes: dict[str, dict[str, dict[str, Any]]] = {}
    recorded: dict[tuple[str, str], int] = {}
    rollout: list[dict[str, Any]] = []
    for event in state.events:
        server = event.server_id
        if event.kind is EventKind.ROLLOUT:
            if event.rollout is not None:
                change = event.rollout
                entry = {"at": _iso(event.recorded_at), "change": change.change, **change.state}
                if change.change == CHECKPOINT:
                    entry.update(checkpoint=change.checkpoint, go_on=change.go_on)
                rollout.append(entry)
            continue
        if server is None:
            continue
        if event.kind is EventKind.OUTCOME and event.outcome is not None:
            record = event.outcome
            recorded[(server, event.phase)] = recorded.get((server, event.phase), 0) + 1
            outcomes.setdefault(server, {})[event.phase] = {
                "phase": event.phase,
                "kind": record.kind,
                "ok": record.ok,
                "submitted": record.submitted,
                "error": record.error_type,
                "message": record.message,
                "status": record.status,
                "image": record.image_id,
                "reason": record.reason,
                "recorded_at": _iso(event.recorded_at),
            }
            continue
        attempts = sent.setdefault(server, {})
        entry = attempts.setdefault(
            (event.phase, event.attempt),
            {
                "phase": event.phase,
                "attempt": event.attempt,
                "result": "in doubt",
                "request_id": None,
            },
        )
        if event.kind is EventKind.INTENT:
            entry.update(intent_at=_iso(event.recorded_at), sent_after=_iso(event.service_time))
            if event.before is not None:
                entry.update(before_status=event.before.status, before_image=event.before.image_id)
        else:
            entry.update(
                result=event.kind.value.replace("_", " "),
                request_id=event.request_id or entry["request_id"],
                detail=event.detail,
            )
            if event.kind is EventKind.ACCEPTED:
                entry["service_time"] = _iso(event.service_time)
    order = {FORWARD: 0, ROLLBACK: 1}
    servers: list[dict[str, Any]] = []
    for s in state.servers:
        phases = outcomes.get(s.server_id, {})
        final = phases.get(ROLLBACK) or phases.get(FORWARD)
        servers.append(
            {
                "server_id": s.server_id,
                "requests": [
                    sent[s.server_id][key]
                    for key in sorted(sent.get(s.server_id, {}), key=lambda k: (order[k[0]], k[1]))
                ],
                "outcome": final,
                "outcomes": [phases[p] for p in (FORWARD, ROLLBACK) if p in phases],
                "outcomes_recorded": max(
                    (n for (server, _), n in recorded.items() if server == s.server_id), default=0
                ),
            }
        )
    counts: dict[str, int] = {}
    finals = [entry["outcome"] for entry in servers if entry["outcome"] is not None]
    for final in finals:
        counts[final["kind"]] = counts.get(final["kind"], 0) + 1
    return {
        "run": {
            "run_id": run.run_id,
            "created_at": _iso(run.created_at),
            "endpoint": run.endpoint,
            "library_version": run.library_version,
            "servers": len(state.servers),
            "finished": len(finals),
            "outcomes": counts,
            "requests_sent": sum(len(a) for a in sent.values()),
            "policy": run.policy,
        },
        "rollout": rollout,
        "servers": servers,
    }
