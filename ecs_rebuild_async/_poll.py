"""Waiting for rebuilds: one wait's loop, and the poller that all waits of a client share.

Many waits in one client are served by one ``GET /servers/detail?changes-since=...`` per tick
(every page), fanned out to the waiters, instead of one GET per server per tick. What a listing
proves about each server, and where the next one starts, is decided by the pure rules of
:mod:`._coverage`; a server whose absence proves nothing is read on its own (those reads run
side by side). There is no background task: the waiter whose turn it is performs the tick, and
the others read its results. Cancelling any waiter (its deadline, or the caller) therefore
leaves nothing running. Every tick moves each server it served to its next due time, and the
waiter that ticks always yields to the event loop before it ticks, so no service answer (no
``Date``, an empty listing, a paging fault) can make the poller spin.

A tick wakes only the waits whose server it showed changed: the others sleep on their own
server's event, so that a tick of a fleet of 10,000 waits costs the servers that changed, not
10,000 task switches. The waiter that leads keeps ticking until its own server changes; when it
leaves (its answer, its deadline, a cancellation), it wakes one sleeping waiter, which leads
from then on.

A read that fails for one server alone (an unreadable record, another server's body) is that
server's observation: its waits raise the typed error, and no other wait sees it.

This module takes callables, not the client: ``FetchOne`` reads one server (None when it is
gone), ``ListChanged`` lists the servers changed since a service time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import cast

import anyio
import anyio.lowlevel
import attrs

from . import _telemetry
from ._coverage import Action, Listing, decide, next_bound, plan_since
from ._errors import (
    BadRequest,
    EcsError,
    Forbidden,
    NotFound,
    RateLimited,
    RebuildTimeout,
    ResponseError,
    ServerError,
    TransportError,
)
from ._lifecycle import Phase, RebuildTracker, Verdict
from ._models import RebuildEvent, Server
from ._settings import ClientSettings

__all__ = ["FetchOne", "FleetPoller", "ListChanged", "Observation", "wait_for_rebuild"]

logger = logging.getLogger("ecs_rebuild_async")

# A tick that fails with one of these (after the session's own retries) is tried again at the
# next interval: the tick serves every wait, so its failure is no one server's outcome, and
# each wait's deadline still bounds the waiting.
_TRANSIENT = (ServerError, RateLimited, TransportError)
# A listing refused with one of these is not offered by this service (or to this user): the
# poller reads servers one by one from then on.
_LISTING_REFUSED = (BadRequest, Forbidden, NotFound)
# Listings that could not be read (ResponseError) this many times in a row: one by one too.
_LISTING_FAILURES_TOLERATED = 3
# Reads of single servers in flight at once within one tick (the session bounds the total).
_READS_AT_ONCE = 32
# A wait whose reads look done without proof asks the instance actions at most this often.
_PROOF_EVERY = 2.0


@attrs.frozen
class Observation:
    """One read of one server: the server, or None when the service says it is gone, or the
    typed error of a read that failed for this server alone."""

    server: Server | None
    error: EcsError | None = None


FetchOne = Callable[[str], Awaitable[Server | None]]
#: (changes-since service time or None for every server, the watched ids) -> the complete
#: listing, for those ids
ListChanged = Callable[[datetime | None, Collection[str]], Awaitable[Listing]]
EventCallback = Callable[[RebuildEvent], object]
#: Whether the instance actions prove the tracker's rebuild finished (see the rule).
ProveFinished = Callable[[RebuildTracker], Awaitable[bool]]


def _fingerprint(observation: Observation) -> tuple[object, ...]:
    if observation.error is not None:
        return ("error", id(observation.error))
    server = observation.server
    if server is None:
        return ("gone",)
    return (server.status, server.task_state, server.vm_state, server.updated, server.progress)


class _Watch:
    """One server watched by one or more waits."""

    __slots__ = (
        "covered",
        "generation",
        "interval",
        "latest",
        "next_due",
        "seen_at",
        "server_id",
        "since",
        "sleepers",
        "waiters",
        "wakeup",
    )

    def __init__(
        self, server_id: str, since: datetime | None, now: float, first_due: float
    ) -> None:
        self.server_id = server_id
        self.since = since  # service time from which a listing must show this server
        self.covered = False  # shown by a listing, or read on its own, since registration
        self.seen_at = now  # local time it was last shown or read
        self.generation = 0
        self.latest: Observation | None = None
        self.next_due = first_due
        self.interval: float | None = None
        self.waiters = 0
        self.sleepers = 0  # waiters asleep on ``wakeup`` right now
        # What they sleep on, made when the first one falls asleep: on asyncio, a bare future
        # each (an anyio Event holds an asyncio Event and its deque, about 1 KB, and a fleet
        # holds one per server in flight); on trio, an anyio Event.
        self.wakeup: list[asyncio.Future[None]] | anyio.Event | None = None

    def offer(self, observation: Observation, now: float) -> None:
        self.covered = True
        self.seen_at = now
        if self.latest is None or _fingerprint(self.latest) != _fingerprint(observation):
            self.latest = observation
            self.generation += 1
            self.wake()

    def wake(self) -> None:
        wakeup = self.wakeup
        if wakeup is None:
            return
        self.wakeup = None  # the next sleep makes a new one
        if isinstance(wakeup, list):
            for future in wakeup:
                if not future.done():
                    future.set_result(None)
        else:
            wakeup.set()

    def fall_asleep(self) -> Awaitable[None]:
        """What one waiter awaits until :meth:`wake` (or a cancellation); :meth:`woke` after.

        On asyncio the future itself, awaited without a coroutine around it (a fleet holds one
        sleeping waiter per server in flight); on trio the anyio Event's ``wait()``.
        """
        self.sleepers += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio
            event = self.wakeup
            if not isinstance(event, anyio.Event):
                event = self.wakeup = anyio.Event()
            return event.wait()
        future: asyncio.Future[None] = loop.create_future()
        futures = self.wakeup
        if not isinstance(futures, list):
            futures = self.wakeup = []
        futures.append(future)
        return future

    def woke(self, sleep: Awaitable[None]) -> None:
        """After awaiting what :meth:`fall_asleep` gave, woken or cancelled."""
        self.sleepers -= 1
        futures = self.wakeup
        if isinstance(futures, list) and any(f is sleep for f in futures):
            # Cancelled before any wake: the next wake has nothing to do with it.
            futures.remove(cast("asyncio.Future[None]", sleep))
            if not futures:
                self.wakeup = None


class FleetPoller:
    """Serves the observations of every wait in flight on one client."""

    def __init__(
        self, fetch_one: FetchOne, list_changed: ListChanged, settings: ClientSettings
    ) -> None:
        self._fetch_one = fetch_one
        self._list_changed = list_changed
        self._settings = settings
        self._watches: dict[str, _Watch] = {}
        self._leading = False  # a waiter is ticking (it leads until its own server changes)
        # The watches with a waiter asleep, in the order they fell asleep: the one to wake
        # when the leader leaves is found without a scan of every watch.
        self._sleeping: dict[_Watch, None] = {}
        # While the leader sleeps until the next tick: when that sleep ends, and what cuts it
        # short (a new wait due sooner).
        self._sleep_ends: float | None = None
        self._rescheduled: anyio.Event | None = None
        # The service time the next listing must look from, and the local time it was set.
        self._bound: datetime | None = None
        self._bound_at = 0.0
        self._listing_supported = True
        self._listing_failures = 0
        self.ticks = 0
        self.listings = 0
        self.single_reads = 0

    def register(self, server_id: str, since: datetime | None) -> _Watch:
        """Register interest in one server; every call needs its :meth:`unregister`."""
        existing = self._watches.get(server_id)
        if existing is None:
            now = anyio.current_time()
            first = now + self._settings.poll_first_delay
            existing = self._watches[server_id] = _Watch(server_id, since, now, first)
            if (
                self._rescheduled is not None
                and self._sleep_ends is not None
                and first < self._sleep_ends
            ):
                # The leader sleeps until a later tick (the others' grown intervals): this
                # server's first look is due sooner, so that sleep is cut short.
                self._sleep_ends = None
                self._rescheduled.set()
        existing.waiters += 1
        return existing

    def unregister(self, watch: _Watch) -> None:
        watch.waiters -= 1
        if watch.waiters == 0 and self._watches.get(watch.server_id) is watch:
            del self._watches[watch.server_id]

    async def next_observation(self, watch: _Watch, seen_generation: int) -> Observation:
        """The next observation of ``watch`` newer than ``seen_generation``.

        One waiter at a time performs the ticks (it leads while ``_leading`` is set); the
        others sleep until a tick changes their own server. A leader that is cancelled still
        ends its tick; whoever leaves without leading, or stops leading, wakes a sleeper if no
        one leads, so that a tick is always coming while anyone waits.
        """
        try:
            while not (watch.generation > seen_generation and watch.latest is not None):
                if not self._leading:
                    await self._lead(watch, seen_generation)
                    continue
                # Asleep until a tick changes this server, or the leader leaves. Inline, not a
                # coroutine of its own: a fleet holds one such frame per server in flight.
                self._sleeping[watch] = None
                sleep = watch.fall_asleep()
                try:
                    await sleep
                finally:
                    watch.woke(sleep)
                    if watch.sleepers == 0:
                        self._sleeping.pop(watch, None)
            return watch.latest
        finally:
            if not self._leading:
                self._wake_a_leader()

    async def _lead(self, watch: _Watch, seen_generation: int) -> None:
        self._leading = True
        try:
            while not (watch.generation > seen_generation and watch.latest is not None):
                try:
                    await self._sleep_until_due()
                    await self._tick()
                except _TRANSIENT as exc:
                    logger.warning("polling failed (%s); trying again at the next tick", exc)
                    for pending in list(self._watches.values()):
                        self._advance(pending)
        finally:
            self._leading = False

    def _wake_a_leader(self) -> None:
        """No one leads: wake the waiters of one sleeping watch; the first to run leads. (A
        sleeper woken so that is cancelled before it runs comes back here on its way out.)"""
        for sleeping in self._sleeping:
            sleeping.wake()
            return

    async def _sleep_until_due(self) -> None:
        # Always a checkpoint, even when a server is already due: a tick that answered at once
        # (an in-process service, a tick with nothing to do) never keeps the event loop.
        while True:
            now = anyio.current_time()
            due = min((w.next_due for w in self._watches.values()), default=now)
            if due <= now:
                await anyio.lowlevel.checkpoint()
                return
            rescheduled = self._rescheduled = anyio.Event()
            self._sleep_ends = due
            try:
                with anyio.move_on_after(due - now):
                    await rescheduled.wait()
            finally:
                self._sleep_ends = None
            if not rescheduled.is_set():
                return

    def _advance(self, watch: _Watch) -> None:
        settings = self._settings
        interval = (
            settings.poll_interval
            if watch.interval is None
            else min(settings.poll_interval_max, watch.interval * settings.poll_growth)
        )
        watch.interval = interval
        jitter = 1.0 + random.uniform(-settings.poll_jitter, settings.poll_jitter)
        watch.next_due = anyio.current_time() + interval * jitter

    def _advance_listed(self, watch: _Watch) -> None:
        """The next tick for a watch the listing serves: the fleet's interval, if set, and
        never later than one server's own polls would come (``poll_interval_max``)."""
        settings = self._settings
        if settings.fleet_poll_interval is None:
            self._advance(watch)
        else:
            interval = min(settings.fleet_poll_interval, settings.poll_interval_max)
            watch.next_due = anyio.current_time() + interval

    async def _tick(self) -> None:
        self.ticks += 1
        watches = list(self._watches.values())
        if not watches:
            return
        now = anyio.current_time()
        due = [w for w in watches if w.next_due <= now + 0.001]
        if not due:
            due = [min(watches, key=lambda w: w.next_due)]
        alone: list[_Watch] | None = None
        if self._listing_supported and len(watches) >= self._settings.fleet_threshold:
            alone = await self._tick_by_listing(watches)
        # Without a listing (one wait, none offered, or this one failed): the due servers.
        await self._read_alone(due if alone is None else alone)

    async def _read_alone(self, watches: list[_Watch]) -> None:
        if len(watches) == 1:
            await self._read_one(watches[0])
            return
        limiter = anyio.CapacityLimiter(_READS_AT_ONCE)

        async def read(watch: _Watch) -> None:
            async with limiter:
                await self._read_one(watch)

        async with anyio.create_task_group() as group:
            for watch in watches:
                group.start_soon(read, watch)

    async def _read_one(self, watch: _Watch) -> None:
        self.single_reads += 1
        try:
            with _telemetry.read_for(self, watch.server_id):
                server = await self._fetch_one(watch.server_id)
        except _TRANSIENT as exc:
            # After the session's own retries: the next tick tries again, within the deadline.
            logger.info("reading server %s failed (%s); trying again", watch.server_id, exc)
        except EcsError as exc:
            # This server's answer (an unreadable record, another server's body): its own
            # waits raise it, nobody else's.
            watch.offer(Observation(None, error=exc), anyio.current_time())
        else:
            watch.offer(Observation(server), anyio.current_time())
        self._advance(watch)

    async def _tick_by_listing(self, watches: list[_Watch]) -> list[_Watch] | None:
        """List, offer what the listing shows; the servers to read on their own, or None when
        the listing failed (and proves nothing)."""
        margin = timedelta(seconds=self._settings.changes_since_margin)
        since = plan_since(self._bound, [w.since for w in watches if not w.covered], margin)
        try:
            with _telemetry.listing(self, watches):
                listing = await self._list_changed(since, self._watches.keys())
        except _LISTING_REFUSED as exc:
            logger.warning("listing servers failed (%s); reading them one by one", exc)
            self._listing_supported = False
            return None
        except ResponseError as exc:
            self._listing_failures += 1
            if self._listing_failures >= _LISTING_FAILURES_TOLERATED:
                self._listing_supported = False
            logger.warning(
                "the server list could not be read (%s); reading servers one by one%s",
                exc,
                " from now on" if not self._listing_supported else " this time",
            )
            return None
        self._listing_failures = 0
        self.listings += 1
        now = anyio.current_time()
        bound = next_bound(listing, previous=self._bound, elapsed=now - self._bound_at)
        if bound != self._bound:
            self._bound, self._bound_at = bound, now
        recheck_after = self._settings.listing_recheck_after
        alone: list[_Watch] = []
        for watch in watches:
            action = decide(
                listing,
                watch.server_id,
                covered=watch.covered,
                recheck_due=now - watch.seen_at >= recheck_after,
            )
            if action is Action.OFFER:
                watch.offer(Observation(listing.servers[watch.server_id]), now)
                self._advance_listed(watch)
            elif action is Action.READ_ALONE:
                alone.append(watch)
            else:
                self._advance_listed(watch)
        return alone


class _Wait:
    """What one wait has learnt so far. A wait in flight is mostly this object: a fleet holds
    one per server, so its state is slots on one object rather than variables shared by
    closures (a cell each), which the garbage collector would walk too."""

    __slots__ = (
        "keep",
        "last_phase",
        "last_proof_at",
        "last_seen",
        "last_verdict",
        "on_event",
        "started",
        "tracker",
        "unknown_logged",
    )

    def __init__(
        self,
        tracker: RebuildTracker,
        on_event: EventCallback | None,
        keep: Callable[[RebuildTracker], object] | None,
    ) -> None:
        self.tracker = tracker
        self.on_event = on_event
        self.keep = keep
        self.started = anyio.current_time()
        self.last_seen: Server | None = None
        self.last_verdict: Verdict | None = None
        self.unknown_logged: set[str] | None = None  # made when first needed: most never are
        self.last_phase: Phase | None = None
        self.last_proof_at: float | None = None

    def wants_proof(self, *, final: bool = False) -> bool:
        """The last read looks done but no rule proves it is from after the rebuild, and the
        instance actions were not asked in the last few seconds (``final``: however recently).
        (Checked before each ask, so that an observation that needs none makes no coroutine:
        this runs for every one.)"""
        verdict = self.last_verdict
        if verdict is None or not verdict.unproven or self.last_seen is None:
            return False
        if final:
            return True
        last = self.last_proof_at
        return last is None or anyio.current_time() - last >= _PROOF_EVERY

    async def look_for_proof(self, prove: ProveFinished) -> bool:
        """Ask the instance actions (when :meth:`wants_proof`); True once they prove it done."""
        seen = self.last_seen
        assert seen is not None  # wants_proof holds
        self.last_proof_at = anyio.current_time()
        try:
            finished = await prove(self.tracker)
        except EcsError as exc:  # a proof looked for, not this wait's failure
            logger.info("server %s: instance actions unreadable (%s)", seen.id, exc)
            return False
        if not finished:
            return False
        self.tracker = self.tracker.knowing_it_finished()
        return self.judge(Observation(seen))

    def judge(self, observation: Observation) -> bool:
        """Take one observation; True once the rebuild is proven done (raises if it failed)."""
        if observation.error is not None:
            raise observation.error
        if observation.server is None:
            self.tracker, verdict = self.tracker.observe_missing()
        else:
            self.last_seen = observation.server
            self.tracker, verdict = self.tracker.observe(observation.server)
        if self.keep is not None:
            self.keep(self.tracker)
        if not verdict.ignored:
            self.last_verdict = verdict
        self._report(observation.server, verdict)
        if verdict.error is not None:
            raise verdict.error
        return verdict.phase is Phase.DONE and self.last_seen is not None

    def _report(self, server: Server | None, verdict: Verdict) -> None:
        if verdict.phase is not Phase.PENDING:
            _telemetry.phase(verdict.phase.value)
        if verdict.reason.startswith("unknown status"):
            logged = self.unknown_logged
            if logged is None or verdict.reason not in logged:
                self.unknown_logged = {*(logged or ()), verdict.reason}
                server_id = self.tracker.server_id
                logger.info("server %s: %s; still waiting", server_id, verdict.reason)
        on_event = self.on_event
        if on_event is None or verdict.ignored:
            return
        if server is None and verdict.phase is self.last_phase:
            return
        self.last_phase = verdict.phase
        elapsed = anyio.current_time() - self.started
        if server is None:  # gone: nothing to show but the phase
            on_event(RebuildEvent(self.tracker.server_id, verdict.phase.value, elapsed=elapsed))
        else:
            on_event(self.tracker.event(server, elapsed))

    def timed_out(self, timeout: float) -> RebuildTimeout:
        last_seen = self.last_seen
        server_id = self.tracker.server_id
        status = f"{last_seen.status}/{last_seen.task_state}" if last_seen else "never read"
        if self.last_verdict is not None and self.last_verdict.unproven:
            # Saying "did not finish" would be false as often as true: say what is known.
            return RebuildTimeout(
                f"server {server_id} looks rebuilt ({status}), but within {timeout:g}s "
                "nothing proved the read is from after this rebuild (a rebuild to the image it "
                "already ran that ends within the second it was accepted leaves no trace)",
                server=last_seen,
            )
        return RebuildTimeout(
            f"server {server_id} did not finish rebuilding within {timeout:g}s "
            f"(last seen: {status})",
            server=last_seen,
        )


async def wait_for_rebuild(
    tracker: RebuildTracker,
    *,
    poller: FleetPoller,
    fetch_one: FetchOne,
    timeout: float,
    on_event: EventCallback | None = None,
    keep: Callable[[RebuildTracker], object] | None = None,
    stated_timeout: float | None = None,
    prove: ProveFinished | None = None,
) -> Server:
    """Wait until ``tracker`` proves the rebuild done (the final Server) or failed (raises).

    ``timeout`` bounds the whole wait, every request in it included. At the deadline one last
    read is made, with a short budget of its own, before RebuildTimeout. ``keep`` receives the
    tracker first and after each observation, so that what was learnt outlives a timeout or
    cancellation. ``stated_timeout`` is the timeout the caller gave, named in RebuildTimeout's
    message, when the wait has only what is left of it.
    """
    if keep is not None:
        keep(tracker)
    wait = _Wait(tracker, on_event, keep)
    server_id, accepted_at = tracker.server_id, tracker.accepted_at
    # From here on the wait's tracker is ``wait.tracker``: this frame, alive for the whole
    # wait, does not hold the first one (and the server read before the rebuild with it).
    del tracker
    with _telemetry.waiting(poller, server_id):
        watch = poller.register(server_id, accepted_at)
        try:
            seen = 0
            with anyio.move_on_after(timeout):
                while True:
                    observation = await poller.next_observation(watch, seen)
                    seen = watch.generation
                    done = wait.judge(observation)
                    if not done and prove is not None and wait.wants_proof():
                        done = await wait.look_for_proof(prove)
                    if done:
                        assert wait.last_seen is not None  # judge says done only once seen
                        return wait.last_seen
        finally:
            poller.unregister(watch)
        # The deadline passed: one last read, bounded, before giving up; and when that read
        # looks done without proof (no tick came in time: a slow listing, say), one last look
        # at the instance actions within the same budget.
        final_budget = max(1.0, min(10.0, timeout * 0.1)) if math.isfinite(timeout) else 10.0
        with anyio.move_on_after(final_budget):
            done = wait.judge(Observation(await fetch_one(server_id)))
            if not done and prove is not None and wait.wants_proof(final=True):
                done = await wait.look_for_proof(prove)
            if done:
                assert wait.last_seen is not None
                return wait.last_seen
        raise wait.timed_out(timeout if stated_timeout is None else stated_timeout)
