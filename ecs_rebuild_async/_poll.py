"""Waiting for rebuilds: one wait's loop, and the poller that all waits of a client share.

Many waits in one client are served by one ``GET /servers/detail?changes-since=...`` per tick
(paged), fanned out to the waiters, instead of one GET per server per tick; a server that the
listing should have shown but did not is read on its own. There is no background task: the
waiter whose turn it is performs the tick while holding a lock, and the others read its results.
Cancelling any waiter (its deadline, or the caller) therefore leaves nothing running.

This module takes callables, not the client: ``FetchOne`` reads one server (None when it is
gone), ``ListChanged`` lists the servers changed since a service time.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import anyio
import attrs

from ._errors import BadRequest, RateLimited, RebuildTimeout, ServerError, TransportError
from ._lifecycle import Phase, RebuildTracker, Verdict
from ._models import RebuildEvent, Server
from ._settings import ClientSettings

__all__ = ["FetchOne", "FleetPoller", "ListChanged", "Observation", "wait_for_rebuild"]

logger = logging.getLogger("ecs_rebuild_async")

# A tick that fails with one of these (after the session's own retries) is tried again at the
# next interval: the tick serves every wait, so its failure is no one server's outcome, and
# each wait's deadline still bounds the waiting.
_TRANSIENT = (ServerError, RateLimited, TransportError)


@attrs.frozen
class Observation:
    """One read of one server: the server, or None when the service says it is gone."""

    server: Server | None


FetchOne = Callable[[str], Awaitable[Server | None]]
#: (changes-since service time, or None for every server) -> (servers changed since then, the
#: service's time of the answer)
ListChanged = Callable[[datetime | None], Awaitable[tuple[list[Server], datetime | None]]]
EventCallback = Callable[[RebuildEvent], object]


def _fingerprint(server: Server | None) -> tuple[object, ...]:
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
        "server_id",
        "since",
        "waiters",
    )

    def __init__(self, server_id: str, since: datetime | None, first_due: float) -> None:
        self.server_id = server_id
        self.since = since  # service time from which a listing must show this server
        self.covered = False  # a listing from before ``since`` has been read since registration
        self.generation = 0
        self.latest: Observation | None = None
        self.next_due = first_due
        self.interval: float | None = None
        self.waiters = 0

    def offer(self, observation: Observation) -> None:
        if self.latest is None or _fingerprint(self.latest.server) != _fingerprint(
            observation.server
        ):
            self.latest = observation
            self.generation += 1


class FleetPoller:
    """Serves the observations of every wait in flight on one client."""

    def __init__(
        self, fetch_one: FetchOne, list_changed: ListChanged, settings: ClientSettings
    ) -> None:
        self._fetch_one = fetch_one
        self._list_changed = list_changed
        self._settings = settings
        self._watches: dict[str, _Watch] = {}
        self._ticking: anyio.Event | None = None
        self._last_listing: datetime | None = None
        self._listing_supported = True
        self.ticks = 0
        self.listings = 0
        self.single_reads = 0

    def register(self, server_id: str, since: datetime | None) -> _Watch:
        """Register interest in one server; every call needs its :meth:`unregister`."""
        existing = self._watches.get(server_id)
        if existing is None:
            first = anyio.current_time() + self._settings.poll_first_delay
            existing = self._watches[server_id] = _Watch(server_id, since, first)
        existing.waiters += 1
        return existing

    def unregister(self, watch: _Watch) -> None:
        watch.waiters -= 1
        if watch.waiters == 0 and self._watches.get(watch.server_id) is watch:
            del self._watches[watch.server_id]

    async def next_observation(self, watch: _Watch, seen_generation: int) -> Observation:
        """The next observation of ``watch`` newer than ``seen_generation``.

        One waiter at a time performs the tick (it is the leader while ``_ticking`` is set);
        the others wait for that tick to end, then look at their own server. A leader that is
        cancelled still ends its tick, so another waiter takes over.
        """
        while True:
            if watch.generation > seen_generation and watch.latest is not None:
                return watch.latest
            ticking = self._ticking
            if ticking is not None:
                await ticking.wait()
                continue
            ticking = self._ticking = anyio.Event()
            try:
                await self._sleep_until_due()
                await self._tick()
            except _TRANSIENT as exc:
                logger.warning("polling failed (%s); trying again at the next tick", exc)
                for pending in list(self._watches.values()):
                    self._advance(pending)
            finally:
                self._ticking = None
                ticking.set()

    async def _sleep_until_due(self) -> None:
        if not self._watches:
            return
        due = min(w.next_due for w in self._watches.values())
        delay = due - anyio.current_time()
        if delay > 0:
            await anyio.sleep(delay)

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
        """The next tick for a watch the listing serves: the fleet's interval, if set."""
        interval = self._settings.fleet_poll_interval
        if interval is None:
            self._advance(watch)
        else:
            watch.next_due = anyio.current_time() + interval

    async def _tick(self) -> None:
        self.ticks += 1
        now = anyio.current_time()
        watches = list(self._watches.values())
        use_listing = self._listing_supported and len(watches) >= self._settings.fleet_threshold
        if use_listing:
            await self._tick_by_listing(watches)
            return
        due = [w for w in watches if w.next_due <= now + 0.001] or watches[:1]
        for watch in due:
            await self._read_one(watch)

    async def _read_one(self, watch: _Watch) -> None:
        self.single_reads += 1
        server = await self._fetch_one(watch.server_id)
        watch.offer(Observation(server))
        self._advance(watch)

    async def _tick_by_listing(self, watches: list[_Watch]) -> None:
        margin = timedelta(seconds=self._settings.changes_since_margin)
        uncovered = [w for w in watches if not w.covered]
        since: datetime | None
        if any(w.since is None for w in uncovered):
            # A wait that does not know when its rebuild was accepted: list every server once
            # (no changes-since filter) rather than read each such server on its own.
            since = None
        else:
            starts = [w.since for w in uncovered if w.since is not None]
            if self._last_listing is not None:
                starts.append(self._last_listing)
            if not starts:
                return
            since = min(starts) - margin
        try:
            servers, answered_at = await self._list_changed(since)
        except BadRequest as exc:
            # A service without the changes-since filter: per-server reads from now on.
            logger.warning("listing servers by changes-since failed (%s); reading one by one", exc)
            self._listing_supported = False
            return
        self.listings += 1
        found = {server.id: server for server in servers}
        for watch in watches:
            server = found.get(watch.server_id)
            if server is not None:
                watch.offer(Observation(server))
                watch.covered = True
                self._advance_listed(watch)
            elif not watch.covered:
                # The rebuild changed this server after ``since``; a listing that misses it is
                # behind (or filtered): read the server itself rather than trust the absence.
                await self._read_one(watch)
                watch.covered = True
            else:
                self._advance_listed(watch)
        if answered_at is not None:
            self._last_listing = answered_at


async def wait_for_rebuild(
    tracker: RebuildTracker,
    *,
    poller: FleetPoller,
    fetch_one: FetchOne,
    timeout: float,
    on_event: EventCallback | None = None,
    keep: Callable[[RebuildTracker], object] | None = None,
) -> Server:
    """Wait until ``tracker`` proves the rebuild done (the final Server) or failed (raises).

    ``timeout`` bounds the whole wait, every request in it included. At the deadline one last
    read is made, with a short budget of its own, before RebuildTimeout. ``keep`` receives the
    tracker after each observation, so that what was learnt outlives a timeout or cancellation.
    """
    started = anyio.current_time()
    last_seen: Server | None = None
    unknown_logged: set[str] | None = None  # made when first needed: most waits never do
    last_phase: Phase | None = None

    def report(server: Server | None, verdict: Verdict) -> None:
        nonlocal last_phase, unknown_logged
        unknown = verdict.reason.startswith("unknown status")
        if unknown and (unknown_logged is None or verdict.reason not in unknown_logged):
            unknown_logged = {*(unknown_logged or ()), verdict.reason}
            logger.info("server %s: %s; still waiting", tracker.server_id, verdict.reason)
        if on_event is None or verdict.ignored:
            return
        if server is None and verdict.phase is last_phase:
            return
        last_phase = verdict.phase
        elapsed = anyio.current_time() - started
        if server is None:  # gone: nothing to show but the phase
            on_event(RebuildEvent(tracker.server_id, verdict.phase.value, elapsed=elapsed))
        else:
            on_event(tracker.event(server, elapsed))

    def judge(observation: Observation) -> Verdict:
        nonlocal tracker, last_seen
        if observation.server is None:
            tracker, verdict = tracker.observe_missing()
        else:
            last_seen = observation.server
            tracker, verdict = tracker.observe(observation.server)
        if keep is not None:
            keep(tracker)
        report(observation.server, verdict)
        if verdict.error is not None:
            raise verdict.error
        return verdict

    watch = poller.register(tracker.server_id, tracker.accepted_at)
    try:
        seen = 0
        with anyio.move_on_after(timeout):
            while True:
                observation = await poller.next_observation(watch, seen)
                seen = watch.generation
                if judge(observation).phase is Phase.DONE and last_seen is not None:
                    return last_seen
    finally:
        poller.unregister(watch)
    # The deadline passed: one last read, bounded, before giving up.
    final_budget = max(1.0, min(10.0, timeout * 0.1)) if math.isfinite(timeout) else 10.0
    with anyio.move_on_after(final_budget):
        observation = Observation(await fetch_one(tracker.server_id))
        if judge(observation).phase is Phase.DONE and last_seen is not None:
            return last_seen
    status = f"{last_seen.status}/{last_seen.task_state}" if last_seen else "never read"
    raise RebuildTimeout(
        f"server {tracker.server_id} did not finish rebuilding within {timeout:g}s "
        f"(last seen: {status})",
        server=last_seen,
    )
